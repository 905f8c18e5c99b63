"""How far off can an insertion expert's estimate of the slot be before it stops inserting?

    .venv/bin/python benchmarks/line_up_tolerance.py PegInsertionSide-v0 [--episodes 40]
        [--errors 0,2,4,6] [--strategies push,peck]    # ~10 min here for the defaults
    .venv/bin/python benchmarks/line_up_tolerance.py PegInsertionSide-v0 --estimator runs/probe/close_look/uniform.pt
        [--close-look 0.1] [--look-jitter 0.02]    # the slot estimate read from a close look instead

The point-cloud students read the hole's lateral position no better than ~6 mm
(`benchmarks/line_up_perception.py`). This measures what precision would be enough: the privileged
expert (state observations) gets a slot estimate that is off by a fixed lateral distance, in a
random y/z direction per episode (drawn from the episode seed), and its success rate is scored per
error. Strategies at the slot:
- `push` (the shipped expert): line up with the estimate, then push in;
- `peck` (a search by touch): once the held object's head is at the slot face, back off a little,
  step along an Archimedean spiral around the estimate (`PECK_PITCH` between turns, `PECK_STEP`
  per probe), and push in again, until it enters.
With `--estimator FILE` (a regressor saved by `line_up_perception.py --close-look D --save DIR`) the
estimate is not off by a fixed distance but read from the points: at each episode's start the arm is
put where the hand camera looks at the slot from `--close-look` m (as `line_up_perception.py` does:
by inverse kinematics, give or take `--look-jitter`), the regressor places the slot from that one view,
and the arm is put back where it started; the expert then runs on that estimate. Its row's "lateral
error" is the estimate's RMS lateral error over the episodes.
Printed: a markdown table of success rate and mean episode length per error and strategy, and each
strategy's success as a ratio to `push` at the same error.
"""
import argparse
import time
from pathlib import Path
from typing import Any, Dict, Optional

import gymnasium as gym
import numpy as np
import sapien.core as sapien

from transforms3d.axangles import axangle2mat
from transforms3d.quaternions import mat2quat

from agent.preprocessing import preprocess
from line_up_perception import SEG_MODE, load_estimator, look_at_slot
from training.demos import current_observation
from training.experts import evaluate_expert, make_expert
from training.experts.assembly import InsertionExpert
from training.experts.base import carry_action, rotation_angle

LOOK_ATTEMPTS = 5  # look poses (each with fresh jitter) tried before an episode goes without an estimate
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


class ReadSlot:
    """Where a close-look regressor places the slot: look (by inverse kinematics), read, put the arm back."""

    def __init__(self, path: Path, distance: float, jitter: float) -> None:
        (self.estimator, self.spec), self.distance, self.jitter = load_estimator(path), distance, jitter
        self.errors = []  # lateral error (m) of each estimate
        self.unreached = 0  # episodes where no look pose was reachable

    def __call__(self, env: gym.Env) -> Optional[sapien.Pose]:
        """The estimated slot pose (`goal_pose`), or None where the arm cannot reach the look pose."""
        rng = np.random.default_rng(int(env.unwrapped._episode_seed))
        robot = env.unwrapped.agent.robot
        start = robot.get_qpos()
        if not any(look_at_slot(env, self.distance, self.jitter, rng) for _ in range(LOOK_ATTEMPTS)):
            self.unreached += 1
            return None
        net = preprocess(current_observation(env), self.spec, rng)
        tcp = env.unwrapped.tcp.pose
        robot.set_qpos(start)
        prediction = self.estimator.predict(net.points[None], net.state[None])[0]
        rotation = axangle2mat(prediction[3:], np.linalg.norm(prediction[3:])) if np.any(prediction[3:]) else np.eye(3)
        slot = sapien.Pose(tcp.p - rotation @ prediction[:3], mat2quat(rotation))
        self.errors.append(float(np.linalg.norm((env.unwrapped.goal_pose.inv() * slot).p[1:])))
        return slot


def erring_expert(env_id: str, error: float, strategy: str, read_slot: Optional[ReadSlot] = None) -> InsertionExpert:
    """The task's insertion expert with its slot estimate `error` m off laterally (direction drawn
    per episode from its seed), or where `read_slot` places it (no estimate: it stays put), acting
    with `strategy`."""
    base = type(make_expert(env_id))
    if not issubclass(base, InsertionExpert):
        raise SystemExit("{} is not an insertion task".format(env_id))

    class Erring(base):  # type: ignore[misc, valid-type]
        def reset(self, env: gym.Env) -> None:
            direction = np.random.default_rng(int(env.unwrapped._episode_seed)).uniform(0, 2 * np.pi)
            shift = error * np.array([np.cos(direction), np.sin(direction)])
            self.slot = super().goal_pose(env) * sapien.Pose([0.0, *shift]) if read_slot is None else read_slot(env)

        def goal_pose(self, env: gym.Env) -> sapien.Pose:
            return self.slot

        def act(self, env: gym.Env) -> np.ndarray:
            if self.slot is None:  # no estimate: stay put
                return np.zeros(env.action_space.shape, dtype=np.float32)
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
    parser.add_argument("--estimator", type=Path, help="read the slot with this close-look regressor instead of --errors")
    parser.add_argument("--close-look", type=float, default=0.1, help="m from the slot to the camera (--estimator)")
    parser.add_argument("--look-jitter", type=float, default=0.02, help="m, as in line_up_perception.py (--estimator)")
    args = parser.parse_args()
    strategies = args.strategies.split(",")
    if set(strategies) - set(STRATEGIES):
        parser.error("unknown strategies {}".format(", ".join(sorted(set(strategies) - set(STRATEGIES)))))
    errors = [float(value) for value in args.errors.split(",")] if args.estimator is None else [0.0]

    results: Dict[str, Dict[float, Dict[str, Any]]] = {strategy: {} for strategy in strategies}
    for strategy in strategies:
        for error in errors:
            clock = time.time()
            read_slot = None if args.estimator is None else ReadSlot(args.estimator, args.close_look, args.look_jitter)
            expert = erring_expert(args.env_id, error / 1000, strategy, read_slot)
            if read_slot is None:
                result = evaluate_expert(args.env_id, args.episodes, args.first_seed, expert=expert)
            else:  # the same observations and renderer as the regressor's training views
                result = evaluate_expert(args.env_id, args.episodes, args.first_seed, obs_mode=SEG_MODE,
                                         expert=expert, fast_render=None)
                error = 1000 * float(np.sqrt(np.mean(np.square(read_slot.errors))))
                print("{} of {} episodes found no reachable look pose".format(read_slot.unreached, args.episodes))
            results[strategy][error] = result
            print("{} at {:.1f} mm: success {:.3f} ({:.0f} s)".format(
                strategy, error, result["success_rate"], time.time() - clock), flush=True)

    print("\n{} episodes per cell (seeds {}-{})\n".format(
        args.episodes, args.first_seed, args.first_seed + args.episodes - 1))
    print("| strategy | lateral error (mm) | success | mean length | success vs push |")
    print("|---|---|---|---|---|")
    for strategy in strategies:
        for error, result in results[strategy].items():
            push = results.get("push", {}).get(error, {}).get("success_rate", 0.0)
            print("| {} | {:.1f} | {:.3f} | {:.0f} | {} |".format(
                strategy, error, result["success_rate"], result["mean_length"],
                "{:.2f}x".format(result["success_rate"] / push) if push > 0 else "-"))


if __name__ == "__main__":
    main()
