"""Distillation on the real simulator: expert round, one DAgger round, resume without redoing rounds."""
from pathlib import Path

import numpy as np
import pytest

from training.distill import DistillConfig, distill


@pytest.mark.sim
def test_distill_runs_rounds_and_resumes(tmp_path: Path) -> None:
    config = DistillConfig("PickCube-v0", rounds=2, samples_per_round=8, updates_per_round=2, batch_size=4,
                           n_workers=1, eval_episodes=1)
    first = distill(tmp_path, config)
    assert [r["round"] for r in first["records"]] == [0, 1]
    assert [r["samples"] for r in first["records"]] == [8, 16]
    data = np.load(tmp_path / "data" / "round1.npz")
    assert data["points"].shape == (8, 1200, 6) and np.abs(data["label"]).max() <= 1.0
    assert Path(first["student"]).name == "student-round1.pt"

    again = distill(tmp_path, config)  # finished rounds are skipped
    assert [(r["round"], r["bc_loss"]) for r in again["records"]] == [(r["round"], r["bc_loss"]) for r in first["records"]]
