"""Running mean and variance: the parallel-variance update (Chan et al.) of a batch's moments into running ones."""
from typing import Dict, Tuple, TypeVar

import numpy as np

Moment = TypeVar("Moment", float, np.ndarray)


def combine_moments(mean: Moment, var: Moment, count: float, batch_mean: Moment, batch_var: Moment,
                    n: int) -> Tuple[Moment, Moment, float]:
    """Mean, (population) variance and count of two samples together, from each one's moments (scalars, or arrays of
    per-entry moments). A `count` of 0 gives the batch's own."""
    total = count + n
    delta = batch_mean - mean
    mean = mean + delta * n / total
    var = (var * count + batch_var * n + delta ** 2 * count * n / total) / total
    return mean, var, total


class RunningMeanStd:
    """Running mean and variance of a scalar stream (starting at mean 0, variance 1, a negligible count)."""

    def __init__(self) -> None:
        self.mean, self.var, self.count = 0.0, 1.0, 1e-4

    def update(self, values: np.ndarray) -> None:
        self.mean, self.var, self.count = (float(x) for x in combine_moments(
            self.mean, self.var, self.count, float(np.mean(values)), float(np.var(values)), values.size))

    def state_dict(self) -> Dict[str, float]:
        return {"mean": self.mean, "var": self.var, "count": self.count}

    def load_state_dict(self, state: Dict[str, float]) -> None:
        self.mean, self.var, self.count = state["mean"], state["var"], state["count"]
