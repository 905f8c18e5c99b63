"""Which expert solves which task."""
from typing import Dict, Type

from .assembly import PegInsertionSideExpert, PlugChargerExpert
from .base import Expert
from .pick_place import LiftCubeExpert, PickCubeExpert, StackCubeExpert

EXPERTS: Dict[str, Type[Expert]] = {
    "PickCube-v0": PickCubeExpert,
    "LiftCube-v0": LiftCubeExpert,
    "StackCube-v0": StackCubeExpert,
    "PegInsertionSide-v0": PegInsertionSideExpert,
    "PlugCharger-v0": PlugChargerExpert,
}


def make_expert(env_id: str) -> Expert:
    """A fresh expert for `env_id`; ValueError naming the supported tasks otherwise."""
    if env_id not in EXPERTS:
        raise ValueError("No expert for {!r}; supported tasks: {}".format(env_id, ", ".join(sorted(EXPERTS))))
    return EXPERTS[env_id]()
