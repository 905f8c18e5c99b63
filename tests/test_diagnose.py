"""`ms2agent diagnose`: a student's rollouts measured against the expert's grasp (and slot)."""
from pathlib import Path

import numpy as np
import pytest

from training.analysis.diagnose import SETTLE_STEPS, diagnose
from agent.insertion.slot_reader import reader_entry

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.sim
def test_shipped_pick_cube_student_is_seen_grasping() -> None:
    [record] = diagnose("PickCube-v0", ROOT / "weights" / "PickCube-v0.onnx", [2_000_000], max_steps=40)
    assert record["seed"] == 2_000_000 and 1 <= record["steps"] <= 40
    assert record["grasp_step"] is not None and 1 <= record["grasp_step"] <= record["steps"]
    closest = record["closest_before_grasp"]
    assert closest["distance"] < 0.03  # it grasped where the expert would, not somewhere else
    assert set(closest) == {"distance", "height", "lateral", "angle"}
    closing = record["closing_before_grasp"]  # fingers close around the cube before it counts as grasped
    assert closing["student"] >= 1 and closing["expert"] >= 1
    assert 0 <= record["mean_action_error"] < 0.5
    assert "closest_to_slot" not in record  # only the insertion tasks measure a slot


def test_tasks_without_an_expert_are_refused() -> None:
    with pytest.raises(ValueError):
        diagnose("TurnFaucet-v0", ROOT / "weights" / "PickCube-v0.onnx", [0])


@pytest.mark.sim
def test_insertion_student_is_measured_in_front_of_the_slot() -> None:
    """The shipped PlugCharger policy looks, then grasps the charger (fitting it in the hand); the carry is
    measured after the grasp, with the charger's pose in the hand when it settled and where it came closest to
    the receptacle."""
    reader = ROOT / "weights" / "PlugCharger-v0.slot_reader.onnx"
    [record] = diagnose("PlugCharger-v0", ROOT / "weights" / "PlugCharger-v0.onnx", [2_000_000], max_steps=100,
                        slot_reader=reader, held_fit=True)
    assert record["grasp_step"] is not None and record["read_at"] < record["grasp_step"] < 100 - SETTLE_STEPS
    assert 0 <= record["mean_action_error_after_grasp"] < 1
    slot = record["closest_to_slot"]
    assert set(slot) == {"along", "lateral", "angle", "entrance"}
    assert -1 < slot["entrance"] < 0 and -1 < slot["along"] <= 0.01 and 0 <= slot["lateral"] < 1  # at the receptacle
    for pose in record["in_hand"].values():  # held between the fingers, near the TCP
        assert set(pose) == {"position_mm", "rotation"} and np.linalg.norm(pose["position_mm"]) < 60


@pytest.mark.sim
def test_a_looking_student_is_measured_where_it_read_the_slot() -> None:
    """The shipped PegInsertionSide policy looks: on this seed its hand camera arrives near the look pose,
    the shipped reader places the hole to a few mm, and it grasps the peg after the look (before step 80)."""
    reader = ROOT / "weights" / "PegInsertionSide-v0.slot_reader.onnx"
    look_step = reader_entry(reader, "PegInsertionSide-v0").look_step
    [record] = diagnose("PegInsertionSide-v0", ROOT / "weights" / "PegInsertionSide-v0.onnx", [2_000_002],
                        max_steps=80, slot_reader=reader)
    assert record["read_at"] == look_step and set(record["look_offset"]) == {"distance", "angle"}
    assert record["look_offset"]["distance"] < 0.03  # the reader was trained for looks within 2 cm per axis
    assert set(record["reading_error"]) == {"along", "lateral", "angle"} and record["reading_error"]["lateral"] < 0.01
    assert record["grasp_step"] is not None and look_step < record["grasp_step"] < 80
    assert record["closest_to_slot"] is not None
