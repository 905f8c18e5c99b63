"""Two official-evaluator runs of the same episodes compared episode by episode (e.g. an int8 policy against the
fp32 one it was converted from, on the same report seeds).

Each run is what `scripts/evaluate.sh` wrote for a task (`episode_results.json`, `shard-*/config.json`). The runs
must have played the same seeds. The difference in success is tested with McNemar's exact test on the episodes
where the runs disagree: under "no difference" each disagreement goes either way with probability 1/2.
"""
from math import comb
from pathlib import Path
from typing import Any, Dict, List

from training.export.official_evaluation import wilson_interval
from training.export.report import evaluated_episodes


def mcnemar_p(only_first: int, only_second: int) -> float:
    """Two-sided exact McNemar p-value for `only_first` and `only_second` discordant episodes."""
    n = only_first + only_second
    if n == 0:
        return 1.0
    tail = sum(comb(n, k) for k in range(min(only_first, only_second) + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def compare(first: Path, second: Path) -> Dict[str, Any]:
    """Rates (with 95 % Wilson intervals) of both runs on their common seeds, the episodes only one of them
    solved, McNemar's p, and whether the second lost significantly (p < 0.05 and a lower rate)."""
    a, b = evaluated_episodes(first), evaluated_episodes(second)
    if set(a) != set(b):
        raise ValueError("{} and {} played different seeds ({} and {} episodes, {} in common)".format(
            first, second, len(a), len(b), len(set(a) & set(b))))
    seeds: List[int] = sorted(a)
    rate_a, rate_b = sum(a.values()) / len(seeds), sum(b.values()) / len(seeds)
    only_a = [seed for seed in seeds if a[seed] and not b[seed]]
    only_b = [seed for seed in seeds if b[seed] and not a[seed]]
    p = mcnemar_p(len(only_a), len(only_b))
    return {"episodes": len(seeds), "seeds": "{}-{}".format(seeds[0], seeds[-1]),
            "first": {"dir": str(first), "rate": rate_a, "interval": [round(x, 3) for x in wilson_interval(rate_a, len(seeds))]},
            "second": {"dir": str(second), "rate": rate_b, "interval": [round(x, 3) for x in wilson_interval(rate_b, len(seeds))]},
            "only_first_solved": only_a, "only_second_solved": only_b, "mcnemar_p": round(p, 4),
            "second_significantly_worse": p < 0.05 and rate_b < rate_a}
