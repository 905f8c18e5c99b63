"""Comparing two official-evaluator runs of the same seeds (`training.analysis.compare`)."""
import json
from pathlib import Path
from typing import List

import pytest

from training.analysis.compare import compare, mcnemar_p


def write_run(directory: Path, first_seed: int, outcomes: List[bool], shards: int = 2) -> Path:
    """An evaluate.sh output directory: episode i played seed first_seed + i, split over `shards` configs."""
    for shard in range(shards):
        config = {"env_info": {"env_id": "PickCube-v0"},
                  "episodes": [{"episode_id": i, "reset_kwargs": {"seed": first_seed + i}}
                               for i in range(shard, len(outcomes), shards)]}
        (directory / "shard-{}".format(shard)).mkdir(parents=True)
        (directory / "shard-{}".format(shard) / "config.json").write_text(json.dumps(config))
    results = {str(i): {"success": float(ok)} for i, ok in enumerate(outcomes)}
    (directory / "episode_results.json").write_text(json.dumps(results))
    return directory


def test_mcnemar_by_hand() -> None:
    assert mcnemar_p(0, 0) == 1.0
    assert mcnemar_p(3, 3) == 1.0
    assert mcnemar_p(6, 0) == pytest.approx(2 / 64)  # all six disagreements one way
    assert mcnemar_p(5, 1) == pytest.approx(2 * 7 / 64)


def test_a_significant_loss_is_flagged_with_the_episodes_it_lost(tmp_path: Path) -> None:
    fp32 = write_run(tmp_path / "fp32", 4_000_000, [True] * 100)
    int8 = write_run(tmp_path / "int8", 4_000_000, [True] * 92 + [False] * 8)
    result = compare(fp32, int8)
    assert (result["first"]["rate"], result["second"]["rate"], result["episodes"]) == (1.0, 0.92, 100)
    assert result["only_first_solved"] == list(range(4_000_092, 4_000_100)) and result["only_second_solved"] == []
    assert result["second_significantly_worse"] and result["mcnemar_p"] < 0.01


def test_a_few_disagreements_both_ways_are_no_significant_loss(tmp_path: Path) -> None:
    fp32 = write_run(tmp_path / "fp32", 4_000_000, [True] * 88 + [False] * 12)
    int8 = write_run(tmp_path / "int8", 4_000_000, [True] * 86 + [False] * 2 + [True] * 1 + [False] * 11, shards=1)
    result = compare(fp32, int8)
    assert len(result["only_first_solved"]) == 2 and len(result["only_second_solved"]) == 1
    assert not result["second_significantly_worse"]


def test_runs_of_other_seeds_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="played different seeds"):
        compare(write_run(tmp_path / "a", 4_000_000, [True] * 10), write_run(tmp_path / "b", 4_000_010, [True] * 10))
