"""`ms2agent point-shares`: camera points per actor while the expert reaches and carries."""
import pytest

from training.point_shares import ROBOT, point_shares


@pytest.mark.sim
def test_peg_insertion_points_fall_on_the_robot_the_peg_and_the_box() -> None:
    summary = point_shares("PegInsertionSide-v0", [0], max_steps=40, every=8)
    assert summary["reach"]["states"] + summary["carry"]["states"] == 5  # steps 0, 8, ..., 32
    assert summary["carry"]["states"] >= 1  # the expert grasps the peg within ~25 steps
    for phase in ("reach", "carry"):
        groups = {name: value for name, value in summary[phase].items() if name != "states"}
        assert {ROBOT, "peg", "box_with_hole"} <= set(groups)
        assert sum(value["mean"] for value in groups.values()) == pytest.approx(1.0, abs=0.01)
        assert all(0 <= value["p10"] <= 1 for value in groups.values())
