"""Env steps/s of the same worker count on local processes and on Ray actors, side by side.

    .venv/bin/python benchmarks/ray_throughput.py [--env PickCube-v0] [--workers 2] [--steps 300] [--address ADDR]

Both worker groups are started first (the same `EnvWorker`s: point clouds rendered and preprocessed in the workers,
as in training) and stay alive together; then they step random actions in alternating segments of `--segment`
steps each (local, ray, local, ray, ...), so a machine whose load changes during the run weighs on both alike.
A group waiting for its turn holds no CPU. Prints env steps/s per backend and Ray's ratio to local. Without
`--address`, Ray runs as a new instance on this machine (`ray.init(address="local")`).
"""
import argparse
import time

import numpy as np

from training.common.seeds import TRAIN_START
from training.common.vec_env import Backend, EnvWorkers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="PickCube-v0")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--steps", type=int, default=300, help="steps per backend (each steps every worker)")
    parser.add_argument("--segment", type=int, default=25, help="steps per turn")
    parser.add_argument("--address", default="local", help="the Ray cluster (default: a new instance here)")
    args = parser.parse_args()

    groups = {"local": EnvWorkers(args.env, args.workers, first_seed=TRAIN_START),
              "ray": EnvWorkers(args.env, args.workers, first_seed=TRAIN_START, backend=Backend("ray", args.address))}
    try:
        rng = np.random.default_rng(0)
        low, high = groups["local"].action_low, groups["local"].action_high
        seconds = {name: 0.0 for name in groups}
        for workers in groups.values():
            workers.reset()
            for _ in range(5):  # warm-up: first renders, first transfers
                workers.step(rng.uniform(low, high, (args.workers, len(low))).astype(np.float32))
        done = 0
        while done < args.steps:
            count = min(args.segment, args.steps - done)
            for name, workers in groups.items():
                actions = rng.uniform(low, high, (count, args.workers, len(low))).astype(np.float32)
                started = time.perf_counter()
                for action in actions:
                    workers.step(action)
                seconds[name] += time.perf_counter() - started
            done += count
    finally:
        for workers in groups.values():
            workers.close()
    rate = {name: args.steps * args.workers / seconds[name] for name in groups}
    print("{}, {} workers, {} steps per backend in alternating segments of {}".format(
        args.env, args.workers, args.steps * args.workers, args.segment))
    print("| backend | env steps/s | vs local |")
    print("|---|---|---|")
    for name in groups:
        print("| {} | {:.1f} | {:.2f}x |".format(name, rate[name], rate[name] / rate["local"]))
    print("ray/local: {:.2f}x".format(rate["ray"] / rate["local"]))


if __name__ == "__main__":
    main()
