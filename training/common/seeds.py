"""The three disjoint episode-seed ranges, and the checks that keep every use in its own range.

- training: rollouts, expert runs, demonstrations, slot-reader views: every seed outside the two below
  (PPO rollouts start at `TRAIN_START`, distillation collections at `TRAIN_START + 1,000,000 * round`);
- selection: choosing rounds and checkpoints, evaluated as often as wanted: [1,000,000, 3,000,000);
- report: held-out figures; a shipped policy is scored there once, after it was chosen: [4,000,000, 5,000,000)
  (3,000,000 .. 3,999,999 are training seeds: some were looked at while diagnosing).

`check(purpose, first_seed, count)` raises `SeedRangeError` when seeds first_seed .. first_seed + count - 1
leave the purpose's range, so a selection evaluation can never read a report seed.
"""
from typing import NamedTuple


class SeedRangeError(ValueError):
    pass


class SeedRange(NamedTuple):
    name: str
    start: int
    stop: int  # exclusive

    def __contains__(self, seed: object) -> bool:
        return isinstance(seed, int) and self.start <= seed < self.stop


SELECTION = SeedRange("selection", 1_000_000, 3_000_000)
REPORT = SeedRange("report", 4_000_000, 5_000_000)
SEED_LIMIT = 2 ** 31  # numpy and SAPIEN take 32-bit seeds

SELECTION_START = 2_000_000  # default first selection seed
REPORT_START = REPORT.start  # default first report seed (scripts/evaluate.sh)
TRAIN_START = 10_000_000  # PPO rollouts: TRAIN_START + env steps done so far

PURPOSES = ("training", "selection", "report")


def purpose_of(seed: int) -> str:
    """Which range `seed` belongs to."""
    if not 0 <= seed < SEED_LIMIT:
        raise SeedRangeError("seed {} is outside 0 .. 2^31 - 1".format(seed))
    if seed in SELECTION:
        return "selection"
    if seed in REPORT:
        return "report"
    return "training"


def check(purpose: str, first_seed: int, count: int = 1) -> None:
    """Raise `SeedRangeError` unless seeds first_seed .. first_seed + count - 1 all serve `purpose`."""
    if purpose not in PURPOSES:
        raise ValueError("unknown seed purpose {!r}; one of {}".format(purpose, ", ".join(PURPOSES)))
    last = first_seed + max(count - 1, 0)
    kinds = {purpose_of(first_seed), purpose_of(last)}
    for boundary in (SELECTION.start, SELECTION.stop, REPORT.start, REPORT.stop):  # a range crossing a boundary
        if first_seed < boundary <= last:
            kinds.add(purpose_of(boundary))
    if kinds != {purpose}:
        raise SeedRangeError("seeds {}..{} include {} seeds; {} must use {} (training/common/seeds.py)".format(
            first_seed, last, " and ".join(sorted(kinds)), purpose, ALLOWED[purpose]))


ALLOWED = {"training": "seeds outside 1,000,000..2,999,999 and 4,000,000..4,999,999",
           "selection": "seeds 1,000,000..2,999,999", "report": "seeds 4,000,000..4,999,999"}
