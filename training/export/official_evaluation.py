"""The official evaluator's episode configs, split across processes, and their merged result.

Used by scripts/evaluate.sh: shard k of n evaluates episodes k, k + n, k + 2n, ... (seed
first_seed + episode id) in its own `run_evaluation` process; the merged `average_metrics.json` is
the mean of every metric over all episodes, as the evaluator computes it for one process. The agent
reseeds its preprocessing at every reset, so the split does not change any episode.

    python -m training.export.official_evaluation config ENV_ID EPISODES FIRST_SEED SHARD N_SHARDS
    python -m training.export.official_evaluation merge OUT_DIR SHARD_DIR ...   (prints the success line)
    EVALUATOR | python -m training.export.official_evaluation quiet [LINE ...]  (`quiet`: what it drops)
"""
import json
import math
import os
import re
import sys
from pathlib import Path
from typing import Any, BinaryIO, Dict, List, Sequence, Tuple

import numpy as np


def episode_config(env_id: str, episodes: int, first_seed: int, shard: int = 0, n_shards: int = 1) -> Dict[str, Any]:
    """The evaluator's config for shard `shard` of `n_shards`: episode ids shard, shard + n_shards, ..."""
    if not 0 <= shard < n_shards:
        raise ValueError("shard {} is not in 0..{}".format(shard, n_shards - 1))
    return {"env_info": {"env_id": env_id},
            "episodes": [{"episode_id": i, "reset_kwargs": {"seed": first_seed + i}}
                         for i in range(shard, episodes, n_shards)]}


def merge_results(shard_results: Sequence[Dict[str, Dict[str, Any]]]) -> Tuple[Dict[str, Any], Dict[str, float]]:
    """Per-episode results of all shards (episode id -> metrics), ordered by id, and each metric's mean."""
    episodes: Dict[str, Dict[str, Any]] = {}
    for results in shard_results:
        for episode_id, metrics in results.items():
            if episode_id in episodes:
                raise ValueError("episode {} was evaluated by two shards".format(episode_id))
            episodes[episode_id] = metrics
    if not episodes:
        raise ValueError("no evaluated episodes to merge")
    ordered = {key: episodes[key] for key in sorted(episodes, key=int)}
    # the evaluator's own merge (BaseEvaluator.merge_result); imported here to keep `config` fast
    from mani_skill2.utils.common import merge_dicts
    return ordered, {name: float(np.mean(values)) for name, values in merge_dicts(ordered.values()).items()}


def wilson_interval(rate: float, n: int, z: float = 1.96) -> Tuple[float, float]:
    """95 % Wilson score interval of a success rate measured over n episodes."""
    centre = rate + z * z / (2 * n)
    half = z * math.sqrt(rate * (1 - rate) / n + z * z / (4 * n * n))
    return (centre - half) / (1 + z * z / n), (centre + half) / (1 + z * z / n)


def merge_dirs(out_dir: Path, shard_dirs: Sequence[Path]) -> str:
    """Write out_dir/episode_results.json and average_metrics.json from the shards'; the success line."""
    results: List[Dict[str, Dict[str, Any]]] = []
    for shard_dir in shard_dirs:
        path = Path(shard_dir) / "episode_results.json"
        if not path.is_file():
            raise FileNotFoundError("{} is missing: the evaluator did not finish (see {})".format(
                path, Path(shard_dir) / "evaluator.log"))
        results.append(json.loads(path.read_text()))
    episodes, means = merge_results(results)
    (out_dir / "episode_results.json").write_text(json.dumps(episodes, indent=2))
    (out_dir / "average_metrics.json").write_text(json.dumps(means, indent=2))
    env_id = json.loads((Path(shard_dirs[0]) / "config.json").read_text())["env_info"]["env_id"]
    low, high = wilson_interval(means["success"], len(episodes))
    return ("{}: success rate {:.3f} over {} episodes (official evaluator; 95 % Wilson interval {:.2f}-{:.2f})"
            .format(env_id, means["success"], len(episodes), low, high))


NOISE = (  # SAPIEN's renderer on a machine without a display (it renders off screen all the same)
    re.compile(rb"\[[^]]*\] \[svulkan2\] \[error\] GLFW error: X11: The DISPLAY environment variable is missing"),
    re.compile(rb"\[[^]]*\] \[svulkan2\] \[warning\] Continue without GLFW\."),
)


def quiet(source: int, sink: BinaryIO, exact: Sequence[str] = ()) -> None:
    """Copy the file descriptor `source` to `sink` as the data comes (a progress bar's carriage-return updates show
    at once), without the lines that match `NOISE` or equal one of `exact`; everything else passes unchanged."""
    dropped = {line.encode() for line in exact}

    def noise(line: bytes) -> bool:
        return line in dropped or any(pattern.fullmatch(line) for pattern in NOISE)

    def may_become_noise(partial: bytes) -> bool:
        return partial.startswith(b"[") or any(line.startswith(partial) for line in dropped)

    pending = b""
    while True:
        chunk = os.read(source, 1 << 16)
        if not chunk:
            break
        *lines, pending = (pending + chunk).split(b"\n")
        sink.write(b"".join(line + b"\n" for line in lines if not noise(line)))
        if pending and not may_become_noise(pending):  # a partial line that cannot be noise: show it now
            sink.write(pending)
            pending = b""
        sink.flush()
    if pending and not noise(pending):
        sink.write(pending)
    sink.flush()


def main(argv: Sequence[str]) -> None:
    command, args = argv[0], list(argv[1:])
    if command == "config":
        env_id, episodes, first_seed, shard, n_shards = args
        print(json.dumps(episode_config(env_id, int(episodes), int(first_seed), int(shard), int(n_shards))))
    elif command == "merge":
        try:
            print(merge_dirs(Path(args[0]), [Path(arg) for arg in args[1:]]))
        except (FileNotFoundError, ValueError) as error:
            raise SystemExit("error: {}".format(error))
    elif command == "quiet":
        quiet(sys.stdin.fileno(), sys.stdout.buffer, args)
    else:
        raise SystemExit("unknown command {!r} (expected config, merge or quiet)".format(command))


if __name__ == "__main__":
    main(sys.argv[1:])
