"""Rotations and frames: quaternions, rotation vectors, positions expressed in a frame, and the slot frame of
the insertion tasks. Pure numpy (Python 3.8)."""
from typing import Any, Tuple

import numpy as np


def quaternion_to_matrix(q: np.ndarray) -> np.ndarray:
    """Rotation matrix of a unit quaternion in SAPIEN's (w, x, y, z) order."""
    w, x, y, z = np.asarray(q, dtype=np.float64) / np.linalg.norm(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ])


def rotation_vector_to_matrix(vector: np.ndarray) -> np.ndarray:
    """Rotation matrix of an axis x angle vector (Rodrigues)."""
    vector = np.asarray(vector, dtype=np.float64)
    angle = float(np.linalg.norm(vector))
    if angle < 1e-12:
        return np.eye(3)
    x, y, z = vector / angle
    cross = np.array([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]])
    return np.eye(3) + np.sin(angle) * cross + (1 - np.cos(angle)) * cross @ cross


def to_frame(xyz: Any, origin: np.ndarray, rotation: np.ndarray) -> np.ndarray:
    """World positions (..., 3) expressed in the frame at `origin` with axes `rotation`: R^T (x - p)."""
    return (np.asarray(xyz) - origin) @ rotation


def cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The cross product of two 3-vectors: `np.cross`'s arithmetic, without its per-call overhead (per observation)."""
    return np.array([a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]])


def slot_rotation(axis: np.ndarray) -> np.ndarray:
    """The slot frame's world rotation: x along the horizontal insertion `axis`, y horizontal (left of
    it), z up (the slots here stand upright)."""
    axis = np.asarray(axis, dtype=np.float64)
    left = cross(np.array([0.0, 0.0, 1.0]), axis)
    left /= np.linalg.norm(left)
    return np.stack([axis, left, cross(axis, left)], axis=1)


def pose_in_slot(slot_position: Any, slot_axis: Any, position: np.ndarray, columns: np.ndarray
                 ) -> Tuple[np.ndarray, np.ndarray]:
    """A pose (world `position`, the first two `columns` of its world rotation, (3, 2)) in the slot frame at
    `slot_position` with x axis `slot_axis` (`slot_rotation`): its position and the two columns there."""
    slot = slot_rotation(np.asarray(slot_axis, dtype=np.float64))
    return slot.T @ (position - np.asarray(slot_position, dtype=np.float64)), slot.T @ columns
