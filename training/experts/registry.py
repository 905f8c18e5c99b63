"""Which expert solves which task."""
from typing import Dict, Optional, Type

from .assembly import InsertionExpert, PegInsertionSideExpert, PlugChargerExpert
from .base import Expert
from .pick_place import LiftCubeExpert, PickCubeExpert, StackCubeExpert

EXPERTS: Dict[str, Type[Expert]] = {
    "PickCube-v0": PickCubeExpert,
    "LiftCube-v0": LiftCubeExpert,
    "StackCube-v0": StackCubeExpert,
    "PegInsertionSide-v0": PegInsertionSideExpert,
    "PlugCharger-v0": PlugChargerExpert,
}


def make_expert(env_id: str, lean: Optional[float] = None) -> Expert:
    """A fresh expert for `env_id`; ValueError naming the supported tasks otherwise. `lean` (insertion
    tasks only, ValueError elsewhere): the grasp's lean towards the held object's head, rad, instead
    of the expert's own."""
    if env_id not in EXPERTS:
        raise ValueError("No expert for {!r}; supported tasks: {}".format(env_id, ", ".join(sorted(EXPERTS))))
    expert = EXPERTS[env_id]()
    if lean is not None:
        if not isinstance(expert, InsertionExpert):
            raise ValueError("lean applies to the insertion tasks' experts, not {}".format(env_id))
        expert.lean = lean
    return expert
