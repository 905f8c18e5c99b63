"""Learning-curve PNGs of a task's recipe (distillation rounds, then the PPO stages) and of one run."""
import csv
import json
from pathlib import Path

import pytest

from training.analysis.plots import distill_label, plot_learning_curve, plot_recipe

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
    """Distillation records carry a mean return (drawn on the second axis), these PPO rows do not."""
    (tmp_path / "distill").mkdir()
    (tmp_path / "distill" / "distill_records.json").write_text(json.dumps(
        [{"round": 0, "samples": 3000, "success": 0.0, "mean_return": 190.5},
         {"round": 1, "samples": 7000, "success": 0.7, "mean_return": 338.0}]))
    write_ppo_run(tmp_path / "ppo")
    path = plot_recipe(tmp_path)
    assert path == tmp_path / "learning_curve.png" and path.stat().st_size > 10_000
    assert plot_learning_curve(tmp_path / "ppo").exists()


def test_distillation_label_names_the_student_it_continued_from(tmp_path: Path) -> None:
    assert distill_label(tmp_path) == "distillation (round 0: expert data, then DAgger)"
    (tmp_path / "distill_config.json").write_text(json.dumps({"init_from": "weights/StackCube-v0.onnx"}))
    assert distill_label(tmp_path) == "distillation continued from StackCube-v0.onnx (DAgger from round 0)"


def test_recipe_plot_without_runs_says_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="distill_records.json"):
        plot_recipe(tmp_path)


def test_film_strip_picks_evenly_spaced_frames_first_and_last_included(tmp_path: Path) -> None:
    import matplotlib.pyplot as plt
    import numpy as np

    from training.analysis.film_strip import save_strip

    frames = [np.full((8, 6, 3), step, np.uint8) for step in range(11)]  # frame k is filled with k
    path = save_strip(frames, tmp_path / "strip.png", n_frames=3, pixel_stride=2)
    image = plt.imread(path)
    assert image.shape[:2] == (4, 9)  # 3 frames of 4x3 pixels side by side
    assert [round(float(image[0, 3 * i, 0]) * 255) for i in range(3)] == [0, 5, 10]


@pytest.mark.sim
def test_film_strip_of_the_shipped_pickcube_policy(tmp_path: Path) -> None:
    from training.analysis.film_strip import save_strip, successful_episode

    episode = successful_episode("PickCube-v0", attempts=3)  # shipped policy: 0.94 held out
    assert 4_000_000 <= episode["seed"] < 4_000_003 and 1 < len(episode["frames"]) <= 201
    assert episode["frames"][0].shape == (512, 512, 3)
    assert save_strip(episode["frames"], tmp_path / "strip.png").stat().st_size > 10_000
