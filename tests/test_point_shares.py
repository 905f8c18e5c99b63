"""`ms2agent point-shares`: camera points per actor while the expert reaches, carries and lines up."""
import pytest

from training.analysis.point_shares import ROBOT, point_shares


@pytest.mark.sim
def test_peg_insertion_points_fall_on_the_robot_the_peg_and_the_box() -> None:
    summary = point_shares("PegInsertionSide-v0", [0], max_steps=80, every=2)
    assert list(summary) == ["reach", "carry", "line-up"]
    assert 10 <= sum(summary[name]["states"] for name in summary) <= 40  # every other step until inserted (~43)
    assert summary["carry"]["states"] >= 1  # the expert grasps the peg within ~25 steps
    assert summary["line-up"]["states"] >= 1  # and holds it in front of the hole before pushing
    for phase in summary:
        groups = {name: value for name, value in summary[phase].items() if name not in ("states", "entrance_points")}
        assert {ROBOT, "peg", "box_with_hole"} <= set(groups)
        assert sum(value["mean"] for value in groups.values()) == pytest.approx(1.0, abs=0.01)
        assert all(0 <= value["p10"] <= 1 for value in groups.values())
    near = summary["line-up"]["entrance_points"]
    assert 0 < near["sampled"]["mean"] < near["cloud"]["mean"]  # the agent keeps 1,200 of ~10,000 points


def test_lean_is_refused_for_a_task_without_an_insertion_expert() -> None:
    with pytest.raises(ValueError, match="no setting 'lean'"):
        point_shares("PickCube-v0", [0], lean=0.5)
