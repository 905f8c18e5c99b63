"""Checkpoint selection: which evaluated checkpoint a run's next stage starts from and which it reports.

Records are the dicts a run stores per evaluated checkpoint (`metrics.csv`, `result.json`): `success` and
`mean_return` on the selection seeds over `episodes` episodes; a BC record without evaluation (`episodes` 0)
has `val_mse`, its MSE on held-out trajectories, instead. Two-stage runs (PPO, BC) rank by `ranking` and keep
stage 1's best unless stage 2's is better (`final_choice`); distillation picks its round by success alone, the
latest of equals (`best_round`).
"""
from typing import Any, Dict, Optional, Sequence, Tuple

Record = Dict[str, Any]


def ranking(record: Record) -> Tuple[float, float]:
    """What selection maximises: success, then mean return; without evaluated episodes (`episodes` 0, a BC run
    selecting by validation MSE) the lower `val_mse`."""
    if not record.get("episodes", True) and record.get("val_mse") is not None:
        return -record["val_mse"], 0.0
    return record["success"], record["mean_return"]


def select_best(records: Sequence[Record], stage: int) -> Optional[Record]:
    """A stage's best record: the highest `ranking`, the earlier iteration of equals; None without records."""
    candidates = [record for record in records if record["stage"] == stage]
    if not candidates:
        return None
    return max(candidates, key=lambda record: (*ranking(record), -record["iteration"]))


def final_choice(records: Sequence[Record]) -> Optional[Record]:
    """A two-stage run's result: stage 2's best if it ranks above stage 1's best, else stage 1's best."""
    best1, best2 = select_best(records, 1), select_best(records, 2)
    if best2 is not None and (best1 is None or ranking(best2) > ranking(best1)):
        return best2
    return best1


def best_round(records: Sequence[Record]) -> Record:
    """The distillation round to ship or fine-tune: the highest selection success, the latest of equals (it
    trained on the most data)."""
    return max(reversed(records), key=lambda record: record["success"])
