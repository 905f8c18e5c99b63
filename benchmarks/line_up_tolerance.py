"""How far off can an insertion expert's estimate of the slot be before it stops inserting?

    .venv/bin/python benchmarks/line_up_tolerance.py PegInsertionSide-v0 [--episodes 40]
        [--errors 0,2,4,6] [--strategies push,peck]    # ~10 min here for the defaults

The point-cloud students read the hole's lateral position no better than ~6 mm
(`benchmarks/line_up_perception.py`). This measures what precision would be enough: the privileged
expert (state observations) gets a slot estimate that is off by a fixed lateral distance, in a
random y/z direction per episode (drawn from the episode seed), and its success rate is scored per
error. Strategies at the slot:
- `push` (the shipped expert): line up with the estimate, then push in;
- `peck` (a search by touch): once the held object's head is at the slot face, back off a little,
  step along an Archimedean spiral around the estimate (`PECK_PITCH` between turns, `PECK_STEP`
  per probe), and push in again, until it enters.
Printed: a markdown table of success rate and mean episode length per error and strategy, and each
strategy's success as a ratio to `push` at the same error.
"""
import argparse
import time
from typing import Any, Dict

import gymnasium as gym
import numpy as np
import sapien.core as sapien

from training.experts import evaluate_expert, make_expert
from training.experts.assembly import InsertionExpert
from training.experts.base import carry_action, rotation_angle

PECK_PITCH = 0.004  # m between the spiral's turns (the peg's hole leaves 3 mm on each side)
PECK_STEP = 0.002  # m along the spiral per probe
PECK_BACKOFF = 0.002  # m in front of the face that each probe starts from
PECK_PRESS = 0.003  # m past the face that each probe pushes towards
PECK_TOUCH = 0.0005  # m: the head is at the face within this; beyond it past the face, it is inside
PECK_BAND = 0.004  # m in front of the face within which the expert pecks instead of lining up
STRATEGIES = ("push", "peck")


def peck(expert: InsertionExpert, env: gym.Env) -> np.ndarray:
    """`expert.carry`, with a spiral search by touch at the slot face (see the module docstring)."""
    goal, held = expert.goal_pose(env), expert.target(env).pose
    offset = expert.slot_offset(env)
    x, entrance, lateral = offset.p[0], expert.entrance(env), offset.p[1:]
    if x > entrance + PECK_TOUCH:  # inside: push on, holding the lateral position the walls give
        return carry_action(env, held, goal * sapien.Pose([min(x + expert.push_step, expert.depth), *lateral]))
    if x < entrance - PECK_BAND or rotation_angle(offset) > 2 * expert.angle_tolerance:
        return expert.carry(env)  # not at the face yet: line up as usual
    if x < entrance - PECK_TOUCH:  # just off the face: probe straight in
        return carry_action(env, held, goal * sapien.Pose([entrance + PECK_PRESS, *lateral]))
    radius = max(float(np.linalg.norm(lateral)), PECK_STEP / 4)  # at the face: next spiral point
    angle = float(np.arctan2(lateral[1], lateral[0]))
    turn = min(PECK_STEP / radius, 0.7)
    radius += PECK_PITCH * turn / (2 * np.pi)
    spiral = radius * np.array([np.cos(angle + turn), np.sin(angle + turn)])
    return carry_action(env, held, goal * sapien.Pose([entrance - PECK_BACKOFF, *spiral]))


def erring_expert(env_id: str, error: float, strategy: str) -> InsertionExpert:
    """The task's insertion expert with its slot estimate `error` m off laterally (direction drawn
    per episode from its seed), acting with `strategy`."""
    base = type(make_expert(env_id))
    if not issubclass(base, InsertionExpert):
        raise SystemExit("{} is not an insertion task".format(env_id))

    class Erring(base):  # type: ignore[misc, valid-type]
        def reset(self, env: gym.Env) -> None:
            direction = np.random.default_rng(int(env.unwrapped._episode_seed)).uniform(0, 2 * np.pi)
            self.error = error * np.array([np.cos(direction), np.sin(direction)])

        def goal_pose(self, env: gym.Env) -> sapien.Pose:
            return super().goal_pose(env) * sapien.Pose([0.0, *self.error])

        def act(self, env: gym.Env) -> np.ndarray:
            if strategy == "peck" and self.holds_target(env):
                return peck(self, env)
            return super().act(env)

    return Erring()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("env_id", nargs="?", default="PegInsertionSide-v0")
    parser.add_argument("--episodes", type=int, default=40)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--errors", default="0,2,4,6", help="comma-separated lateral errors, mm")
    parser.add_argument("--strategies", default=",".join(STRATEGIES), help="comma-separated subset of "
                        + ", ".join(STRATEGIES))
    args = parser.parse_args()
    strategies = args.strategies.split(",")
    if set(strategies) - set(STRATEGIES):
        parser.error("unknown strategies {}".format(", ".join(sorted(set(strategies) - set(STRATEGIES)))))
    errors = [float(value) for value in args.errors.split(",")]

    results: Dict[str, Dict[float, Dict[str, Any]]] = {strategy: {} for strategy in strategies}
    for strategy in strategies:
        for error in errors:
            clock = time.time()
            result = evaluate_expert(args.env_id, args.episodes, args.first_seed,
                                     expert=erring_expert(args.env_id, error / 1000, strategy))
            results[strategy][error] = result
            print("{} at {} mm: success {:.3f} ({:.0f} s)".format(
                strategy, error, result["success_rate"], time.time() - clock), flush=True)

    print("\n{} episodes per cell (seeds {}-{})\n".format(
        args.episodes, args.first_seed, args.first_seed + args.episodes - 1))
    print("| strategy | lateral error (mm) | success | mean length | success vs push |")
    print("|---|---|---|---|---|")
    for strategy in strategies:
        for error in errors:
            result = results[strategy][error]
            push = results.get("push", {}).get(error, {}).get("success_rate", 0.0)
            print("| {} | {:g} | {:.3f} | {:.0f} | {} |".format(
                strategy, error, result["success_rate"], result["mean_length"],
                "{:.2f}x".format(result["success_rate"] / push) if push > 0 else "-"))


if __name__ == "__main__":
    main()
