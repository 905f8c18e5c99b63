"""The three seed ranges: disjoint, and every selection helper refuses report seeds."""
import pytest

from training.common import seeds
from training.common.seeds import REPORT, SELECTION, SeedRangeError, check, purpose_of


def test_the_ranges_are_disjoint_and_the_defaults_lie_in_their_own() -> None:
    assert SELECTION.stop <= REPORT.start
    assert purpose_of(seeds.SELECTION_START) == "selection"
    assert purpose_of(seeds.REPORT_START) == "report"
    assert purpose_of(seeds.TRAIN_START) == "training" and purpose_of(0) == "training"
    assert [purpose_of(s) for s in (999_999, 1_000_000, 2_999_999, 3_000_000, 4_000_000, 4_999_999, 5_000_000)] == [
        "training", "selection", "selection", "training", "report", "report", "training"]


def test_check_refuses_seeds_of_another_range_or_crossing_a_boundary() -> None:
    check("selection", 2_000_000, 100)
    check("report", 4_000_000, 100)
    with pytest.raises(SeedRangeError, match="report"):
        check("selection", 4_000_000, 50)
    with pytest.raises(SeedRangeError, match="training"):
        check("selection", 2_999_990, 50)  # runs out of the selection range
    with pytest.raises(SeedRangeError):
        check("training", 999_990, 20)  # runs into the selection range
    with pytest.raises(SeedRangeError):
        check("report", 4_999_990, 20)  # runs out of the report range


def test_selection_workers_refuse_report_seeds_before_starting_a_simulator() -> None:
    from training.common.vec_env import EnvWorkers

    with pytest.raises(SeedRangeError, match="selection must use"):
        EnvWorkers("PickCube-v0", 2, first_seed=seeds.REPORT_START, purpose="selection")
    with pytest.raises(SeedRangeError):
        EnvWorkers("PickCube-v0", 2, first_seed=seeds.SELECTION_START)  # training workers on selection seeds


def test_evaluate_refuses_episodes_beyond_the_workers_range() -> None:
    from training.common.evaluation import evaluate

    class Workers:  # never stepped: the check comes first
        n_workers, purpose, first_seed = 2, "selection", 2_999_990

    with pytest.raises(SeedRangeError, match="training"):
        evaluate(lambda points, state: None, Workers(), 50)
    Workers.purpose, Workers.first_seed = "training", seeds.TRAIN_START
    with pytest.raises(SeedRangeError, match="not on training seeds"):
        evaluate(lambda points, state: None, Workers(), 10)
