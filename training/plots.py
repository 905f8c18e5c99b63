"""Learning-curve PNGs from a run's metrics.csv: success vs training progress, stage boundary marked."""
import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_learning_curve(run_dir: Path) -> Path:
    """Write `run_dir/learning_curve.png` (x: env steps for PPO runs, updates for BC runs; y: success, or
    validation MSE for runs without evaluation); returns its path."""
    with (run_dir / "metrics.csv").open() as file:
        rows = list(csv.DictReader(file))
    if not rows:
        raise ValueError("{} has no evaluated iterations yet".format(run_dir / "metrics.csv"))
    x_key = "env_steps" if "env_steps" in rows[0] else "updates"
    evaluated = any(r["success"] != "" for r in rows)  # BC runs without a simulator select by validation MSE
    y_key = "success" if evaluated else "val_mse"
    figure, axis = plt.subplots(figsize=(7, 4))
    for stage in ("1", "2"):
        points = [(float(r[x_key]), float(r[y_key])) for r in rows if r["stage"] == stage and r[y_key] != ""]
        if points:
            axis.plot(*zip(*points), marker="o", label="stage {}".format(stage))
    stage1 = [float(r[x_key]) for r in rows if r["stage"] == "1"]
    if stage1 and any(r["stage"] == "2" for r in rows):
        axis.axvline(max(stage1), color="grey", linestyle="--", label="stage 2 starts")
    axis.set(xlabel=x_key.replace("_", " "), title="{}/{}".format(run_dir.parent.name, run_dir.name))
    if evaluated:
        axis.set(ylabel="success rate (selection seeds)", ylim=(-0.05, 1.05))
    else:
        axis.set(ylabel="validation MSE (held-out trajectories)")
    axis.grid(alpha=0.3)
    axis.legend()
    path = run_dir / "learning_curve.png"
    figure.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(figure)
    return path
