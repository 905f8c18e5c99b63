"""Views of an insertion task's slot, the observations a slot reader (`training.slot_reader.train`) learns from.

`collect_views` renders one view per episode: its first observation, or the hand camera's view from the
look pose (`look_at_slot`: the arm put there by inverse kinematics, no simulation steps, give or take
the jitter a policy arriving on its own would leave). Its target is the TCP's position in the slot
frame and the slot's world rotation vector: the reading `agent.insertion.slot_memory` turns back into a slot pose.
"""
from typing import Dict, List, Optional, Tuple

import gymnasium as gym
import numpy as np
from tqdm import tqdm
from transforms3d.axangles import axangle2mat
from transforms3d.quaternions import quat2axangle

from agent.preprocessing import kept_points, preprocess
from agent.registry import TaskSpec, get_task
from training.algorithms.demos import current_observation
from training.common.envs import make_env
from training.experts.assembly import look_camera_pose, tcp_for_camera

LOOK_ANGLE_JITTER = 0.1  # rad, largest turn of the camera away from looking straight at the slot
SEG_MODE = "pointcloud+robot_seg"  # what the views are rendered with (the preprocessing may drop the robot)


def rotation_vector(q: np.ndarray) -> np.ndarray:
    """Axis x angle of a (w, x, y, z) quaternion, shortest way round."""
    axis, angle = quat2axangle(q if q[0] >= 0 else -q)
    return np.asarray(axis) * angle


def compact(obs: Dict) -> Dict:
    """The parts of an observation `preprocess` reads, camera points already filtered (smaller to keep)."""
    cloud = obs["pointcloud"]
    keep = kept_points(cloud["xyzw"])
    return {"pointcloud": {"xyzw": cloud["xyzw"][keep].astype(np.float32), "rgb": cloud["rgb"][keep],
                           "robot_seg": cloud["robot_seg"][keep]},
            "agent": {key: np.asarray(value) for key, value in obs["agent"].items()},
            "extra": {key: np.asarray(value) for key, value in obs["extra"].items()}}


def random_turn(rng: np.random.Generator) -> Tuple[np.ndarray, float]:
    """(axis, angle) of a rotation about a uniformly random axis by U(0, LOOK_ANGLE_JITTER)."""
    axis = rng.normal(size=3)
    return axis / np.linalg.norm(axis), float(rng.uniform(0, LOOK_ANGLE_JITTER))


def look_at_slot(env: gym.Env, distance: float, pitch: float, jitter: float, rng: np.random.Generator) -> bool:
    """Put the arm, by inverse kinematics and without simulating, where the hand camera looks at the slot
    from `distance` in front of it, tilted `pitch` rad down (`look_camera_pose`), shifted by U(-jitter,
    jitter) m along each slot axis and turned by up to `LOOK_ANGLE_JITTER`; False (the arm unmoved)
    where inverse kinematics finds no such pose."""
    unwrapped = env.unwrapped
    turn = axangle2mat(*random_turn(rng))
    camera = look_camera_pose(unwrapped.goal_pose, distance, pitch, rng.uniform(-jitter, jitter, 3), turn)
    robot = unwrapped.agent.robot
    arm = unwrapped.agent.controller.controllers["arm"]
    joints = arm.compute_ik(robot.pose.inv() * tcp_for_camera(env, camera))
    if joints is None:
        return False
    qpos = robot.get_qpos()
    qpos[arm.joint_indices] = joints
    robot.set_qpos(qpos)
    return True


View = Tuple[int, Dict, np.ndarray]  # (seed, compact observation, target)


def view_env(env_id: str, fast_render: Optional[bool] = None) -> gym.Env:
    """The task's env rendering `SEG_MODE` clouds in the task's control mode; `fast_render` as in
    `training.common.envs.make_env` (None: the fast renderer exactly on software Vulkan, as training's workers)."""
    return make_env(env_id, obs_mode=SEG_MODE, control_mode=get_task(env_id).control_mode, fast_render=fast_render)


def collect_views(env_id: str, seeds: List[int], look: Optional[Tuple[float, float, float]] = None,
                  fast_render: Optional[bool] = None) -> List[View]:
    """One view per episode (rendered by `view_env(env_id, fast_render)`): its first observation, or with
    `look=(distance, pitch, jitter)` the view from `look_at_slot` (episodes where the arm cannot reach it
    are left out). The target is the TCP's position in the slot frame (`goal_pose`; where the slot is
    relative to the hand) and the slot's world rotation vector (a yaw; the TCP's rotation in the slot frame
    is near half a turn, where rotation vectors flip)."""
    env, rng, samples = view_env(env_id, fast_render), np.random.default_rng(0), []
    try:
        for seed in tqdm(seeds, desc="views", unit="episode"):
            obs, _ = env.reset(seed=seed)
            if look is not None:
                if not look_at_slot(env, *look, rng):
                    continue
                obs = current_observation(env)
            goal = env.unwrapped.goal_pose
            target = np.concatenate([(goal.inv() * env.unwrapped.tcp.pose).p, rotation_vector(goal.q)])
            samples.append((seed, compact(obs), target.astype(np.float32)))
    finally:
        env.close()
    return samples


def inputs(observations: List[Dict], spec: TaskSpec, draws: int, rng: np.random.Generator
           ) -> Tuple[np.ndarray, np.ndarray]:
    """`draws` independent preprocessings of every observation: points (O, D, N, 6), states (O, D, S)."""
    nets = [[preprocess(obs, spec, rng) for _ in range(draws)] for obs in observations]
    return (np.stack([[net.points for net in row] for row in nets]),
            np.stack([[net.state for net in row] for row in nets]))


def errors(prediction: np.ndarray, target: np.ndarray) -> Dict[str, float]:
    """RMS errors: lateral (y/z, mm), along the axis (x, mm), angle (norm of the rotation-vector error, rad)."""
    difference = prediction - target
    return {"lateral_mm": 1000 * float(np.sqrt(np.mean(np.sum(difference[:, 1:3] ** 2, axis=1)))),
            "along_mm": 1000 * float(np.sqrt(np.mean(difference[:, 0] ** 2))),
            "angle_rad": float(np.sqrt(np.mean(np.sum(difference[:, 3:] ** 2, axis=1))))}


def split_by_seed(samples: List[View], seeds: List[int], test_share: float) -> Dict[str, List[View]]:
    """The "train" and "test" views: the test views are those of the last `test_share` of `seeds`."""
    test_seeds = set(seeds[int(round(len(seeds) * (1 - test_share))):])
    return {name: [s for s in samples if (s[0] in test_seeds) == (name == "test")] for name in ("train", "test")}
