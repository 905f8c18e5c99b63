"""ManiSkill2 point-cloud observation -> network inputs, as in the challenge winners' recipe.

Pure numpy (Python 3.8), shared unchanged by the agent and by training:
1. keep valid points (w > 0.5) above the ground (world z > 1e-4), and off the robot where the task
   observes `pointcloud+robot_seg`; rgb / 255;
2. where the task sets `voxel_size`, keep one random point per occupied voxel (uniform in space
   instead of per camera pixel, so surfaces close to a camera stop taking most of the points);
3. uniformly sample `n_points` of them (random subset, or all plus repeats when too few);
4. express xyz in the task's frame (`ee`: the TCP frame, x' = R^T (x - p); `base`: the robot base);
5. add `n_goal_points` green points around `extra.goal_pos` (jitter U(-1, 1) cm), same frame;
6. state = qpos, qvel, base/TCP/goal positions (and TCP->goal) in the frame, remaining `extra`
   entries flattened.
A looking task's goal is the slot its policy read and remembers (`agent.insertion.slot_memory` adds it to the
observation first); its state also holds the TCP's pose in that slot's frame (`tcp_in_slot`), and, where the
policy fits the object in its hand (`agent.insertion.held_fit` adds `extra.held_in_tcp`), that object's pose in the
slot frame (`held_in_slot`: coarse, then a fine copy of its line-up error), just before the trailing TCP pose.
"""
from typing import Any, Dict, NamedTuple, Optional, Tuple

import numpy as np

from agent import geometry
from agent.geometry import quaternion_to_matrix, to_frame
from agent.insertion.slot_memory import with_slot
from agent.registry import TaskSpec

GROUND_Z = 1e-4
GOAL_JITTER = 0.01
GOAL_RGB = (0.0, 1.0, 0.0)
FRAME_KEYS = ("tcp_pose", "goal_pos")  # extra entries used as frame-related positions
CHANNELS = 6  # per point: xyz in the frame, rgb
HELD_KEY = "held_in_tcp"  # extra entry of the held-object fit (agent.insertion.held_fit): position, 2 rotation columns
HELD_SIZE = 9
TCP_IN_SLOT_SIZE = 9  # `tcp_in_slot`: position (cm, clipped) and the first two columns of the rotation
TCP_IN_SLOT_RANGE = 0.1  # m: positions clipped to this along each slot axis, then given in cm (1 mm = 0.1)
LINE_UP_SIZE = 6  # `held_in_slot`'s fine copy: position (mm) and rotation error (sin(angle) x axis, in
# LINE_UP_ANGLE), each clipped to +-LINE_UP_CLIP: the insertion tolerances (0.4 mm, 0.01 rad) are 0.04 and 0.01
# in the coarse entries and 0.4 and 1 here, so a network can resolve them
LINE_UP_ANGLE = 0.01  # rad per unit
LINE_UP_CLIP = 5.0
HELD_IN_SLOT_SIZE = TCP_IN_SLOT_SIZE + LINE_UP_SIZE


class NetworkInput(NamedTuple):
    points: np.ndarray  # (total_points, 6) float32: xyz in the frame, rgb in [0, 1]
    state: np.ndarray  # (state_size,) float32
    n_valid: int  # camera points that survived filtering (0: the cloud was empty)


def is_finite(network_input: NetworkInput) -> bool:
    """Whether a network input's points and state are all finite."""
    return bool(np.isfinite(network_input.points).all() and np.isfinite(network_input.state).all())


def frame_pose(obs: Dict[str, Any], frame: str) -> np.ndarray:
    """The 7-D world pose (p, wxyz) of the frame the network sees everything in."""
    if frame == "ee":
        return np.asarray(obs["extra"]["tcp_pose"])
    if frame == "base":
        return np.asarray(obs["agent"]["base_pose"])
    raise ValueError("Unknown frame {!r} (expected 'ee' or 'base')".format(frame))


def pose_in_slot(extra: Dict[str, Any], position: np.ndarray, columns: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """A pose (world `position`, the first two `columns` of its world rotation, (3, 2)) in a looking policy's
    remembered slot frame (`extra.goal_pos`, `extra.goal_axis`): its position and the two columns there
    (`agent.geometry.pose_in_slot`)."""
    return geometry.pose_in_slot(extra["goal_pos"], extra["goal_axis"], position, columns)


def in_slot(local: np.ndarray, turned: np.ndarray) -> np.ndarray:
    """A pose in the remembered slot frame (`pose_in_slot`: its position `local` and columns `turned`) as
    `TCP_IN_SLOT_SIZE` state entries: the position in cm, clipped to `TCP_IN_SLOT_RANGE`, and the columns."""
    return np.concatenate([np.clip(local, -TCP_IN_SLOT_RANGE, TCP_IN_SLOT_RANGE) * 100.0, turned[:, 0], turned[:, 1]])


def line_up(local: np.ndarray, turned: np.ndarray) -> np.ndarray:
    """A held object's line-up error from its pose in the remembered slot frame (`pose_in_slot`: position
    `local`, columns `turned`), where it is inserted at the origin with no rotation, as `LINE_UP_SIZE` fine
    state entries: its position in mm and its rotation's sin(angle) x axis in `LINE_UP_ANGLE`, each clipped to
    `LINE_UP_CLIP`."""
    rotation = np.column_stack([turned, geometry.cross(turned[:, 0], turned[:, 1])])
    sine_axis = 0.5 * np.array([rotation[2, 1] - rotation[1, 2], rotation[0, 2] - rotation[2, 0],
                                rotation[1, 0] - rotation[0, 1]])
    return np.clip(np.concatenate([local * 1000.0, sine_axis / LINE_UP_ANGLE]), -LINE_UP_CLIP, LINE_UP_CLIP)


def tcp_in_slot(extra: Dict[str, Any]) -> np.ndarray:
    """The TCP's pose in the remembered slot frame (`in_slot`); zeros before the read."""
    if not np.any(extra["goal_axis"]):
        return np.zeros(TCP_IN_SLOT_SIZE)
    tcp = np.asarray(extra["tcp_pose"], dtype=np.float64)
    return in_slot(*pose_in_slot(extra, tcp[:3], quaternion_to_matrix(tcp[3:])[:, :2]))


def held_in_slot(extra: Dict[str, Any]) -> np.ndarray:
    """The held object's pose in the remembered slot frame (`in_slot`, then its `line_up` error), from its
    fitted pose in the TCP frame (`HELD_KEY`); zeros without a slot or a fit."""
    held = np.asarray(extra[HELD_KEY], dtype=np.float64)
    if not np.any(extra["goal_axis"]) or not np.any(held):
        return np.zeros(HELD_IN_SLOT_SIZE)
    tcp = np.asarray(extra["tcp_pose"], dtype=np.float64)
    tcp_rotation = quaternion_to_matrix(tcp[3:])
    pose = pose_in_slot(extra, tcp[:3] + tcp_rotation @ held[:3], tcp_rotation @ held[3:].reshape(2, 3).T)
    return np.concatenate([in_slot(*pose), line_up(*pose)])


def sample_indices(n_available: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """`n` indices into `n_available` items: a random subset, or all of them plus random repeats."""
    if n_available >= n:
        return rng.choice(n_available, n, replace=False)
    repeats = rng.integers(0, n_available, n - n_available)
    return np.concatenate([rng.permutation(n_available), repeats])


def build_state(agent: Dict[str, Any], extra: Dict[str, Any], origin: np.ndarray,
                rotation: np.ndarray) -> np.ndarray:
    """The state vector: proprioception plus positions expressed in the frame (origin, rotation)."""
    tcp = np.asarray(extra["tcp_pose"])
    parts = [agent["qpos"], agent["qvel"], to_frame(agent["base_pose"][:3], origin, rotation),
             to_frame(tcp[:3], origin, rotation)]
    goal = extra.get("goal_pos")
    if goal is not None:
        parts += [to_frame(goal, origin, rotation), to_frame(goal, tcp[:3], rotation)]
    parts += [extra[key] for key in sorted(extra) if key not in FRAME_KEYS + (HELD_KEY,)]
    if "goal_axis" in extra:  # a looking policy's remembered slot
        parts.append(tcp_in_slot(extra))
        if HELD_KEY in extra:
            parts.append(held_in_slot(extra))
    parts.append(tcp)
    return np.concatenate([np.ravel(part) for part in parts]).astype(np.float32)


def state_size(observation_space: Any, spec: Optional[TaskSpec] = None) -> int:
    """Length of the state vector for an env's (gymnasium Dict) observation space; a looking `spec`'s
    observations also carry the remembered slot (agent.insertion.slot_memory) and, with `held_fit`, the held
    object's fitted pose (agent.insertion.held_fit)."""
    def zeros(group: str) -> Dict[str, np.ndarray]:
        return {key: np.zeros(observation_space[group][key].shape) for key in observation_space[group].keys()}

    extra = zeros("extra")
    if spec is not None and spec.look_step:
        extra = with_slot({"extra": extra}, np.zeros(3), np.zeros(3))["extra"]
        if spec.held_fit:
            extra[HELD_KEY] = np.zeros(HELD_SIZE)
    return build_state(zeros("agent"), extra, np.zeros(3), np.eye(3)).size


def kept_points(xyzw: np.ndarray, robot_seg: Optional[np.ndarray] = None) -> np.ndarray:
    """Mask of the camera points the network may see: valid (w > 0.5), above the ground and, given
    ManiSkill2's `robot_seg` mask, not on the robot."""
    keep = (xyzw[:, 3] > 0.5) & (xyzw[:, 2] > GROUND_Z)
    if robot_seg is not None:
        keep &= ~np.asarray(robot_seg, dtype=bool).reshape(-1)
    return keep


def voxel_representatives(xyz: np.ndarray, voxel_size: float, rng: np.random.Generator) -> np.ndarray:
    """Indices of one random point in each occupied cube of side `voxel_size` (m)."""
    order = rng.permutation(len(xyz))
    cells = np.floor(xyz[order] / voxel_size).astype(np.int64)
    cells -= cells.min(axis=0)
    span = cells.max(axis=0) + 1
    keys = (cells[:, 0] * span[1] + cells[:, 1]) * span[2] + cells[:, 2]
    _, first = np.unique(keys, return_index=True)
    return order[first]


def preprocess(obs: Dict[str, Any], spec: TaskSpec, rng: np.random.Generator) -> NetworkInput:
    """Network inputs for one raw `pointcloud` observation of task `spec`."""
    xyzw = obs["pointcloud"]["xyzw"]
    rgb = obs["pointcloud"]["rgb"]
    pose = frame_pose(obs, spec.frame)
    origin, rotation = pose[:3], quaternion_to_matrix(pose[3:])

    robot_seg = obs["pointcloud"]["robot_seg"] if spec.drops_robot else None
    keep = np.flatnonzero(kept_points(xyzw, robot_seg))
    if spec.voxel_size and keep.size:
        keep = keep[voxel_representatives(xyzw[keep, :3], spec.voxel_size, rng)]
    points = np.zeros((spec.total_points, 6), dtype=np.float32)
    if keep.size:
        chosen = keep[sample_indices(keep.size, spec.n_points, rng)]
        points[: spec.n_points, :3] = to_frame(xyzw[chosen, :3], origin, rotation)
        points[: spec.n_points, 3:] = rgb[chosen] / 255.0
    goal = obs["extra"].get("goal_pos")
    if spec.n_goal_points:
        if goal is None:
            raise KeyError("{} expects extra.goal_pos in the observation".format(spec.env_id))
        jitter = rng.uniform(-1.0, 1.0, (spec.n_goal_points, 3)) * GOAL_JITTER
        points[spec.n_points:, :3] = to_frame(np.asarray(goal) + jitter, origin, rotation)
        points[spec.n_points:, 3:] = GOAL_RGB

    return NetworkInput(points, build_state(obs["agent"], obs["extra"], origin, rotation), int(keep.size))
