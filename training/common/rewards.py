"""Training rewards besides a task's own dense reward (`make_env(..., reward=...)`): "dense" (ManiSkill2's) or
"staged" (`StagedReward`, for the tasks in `STAGES`).

A staged reward splits a task into stages 1..n, each reached when the previous one is done, and pays 2k + p in
stage k, where the stage's progress p lies in [0, 1], and `success_reward(n)` = 4n + 4 on success. Every stage pays
more than any state of an earlier one, so a policy never gains by staying short of the next stage; and success pays
about twice the last stage, so the last step (letting go, where a miss drops the policy back several stages) is
worth trying before it always works. Why StackCube-v0 has one, and how its stages came about:
docs/notes/2026-12-07-stackcube-staged-reward.md and docs/notes/2026-12-07-stackcube-lift-and-release.md.
"""
from typing import Any, Callable, Dict, Tuple

import gymnasium as gym
import numpy as np

REWARDS = ("dense", "staged")


def _closeness(distance: float, scale: float = 5.0) -> float:
    """1 at distance 0, falling towards 0 over ~2.5 / `scale` m (0.5 m by default)."""
    return 1.0 - float(np.tanh(scale * distance))


def tilt(pose: Any) -> float:
    """How far (radians) a cube's pose is from resting flat: the angle between the vertical and the cube's axis
    nearest to it."""
    rotation = pose.to_transformation_matrix()[:3, :3]
    return float(np.arccos(min(1.0, np.max(np.abs(rotation[2, :])))))


def level(pose: Any) -> float:
    """1 for a cube resting flat, falling linearly with its `tilt` to 0 at 45 degrees (an even pull at any tilt)."""
    return max(0.0, 1.0 - tilt(pose) / (np.pi / 4))


def commanded_opening(env: Any, open_at: float) -> float:
    """How far the gripper's fingers are told to open: 0 at the controller's lowest target (closed), 1 at `open_at`
    (m, each finger's distance from the centre) and beyond."""
    lowest = env.agent.controller.controllers["gripper"].config.lower
    target = float(np.mean(env.agent.robot.get_drive_target()[-2:]))
    return float(np.clip((target - lowest) / (open_at - lowest), 0.0, 1.0))


# how high (m) above its place on B StackCube's carry target sits while cube A is this far or farther from B's axis
CLEARANCE = 0.03
# how far (m) below its place's height cube A's centre may be and still count as on B (ManiSkill2's success check)
ON_B_HEIGHT_TOLERANCE = 0.005
# how far (m) from B's axis a held cube A may be to count as placed: the success check allows 3.3 cm, but a cube let
# go 2-3 cm off B's axis mostly falls off it
CENTRED = 0.01


def stack_cube_stage(env: Any, info: Dict[str, Any]) -> Tuple[int, float]:
    """StackCube-v0: (1) reach cube A, (2) lift it to the height of its place on cube B, (3) carry it there,
    (4) on B (by the success check's geometry) and, while still held, within `CENTRED` of B's axis: let go and let
    it rest. Whether A is on B and grasped comes from the step's `info` (the env's own evaluation of that step;
    "is_cubaA_grasped" is ManiSkill2's spelling)."""
    cube_a = env.cubeA.pose.p
    grasped = info["is_cubaA_grasped"]
    place = env.cubeB.pose.p + np.array([0.0, 0.0, 2 * env.box_half_size[2]])  # A's centre when it rests on B
    offset = cube_a - place
    across = float(np.linalg.norm(offset[:2]))
    if info["is_cubeA_on_cubeB"] and (not grasped or across <= CENTRED):
        # how far the gripper is told to open (its drive target, not the fingers, which the cube blocks until it is
        # let go): a pull all the way from the grip's closed command to fingers at A's faces, which lets it go
        released = commanded_opening(env, env.box_half_size[1]) if grasped else 1.0
        stillness = 1.0 - float(np.tanh(10 * np.linalg.norm(env.cubeA.velocity)
                                        + np.linalg.norm(env.cubeA.angular_velocity)))
        return 4, (released + stillness) / 2
    if not grasped:
        return 1, _closeness(np.linalg.norm(env.tcp.pose.p - cube_a))
    lifted_at = -ON_B_HEIGHT_TOLERANCE  # offset[2] from which A could be on B: B's top is no obstacle any more
    if offset[2] < lifted_at:
        resting = env.box_half_size[2] - place[2]  # offset[2] of A on the table
        return 2, float(np.clip((offset[2] - resting) / (lifted_at - resting), 0.0, 1.0))
    # closeness to a target that starts above the place on B and sinks onto it as A comes over B, so the way there
    # passes over B's top rather than into its side; a coarse term pulls from afar, a fine one over the last
    # centimetres; weighted by how level A is (tipped, its lowest corner meets B while its centre is still too high
    # to count as on B), so levelness pays only as A nears its place, never instead of carrying it
    distance = np.linalg.norm(offset - np.array([0.0, 0.0, min(CLEARANCE, across)]))
    closeness = (_closeness(distance) + _closeness(distance, scale=30.0)) / 2
    return 3, closeness * (1.0 + level(env.cubeA.pose)) / 2


# env id -> (number of stages, the current stage and its progress from the unwrapped env and the step's info)
STAGES: Dict[str, Tuple[int, Callable[[Any, Dict[str, Any]], Tuple[int, float]]]] = {
    "StackCube-v0": (4, stack_cube_stage),
}


def check_reward(reward: str, env_id: str) -> None:
    """ValueError naming the choices unless `reward` is one for `env_id`."""
    if reward not in REWARDS:
        raise ValueError("unknown reward {!r}; one of {}".format(reward, ", ".join(REWARDS)))
    if reward == "staged" and env_id not in STAGES:
        raise ValueError("no staged reward is defined for {} (only for {}); use the task's own: reward 'dense'".format(
            env_id, ", ".join(sorted(STAGES))))


def success_reward(n_stages: int) -> float:
    """What success pays: 4n + 4, twice the 2n + 2 that would just top stage n."""
    return 4.0 * n_stages + 4


def staged_reward(n_stages: int, stage: int, progress: float, success: bool) -> float:
    """2k + progress in stage k; `success_reward(n)` on success."""
    return success_reward(n_stages) if success else 2.0 * stage + progress


class StagedReward(gym.Wrapper):
    """Replaces the env's reward by its task's staged reward (`STAGES`); everything else passes through."""

    def __init__(self, env: gym.Env, env_id: str) -> None:
        super().__init__(env)
        check_reward("staged", env_id)
        self.n_stages, self.stage = STAGES[env_id]

    def step(self, action: Any) -> Any:
        obs, _, terminated, truncated, info = self.env.step(action)
        stage, progress = self.stage(self.env.unwrapped, info)
        return obs, staged_reward(self.n_stages, stage, progress, bool(info.get("success", False))), terminated, \
            truncated, info
