"""Training throughput against raw env stepping, side by side in one run.

    .venv/bin/python benchmarks/training_throughput.py [--env PickCube-v0] [--workers 2] [--samples 660]

1. raw: the same `EnvWorkers` processes step random actions (point clouds rendered and preprocessed
   in the workers, as in training) -> env steps/s;
2. PPO: one full iteration with the paper's batch size on `--samples` samples (collect with the
   policy, then learn: critic warm-up off, 2 epochs) -> env steps/s of collect + learn, and of collect alone.
The ratio (PPO / raw) is the share of the raw simulation speed that training keeps.
"""
import argparse
import time

import numpy as np

from training.common.networks import ActorCritic
from training.algorithms.ppo import PPO, PPOConfig
from training.common.vec_env import EnvWorkers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="PickCube-v0")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--samples", type=int, default=660)
    args = parser.parse_args()

    with EnvWorkers(args.env, args.workers, first_seed=0) as workers:
        rng = np.random.default_rng(0)
        workers.reset()
        steps = -(-args.samples // args.workers)
        started = time.perf_counter()
        for _ in range(steps):
            workers.step(rng.uniform(workers.action_low, workers.action_high,
                                     (args.workers, len(workers.action_low))).astype(np.float32))
        raw = steps * args.workers / (time.perf_counter() - started)

        model = ActorCritic(workers.state_size, len(workers.action_low), workers.action_low, workers.action_high)
        ppo = PPO(model, PPOConfig(samples_per_iteration=args.samples, critic_warmup_epochs=0))
        ppo.updates = 1  # measure a regular update, not the first one's critic warm-up
        started = time.perf_counter()
        rollout = ppo.collect(workers)
        collected = time.perf_counter()
        ppo.learn(rollout)
        learned = time.perf_counter()
    n = rollout["reward"].size
    collect_only, full = n / (collected - started), n / (learned - started)
    print("| measure | env steps/s | vs raw |")
    print("|---|---|---|")
    print("| raw env stepping ({} workers, random actions) | {:.1f} | 1.00x |".format(args.workers, raw))
    print("| PPO collect only | {:.1f} | {:.2f}x |".format(collect_only, collect_only / raw))
    print("| PPO collect + learn (batch {}, 2 epochs) | {:.1f} | {:.2f}x |".format(
        ppo.config.batch_size, full, full / raw))
    print("learn: {:.1f} s for {} samples ({:.1f} ms/sample)".format(learned - collected, n,
                                                                      1000 * (learned - collected) / n))


if __name__ == "__main__":
    main()
