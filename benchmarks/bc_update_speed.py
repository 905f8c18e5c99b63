"""Time of one BC update of the paper's network: gradients through the winning points only vs the whole cloud.

    .venv/bin/python benchmarks/bc_update_speed.py [--data runs/ENV/RUN/data/round0.npz] [--batch 64]
        [--train-points 600] [--updates 20]    # ~1 min

`training.common.networks.PointNet` runs its gradient pass only on the points that win some feature's max
(found by a no-grad pass first); the baseline's PointNet back-propagates through every point, as a
plain max-pool does. Both run distillation's own update (`training.algorithms.bc.behaviour_cloning`, L1,
Adam) on the same batches, in this run. `--data`: a distillation round's clouds (1,200 points: 1,150
camera + 50 goal points, as a looking policy's); without it, uniform random clouds of that size (points
in a 1 m cube, random colours). Each update sees `--train-points` of the camera points and the same
share of the goal points (626 points per cloud at 600, the looking PegInsertionSide distillation's).
Printed: ms per update for each, the speed-up, and how many points the gradient pass keeps (a batch's
largest set of winners, for an untrained network).
"""
import argparse
import sys
import time
from pathlib import Path
from typing import Dict

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.registry import GOAL_POINTS  # noqa: E402
from training.algorithms.bc import behaviour_cloning, point_subset  # noqa: E402
from training.common.networks import ActorCritic, winning_points  # noqa: E402

CLOUD_POINTS = 1200


def load_data(path: Path) -> Dict[str, np.ndarray]:
    """A round's samples (points, state, label), or random ones of the same shapes."""
    if path:
        data = np.load(path)
        return {key: data[key] for key in ("points", "state", "label")}
    rng = np.random.default_rng(0)
    return {"points": rng.uniform(0.0, 1.0, (256, CLOUD_POINTS, 6)).astype(np.float16),
            "state": rng.normal(size=(256, 49)).astype(np.float32),
            "label": rng.uniform(-1.0, 1.0, (256, 7)).astype(np.float32)}


def seconds_per_update(data: Dict[str, np.ndarray], args: argparse.Namespace, plain: bool) -> float:
    """Mean time of a BC update (after one warm-up update); `plain`: the PointNet back-propagates
    through every point."""
    torch.manual_seed(0)
    action_size = data["label"].shape[1]
    model = ActorCritic(data["state"].shape[1], action_size, [-1.0] * action_size, [1.0] * action_size)
    if plain:
        model.pointnet.forward = lambda points: model.pointnet.mlp(points).max(dim=1).values
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-4)
    rng = np.random.default_rng(0)

    def update(n: int) -> None:
        behaviour_cloning(model, data, n, args.batch, optimizer, rng, args.train_points, GOAL_POINTS, loss="l1")

    update(1)
    started = time.perf_counter()
    update(args.updates)
    return (time.perf_counter() - started) / args.updates


def winner_share(data: Dict[str, np.ndarray], args: argparse.Namespace) -> float:
    rng = np.random.default_rng(1)
    torch.manual_seed(0)
    points = data["points"][rng.integers(0, len(data["points"]), args.batch)]
    columns = point_subset(points.shape[1], GOAL_POINTS, args.train_points, rng)
    points = torch.from_numpy((points if columns is None else points[:, columns]).astype(np.float32))
    action_size = data["label"].shape[1]
    model = ActorCritic(data["state"].shape[1], action_size, [-1.0] * action_size, [1.0] * action_size)
    return winning_points(model.pointnet.mlp, points).shape[1] / points.shape[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, help="a distillation round's .npz (points, state, label)")
    parser.add_argument("--batch", type=int, default=64, help="clouds per update (distill's default)")
    parser.add_argument("--train-points", type=int, default=600, help="camera points per cloud in an update")
    parser.add_argument("--updates", type=int, default=20)
    args = parser.parse_args()

    data = load_data(args.data)
    whole = seconds_per_update(data, args, plain=True)
    winners = seconds_per_update(data, args, plain=False)
    print("| gradient pass through | ms per update | speed-up |")
    print("|---|---|---|")
    print("| every point (plain max-pool) | {:.0f} | 1.00x |".format(1000 * whole))
    print("| the winning points (`PointNet`) | {:.0f} | {:.2f}x |".format(1000 * winners, whole / winners))
    print("batch {}, {} camera points per cloud, {} threads; the largest cloud's winners in a batch (its size "
          "for the gradient pass, untrained network): {:.0%} of the points".format(
              args.batch, args.train_points, torch.get_num_threads(), winner_share(data, args)))


if __name__ == "__main__":
    main()
