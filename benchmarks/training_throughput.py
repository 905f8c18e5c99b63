"""PPO's training throughput against raw env stepping, side by side in one run.

    .venv/bin/python benchmarks/training_throughput.py [--env PickCube-v0] [--workers 2] [--samples 660] [--repeats 3]

1. raw: the `EnvWorkers` processes step random actions (point clouds rendered and preprocessed in the
   workers, as in training) -> env steps/s;
2. frozen PointNet (`--freeze-pointnet`, how a distilled student is fine-tuned): the workers encode each
   cloud with the frozen PointNet (`EnvWorkers.set_encoder`) and PPO's epochs train the heads on those
   features; one iteration of collect + learn on `--samples` samples with the paper's batch size;
3. unfrozen (the paper's configuration): the workers return clouds, and every PPO epoch runs the PointNet
   forward and backward.
Collect + learn env steps/s against raw is the share of the raw simulation speed that training keeps.
The same worker processes serve all three measurements, in turn, `--repeats` times.
"""
import argparse
import time
from typing import Dict

import numpy as np

from training.export.onnx_actor import encoder_onnx
from training.common.networks import ActorCritic
from training.algorithms.ppo import PPO, PPOConfig
from training.common.vec_env import EnvWorkers


def ppo_iteration(workers: EnvWorkers, samples: int, train_pointnet: bool) -> Dict[str, float]:
    """Env steps/s of one PPO collection and of collection + learning (a regular update, no critic warm-up)."""
    model = ActorCritic(workers.state_size, len(workers.action_low), workers.action_low, workers.action_high)
    workers.set_encoder(None if train_pointnet else encoder_onnx(model.pointnet, workers.n_points))
    ppo = PPO(model, PPOConfig(samples_per_iteration=samples, critic_warmup_epochs=0, train_pointnet=train_pointnet))
    ppo.updates = 1
    started = time.perf_counter()
    rollout = ppo.collect(workers)
    collected = time.perf_counter()
    ppo.learn(rollout)
    learned = time.perf_counter()
    n = rollout["reward"].size
    return {"collect": n / (collected - started), "full": n / (learned - started),
            "learn_ms": 1000 * (learned - collected) / n}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="PickCube-v0")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--samples", type=int, default=660)
    parser.add_argument("--repeats", type=int, default=3,
                        help="rounds of raw, frozen, unfrozen in turn (this machine's speed drifts: each round's "
                             "ratios are to its own raw measurement)")
    args = parser.parse_args()

    rounds = []
    with EnvWorkers(args.env, args.workers, first_seed=10_000_000) as workers:
        rng = np.random.default_rng(0)
        steps = -(-args.samples // args.workers)
        for _ in range(args.repeats):
            workers.reset()
            started = time.perf_counter()
            for _ in range(steps):
                workers.step(rng.uniform(workers.action_low, workers.action_high,
                                         (args.workers, len(workers.action_low))).astype(np.float32))
            raw = steps * args.workers / (time.perf_counter() - started)
            rounds.append({"raw": raw, "frozen": ppo_iteration(workers, args.samples, train_pointnet=False),
                           "unfrozen": ppo_iteration(workers, args.samples, train_pointnet=True)})
    print("{} workers, {} samples per PPO iteration, batch {}, 2 epochs, {} rounds (mean; min-max of the rounds' "
          "ratios)".format(args.workers, args.samples, PPOConfig.batch_size, args.repeats))
    print("| measure | env steps/s | vs raw | learn ms/sample |")
    print("|---|---|---|---|")
    print("| raw env stepping (random actions) | {:.1f} | 1.00x | |".format(np.mean([r["raw"] for r in rounds])))
    for name, key in (("frozen PointNet (features from the workers)", "frozen"),
                      ("unfrozen PointNet (the paper's)", "unfrozen")):
        for label, measure in (("collect only", "collect"), ("collect + learn", "full")):
            ratios = [r[key][measure] / r["raw"] for r in rounds]
            learn = np.mean([r[key]["learn_ms"] for r in rounds]) if measure == "full" else None
            print("| {}: {} | {:.1f} | {:.2f}x ({:.2f}-{:.2f}) | {} |".format(
                name, label, np.mean([r[key][measure] for r in rounds]), np.mean(ratios), min(ratios), max(ratios),
                "" if learn is None else "{:.2f}".format(learn)))


if __name__ == "__main__":
    main()
