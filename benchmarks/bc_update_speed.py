"""Time of one BC update of the paper's network: gradients through the winning points only vs the whole cloud.

    .venv/bin/python benchmarks/bc_update_speed.py [--data runs/ENV/RUN/data/round0.npz] [--batch 64]
        [--points 626] [--updates 20]    # ~1 min

`training.networks.PointNet` runs its gradient pass only on the points that win some feature's max
(found by a no-grad pass first); the baseline back-propagates through every point, as a plain
max-pool does. Both time the same L1 update (forward, backward, Adam step) on the same batches, in
this run. `--data`: clouds from a distillation round (random subsets of `--points` of their points,
as `--train-points` does); without it, uniform random clouds (points in a 1 m cube, random colours).
Printed: ms per update for each, the speed-up, and how many points the gradient pass keeps (a batch's
largest set of winners, for an untrained network).
"""
import argparse
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from training.networks import ActorCritic, winning_points  # noqa: E402

Pool = Callable[[ActorCritic, torch.Tensor], torch.Tensor]


def batches(args: argparse.Namespace, rng: np.random.Generator):
    """(points, state, label) batches of the data file's clouds, or of random ones."""
    if args.data:
        data = np.load(args.data)
        clouds, states, labels = data["points"], data["state"], data["label"]
    else:
        clouds = rng.uniform(0.0, 1.0, (args.batch * 4, args.points, 6)).astype(np.float32)
        states = rng.normal(size=(len(clouds), 49)).astype(np.float32)
        labels = rng.uniform(-1.0, 1.0, (len(clouds), 7)).astype(np.float32)
    for _ in range(args.updates):
        index = rng.integers(0, len(clouds), args.batch)
        columns = np.sort(rng.choice(clouds.shape[1], min(args.points, clouds.shape[1]), replace=False))
        yield (torch.from_numpy(clouds[index][:, columns].astype(np.float32)), torch.from_numpy(states[index]),
               torch.from_numpy(labels[index]))


def time_updates(pool: Pool, args: argparse.Namespace) -> float:
    """Mean seconds per L1 update with `pool` computing the PointNet feature."""
    torch.manual_seed(0)
    sample = next(batches(args, np.random.default_rng(0)))
    model = ActorCritic(sample[1].shape[1], sample[2].shape[1], [-1.0] * sample[2].shape[1], [1.0] * sample[2].shape[1])
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-4)
    elapsed = 0.0
    for k, (points, state, label) in enumerate(batches(args, np.random.default_rng(0))):
        started = time.perf_counter()
        action = model.mean_action(torch.cat([pool(model, points), state], dim=-1))
        loss = (action - label).abs().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        elapsed += (time.perf_counter() - started) * (k > 0)  # the first update warms up
    return elapsed / (args.updates - 1)


def winner_share(args: argparse.Namespace) -> float:
    torch.manual_seed(0)
    model = ActorCritic(49, 7, [-1.0] * 7, [1.0] * 7)
    points = next(batches(args, np.random.default_rng(1)))[0]
    return winning_points(model.pointnet.mlp, points).shape[1] / points.shape[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, help="a distillation round's .npz (points, state, label)")
    parser.add_argument("--batch", type=int, default=64, help="clouds per update (distill's default)")
    parser.add_argument("--points", type=int, default=626, help="points per cloud (600 camera + 26 goal points, "
                        "the looking PegInsertionSide distillation's --train-points 600)")
    parser.add_argument("--updates", type=int, default=20)
    args = parser.parse_args()

    whole = time_updates(lambda model, points: model.pointnet.mlp(points).max(dim=1).values, args)
    winners = time_updates(lambda model, points: model.pointnet(points), args)
    print("| gradient pass through | ms per update | speed-up |")
    print("|---|---|---|")
    print("| every point (plain max-pool) | {:.0f} | 1.00x |".format(1000 * whole))
    print("| the winning points (`PointNet`) | {:.0f} | {:.2f}x |".format(1000 * winners, whole / winners))
    print("batch {}, {} points per cloud, {} threads; the largest cloud's winners in a batch (its size "
          "for the gradient pass, untrained network): {:.0%} of the points".format(
              args.batch, args.points, torch.get_num_threads(), winner_share(args)))


if __name__ == "__main__":
    main()
