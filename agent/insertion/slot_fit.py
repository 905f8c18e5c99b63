"""Refining a slot reading on the slot's known front face (the insertion add-on's face fit; PlugCharger's receptacle).

The receptacle's front face is a known vertical rectangle (10 x 10 cm, its centre at a fixed height), and the look
view holds thousands of exact points on it. Starting from the reader's estimate, `refine` selects the points near
the face's plane, fits that plane (a line in the horizontal plane: the slot's axis and its position along it) and
centres the face between its two side edges (the extreme points on it and on the top face behind it); it repeats
in narrowing bands (`BANDS`). Pure numpy (Python 3.8).
"""
from typing import Any, Dict, NamedTuple, Optional, Tuple

import numpy as np

from agent.geometry import slot_rotation
from agent.insertion.slot_memory import slot_from_reading
from agent.preprocessing import kept_points

BANDS = (0.02, 0.005, 0.001, 0.0005)  # m, half-widths around the current plane, one fit each
EDGE_MARGIN = 0.002  # m kept from the face's top and bottom edges (the top face meets it there)
LATERAL_SLACK = 0.01  # m beyond the face's half width where points still count (an estimate off by that)
MIN_FACE_POINTS = 200  # fewer points near the plane: no refinement (the reader's estimate stands)


class SlotFace(NamedTuple):
    """A slot's front face: a vertical rectangle through the slot frame's origin, normal to its x axis."""
    half_width: float  # m, along the slot's y axis
    half_height: float  # m, along z
    height: float  # m, world z of its centre, which is the slot frame's origin
    depth: float  # m, of the slot's top face behind the front face (its side edges continue the front's)


def near_face(local: np.ndarray, face: SlotFace, band: float) -> Tuple[np.ndarray, np.ndarray]:
    """Masks of the points (slot frame, (N, 3)) within `band` of the front face's plane, within its height
    (less `EDGE_MARGIN`), and of those within `band` of the top face's plane; both within the faces' width
    (plus `LATERAL_SLACK`)."""
    wide = np.abs(local[:, 1]) < face.half_width + LATERAL_SLACK
    front = wide & (np.abs(local[:, 0]) < band) & (np.abs(local[:, 2]) < face.half_height - EDGE_MARGIN)
    top = (wide & (np.abs(local[:, 2] - face.half_height) < band) & (local[:, 0] > -band)
           & (local[:, 0] < face.depth + band))
    return front, top


def refine(xyz: np.ndarray, position: np.ndarray, axis: np.ndarray, face: SlotFace
           ) -> Optional[Tuple[np.ndarray, np.ndarray]]:
    """The slot's (world origin, x axis) fitted to the face in world points `xyz` (N, 3), starting from
    the estimate (`position`, `axis`); None where too few points lie near the face."""
    position, axis = np.array(position, np.float64), np.asarray(axis, np.float64)
    position[2] = face.height  # known: only the slot's horizontal place and heading vary
    xyz = np.asarray(xyz, np.float64)
    for band in BANDS:
        rotation = slot_rotation(axis)
        local = (xyz - position) @ rotation
        front, top = near_face(local, face, band)
        if front.sum() < MIN_FACE_POINTS:
            return None
        horizontal = local[front, :2] - local[front, :2].mean(axis=0)
        along_face = np.linalg.svd(horizontal, full_matrices=False)[2][0]  # (x, y) in the slot frame
        normal = np.array([along_face[1], -along_face[0]])
        normal *= np.sign(normal[0]) or 1.0  # along the insertion, as the estimate's axis
        lateral = local[front | top, 1]
        centre = np.array([local[front, 0].mean(), 0.5 * (lateral.min() + lateral.max()), 0.0])
        position = position + rotation @ centre
        axis = rotation @ np.array([normal[0], normal[1], 0.0])
    return position, axis / np.linalg.norm(axis)


SLOT_FACES: Dict[str, SlotFace] = {
    # mani_skill2 0.5 PlugCharger: the receptacle's half size (1, 5, 5) cm, its centre at z = 0.1 m; the
    # charger enters its face at the receptacle's (and the slot frame's) origin
    "PlugCharger-v0": SlotFace(half_width=0.05, half_height=0.05, height=0.1, depth=0.02),
}


def refined_reading(reading: np.ndarray, observation: Dict[str, Any], face: SlotFace) -> np.ndarray:
    """A slot reading (`agent.insertion.slot_memory`) refined by `refine` on the observation's valid points; the
    reading unchanged where it is not finite or the face has too few points."""
    reading = np.asarray(reading, np.float64)
    tcp = np.asarray(observation["extra"]["tcp_pose"], np.float64)
    if not (np.isfinite(reading).all() and np.isfinite(tcp).all()):
        return reading
    xyzw = np.asarray(observation["pointcloud"]["xyzw"], np.float64)
    # the points the network may see; a non-finite one that passes falls outside every band of `refine`
    fitted = refine(xyzw[kept_points(xyzw), :3], *slot_from_reading(reading, tcp), face)
    if fitted is None:
        return reading
    position, axis = fitted
    yaw = np.arctan2(axis[1], axis[0])
    return np.concatenate([slot_rotation(axis).T @ (tcp[:3] - position), [0.0, 0.0, yaw]])
