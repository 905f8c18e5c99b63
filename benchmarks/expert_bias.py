"""How much of a student's systematic action error does an expert tolerate?

    .venv/bin/python benchmarks/expert_bias.py PegInsertionSide-v0 [--variants ";sag_gain=3"]
        [--biases 0,0.05] [--dims translation] [--episodes 40] [--first-seed 20000]    # ~1 min per cell

A student distilled from a closed-loop expert does not only err at random: where its fit is off, it is
off the same way step after step, and the closed loop settles where the expert's correction cancels
that bias. So the precision a student reaches depends on how strongly the expert corrects an error
(its gain), which this measures without training any student: every episode draws a fixed bias
N(0, b) per action dimension (`--dims`: translation, rotation or all, in the TCP frame as the actions
are) and adds it to the privileged expert's actions (state observations) from the moment it holds
its object, where the insertion's precision is needed. `--variants` lists experts, separated by `;`,
each a comma-separated list of the expert's float settings (`make_expert`; empty: the expert as it is).
Seeds first_seed .. first_seed + episodes - 1 and the biases drawn from them are the same for every cell.
Printed: a markdown table of success and mean episode length per variant and bias, and each
variant's success as a ratio to the first variant's at the same bias.
"""
import argparse
import sys
import time
from pathlib import Path
from typing import Dict, List, Tuple

import gymnasium as gym
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training.common.envs import make_env  # noqa: E402
from training.experts import make_expert, parse_settings  # noqa: E402
from training.experts.base import GraspExpert  # noqa: E402
from training.experts.rollout import run_episode  # noqa: E402

DIMS = {"translation": [0, 1, 2], "rotation": [3, 4, 5], "all": [0, 1, 2, 3, 4, 5]}


def biased_run(env_id: str, settings: Dict[str, float], bias: float, dims: List[int], seeds: range
               ) -> Tuple[float, float]:
    """Success rate and mean length of the expert with `settings`, its actions offset by a fixed
    N(0, `bias`) on `dims` per episode (drawn from the episode seed) while it holds its object."""
    env = make_env(env_id, obs_mode="state_dict", control_mode="pd_ee_delta_pose", fast_render=None)
    expert = make_expert(env_id, settings)
    assert isinstance(expert, GraspExpert)
    results = []
    try:
        for seed in seeds:
            offset = np.zeros(7)
            offset[dims] = np.random.default_rng(seed).normal(0.0, bias, len(dims))

            def biased(env: gym.Env, action: np.ndarray, offset: np.ndarray = offset) -> np.ndarray:
                return np.clip(action + offset, -1.0, 1.0) if expert.holds_target(env) else action

            results.append(run_episode(env, expert, seed, biased))
    finally:
        env.close()
    return float(np.mean([r["success"] for r in results])), float(np.mean([r["length"] for r in results]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("env_id")
    parser.add_argument("--variants", default="", help="semicolon-separated; each a comma-separated list of "
                        "NAME=VALUE expert settings (empty: the expert as it is), e.g. ';sag_gain=1'")
    parser.add_argument("--biases", default="0,0.05", help="comma-separated standard deviations, action units")
    parser.add_argument("--dims", default="translation", choices=sorted(DIMS))
    parser.add_argument("--episodes", type=int, default=40)
    parser.add_argument("--first-seed", type=int, default=20000)
    args = parser.parse_args()
    try:
        variants = [parse_settings([text for text in variant.split(",") if text.strip()])
                    for variant in args.variants.split(";")]
        for settings in variants:
            make_expert(args.env_id, settings)
    except ValueError as error:
        parser.error(str(error))
    biases = [float(bias) for bias in args.biases.split(",")]
    seeds = range(args.first_seed, args.first_seed + args.episodes)
    print("{}, {} episodes from seed {}, bias on {}".format(args.env_id, args.episodes, args.first_seed, args.dims))
    print("| expert settings | bias (std, action units) | success | mean length | success / first variant's |")
    print("|---|---|---|---|---|")
    first: Dict[float, float] = {}
    start = time.time()
    for settings in variants:
        for bias in biases:
            success, length = biased_run(args.env_id, settings, bias, DIMS[args.dims], seeds)
            first.setdefault(bias, success)
            ratio = "{:.2f}".format(success / first[bias]) if first[bias] else "-"
            name = ", ".join("{}={:g}".format(key, value) for key, value in settings.items()) or "as it is"
            print("| {} | {:g} | {:.3f} | {:.0f} | {} |".format(name, bias, success, length, ratio), flush=True)
    print("{:.1f} min".format((time.time() - start) / 60))


if __name__ == "__main__":
    main()
