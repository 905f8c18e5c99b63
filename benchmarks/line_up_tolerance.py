"""How far off can an insertion expert's estimate of the slot be before it stops inserting?

    .venv/bin/python benchmarks/line_up_tolerance.py PegInsertionSide-v0 [--episodes 40]
        [--errors 0,2,4,6] [--strategies push,peck] [--look-steps 30]    # ~10 min here for the defaults
    .venv/bin/python benchmarks/line_up_tolerance.py PegInsertionSide-v0 --slot-reader runs/PegInsertionSide-v0/slot_reader.onnx
        # the slot read by a slot reader after a look phase instead (~10 min for 20 episodes)
    .venv/bin/python benchmarks/line_up_tolerance.py PlugCharger-v0 --slot-reader runs/PlugCharger-v0/slot_reader_1000.onnx \
        --strategies push --first-seed 10000    # the reader alone, then with the face fit (~5 min)

The point-cloud students read the hole's lateral position no better than ~6 mm
(`benchmarks/line_up_perception.py`). This measures what precision would be enough: the privileged
expert (state observations) gets a slot estimate that is off by a fixed lateral distance, in a
random y/z direction per episode (drawn from the episode seed), and its success rate is scored per
error. Strategies at the slot:
- `push` (the shipped expert): line up with the estimate, then push in;
- `peck` (a search by touch): once the held object's head is at the slot face, back off a little,
  step along an Archimedean spiral around the estimate (`PECK_PITCH` between turns, `PECK_STEP`
  per probe), and push in again, until it enters.
With `--slot-reader FILE` (`ms2agent export-slot-reader`) the estimate is not off by a fixed distance
but read from the points, as a looking policy reads it: the expert spends the reader's look step
bringing the hand camera to the look pose (its look phase, on the true slot), the reader reads the slot
from the view there with the agent's code, and the expert grasps and inserts on that reading. Its
row's "lateral error" is the readings' RMS lateral error over the episodes. Where the task's slot has a
known face (`agent.insertion.slot_fit`, PlugCharger) it runs twice: the network's reading alone (the baseline),
then refined by the face fit, as the agent reads it.
Printed: a markdown table of success rate and mean episode length per slot estimate and strategy, with
each success as a ratio to `push`'s on the same estimate and to the same strategy's on the first estimate.
"""
import argparse
import time
from itertools import product
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import gymnasium as gym
import numpy as np
import sapien.core as sapien

from mani_skill2.utils.sapien_utils import vectorize_pose

from agent.insertion.slot_fit import SLOT_FACES
from agent.insertion.slot_memory import slot_from_reading
from agent.insertion.slot_reader import reader, reader_entry
from agent.registry import get_task, reader_spec
from line_up_perception import SEG_MODE
from training.algorithms.demos import current_observation
from training.experts import evaluate_expert, make_expert
from training.experts.assembly import InsertionExpert, slot_pose
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


class ReadSlot:
    """Where a slot reader places the slot, read once per episode after the expert's look phase, by the
    agent's code (`agent.insertion.slot_reader.reader` on onnxruntime, `agent.insertion.slot_memory.slot_from_reading`)."""

    def __init__(self, path: Path, env_id: str, face_fit: bool) -> None:
        self.entry, self.face_fit = reader_entry(path, env_id), face_fit
        self.read = None  # built on the first call, against the env's observation space
        self.errors = []  # lateral error (m) of each reading

    def __call__(self, env: gym.Env) -> sapien.Pose:
        """The slot pose (`goal_pose`) read from the current view."""
        if self.read is None:
            self.read = reader(self.entry, reader_spec(get_task(env.unwrapped.spec.id)), env.observation_space,
                               face_fit=self.face_fit)
        rng = np.random.default_rng(int(env.unwrapped._episode_seed))
        reading = self.read(current_observation(env), rng)
        slot = slot_pose(*slot_from_reading(reading, vectorize_pose(env.unwrapped.tcp.pose)))
        self.errors.append(float(np.linalg.norm((env.unwrapped.goal_pose.inv() * slot).p[1:])))
        return slot


def erring_expert(env_id: str, error: float, strategy: str, read_slot: Optional[ReadSlot] = None,
                  look_steps: int = 0) -> InsertionExpert:
    """The task's insertion expert with its slot estimate `error` m off laterally (direction drawn
    per episode from its seed) after a look phase of `look_steps`, or, with `read_slot`, where that
    reads it after a look phase (on the true slot) of its reader's look step, acting with `strategy`."""
    base = type(make_expert(env_id))
    if not issubclass(base, InsertionExpert):
        raise SystemExit("{} is not an insertion task".format(env_id))

    class Erring(base):  # type: ignore[misc, valid-type]
        def reset(self, env: gym.Env) -> None:
            super().reset(env)
            self.look_steps = look_steps if read_slot is None else read_slot.entry.look_step
            direction = np.random.default_rng(int(env.unwrapped._episode_seed)).uniform(0, 2 * np.pi)
            self.shift = error * np.array([np.cos(direction), np.sin(direction)])

        def act(self, env: gym.Env) -> np.ndarray:
            if self.steps == self.look_steps:  # after the look (on the true slot), the estimate
                self.reading = (env.unwrapped.goal_pose * sapien.Pose([0.0, *self.shift]) if read_slot is None
                                else read_slot(env))
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
    parser.add_argument("--look-steps", type=int, default=0, help="with --errors: a look phase of this many steps first")
    parser.add_argument("--slot-reader", type=Path, help="an exported slot reader (`ms2agent export-slot-reader`): "
                        "the expert looks for its look step, then acts on the slot it reads, instead of --errors")
    args = parser.parse_args()
    strategies = args.strategies.split(",")
    if set(strategies) - set(STRATEGIES):
        parser.error("unknown strategies {}".format(", ".join(sorted(set(strategies) - set(STRATEGIES)))))
    # the slot estimates: fixed lateral errors (mm), or a reader's reading: where the task's slot has a
    # known face, the network's reading alone (the baseline) and refined by the face fit (the agent's way)
    if args.slot_reader is None:
        estimates = [("{:g} mm off".format(float(value)), float(value), False) for value in args.errors.split(",")]
    else:
        estimates = [("reader", 0.0, False)] + [("reader + face fit", 0.0, True)] * (args.env_id in SLOT_FACES)

    rows: List[Tuple[str, str, float, Dict[str, Any]]] = []  # strategy, estimate, RMS lateral error (mm), result
    for strategy, (label, error, face_fit) in product(strategies, estimates):
        clock = time.time()
        read_slot = None if args.slot_reader is None else ReadSlot(args.slot_reader, args.env_id, face_fit)
        expert = erring_expert(args.env_id, error / 1000, strategy, read_slot, args.look_steps)
        if read_slot is None:
            result = evaluate_expert(args.env_id, args.episodes, args.first_seed, expert=expert)
        else:  # the same observations and renderer as the reader's training views
            result = evaluate_expert(args.env_id, args.episodes, args.first_seed, obs_mode=SEG_MODE,
                                     expert=expert, fast_render=None)
            error = 1000 * float(np.sqrt(np.mean(np.square(read_slot.errors))))
        rows.append((strategy, label, error, result))
        print("{}, {} ({:.2f} mm): success {:.3f} ({:.0f} s)".format(
            strategy, label, error, result["success_rate"], time.time() - clock), flush=True)

    print("\n{} episodes per cell (seeds {}-{})\n".format(
        args.episodes, args.first_seed, args.first_seed + args.episodes - 1))
    print("| strategy | slot estimate | lateral error (mm) | success | mean length | success vs push | vs the first estimate |")
    print("|---|---|---|---|---|---|---|")
    success = {(strategy, label): result["success_rate"] for strategy, label, _, result in rows}
    for strategy, label, error, result in rows:
        ratios = [(result["success_rate"], success.get(("push", label), 0.0)),
                  (result["success_rate"], success[(strategy, estimates[0][0])])]
        print("| {} | {} | {:.2f} | {:.3f} | {:.0f} | {} |".format(
            strategy, label, error, result["success_rate"], result["mean_length"],
            " | ".join("{:.2f}x".format(a / b) if b > 0 else "-" for a, b in ratios)))


if __name__ == "__main__":
    main()
