"""A training run's directory, shared by PPO and BC runs.

`config.json` (a run with another config is refused unless forced), `checkpoints/stage{S}-{iteration:04d}.pt`,
`metrics.csv` (rewritten from the checkpointed records, so always consistent with them), `tensorboard/`,
`learning_curve.png`, `result.json`.
"""
import csv
import json
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from training.common.selection import final_choice


class RunDirectoryError(RuntimeError):
    pass


class RunDirectory:
    def __init__(self, path: Path, config: Dict[str, Any], resume: bool = False, force: bool = False,
                 free: Sequence[str] = (), defaults: Optional[Dict[str, Any]] = None) -> None:
        """Claim `path` for a run with `config`: refuse another run's directory unless `resume` (same config)
        or `force` (overwrite; without `resume` its checkpoints are deleted). The `free` keys (how long to
        train, how many workers) are not part of the run's identity: a resumed run takes the new values. A setting
        added since a run started is missing from its config.json: it counts as its value in `defaults` (the
        config class's defaults, each of which keeps what runs did before the setting existed), else None."""
        self.path = Path(path)
        self.checkpoints = self.path / "checkpoints"
        config_file = self.path / "config.json"
        if config_file.exists():
            existing = json.loads(config_file.read_text())
            existing = {**{key: (defaults or {}).get(key) for key in config if key not in existing}, **existing}
            existing.update({key: config[key] for key in free if key in config})
            if existing != config and not force:
                raise RunDirectoryError(
                    "{} holds a run with another configuration; pass --force to overwrite its config, or use "
                    "another --run-dir.\nexisting: {}\nrequested: {}".format(self.path, existing, config))
            if self.latest_checkpoint() is not None and not (resume or force):
                raise RunDirectoryError("{} already holds a run; pass --resume to continue it or --force to "
                                        "restart it".format(self.path))
            if force and not resume:
                for old in self.checkpoints.glob("*.pt"):
                    old.unlink()
        self.path.mkdir(parents=True, exist_ok=True)
        config_file.write_text(json.dumps(config, indent=2))

    def latest_checkpoint(self) -> Optional[Path]:
        paths = sorted(self.checkpoints.glob("stage*-*.pt"))
        return paths[-1] if paths else None

    def checkpoint_path(self, record: Dict[str, Any]) -> Path:
        return self.checkpoints / "stage{}-{:04d}.pt".format(record["stage"], record["iteration"])

    def write_metrics(self, records: List[Dict[str, Any]], step_key: str) -> None:
        """Rewrite metrics.csv from the records (one row per evaluated iteration), log the newest one
        to TensorBoard at step `record[step_key]`, and redraw learning_curve.png."""
        from torch.utils.tensorboard import SummaryWriter

        from training.analysis.plots import plot_learning_curve

        newest = records[-1]
        with SummaryWriter(str(self.path / "tensorboard")) as writer:
            for key, value in newest.items():
                if isinstance(value, (int, float)) and key not in ("stage", "iteration"):
                    writer.add_scalar("stage{}/{}".format(newest["stage"], key), value, newest[step_key])
        path = self.path / "metrics.csv"
        temporary = path.with_suffix(".tmp")
        with temporary.open("w", newline="") as file:
            # every key of every record, in first-seen order (an initialisation's record has no training stats)
            writer = csv.DictWriter(file, fieldnames=list(dict.fromkeys(key for r in records for key in r)))
            writer.writeheader()
            writer.writerows(records)
        os.replace(temporary, path)
        plot_learning_curve(self.path)

    def write_result(self, best: Dict[str, Any], **extra: Any) -> Dict[str, Any]:
        """result.json: the chosen record, its checkpoint and which stage it came from."""
        result = {**best, "checkpoint": str(self.checkpoint_path(best)), "chosen_from": "stage {}".format(best["stage"]),
                  **extra}
        (self.path / "result.json").write_text(json.dumps(result, indent=2))
        return result

    def write_progress(self, records: List[Dict[str, Any]], step_key: str, **extra: Any) -> Dict[str, Any]:
        """After each evaluation: `write_metrics`, then result.json with the run's choice so far
        (`final_choice`), so a run stopped between evaluations names its best evaluated checkpoint, not an
        earlier finish's. Returns result.json's content."""
        self.write_metrics(records, step_key)
        return self.write_result(final_choice(records), **extra)
