"""Learning-curve PNGs of a task's recipe (distillation rounds, then the PPO stages) and of one run."""
import csv
import json
from pathlib import Path

import pytest

from training.plots import plot_learning_curve, plot_recipe

PPO_ROWS = [{"stage": 1, "iteration": 1, "env_steps": 4000, "success": 0.9},
            {"stage": 1, "iteration": 2, "env_steps": 8000, "success": 0.95},
            {"stage": 2, "iteration": 1, "env_steps": 11500, "success": 0.9}]


def write_ppo_run(run_dir: Path) -> None:
    run_dir.mkdir(parents=True)
    with (run_dir / "metrics.csv").open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(PPO_ROWS[0]))
        writer.writeheader()
        writer.writerows(PPO_ROWS)


def test_recipe_plot_draws_distillation_then_ppo(tmp_path: Path) -> None:
    (tmp_path / "distill").mkdir()
    (tmp_path / "distill" / "distill_records.json").write_text(json.dumps(
        [{"round": 0, "samples": 3000, "success": 0.0}, {"round": 1, "samples": 7000, "success": 0.7}]))
    write_ppo_run(tmp_path / "ppo")
    path = plot_recipe(tmp_path)
    assert path == tmp_path / "learning_curve.png" and path.stat().st_size > 10_000
    assert plot_learning_curve(tmp_path / "ppo").exists()


def test_recipe_plot_without_runs_says_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="distill_records.json"):
        plot_recipe(tmp_path)
