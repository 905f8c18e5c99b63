"""Experts for the cube tasks: PickCube-v0, LiftCube-v0, StackCube-v0."""
from typing import Optional, Sequence

import gymnasium as gym
import numpy as np
import sapien.core as sapien
from transforms3d.quaternions import axangle2quat

from .base import (GRIPPER_OPEN_WIDTH, OPEN, GraspExpert, carry_action, carry_to, grasp_pose, gripper_width,
                   pose_action, tcp_pose)


def cube_grasp(env: gym.Env, cube: sapien.Actor, at: Optional[np.ndarray] = None,
               obstacles: Sequence[np.ndarray] = ()) -> sapien.Pose:
    """Grasp from above with the fingers on two opposite faces, at the cube centre (or at `at`:
    where the TCP should be once the cube is carried there)."""
    rotation = cube.pose.to_transformation_matrix()[:3, :3]
    return grasp_pose(env, cube.pose.p if at is None else at, [rotation[:, 0], rotation[:, 1]], obstacles)


def level(pose: sapien.Pose, position: np.ndarray) -> sapien.Pose:
    """Cube pose at `position` with the face closest to the bottom made horizontal."""
    rotation = pose.to_transformation_matrix()[:3, :3]
    up = int(np.argmax(np.abs(rotation[2])))
    vertical = rotation[:, up] * np.sign(rotation[2, up])
    axis = np.cross(vertical, [0.0, 0.0, 1.0])
    if np.linalg.norm(axis) < 1e-9:
        return sapien.Pose(position, pose.q)
    turn = sapien.Pose(q=axangle2quat(axis, np.arccos(np.clip(vertical[2], -1.0, 1.0))))
    return sapien.Pose(position, (turn * sapien.Pose(q=pose.q)).q)


class PickCubeExpert(GraspExpert):
    """Grasp the cube and hold it at the goal until the arm is still."""

    def target(self, env: gym.Env) -> sapien.Actor:
        return env.unwrapped.obj

    def grasp_pose(self, env: gym.Env) -> sapien.Pose:
        return cube_grasp(env, self.target(env))

    def goal(self, env: gym.Env) -> np.ndarray:
        return np.asarray(env.unwrapped.goal_pos)

    def carry(self, env: gym.Env) -> np.ndarray:
        cube, goal = self.target(env), self.goal(env)
        return carry_to(env, cube.pose, goal, cube_grasp(env, cube, at=goal).q)


class LiftCubeExpert(PickCubeExpert):
    """Lift the cube a little above the success height (0.2 m above its start)."""

    margin = 0.03

    def goal(self, env: gym.Env) -> np.ndarray:
        return np.asarray(env.unwrapped.goal_pos) + [0.0, 0.0, self.margin]


class StackCubeExpert(GraspExpert):
    """Grasp cube A, lower it onto cube B through a funnel above B, release and back off."""

    hover = 0.05  # m above the stacking height while far from B
    funnel_slope = 5.0  # extra height per metre of horizontal error
    place_tolerance = (0.008, 0.004)  # horizontal, vertical error (m) at which A counts as placed

    def target(self, env: gym.Env) -> sapien.Actor:
        return env.unwrapped.cubeA

    def grasp_pose(self, env: gym.Env) -> sapien.Pose:
        return cube_grasp(env, self.target(env), obstacles=[env.unwrapped.cubeB.pose.p])

    def stack_position(self, env: gym.Env) -> np.ndarray:
        unwrapped = env.unwrapped
        return unwrapped.cubeB.pose.p + [0.0, 0.0, 2 * unwrapped.box_half_size[2]]

    def placed(self, env: gym.Env) -> bool:
        error = self.stack_position(env) - self.target(env).pose.p
        return bool(np.linalg.norm(error[:2]) < self.place_tolerance[0]
                    and abs(error[2]) < self.place_tolerance[1])

    def act(self, env: gym.Env) -> np.ndarray:
        if self.placed(env):
            return self.release(env)
        return super().act(env)

    def release(self, env: gym.Env) -> np.ndarray:
        """Open in place; once open, move straight up."""
        tcp = tcp_pose(env)
        lift = 0.02 if gripper_width(env) > GRIPPER_OPEN_WIDTH else 0.0
        return pose_action(env, sapien.Pose(tcp.p + [0.0, 0.0, lift], tcp.q), OPEN)

    def carry(self, env: gym.Env) -> np.ndarray:
        cube = self.target(env).pose
        goal = self.stack_position(env)
        horizontal = np.linalg.norm(goal[:2] - cube.p[:2])
        height = goal[2] + min(self.hover, self.funnel_slope * max(0.0, horizontal - 0.004))
        if cube.p[2] < height - 0.01 and horizontal > 0.02:  # rise before travelling over B
            goal = np.array([cube.p[0], cube.p[1], height])
        else:
            goal = np.array([goal[0], goal[1], height])
        return carry_action(env, cube, level(cube, goal))
