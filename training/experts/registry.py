"""Which expert solves which task, how to change an expert's settings, and a learned teacher in an expert's place."""
from pathlib import Path
from typing import Dict, Mapping, Optional, Sequence, Type, Union

from .assembly import PegInsertionSideExpert, PlugChargerExpert
from .base import Expert
from .pick_place import LiftCubeExpert, PickCubeExpert, StackCubeExpert
from .teacher import LearnedTeacher

EXPERTS: Dict[str, Type[Expert]] = {
    "PickCube-v0": PickCubeExpert,
    "LiftCube-v0": LiftCubeExpert,
    "StackCube-v0": StackCubeExpert,
    "PegInsertionSide-v0": PegInsertionSideExpert,
    "PlugCharger-v0": PlugChargerExpert,
}


def make_expert(env_id: str, settings: Optional[Mapping[str, float]] = None,
                teacher: Optional[Union[str, Path]] = None) -> Expert:
    """A fresh expert for `env_id`; ValueError naming the supported tasks otherwise. `settings` replace
    some of its float settings (class attributes such as an insertion expert's `lean` or `sag_gain`)
    on this instance; ValueError naming the ones it has for any other name. `teacher`: a learned teacher's
    checkpoint or run directory instead (`training.experts.teacher`; it has no settings)."""
    if teacher is not None:
        if settings:
            raise ValueError("a learned teacher has no settings (got {})".format(", ".join(settings)))
        return LearnedTeacher(teacher, env_id)
    if env_id not in EXPERTS:
        raise ValueError("No expert for {!r}; supported tasks: {}".format(env_id, ", ".join(sorted(EXPERTS))))
    expert = EXPERTS[env_id]()
    numeric = sorted(name for name in dir(type(expert))
                     if not name.startswith("_") and isinstance(getattr(type(expert), name), float))
    for name, value in (settings or {}).items():
        if name not in numeric:
            raise ValueError("{} has no setting {!r}; its float settings: {}".format(
                type(expert).__name__, name, ", ".join(numeric)))
        setattr(expert, name, float(value))
    return expert


def parse_settings(texts: Sequence[str]) -> Dict[str, float]:
    """`NAME=VALUE` strings (command-line settings for `make_expert`) as a dict; ValueError if malformed."""
    settings = {}
    for text in texts:
        name, equals, value = text.partition("=")
        try:
            settings[name.strip()] = float(value)
        except ValueError:
            raise ValueError("expert setting {!r} is not NAME=NUMBER".format(text)) from None
        if not equals or not name.strip():
            raise ValueError("expert setting {!r} is not NAME=NUMBER".format(text))
    return settings
