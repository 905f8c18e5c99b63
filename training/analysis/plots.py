"""Learning-curve PNGs: success vs training progress, stage boundaries marked.

`plot_learning_curve`: one PPO or BC run (its metrics.csv). `plot_recipe`: a task's whole recipe,
distillation rounds (`distill/distill_records.json`) then two-stage PPO (`ppo/metrics.csv`), on one
env-step axis, with the mean selection return (dense reward) on a second axis: it shows progress
while success is still 0.
"""
import csv
import json
from pathlib import Path
from typing import Dict, List

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


def _rows(path: Path) -> List[Dict[str, str]]:
    if not path.exists():
        return []
    with path.open() as file:
        return list(csv.DictReader(file))


def distill_label(distill_dir: Path) -> str:
    """What the distillation rounds were: from the expert, or continued from a student (`init_from`)."""
    config_file = distill_dir / "distill_config.json"
    init_from = json.loads(config_file.read_text()).get("init_from") if config_file.exists() else None
    if init_from:
        return "distillation continued from {} (DAgger from round 0)".format(Path(init_from).name)
    return "distillation (round 0: expert data, then DAgger)"


def plot_recipe(task_dir: Path) -> Path:
    """Write `task_dir/learning_curve.png`: selection success (and mean return, where recorded) vs env
    steps collected for training, through the distillation rounds and then the PPO stages; returns
    its path."""
    records_file = task_dir / "distill" / "distill_records.json"
    distill = json.loads(records_file.read_text()) if records_file.exists() else []
    ppo = _rows(task_dir / "ppo" / "metrics.csv")
    if not distill and not ppo:
        raise ValueError("{} holds neither distill/distill_records.json nor ppo/metrics.csv".format(task_dir))
    figure, axis = plt.subplots(figsize=(7, 4))
    returns = axis.twinx()
    returns.set_ylabel("mean selection return (dense reward, dotted)")
    offset = float(distill[-1]["samples"]) if distill else 0.0
    curves = [(distill_label(task_dir / "distill"), [(float(r["samples"]), r) for r in distill])]
    curves += [("PPO stage {} (starts at the dashed line)".format(stage),
                [(offset + float(r["env_steps"]), r) for r in ppo if r["stage"] == stage]) for stage in ("1", "2")]
    start = offset  # where each PPO stage starts on the env-step axis
    for k, (label, rows) in enumerate(curves):
        if not rows:
            continue
        if k > 0:
            axis.axvline(start, color="grey", linestyle="--")
            start = rows[-1][0]
        steps = [x for x, _ in rows]
        colour = "C{}".format(k)
        axis.plot(steps, [float(r["success"]) for _, r in rows], marker="o", color=colour, label=label)
        if all(r.get("mean_return", "") != "" for _, r in rows):
            returns.plot(steps, [float(r["mean_return"]) for _, r in rows], linestyle=":", color=colour)
    axis.set(xlabel="env steps collected for training", ylabel="success rate (selection seeds)",
             ylim=(-0.05, 1.05), title=task_dir.name)
    axis.grid(alpha=0.3)
    axis.legend(loc="center right", fontsize="small")
    path = task_dir / "learning_curve.png"
    figure.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(figure)
    return path
