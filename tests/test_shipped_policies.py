"""Every shipped policy under the official evaluator, with the real weights/ and manifest.

Each task plays `EPISODES` fixed selection seeds (never report seeds) through
`python -m mani_skill2.evaluation.run_evaluation`, the looking policies past their look step. The test fails
when fewer episodes succeed than `threshold` allows: the smallest count that a policy as good as the lower end
of its held-out interval (manifest provenance `report.interval`) reaches with probability >= 99 %, so a
broken policy or runtime fails and a sound one passes.
"""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent.manifest import read_manifest

ROOT = Path(__file__).resolve().parents[1]
EPISODES = 8
FIRST_SEED = 1_500_000  # selection seeds set aside for this test
ENTRIES = read_manifest(ROOT / "weights")


def threshold(rate: float, episodes: int = EPISODES, miss: float = 0.01) -> int:
    """The largest k with P(Binomial(episodes, rate) < k) <= miss."""
    below = 0.0
    for k in range(episodes + 1):
        below += math.comb(episodes, k) * rate ** k * (1 - rate) ** (episodes - k)
        if below > miss:
            return k
    return episodes


def test_threshold_is_the_binomial_one_percent_point() -> None:
    assert threshold(0.63) == 2  # P(X <= 1) = 0.005, P(X <= 2) = 0.034
    assert threshold(0.93) == 5  # P(X <= 4) = 0.0031, P(X <= 5) = 0.0347
    assert threshold(0.0) == 0


@pytest.mark.sim
@pytest.mark.parametrize("env_id", sorted(ENTRIES))
def test_shipped_policy_succeeds_under_the_official_evaluator(env_id: str, tmp_path: Path) -> None:
    report = ENTRIES[env_id].provenance["report"]
    needed = threshold(report["interval"][0])
    config = {"env_info": {"env_id": env_id},
              "episodes": [{"episode_id": i, "reset_kwargs": {"seed": FIRST_SEED + i}} for i in range(EPISODES)]}
    (tmp_path / "config.json").write_text(json.dumps(config))
    env = {key: value for key, value in os.environ.items() if key != "MS2AGENT_WEIGHTS_DIR"}  # the real weights/
    result = subprocess.run([sys.executable, "-m", "mani_skill2.evaluation.run_evaluation", "-e", env_id,
                             "-o", str(tmp_path / "out"), "--config-file", str(tmp_path / "config.json")],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    episodes = json.loads((tmp_path / "out" / "episode_results.json").read_text())
    successes = sum(bool(episode["success"]) for episode in episodes.values())
    lengths = [episode.get("elapsed_steps") for episode in episodes.values()]
    assert len(episodes) == EPISODES
    assert successes >= needed, "{}: {} of {} episodes succeeded, fewer than {} (held out {}, interval {})".format(
        env_id, successes, EPISODES, needed, report["rate"], report["interval"])
    if ENTRIES[env_id].slot_reader is not None:  # a looking policy played past its look step
        look_step = ENTRIES[env_id].slot_reader.look_step
        assert all(length is None or length > look_step for length in lengths), lengths
