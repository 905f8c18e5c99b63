"""Can a student line the peg (or the charger) up at all when it is given the geometry, and which inputs
does it need?

    .venv/bin/python benchmarks/privileged_student.py [--env PegInsertionSide-v0] [--features state,held]
        [--expert-setting push_ramp=2.0] [--held-error 0.002] [--rounds 8] [--episodes 30] [--seed 0]
        # ~10 min on one core

The point-cloud students stall in front of the hole. This asks whether that is perception (what the
points do not show) or imitation (what a network does not learn from the expert's labels), without
any points: a small MLP (2 x 256, L1, Adam) is distilled by DAgger from the task's expert (`--env`:
PegInsertionSide-v0 or PlugCharger-v0) on state observations, given exactly the inputs in `--features`:
- `state`: what a looking point-cloud student's state holds apart from the TCP in the slot frame
  (agent.preprocessing.build_state: joints, the slot it read in the TCP frame, its axis, the TCP pose);
- `tcp_in_slot`: the TCP's pose in the read slot's frame (agent.preprocessing.tcp_in_slot), which the
  agent computes from the slot it remembers;
- `held`: how the peg sits in the hand, its pose in the TCP frame, and its size (what the points
  would have to show; before the grasp, where the peg is; the charger's size is fixed, so not given);
  `--held-error` shifts that position by N(0, held-error) m per axis, fixed per episode, as a reader of
  the held peg would err;
- `line_up`: the held object's fine line-up error in the read slot's frame (agent.preprocessing.line_up:
  mm and hundredths of a radian, clipped), as a held-fit student's state ends with it;
- `offset`: the peg's pose in the read slot's frame relative to the entrance (the expert's own
  line-up variables, which no observation gives directly).
The slot is "read" with the slot reader's errors (`READ_ERRORS`: the peg's network reader, N(0, 0.7 mm)
along its axis and N(0, 1.1 mm) across it; the charger's face fit, 0.05 mm; fixed per episode) and the
expert acts on that reading, as when distilling a looking student; there
is no look phase. `--expert-setting NAME=VALUE` (repeatable) sets one of the expert's float settings,
e.g. `push_ramp=1.001` (a sharp switch from holding to pushing at the tolerances) or `push_step=0.01`.
Round 0 trains on `--expert-episodes` episodes of the expert with N(0, 0.2) action noise; every later
round adds `--episodes` episodes the student drives, labelled by the expert, and trains on; those
episodes are also the round's success rate (new seeds every round).
Printed: a markdown row per round (samples, success, BC loss) and the best round.
"""
import argparse
import sys
import time
from pathlib import Path
from typing import Callable, List, Optional, Tuple

import numpy as np
import sapien.core as sapien
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.geometry import quaternion_to_matrix  # noqa: E402
from agent.preprocessing import TCP_IN_SLOT_SIZE, build_state, line_up, pose_in_slot  # noqa: E402
from training.common.warm_start import TCP_POSE_SIZE  # noqa: E402
from training.common.envs import make_env  # noqa: E402
from training.experts import make_expert, parse_settings  # noqa: E402
from training.experts.assembly import InsertionExpert  # noqa: E402

FEATURES = ("state", "tcp_in_slot", "held", "offset", "line_up")
READ_ERRORS = {"PegInsertionSide-v0": (0.0007, 0.0011, 0.0011),  # m, std of the reading's error along the slot
               "PlugCharger-v0": (0.00005, 0.00005, 0.00005)}  # axis and across it
Sample = Tuple[np.ndarray, np.ndarray]  # inputs, label


def read_slot(env, rng: np.random.Generator, error: Tuple[float, float, float]) -> sapien.Pose:
    """The true slot, off by a slot reader's typical `error` (std per slot-frame axis, m)."""
    slot = env.unwrapped.goal_pose
    return slot * sapien.Pose(rng.normal(0.0, error))


def inputs(obs: dict, env, expert: InsertionExpert, slot: sapien.Pose, features: List[str],
           held_offset: np.ndarray) -> np.ndarray:
    """The student's input vector: the chosen `features` (see the module docstring)."""
    extra = {"tcp_pose": obs["extra"]["tcp_pose"], "goal_pos": slot.p,
             "goal_axis": slot.to_transformation_matrix()[:3, 0]}
    tcp = np.asarray(extra["tcp_pose"])
    state = build_state(obs["agent"], extra, tcp[:3], quaternion_to_matrix(tcp[3:]))  # the TCP frame, as the agent's
    parts = []
    if "state" in features:
        parts.append(np.concatenate([state[:-TCP_POSE_SIZE - TCP_IN_SLOT_SIZE], state[-TCP_POSE_SIZE:]]))
    if "tcp_in_slot" in features:
        parts.append(state[-TCP_POSE_SIZE - TCP_IN_SLOT_SIZE:-TCP_POSE_SIZE])
    target = expert.target(env).pose
    if "held" in features:
        held = env.unwrapped.tcp.pose.inv() * target
        size = getattr(env.unwrapped, "peg_half_size", np.zeros(0))  # the peg's varies per episode
        parts += [held.p + held_offset, held.to_transformation_matrix()[:3, :3].ravel(), size]
    if "line_up" in features:
        parts.append(line_up(*pose_in_slot(extra, target.p, target.to_transformation_matrix()[:3, :2])))
    if "offset" in features:
        offset = slot.inv() * target
        parts += [offset.p - [expert.entrance(env), 0.0, 0.0], offset.to_transformation_matrix()[:3, :3].ravel()]
    return np.concatenate([np.ravel(part) for part in parts]).astype(np.float32)


def episode(env, expert: InsertionExpert, seed: int, features: List[str], rng: np.random.Generator,
            act: Optional[Callable[[np.ndarray], np.ndarray]], noise: float, samples: List[Sample],
            held_error: float, read_error: Tuple[float, float, float]) -> bool:
    """One episode driven by `act` (None: the expert plus N(0, `noise`)) on a slot read with `read_error`;
    every state is labelled into `samples`. Returns its success."""
    obs, _ = env.reset(seed=seed)
    expert.reset(env)
    slot = read_slot(env, rng, read_error)
    expert.reading = slot
    held_offset = rng.normal(0.0, held_error, 3) if held_error else np.zeros(3)  # no draw: runs without it repeat
    for _ in range(200):
        x, label = inputs(obs, env, expert, slot, features, held_offset), expert.act(env)
        samples.append((x, label))
        action = np.clip(label + rng.normal(0.0, noise, label.shape), -1, 1) if act is None else act(x)
        obs, _, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            break
    return bool(info.get("success", False))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", default="PegInsertionSide-v0", choices=sorted(READ_ERRORS))
    parser.add_argument("--features", default="state,held", help="comma-separated, from " + ", ".join(FEATURES))
    parser.add_argument("--expert-setting", action="append", default=[], metavar="NAME=VALUE",
                        help="set one of the expert's float settings (repeatable), e.g. push_ramp=1.001")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--episodes", type=int, default=30, help="student-driven episodes per round")
    parser.add_argument("--expert-episodes", type=int, default=60)
    parser.add_argument("--updates", type=int, default=3000, help="BC updates per round (batch 256)")
    parser.add_argument("--held-error", type=float, default=0.0, help="m, std of the error of `held`'s position")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    features = args.features.split(",")
    if not features or any(name not in FEATURES for name in features):
        parser.error("--features takes a comma-separated subset of " + ", ".join(FEATURES))
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)
    rng = np.random.default_rng(args.seed)
    try:
        settings = parse_settings(args.expert_setting)
        expert = make_expert(args.env, settings)
    except ValueError as error:
        parser.error(str(error))
    env = make_env(args.env, obs_mode="state_dict", control_mode="pd_ee_delta_pose", fast_render=None)
    samples: List[Sample] = []
    start = time.time()
    seed = 10_000 * (args.seed + 1)
    for _ in range(args.expert_episodes):
        episode(env, expert, seed, features, rng, None, 0.2, samples, args.held_error,
                READ_ERRORS[args.env])
        seed += 1
    x = np.stack([sample[0] for sample in samples])
    mean, std = torch.tensor(x.mean(0)), torch.tensor(x.std(0) + 1e-6)
    net = torch.nn.Sequential(torch.nn.Linear(x.shape[1], 256), torch.nn.ReLU(), torch.nn.Linear(256, 256),
                              torch.nn.ReLU(), torch.nn.Linear(256, 7))
    optimiser = torch.optim.Adam(net.parameters(), lr=3e-4)

    def act(features_now: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return torch.clamp(net((torch.tensor(features_now)[None] - mean) / std), -1, 1)[0].numpy()

    print("{}; features: {}; expert settings {}; held error {} m; {} expert episodes".format(
        args.env, ", ".join(features), settings or "default", args.held_error, args.expert_episodes))
    print("| round | samples | success ({} student episodes) | BC loss | minutes |".format(args.episodes))
    print("|---|---|---|---|---|")
    best = (-1.0, -1)
    for round_index in range(args.rounds):
        x = torch.tensor(np.stack([sample[0] for sample in samples]))
        y = torch.tensor(np.stack([sample[1] for sample in samples]))
        for _ in range(args.updates):
            batch = torch.randint(0, len(x), (256,))
            loss = (net((x[batch] - mean) / std) - y[batch]).abs().mean()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        successes = []
        for _ in range(args.episodes):
            successes.append(episode(env, expert, seed, features, rng, act, 0.0, samples, args.held_error,
                                     READ_ERRORS[args.env]))
            seed += 1
        success = float(np.mean(successes))
        best = max(best, (success, round_index))
        print("| {} | {:,} | {:.2f} | {:.4f} | {:.1f} |".format(round_index, len(x), success, loss.item(),
                                                               (time.time() - start) / 60), flush=True)
    env.close()
    print("best: round {}, success {:.2f}".format(best[1], best[0]))


if __name__ == "__main__":
    main()
