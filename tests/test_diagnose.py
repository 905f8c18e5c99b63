"""`ms2agent diagnose`: a student's rollouts measured against the expert's grasp (and slot)."""
from pathlib import Path

import pytest

from training.diagnose import diagnose
from training.slot_reader import reader_entry

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
    """The shipped PegInsertionSide policy grasps this seed at step 32; the carry is measured after it."""
    [record] = diagnose("PegInsertionSide-v0", ROOT / "weights" / "PegInsertionSide-v0.onnx", [2_000_000], max_steps=40)
    assert record["grasp_step"] is not None and record["grasp_step"] < 40
    assert 0 <= record["mean_action_error_after_grasp"] < 1
    slot = record["closest_to_slot"]
    assert set(slot) == {"along", "lateral", "angle", "entrance"}
    assert -1 < slot["along"] < slot["entrance"] < 0 and 0 <= slot["lateral"] < 1  # in front of the hole


@pytest.mark.sim
def test_a_looking_student_is_measured_where_it_read_the_slot() -> None:
    """The shipped student started as a looking one (zero weights on the slot) does not look: its camera is
    far from the look pose when the shipped slot reader reads, and the reading is off."""
    reader = ROOT / "weights" / "PegInsertionSide-v0.slot_reader.onnx"
    look_step = reader_entry(reader, "PegInsertionSide-v0").look_step
    [record] = diagnose("PegInsertionSide-v0", ROOT / "weights" / "PegInsertionSide-v0.onnx", [2_000_000],
                        max_steps=look_step + 2, slot_reader=reader)
    assert set(record["look_offset"]) == {"distance", "angle"} and record["look_offset"]["distance"] > 0.05
    assert set(record["reading_error"]) == {"along", "lateral", "angle"} and record["read_at"] == look_step
