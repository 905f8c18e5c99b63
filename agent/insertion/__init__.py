"""The insertion add-on: what a looking policy (PegInsertionSide, PlugCharger) adds to the point-cloud policy.

A looking policy first brings its hand camera in front of the slot it must insert into; at its look step a slot
reader (`slot_reader`: an ONNX regressor, its reading refined on the slot's known face by `slot_fit`) places the
slot, and the slot memory (`slot_memory`) adds it to every later observation as the policy's goal. With the
held-object fit (`held_fit`) the policy also sees the pose of the object in its hand, fitted on every observation.
`memory.InsertionMemory` holds both for one episode; `memory.insertion_memory` builds it, for the agent
(`agent.policy.Policy`) and for training's environment workers alike. The rotation and frame math is in
`agent.geometry`.

A manifest entry (`slot_reader`, `held_fit`) and a training run (`--slot-reader`, `--held-fit`) turn it on; the
held-object fit needs the slot reader (`check_held_fit`). Pure numpy and onnxruntime (Python 3.8).
"""
from typing import Any

HELD_FIT_WITHOUT_READER = ("held_fit needs a slot_reader: the held object's pose is given in the frame of the slot "
                           "a looking policy read")


def check_held_fit(slot_reader: Any, held_fit: bool) -> None:
    """ValueError (`HELD_FIT_WITHOUT_READER`) where `held_fit` is set without a slot reader (None or empty)."""
    if held_fit and not slot_reader:
        raise ValueError(HELD_FIT_WITHOUT_READER)
