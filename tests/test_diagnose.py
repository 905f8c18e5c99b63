"""`ms2agent diagnose`: a student's rollouts measured against the expert's grasp."""
from pathlib import Path

import pytest

from training.diagnose import diagnose

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.sim
def test_shipped_pick_cube_student_is_seen_grasping() -> None:
    [record] = diagnose("PickCube-v0", ROOT / "weights" / "PickCube-v0.onnx", [2_000_000], max_steps=40)
    assert record["seed"] == 2_000_000 and record["steps"] <= 40
    assert record["grasp_step"] is not None and 5 < record["grasp_step"] < 40
    closest = record["closest_before_grasp"]
    assert closest["distance"] < 0.02 and closest["lateral"] < 0.01  # it reached the expert's grasp pose
    assert 0 <= record["mean_action_error"] < 0.5


def test_tasks_without_a_grasp_phase_are_refused() -> None:
    with pytest.raises(ValueError):
        diagnose("TurnFaucet-v0", ROOT / "weights" / "PickCube-v0.onnx", [0])
