"""Distillation: point subsets for BC, and on the real simulator an expert round, one DAgger round,
and resuming without redoing rounds."""
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import torch

from training.algorithms.bc import behaviour_cloning, point_subset
from training.algorithms.distill import DistillConfig, distill
from training.common.selection import best_round
from training.common.networks import ActorCritic


def test_point_subset_keeps_camera_and_goal_shares() -> None:
    columns = point_subset(1200, 50, 300, np.random.default_rng(0))
    camera, goal = columns[columns < 1150], columns[columns >= 1150]
    assert len(camera) == 300 and len(goal) == 13
    assert len(set(columns.tolist())) == len(columns) and goal.max() < 1200
    assert point_subset(1200, 50, 0, np.random.default_rng(0)) is None  # 0: all points
    assert point_subset(1200, 0, 2000, np.random.default_rng(0)) is None  # more than there are: all
    assert len(point_subset(1200, 0, 300, np.random.default_rng(0))) == 300


def test_behaviour_cloning_on_point_subsets_fits_labels() -> None:
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    points = rng.normal(size=(16, 120, 6)).astype(np.float16)
    data = {"points": points, "state": rng.normal(size=(16, 5)).astype(np.float32),
            "label": np.tile(np.float32([0.5, -0.5]), (16, 1))}
    model = ActorCritic(5, 2, [-1, -1], [1, 1])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    first = behaviour_cloning(model, data, 5, 8, optimizer, rng, train_points=30, n_goal_points=20)
    later = behaviour_cloning(model, data, 100, 8, optimizer, rng, train_points=30, n_goal_points=20,
                              final_lr_factor=0.1)
    assert later < first / 4
    assert optimizer.param_groups[0]["lr"] == 1e-3  # the annealed rate is restored for the next round
    with torch.no_grad():  # the full clouds give the learnt action too
        full = model(torch.from_numpy(points.astype(np.float32)), torch.from_numpy(data["state"])).numpy()
    assert np.abs(full - data["label"]).max() < 0.1


@pytest.mark.parametrize("loss, fitted", [("mse", 0.075), ("l1", 0.3)])
def test_bc_loss_fits_the_mean_or_the_median_of_conflicting_labels(loss: str, fitted: float) -> None:
    """One observation labelled 0.3 three times and -0.6 once: MSE learns their mean, L1 their
    median (a student imitating conflicting labels with L1 follows the majority instead of stalling)."""
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    data = {"points": np.tile(rng.normal(size=(1, 40, 6)).astype(np.float16), (4, 1, 1)),
            "state": np.zeros((4, 3), np.float32), "label": np.float32([[0.3], [0.3], [0.3], [-0.6]])}
    model = ActorCritic(3, 1, [-1], [1])
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    behaviour_cloning(model, data, 400, 4, optimizer, rng, loss=loss, final_lr_factor=0.01)
    with torch.no_grad():
        action = float(model(torch.from_numpy(data["points"][:1].astype(np.float32)),
                             torch.from_numpy(data["state"][:1])))
    assert abs(action - fitted) < 0.03
    with pytest.raises(ValueError, match="l2"):
        behaviour_cloning(model, data, 1, 4, optimizer, rng, loss="l2")


def test_best_round_is_the_most_successful_and_the_latest_of_equals() -> None:
    records = [{"round": 0, "success": 0.2}, {"round": 1, "success": 0.6}, {"round": 2, "success": 0.3},
               {"round": 3, "success": 0.6}, {"round": 4, "success": 0.5}]
    assert best_round(records)["round"] == 3
    assert best_round(records[:3])["round"] == 1


@pytest.mark.sim
def test_distill_runs_rounds_and_resumes(tmp_path: Path) -> None:
    config = DistillConfig("PickCube-v0", rounds=2, samples_per_round=8, updates_per_round=2, batch_size=4,
                           n_workers=1, eval_episodes=1)
    first = distill(tmp_path, config)
    assert [r["round"] for r in first["records"]] == [0, 1]
    assert [r["samples"] for r in first["records"]] == [8, 16]
    data = np.load(tmp_path / "data" / "round1.npz")
    assert data["points"].shape == (8, 1200, 6) and np.abs(data["label"]).max() <= 1.0
    chosen = best_round(first["records"])
    assert Path(first["student"]).name == "student-round{}.pt".format(chosen["round"])
    assert json.loads((tmp_path / "result.json").read_text())["student"] == first["student"]

    again = distill(tmp_path, config)  # finished rounds are skipped
    assert [(r["round"], r["bc_loss"]) for r in again["records"]] == [(r["round"], r["bc_loss"]) for r in first["records"]]

    stopped = tmp_path / "stopped"  # stopped after round 0, then resumed: the same round 1, bit for bit
    distill(stopped, replace(config, rounds=1))
    resumed = distill(stopped, config)
    assert [r["bc_loss"] for r in resumed["records"]] == [r["bc_loss"] for r in first["records"]]


@pytest.mark.sim
def test_collection_episodes_end_at_their_own_time_limit(tmp_path: Path) -> None:
    """`collect_episode_steps` cuts the collection episodes (more scenes per round); 8 steps of
    3-step episodes end two of them."""
    config = DistillConfig("PickCube-v0", rounds=1, samples_per_round=8, updates_per_round=1, batch_size=4,
                           n_workers=1, eval_episodes=1, collect_episode_steps=3)
    distill(tmp_path, config)
    assert np.load(tmp_path / "data" / "round0.npz")["episode_success"].size == 2


def test_expert_share_must_leave_the_student_some_samples() -> None:
    with pytest.raises(ValueError, match="expert_share"):
        DistillConfig("PickCube-v0", expert_share=1.0)


@pytest.mark.sim
def test_dagger_rounds_mix_in_the_expert_share(tmp_path: Path) -> None:
    """Half of round 1's 8 samples come from the expert: the round still holds 8 samples, and
    only the student's two 2-step episodes count towards its rollout success."""
    config = DistillConfig("PickCube-v0", rounds=2, samples_per_round=8, updates_per_round=1, batch_size=4,
                           n_workers=1, eval_episodes=1, collect_episode_steps=2, expert_share=0.5)
    distill(tmp_path, config)
    expert_round, mixed_round = (np.load(tmp_path / "data" / "round{}.npz".format(k)) for k in (0, 1))
    assert len(mixed_round["label"]) == len(mixed_round["points"]) == len(mixed_round["state"]) == 8
    assert mixed_round["episode_success"].size == 2 and expert_round["episode_success"].size == 4
