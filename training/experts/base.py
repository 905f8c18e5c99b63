"""Shared pieces of the privileged experts: the `Expert` base class and motion primitives.

All experts act in control mode `pd_ee_delta_pose`: a 7-D action holding a TCP translation
(3, x 0.1 m) and an axis-angle rotation (3, x 0.1 rad, norm clipped to 1), both expressed in the
current TCP frame, and a gripper command (+1 open, -1 closed).
"""
from typing import Optional, Sequence, Tuple

import gymnasium as gym
import numpy as np
import sapien.core as sapien
from transforms3d.axangles import axangle2mat
from transforms3d.quaternions import quat2axangle

POS_SCALE = 0.1  # metres per unit of translation action
ROT_SCALE = 0.1  # radians per unit of rotation action
MAX_POS_ACTION = 0.5  # larger steps often make the controller's IK fail, which freezes the arm
OPEN, CLOSE = 1.0, -1.0
GRIPPER_OPEN_WIDTH = 0.07  # finger gap (m) above which the gripper counts as open (max 0.08)


def tcp_pose(env: gym.Env) -> sapien.Pose:
    return env.unwrapped.tcp.pose


def gripper_width(env: gym.Env) -> float:
    return float(np.sum(env.unwrapped.agent.robot.get_qpos()[-2:]))


def is_grasped(env: gym.Env, actor: sapien.Actor, max_angle: float = 85) -> bool:
    return bool(env.unwrapped.agent.check_grasp(actor, max_angle=max_angle))


def rotation_angle(pose: sapien.Pose) -> float:
    """Angle (rad) of the rotation part of `pose`."""
    return float(2 * np.arccos(np.clip(abs(pose.q[0]), 0.0, 1.0)))


def pose_action(env: gym.Env, target: sapien.Pose, gripper: float,
                max_pos_action: float = MAX_POS_ACTION) -> np.ndarray:
    """Action that moves the TCP towards the world pose `target` (one step, clipped)."""
    delta = tcp_pose(env).inv() * target  # target in the TCP frame, as the controller applies it
    q = delta.q if delta.q[0] >= 0 else -delta.q  # shortest rotation
    axis, angle = quat2axangle(q)
    pos = clip_norm(delta.p / POS_SCALE, max_pos_action)
    rot = clip_norm(np.asarray(axis) * angle / ROT_SCALE, 1.0)  # the controller clips the same way
    return np.hstack([pos, rot, gripper]).astype(np.float32)


def clip_norm(vector: np.ndarray, limit: float) -> np.ndarray:
    norm = np.linalg.norm(vector)
    return vector * (limit / norm) if norm > limit else vector


SHOULDER_HEIGHT = 0.333  # m, Panda joint 2 above the robot base
FLANGE_ABOVE_TCP = 0.21  # m, wrist flange above the TCP of a vertical gripper
REACH = (0.72, 0.82)  # shoulder-to-flange distances (m) where tilting starts / is full
MAX_TILT = 0.6  # rad; a vertical gripper beyond ~0.78 m makes the controller's IK fail
OBSTACLE_RANGE = (0.08, 0.1)  # m: obstacles closer than this are avoided fully / not at all


def unit_xy(vector: np.ndarray) -> np.ndarray:
    """Horizontal part of `vector`, normalised (zero if `vector` is vertical)."""
    flat = np.array([vector[0], vector[1], 0.0])
    norm = np.linalg.norm(flat)
    return flat / norm if norm > 1e-6 else flat


def reach_tilt(env: gym.Env, position: np.ndarray) -> float:
    """How far (rad) a gripper at `position` must lean away from the base to stay reachable."""
    shoulder = env.unwrapped.agent.robot.pose.p + [0.0, 0.0, SHOULDER_HEIGHT]
    distance = np.linalg.norm(np.asarray(position) + [0.0, 0.0, FLANGE_ABOVE_TCP] - shoulder)
    return MAX_TILT * float(np.clip((distance - REACH[0]) / (REACH[1] - REACH[0]), 0.0, 1.0))


def grasp_pose(env: gym.Env, center: np.ndarray, closing_axes: Sequence[np.ndarray],
               obstacles: Sequence[np.ndarray] = (),
               lean: Optional[Tuple[np.ndarray, float]] = None) -> sapien.Pose:
    """TCP pose approaching from above at `center`, closing along one of `closing_axes` (either
    sign). The axis needing the least wrist rotation wins, except that fingers must not point at
    nearby `obstacles` (positions), and near the edge of the workspace, where the gripper leans
    away from the base about its closing axis, axes across the reach direction are preferred.
    `lean=(direction, angle)` adds a lean of the approach towards `direction` about the closing axis."""
    radial = unit_xy(np.asarray(center) - env.unwrapped.agent.robot.pose.p)
    tilt = reach_tilt(env, center)
    current = tcp_pose(env).to_transformation_matrix()[:3, 1]

    def score(closing: np.ndarray) -> float:
        value = float(closing @ current) - 2 * tilt / MAX_TILT * abs(float(closing @ radial))
        for obstacle in obstacles:
            offset = np.asarray(obstacle) - center
            far, near = OBSTACLE_RANGE[1], OBSTACLE_RANGE[0]
            closeness = np.clip((far - np.linalg.norm(offset[:2])) / (far - near), 0.0, 1.0)
            value -= 2 * closeness * abs(float(closing @ unit_xy(offset)))
        return value

    candidates = [sign * unit_xy(axis) for axis in closing_axes for sign in (1, -1)]
    candidates = [c for c in candidates if c.any()] or [unit_xy(current)]  # knocked over: keep the yaw
    closing = max(candidates, key=score)
    down = np.array([0.0, 0.0, -1.0])
    leaning = np.cross(closing, down)  # where a positive rotation about `closing` leans the approach
    angle = np.sign(leaning @ radial) * tilt
    if lean is not None:
        angle += np.sign(leaning @ lean[0]) * lean[1]
    approaching = axangle2mat(closing, angle) @ down
    matrix = np.eye(4)
    matrix[:3, :3] = np.stack([np.cross(closing, approaching), closing, approaching], axis=1)
    matrix[:3, 3] = center
    return sapien.Pose.from_transformation_matrix(matrix)


def carry_action(env: gym.Env, actor_pose: sapien.Pose, target: sapien.Pose, gripper: float = CLOSE,
                 max_pos_action: float = MAX_POS_ACTION) -> np.ndarray:
    """Action that moves a held object from `actor_pose` towards `target`, keeping the current grasp."""
    grasp = actor_pose.inv() * tcp_pose(env)
    return pose_action(env, target * grasp, gripper, max_pos_action)


def carry_to(env: gym.Env, actor_pose: sapien.Pose, position: np.ndarray, tcp_rotation: np.ndarray,
             gripper: float = CLOSE) -> np.ndarray:
    """Action that moves a held object's origin towards `position` while turning the TCP towards
    the world rotation `tcp_rotation` (quaternion), for objects whose orientation does not matter."""
    turn = sapien.Pose(q=tcp_rotation) * sapien.Pose(q=tcp_pose(env).q).inv()
    target = sapien.Pose(position, (turn * sapien.Pose(q=actor_pose.q)).q)
    return carry_action(env, actor_pose, target, gripper)


class Expert:
    """Closed-loop privileged policy: `act` depends on the current simulator state (and, for the
    insertion experts, on the step count and the slot a looking policy read)."""

    def reset(self, env: gym.Env) -> None:
        """Called after `env.reset`, to clear what an expert keeps per episode."""

    def act(self, env: gym.Env) -> np.ndarray:
        raise NotImplementedError


class GraspExpert(Expert):
    """Reaches an object from above, grasps it, then hands over to `carry` while it is held."""

    pregrasp_height = 0.05  # m above the grasp pose before descending
    descent_overshoot = 0.01  # m below the grasp pose that a full descent aims at (see `reach_and_grasp`)
    grasp_lateral_tolerance = (0.01, 0.01)  # m, lateral error allowed for descending, along the grasp
    # frame's x (parallel to the finger pads) and y (the closing axis)
    grasp_close_height = 0.01  # m, the gripper closes within this of the grasp pose (height and target)
    grasp_angle_tolerance = 0.1  # rad, orientation error allowed for descending
    grasp_max_angle = 85.0  # deg, for `check_grasp`

    def target(self, env: gym.Env) -> sapien.Actor:
        raise NotImplementedError

    def grasp_pose(self, env: gym.Env) -> sapien.Pose:
        raise NotImplementedError

    def carry(self, env: gym.Env) -> np.ndarray:
        raise NotImplementedError

    def holds_target(self, env: gym.Env) -> bool:
        """Whether the gripper holds the target object (`carry` then takes over)."""
        return is_grasped(env, self.target(env), self.grasp_max_angle)

    def act(self, env: gym.Env) -> np.ndarray:
        if self.holds_target(env):
            return self.carry(env)
        return self.reach_and_grasp(env)

    def reach_and_grasp(self, env: gym.Env) -> np.ndarray:
        """Descend onto the grasp pose from `pregrasp_height` above it, lower the better aligned the
        TCP is: fully down within half the tolerances, at the full height beyond them, linear in
        between; close the gripper once within `grasp_close_height` of the grasp pose where that
        descent leads there. The vertical label is then a continuous function of the state (up
        to a step of ~0.1 where closing starts), so a student that imitates it has no place where
        rising and descending labels average to no motion. Fully down aims `descent_overshoot` below
        the grasp pose, so the label keeps >= 0.1 of downward speed until the gripper closes instead
        of fading with the distance."""
        grasp = self.grasp_pose(env)
        offset = grasp.inv() * tcp_pose(env)  # TCP in the grasp frame: z < 0 above the object
        misalignment = max(float(np.linalg.norm(offset.p[:2] / np.asarray(self.grasp_lateral_tolerance))),
                           rotation_angle(offset) / self.grasp_angle_tolerance)
        lift = float(np.clip(2.0 * misalignment - 1.0, 0.0, 1.0))
        height = self.pregrasp_height * lift - self.descent_overshoot * (1.0 - lift)  # target, above the grasp
        if height < self.grasp_close_height and abs(offset.p[2]) < self.grasp_close_height:
            return pose_action(env, grasp, CLOSE)
        if gripper_width(env) <= GRIPPER_OPEN_WIDTH:  # open before descending
            height = self.pregrasp_height
        return pose_action(env, grasp * sapien.Pose([0, 0, -height]), OPEN)
