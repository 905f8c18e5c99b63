"""How closely a distilled student fits the states it trained on, against the next round's new states,
and how much more behaviour cloning closes either gap.

    .venv/bin/python benchmarks/bc_fit_gap.py runs/PegInsertionSide-v0/looking --round 6 \\
        [--extra-updates 1000] [--chunks 1] [--samples 1000]    # ~7 min per 1000 updates on one core

Round k's student trained on the data of rounds 0..k; round k+1's shard holds the states that it (and
the expert) reached next, which no update saw. Both errors are the mean absolute error of the
student's deterministic action against the expert's labels, per action dimension and on average, on
`--samples` random samples of each round's student-driven part (the expert-driven share,
`expert_share`, comes last in a shard). Then each of `--chunks` chunks of `--extra-updates` further BC
updates (on rounds 0..k, with the run's own settings from distill_config.json, continuing its
optimiser) is scored again. The ratio new / training tells a student limited by fitting (both
high, and falling with updates) from one limited by coverage (new states far worse than trained ones).
"""
import argparse
import json
import sys
import time
from pathlib import Path
from typing import Tuple

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from training.common.checkpoints import load_checkpoint, model_from_checkpoint  # noqa: E402
from training.algorithms.bc import behaviour_cloning  # noqa: E402
from training.algorithms.distill import DistillConfig, load_rounds, student_spec  # noqa: E402
from training.common.evaluation import torch_actor  # noqa: E402
from training.common.networks import ActorCritic  # noqa: E402

Part = Tuple[np.ndarray, np.ndarray, np.ndarray]  # points, states, labels


def student_part(shard: Path, expert_share: float, samples: int, rng: np.random.Generator) -> Part:
    """`samples` random samples of the student-driven part of a round's shard."""
    data = np.load(shard)
    driven = len(data["label"]) - round(len(data["label"]) * expert_share)
    index = np.sort(rng.choice(driven, min(samples, driven), replace=False))
    return data["points"][index].astype(np.float32), data["state"][index], data["label"][index]


def action_errors(model: ActorCritic, part: Part, batch: int = 100) -> np.ndarray:
    """Mean absolute error of the deterministic action per action dimension."""
    act = torch_actor(model)
    actions = np.concatenate([act(part[0][i:i + batch], part[1][i:i + batch]) for i in range(0, len(part[2]), batch)])
    return np.abs(actions - part[2]).mean(axis=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path, help="a distillation run directory (ms2agent distill --run-dir)")
    parser.add_argument("--round", type=int, required=True, help="the student round k (round k+1's shard must exist)")
    parser.add_argument("--extra-updates", type=int, default=1000)
    parser.add_argument("--chunks", type=int, default=1)
    parser.add_argument("--samples", type=int, default=1000, help="samples scored per round")
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args()
    config = DistillConfig(**json.loads((args.run_dir / "distill_config.json").read_text()))
    data_dir, k = args.run_dir / "data", args.round
    if not (data_dir / "round{}.npz".format(k + 1)).exists():
        raise SystemExit("{} has no round-{} shard: the new states of student {} are collected in round {}".format(
            data_dir, k + 1, k, k + 1))
    torch.set_num_threads(1)
    rng = np.random.default_rng(args.seed)
    checkpoint = args.run_dir / "student-round{}.pt".format(k)
    model = model_from_checkpoint(checkpoint)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    optimizer.load_state_dict(load_checkpoint(checkpoint)["optimizer"])
    trained, new = (student_part(data_dir / "round{}.npz".format(r), config.expert_share, args.samples, rng)
                    for r in (k, k + 1))
    data = load_rounds(data_dir, k + 1)
    n_goal_points = student_spec(config).n_goal_points

    def row(updates: int, seconds: float) -> None:
        errors = {name: action_errors(model, part) for name, part in (("trained", trained), ("new", new))}
        print("| {} | {:.4f} | {:.4f} | {:.2f} | {} | {} | {:.0f} |".format(
            updates, errors["trained"].mean(), errors["new"].mean(), errors["new"].mean() / errors["trained"].mean(),
            *(" ".join("{:.3f}".format(e) for e in errors[name]) for name in ("trained", "new")), seconds), flush=True)

    print("student round {} ({} samples trained on), new states: round {}'s shard".format(k, len(data["label"]), k + 1))
    print("| extra updates | L1, trained states | L1, new states | new / trained | per dimension, trained | "
          "per dimension, new | seconds |")
    print("|---|---|---|---|---|---|---|")
    row(0, 0.0)
    for chunk in range(1, args.chunks + 1):
        started = time.time()
        behaviour_cloning(model, data, args.extra_updates, config.batch_size, optimizer, rng, config.train_points,
                          n_goal_points, config.final_lr_factor, config.loss)
        row(chunk * args.extra_updates, time.time() - started)


if __name__ == "__main__":
    main()
