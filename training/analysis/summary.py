"""A two-stage run in one table: every evaluated checkpoint on the selection seeds, each stage's best and the
run's choice, with the env steps and the wall-clock hours spent up to it (collection, learning, evaluation)."""
import csv
from pathlib import Path
from typing import Dict, List

from training.common.selection import final_choice, select_best


def _number(value: str) -> float:
    return float(value) if value not in ("", None) else 0.0


def read_records(run_dir: Path) -> List[Dict]:
    """metrics.csv's rows as records, with `hours`: wall-clock hours from the run's start to that checkpoint."""
    path = Path(run_dir) / "metrics.csv"
    if not path.is_file():
        raise FileNotFoundError("{} does not exist: no iteration of this run was evaluated yet".format(path))
    with path.open() as file:
        rows = list(csv.DictReader(file))
    records, seconds = [], 0.0
    for row in rows:
        seconds += sum(_number(row.get(key, "")) for key in ("collect_seconds", "learn_seconds", "eval_seconds"))
        records.append({"stage": int(row["stage"]), "iteration": int(row["iteration"]),
                        "env_steps": int(row["env_steps"]), "success": float(row["success"]),
                        "mean_return": float(row["mean_return"]), "episodes": int(row["episodes"]),
                        "hours": seconds / 3600})
    return records


def summary_table(run_dir: Path) -> str:
    """Markdown: one row per evaluated checkpoint, the stage bests and the run's choice marked."""
    records = read_records(run_dir)
    best = {id(select_best(records, stage)): "stage {} best".format(stage) for stage in (1, 2)}
    chosen = id(final_choice(records))
    lines = ["| checkpoint | env steps | hours | selection success (episodes) | mean return | |",
             "|---|---|---|---|---|---|"]
    for record in records:
        name = "initialisation" if record["stage"] == 1 and record["iteration"] == 0 else \
            "stage {}, iteration {}".format(record["stage"], record["iteration"])
        marks = [mark for mark in (best.get(id(record)), "**the run's choice**" if id(record) == chosen else None)
                 if mark]
        lines.append("| {} | {:,} | {:.2f} | {:.2f} ({}) | {:.1f} | {} |".format(
            name, record["env_steps"], record["hours"], record["success"], record["episodes"],
            record["mean_return"], ", ".join(marks)))
    return "\n".join(lines)
