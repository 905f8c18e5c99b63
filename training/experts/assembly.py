"""Experts for the insertion tasks: PegInsertionSide-v0, PlugCharger-v0."""
import gymnasium as gym
import numpy as np
import sapien.core as sapien
from transforms3d.axangles import axangle2mat
from transforms3d.quaternions import mat2quat

from agent.geometry import slot_rotation

from .base import OPEN, GraspExpert, carry_action, grasp_pose, pose_action, rotation_angle, tcp_pose

LOOK_CAMERA = "hand_camera"


def look_camera_pose(slot: sapien.Pose, distance: float, pitch: float = 0.0, shift: np.ndarray = np.zeros(3),
                     turn: np.ndarray = np.eye(3)) -> sapien.Pose:
    """The camera pose that looks at slot-frame x = 0 from `distance`, along the slot's x axis tilted
    `pitch` rad downwards, image upright (camera x forward, y horizontal), moved by `shift` (slot frame,
    m) and turned by the world rotation matrix `turn`."""
    level = slot_rotation(slot.to_transformation_matrix()[:3, 0])  # columns: slot axis, left, up
    forward = np.cos(pitch) * level[:, 0] - np.sin(pitch) * level[:, 2]
    rotation = turn @ np.stack([forward, level[:, 1], np.cross(forward, level[:, 1])], axis=1)
    return sapien.Pose(slot.p - distance * forward + slot.to_transformation_matrix()[:3, :3] @ shift, mat2quat(rotation))


def slot_pose(position: np.ndarray, axis: np.ndarray) -> sapien.Pose:
    """The slot frame at `position` with x along `axis` and y horizontal (the slots here stand upright),
    as a policy's remembered slot (agent.insertion.slot_memory) gives it."""
    return sapien.Pose(np.asarray(position, dtype=np.float64), mat2quat(slot_rotation(axis)))


def hand_camera_pose(env: gym.Env) -> sapien.Pose:
    """The hand camera's (`LOOK_CAMERA`) world pose, from its mount: the rendered camera pose is only
    updated when the scene renders."""
    mounted = env.unwrapped._cameras[LOOK_CAMERA]
    return mounted.actor.pose * sapien.Pose(mounted.camera_cfg.p, mounted.camera_cfg.q)


def tcp_for_camera(env: gym.Env, camera: sapien.Pose) -> sapien.Pose:
    """The TCP pose that puts the hand camera at the world pose `camera`."""
    tcp = env.unwrapped.tcp.pose
    return camera * (tcp.inv() * hand_camera_pose(env)).inv()


class InsertionExpert(GraspExpert):
    """Grasp an object, hold it in front of its slot (`goal_pose`: the object's pose when fully
    inserted) aligned with the slot's x axis, then push it in along that axis. With `look_steps` > 0
    it first spends that many steps bringing the hand camera `look_distance` in front of the slot,
    looking at it (`look_camera_pose`), gripper open: where a policy reads the slot (agent.insertion)."""

    grasp_angle_tolerance = 0.25  # rad: the fingers close across the object's width and still hold it
    # this far off in yaw, and point-cloud students stall above it while correcting a few degrees
    clearance = 0.01  # m in front of the entrance that lining up holds at (plus the funnel)
    standoff = 0.03  # m of slack behind that while lining up
    funnel_slope = 1.0  # extra distance per metre of lateral error, keeps the hand clear of the slot's body
    lateral_tolerance = 0.0015  # m, largest y/z error (slot frame) at which it pushes in at full speed
    angle_tolerance = 0.015  # rad, largest orientation error at which it pushes in at full speed
    push_ramp = 2.0  # misalignment (in tolerances, `push_share`) at which pushing has slowed to a stop: from
    # 1 to this the push slows linearly, so the label changes smoothly with the state, which a student can
    # imitate (behind a sharp switch at the tolerances, even students given the exact state stalled)
    push_step = 0.02  # m per step along the slot axis while pushing
    depth = 0.0  # m along the slot x axis at which pushing stops (0: fully inserted)
    sag_gain = 1.0  # lateral errors are overshot by this factor, cancelling the sag of the loaded arm
    sag_range = 0.005  # m, largest lateral error that is overshot
    lean = 0.0  # rad the gripper leans towards the object's x axis (the insertion direction)
    look_steps = 0  # steps of the look phase at the start of each episode (0: none)
    look_distance = 0.1  # m from the slot to the hand camera in the look phase
    look_pitch = 0.6  # rad the look is tilted downwards: looking level, the wrist of a hand at a low
    # slot hits the table (the hand camera sits above the TCP); at 0.6 all of 30 looks arrive in 25 steps
    steps = 0  # actions since `reset`
    reading = None  # the slot as a looking policy read it (`slot_pose`); once set, the expert acts on it

    def reset(self, env: gym.Env) -> None:
        self.steps, self.reading = 0, None

    def goal_pose(self, env: gym.Env) -> sapien.Pose:
        return env.unwrapped.goal_pose if self.reading is None else self.reading

    def act(self, env: gym.Env) -> np.ndarray:
        self.steps += 1
        if self.steps <= self.look_steps:
            return self.look(env)
        if self.unlook_tilt is not None and self.tilt(env) > self.unlook_tilt and not self.holds_target(env):
            return self.unlook(env)
        return super().act(env)

    unlook_tilt = None  # rad: after the look, a gripper tilted further than this from pointing down first
    # turns straight down (`unlook`) before reaching for the grasp (None: never); turning towards the grasp
    # directly can run the wrist into its joint limit, where the arm stalls

    @staticmethod
    def tilt(env: gym.Env) -> float:
        """Angle (rad) between the gripper's approach axis (the TCP's z) and straight down."""
        approach = tcp_pose(env).to_transformation_matrix()[:3, 2]
        return float(np.arccos(np.clip(-approach[2], -1.0, 1.0)))

    def unlook(self, env: gym.Env) -> np.ndarray:
        """Turn the gripper straight down about the horizontal (keeping its heading), rising a little."""
        tcp = tcp_pose(env)
        rotation = tcp.to_transformation_matrix()[:3, :3]
        axis = np.cross(rotation[:, 2], [0.0, 0.0, -1.0])
        down = axangle2mat(axis / np.linalg.norm(axis), self.tilt(env)) @ rotation
        return pose_action(env, sapien.Pose(tcp.p + [0.0, 0.0, self.unlook_rise], mat2quat(down)), OPEN)

    unlook_rise = 0.02  # m the hand aims above its current position while it turns down

    look_floor = 0.03  # m, lowest TCP height in the look pose: the hand camera sits above the TCP, and a
    # lower TCP puts the fingers on the table; the look is raised by up to `look_jitter` to keep it
    look_jitter = 0.02  # m, the slot reader tolerates the camera this far off the look pose along each axis
    look_hover = 0.06  # m above the look pose that the hand aims at while still turning (keeps it off the peg)
    look_turned = 0.3  # rad of orientation error from which on the hand hovers the full `look_hover`; below
    # it the hover shrinks in proportion, so the label changes smoothly with the state (a student learns it)

    def look_error(self, env: gym.Env) -> sapien.Pose:
        """The hand camera's pose relative to the look pose on the true slot (not on a reading)."""
        look = look_camera_pose(env.unwrapped.goal_pose, self.look_distance, self.look_pitch)
        return look.inv() * hand_camera_pose(env)

    def look(self, env: gym.Env) -> np.ndarray:
        """Move the hand camera towards the look pose (hovering above it while turning), gripper open."""
        target = tcp_for_camera(env, look_camera_pose(self.goal_pose(env), self.look_distance, self.look_pitch))
        raised = float(np.clip(self.look_floor - target.p[2], 0.0, self.look_jitter))
        raised += self.look_hover * min(1.0, rotation_angle(target.inv() * tcp_pose(env)) / self.look_turned)
        return pose_action(env, sapien.Pose(target.p + [0.0, 0.0, raised], target.q), OPEN)

    def grasp_x(self, env: gym.Env) -> float:
        """Object-frame x of the grasp centre; the fingers close along the object's y axis."""
        raise NotImplementedError

    def entrance(self, env: gym.Env) -> float:
        """Slot-frame x of the object origin where it starts entering the slot."""
        raise NotImplementedError

    def grasp_pose(self, env: gym.Env) -> sapien.Pose:
        held = self.target(env).pose
        axes = held.to_transformation_matrix()[:3, :3]
        center = (held * sapien.Pose([self.grasp_x(env), 0, 0])).p
        return grasp_pose(env, center, [axes[:, 1]], lean=(axes[:, 0], self.lean))

    def slot_offset(self, env: gym.Env) -> sapien.Pose:
        """The held object's pose in the slot frame (`goal_pose`): x along the slot axis (< 0: in
        front of the inserted pose), y/z the lateral error."""
        return self.goal_pose(env).inv() * self.target(env).pose

    def push_share(self, offset: sapien.Pose) -> float:
        """How much of `push_step` to push in at the slot-frame `offset`: 1 within the tolerances (largest
        y/z error and angle), falling linearly to 0 at `push_ramp` times them."""
        misalignment = max(float(np.max(np.abs(offset.p[1:]))) / self.lateral_tolerance,
                           rotation_angle(offset) / self.angle_tolerance)
        return float(np.clip((self.push_ramp - misalignment) / (self.push_ramp - 1.0), 0.0, 1.0))

    def carry(self, env: gym.Env) -> np.ndarray:
        """Line up in front of the entrance (further back the further off the slot axis) while pushing in
        as fast as `push_share` allows; misaligned past that hold point, back out instead."""
        goal, held = self.goal_pose(env), self.target(env).pose
        offset = self.slot_offset(env)
        x, error = offset.p[0], offset.p[1:]
        lateral = -self.sag_gain * np.clip(error, -self.sag_range, self.sag_range)  # overshoot small errors
        hold = self.entrance(env) - self.clearance - self.funnel_slope * float(np.linalg.norm(error))
        past = float(np.clip((x - hold) / self.clearance, 0.0, 1.0))  # 0 in front of the hold point
        share = self.push_share(offset)
        x = max(x, hold - self.standoff) + self.push_step * (share - (1.0 - share) * past)
        return carry_action(env, held, goal * sapien.Pose([min(x, self.depth), *lateral]))


class PegInsertionSideExpert(InsertionExpert):
    """Grasp the peg from above towards its tail, insert its head into the box's side hole."""

    tail_margin = 0.025  # m between the grasp centre and the tail end: the hand stays far from the box
    lean = 0.3  # rad the gripper leans towards the peg head, which keeps the forearm off the box
    grasp_lateral_tolerance = (0.02, 0.015)  # m: along the peg (where on it the fingers close matters
    # little) and across it (the open fingers clear a 5 cm peg by 1.5 cm on each side); point-cloud
    # students stalled above the peg correcting the 5 mm that the cubes' 1 cm left them
    grasp_max_angle = 20.0
    depth = -0.005  # head 5 mm short of the hole centre; success needs it past -15 mm

    def target(self, env: gym.Env) -> sapien.Actor:
        return env.unwrapped.peg

    def grasp_x(self, env: gym.Env) -> float:
        return self.tail_margin - float(env.unwrapped.peg_half_size[0])

    def entrance(self, env: gym.Env) -> float:
        return -float(env.unwrapped.peg_half_size[0])  # box front face: the box is as deep as the peg is long


class PlugChargerExpert(InsertionExpert):
    """Grasp the charger base from above, away from the pins, and plug the pins into the receptacle."""

    lean = 0.2  # rad the gripper leans towards the pins, keeping the hand off the receptacle
    look_pitch = 0.9  # the receptacle faces the robot: at 0.6 the wrist stops the turn 0.1-0.2 rad short;
    # at 0.9 all of 30 looks arrive within 2 cm and 0.04 rad in 20 steps
    lateral_tolerance = 0.0004  # the pin slots leave 0.5 mm on each side
    unlook_tilt = 0.5  # after the 0.9-rad look, turning straight to the grasp stalled 4 of 40 episodes at the
    # wrist's joint limit; turning down first inserts 0.975 after the look, as without one
    angle_tolerance = 0.01
    push_step = 0.005

    def target(self, env: gym.Env) -> sapien.Actor:
        return env.unwrapped.charger

    def grasp_x(self, env: gym.Env) -> float:
        return -0.032  # on the base (x in [-0.04, 0]), as far from the pins as the fingers allow

    def entrance(self, env: gym.Env) -> float:
        return -2 * env.unwrapped._peg_size[0]  # pin tips touch the receptacle face
