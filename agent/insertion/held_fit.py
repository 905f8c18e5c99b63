"""Fitting the pose of the object in the hand from the camera points (the insertion add-on's held-object fit;
PlugCharger's charger).

The charger's base is a known box (`HELD_BOXES`). Starting from an estimate of its pose in the TCP frame, `fit`
selects the points near the box (between the fingers: farther out lie the fingers themselves; on the base's side of
the pin roots: ahead lie the pins and, when lining up, the receptacle) and fits the box to them by point-to-plane
ICP, in narrowing selections (`MARGINS`), each until a step moves the box by less than `CONVERGED` (at most
`ITERATIONS` steps). Only the faces the cameras can see are matched: the face the object rested on (its -z face)
never faces a camera, and excluding it stops the top face's points fitting a box flipped below them. `held_fit`
keeps the previous fit's pose as it is while it still places nearly all its selected points on the box (the object
has not moved in the hand: `HOLD_SHARE` within `HOLD_DISTANCE`); else it fits from that pose (in the narrowest
selection only while the object moved little: `WARM_SHARE`) and, unless the result still explains the points (most
of its selection, or about as many as the previous fit), also from the nominal grasp, keeping the fit that explains
more. `HeldTracker` does so on every observation of an episode and adds the pose to it (`extra.held_in_tcp`), from
which preprocessing gives the policy the object's pose in the slot frame it read
(`agent.preprocessing.held_in_slot`). It looks at every `POINT_STRIDE`-th camera point only, hands the fit only
those around the boxes a fit may start from (`CROP`), and a fit steps on a thinned sample of them
(`MAX_FIT_POINTS`): it runs on every observation. Pure numpy (Python 3.8).
"""
from typing import Any, Dict, List, NamedTuple, Optional, Tuple

import numpy as np

from agent.geometry import quaternion_to_matrix, rotation_vector_to_matrix, to_frame
from agent.preprocessing import HELD_KEY, HELD_SIZE, kept_points

FINGER_HALF_WIDTH = 0.012  # m, half the finger's width along the TCP's x axis (the pad is ~2 cm wide)
MARGINS = (0.01, 0.005, 0.003)  # m, around the current box estimate: the points selected for each fit
WARM_MARGINS = MARGINS[-1:]  # m: the selections of a fit from the previous pose while the object moved little
# (`WARM_SHARE`): the narrowest only
ITERATIONS = 2  # at most this many ICP steps per selection
CONVERGED = (2e-5, 2e-4)  # m, rad: an ICP step that moves the box less than both ends its selection's steps
MAX_FIT_POINTS = 1000  # the selected points are thinned to about this many for the ICP steps (speed)
CROP = 0.06  # m from the starting box's centre: the points a fit looks at (the box's half diagonal is 2.8 cm; the
# widest selection reaches 1 cm beyond it; the rest is slack for the box moving while it is fitted)
CROP_SLACK = 0.001  # m: the tracker keeps the points within CROP plus this of a starting box (in float32 world
# coordinates), a superset of those each fit keeps (`HeldTracker.candidates`)
INLIER_DISTANCE = 0.001  # m from the box's faces: a point the fit explains
FINGER_MARGIN = 0.001  # m inside the finger pads from where on points count as the fingers
POINT_STRIDE = 3  # the tracker fits every third camera point, in the cloud's order: an even thinning of each camera's
# pixel grid (its rows are 128 pixels long, so each row's share starts one pixel later)
MIN_POINTS = 70  # fewer explained (thinned) points: no pose (None)
REACH = 0.1  # m from the TCP within which camera points can be on a held object (the rest is never fitted)
SETTLED_SHARE = 0.9  # share of its selected points the previous pose explains, from which on it is kept
# without also fitting from the nominal grasp (the object has not moved in the hand)
MIN_UPRIGHT = 0.7  # least |cos| between the object's z axis and the TCP's: it lay flat and is grasped from above; a
# box fitted on its side (90 degrees about x: the base's cross-section is nearly square) is the fit's one ambiguity
HOLD_DISTANCE = 0.0001  # m from the box's faces: a point the previous pose still places exactly (a fitted pose
# places ~99.8 % of its points so; the simulator's points have no noise)
HOLD_SHARE = 0.99  # share of its selected points the previous pose places within HOLD_DISTANCE, from which on it is
# kept as it is, without fitting (the object has not moved in the hand: within ~0.005 rad and 0.1 mm)
WARM_SHARE = 0.1  # share of its selected points the previous pose places within HOLD_DISTANCE, from which on the
# object moved little in the hand (well under a millimetre) and a fit from that pose selects `WARM_MARGINS` only;
# below it (as when the fingers close) the fit takes all `MARGINS`: the charger's length (x) is seen on few points
# and needs the wide selections to catch up
TRACKED_SHARE = 0.9  # share of the last kept fit's explained points from which on the fit from the previous pose
# is kept without also fitting from the nominal grasp (it explains the object as well as it did)


class HeldBox(NamedTuple):
    """A held object's box (its frame) and the grasp the policy is expected to hold it in."""
    center: Tuple[float, float, float]  # m, of the box in the object's frame
    half_size: Tuple[float, float, float]  # m
    max_x: float  # m, object-frame x beyond which points belong to something else (the pins, the slot)
    nominal: Tuple[float, ...]  # the object's pose in the TCP frame at an expert's grasp: position (m)
    # and rotation vector (rad)


HELD_BOXES = {  # the charger's base (ManiSkill2 PlugChargerEnv: half size 2 x 1.5 x 1.2 cm behind the pin roots)
    "PlugCharger-v0": HeldBox((-0.02, 0.0, 0.0), (0.02, 0.015, 0.012), 0.001,
                              (0.0335, 0.0001, 0.0061, -3.1307, -0.0097, -0.302)),
}


def nominal_pose(box: HeldBox) -> np.ndarray:
    """The 4x4 pose of the object in the TCP frame at the expert's grasp."""
    pose = np.eye(4)
    pose[:3, :3] = rotation_vector_to_matrix(box.nominal[3:])
    pose[:3, 3] = box.nominal[:3]
    return pose


VISIBLE_FACES = [(axis, sign) for axis in range(3) for sign in (1.0, -1.0) if (axis, sign) != (2, -1.0)]  # all
# but the face the object rested on (-z): no camera sees it
FACE_AXES = np.array([axis for axis, _ in VISIBLE_FACES])
FACE_SIGNS = np.array([sign for _, sign in VISIBLE_FACES])
FACES = np.arange(len(VISIBLE_FACES))


def closest_on_faces(local: np.ndarray, box: HeldBox) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For points in the object's frame (N, 3): the closest point on the box's visible faces (`VISIBLE_FACES`),
    that face's outward normal, and the distance (m); of equally close faces the first."""
    half = np.asarray(box.half_size)
    offset = local - np.asarray(box.center)
    clipped = np.minimum(np.maximum(offset, -half), half)  # the closest point of the solid box (np.clip, cheaper)
    terms = np.repeat(((offset - clipped) ** 2)[:, None, :], len(VISIBLE_FACES), axis=1)  # (N, faces, 3)
    terms[:, FACES, FACE_AXES] = (offset[:, FACE_AXES] - FACE_SIGNS * half[FACE_AXES]) ** 2  # the gap to the plane
    squared = terms[:, :, 0] + terms[:, :, 1] + terms[:, :, 2]  # summed in axis order: equal distances stay equal
    face = np.argmin(squared, axis=1)
    rows, axes = np.arange(len(local)), FACE_AXES[face]
    clipped[rows, axes] = FACE_SIGNS[face] * half[axes]
    normals = np.zeros_like(local)
    normals[rows, axes] = FACE_SIGNS[face]
    return clipped + np.asarray(box.center), normals, np.sqrt(squared[rows, face])


def in_object_frame(points: np.ndarray, pose: np.ndarray) -> np.ndarray:
    """Points (N, 3) of the TCP frame expressed in the object's frame at `pose` (4x4, object in TCP)."""
    return to_frame(points, pose[:3, 3], pose[:3, :3])


def off_the_fingers(points: np.ndarray, fingers: Tuple[float, float]) -> np.ndarray:
    """Mask of the TCP-frame points that are not on the finger pads: between them or beside them (`fingers`: the
    Panda's finger joint positions, m: the left pad's TCP y, minus the right's)."""
    between = (points[:, 1] < fingers[0] - FINGER_MARGIN) & (points[:, 1] > FINGER_MARGIN - fingers[1])
    return between | (np.abs(points[:, 0]) > FINGER_HALF_WIDTH)  # beside: beyond the pads' width, the box's sides


def select(points: np.ndarray, pose: np.ndarray, box: HeldBox, margin: float) -> np.ndarray:
    """Mask of the TCP-frame points (off the fingers: `off_the_fingers`) within `margin` of the box at `pose` and
    short of `max_x`."""
    local = in_object_frame(points, pose) - np.asarray(box.center)
    inside = np.abs(local) < np.asarray(box.half_size) + margin
    return inside[:, 0] & inside[:, 1] & inside[:, 2] & (local[:, 0] + box.center[0] < box.max_x)


def cross_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cross products of (N, 3) arrays: `np.cross`'s arithmetic without its per-call overhead."""
    return np.column_stack([a[:, 1] * b[:, 2] - a[:, 2] * b[:, 1], a[:, 2] * b[:, 0] - a[:, 0] * b[:, 2],
                            a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]])


def icp_step(points: np.ndarray, pose: np.ndarray, box: HeldBox) -> Tuple[np.ndarray, float, float]:
    """One linearised point-to-plane step: the pose (4x4) that moves the box onto `points` (TCP frame), and how far
    the step moved it (m, rad)."""
    local = in_object_frame(points, pose)
    closest, normals, _ = closest_on_faces(local, box)
    rows = np.hstack([cross_rows(local, normals), normals])
    residuals = -np.einsum("ij,ij->i", normals, local - closest)
    solution = np.linalg.lstsq(rows.T @ rows, rows.T @ residuals, rcond=None)[0]  # the normal equations: 6x6
    rotation = rotation_vector_to_matrix(solution[:3])  # with solution[3:], the rigid map of the object frame onto
    inverse = np.eye(4)  # the points' better match, applied to the points' side: its inverse (R^T, -R^T t)
    inverse[:3, :3] = rotation.T
    inverse[:3, 3] = -rotation.T @ solution[3:]
    return pose @ inverse, float(np.linalg.norm(solution[3:])), float(np.linalg.norm(solution[:3]))


class Fit(NamedTuple):
    pose: np.ndarray  # 4x4, the object in the TCP frame
    explained: int  # selected points within `INLIER_DISTANCE` of its visible faces
    selected: int  # points selected around it


def fit(points: np.ndarray, initial: np.ndarray, box: HeldBox, fingers: Tuple[float, float],
        margins: Tuple[float, ...] = MARGINS) -> Fit:
    """The box fitted to `points` (TCP frame) from the pose `initial`, in the selections of `margins`; a fit on its
    side (`MIN_UPRIGHT`) explains nothing."""
    pose = initial
    offset = points - (initial[:3, :3] @ np.asarray(box.center) + initial[:3, 3])
    points = points[(np.einsum("ij,ij->i", offset, offset) < CROP ** 2) & off_the_fingers(points, fingers)]
    for margin in margins:
        chosen = points[select(points, pose, box, margin)]
        if len(chosen) < MIN_POINTS:
            return Fit(pose, 0, len(chosen))
        chosen = chosen[:: -(-len(chosen) // MAX_FIT_POINTS)]
        for _ in range(ITERATIONS):
            pose, moved, turned = icp_step(chosen, pose, box)
            if moved < CONVERGED[0] and turned < CONVERGED[1]:
                break
    result = counted(points, pose, box)[0]
    return result._replace(explained=0) if abs(pose[2, 2]) < MIN_UPRIGHT else result


def counted(points: np.ndarray, pose: np.ndarray, box: HeldBox) -> Tuple[Fit, float]:
    """The box at `pose` scored on `points` (TCP frame, off the fingers): its narrowest selection (`MARGINS`) and
    the points of it that the box explains; and the share of them within `HOLD_DISTANCE` of its faces."""
    chosen = points[select(points, pose, box, MARGINS[-1])]
    distances = closest_on_faces(in_object_frame(chosen, pose), box)[2]
    close = float(np.mean(distances < HOLD_DISTANCE)) if len(chosen) else 0.0
    return Fit(pose, int(np.sum(distances < INLIER_DISTANCE)), len(chosen)), close


def held_fit(points: np.ndarray, box: HeldBox, fingers: Tuple[float, float], previous: Optional[Fit] = None
             ) -> Optional[Fit]:
    """The held object's fit in the TCP frame to camera points (TCP frame, (N, 3)): the `previous` fit's pose
    unchanged while it places `HOLD_SHARE` of its selected points within `HOLD_DISTANCE` and explains
    `TRACKED_SHARE` as many as before (`counted`: the object has not moved in the hand); else fitted from the
    previous pose (in `WARM_MARGINS` only while it places `WARM_SHARE` of its points within `HOLD_DISTANCE`) if that
    then explains `SETTLED_SHARE` of its points or `TRACKED_SHARE` as many as the previous fit did, else from it and
    from the nominal grasp, whichever explains more; None below `MIN_POINTS` (nothing held, or too little of it
    seen)."""
    if previous is not None:
        held, close = counted(points[off_the_fingers(points, fingers)], previous.pose, box)
        if close >= HOLD_SHARE and held.explained >= max(MIN_POINTS, TRACKED_SHARE * previous.explained):
            return held
    fits = [] if previous is None else [fit(points, previous.pose, box, fingers,
                                            WARM_MARGINS if close >= WARM_SHARE else MARGINS)]
    if not fits or fits[0].explained < max(MIN_POINTS, min(SETTLED_SHARE * fits[0].selected,
                                                           TRACKED_SHARE * previous.explained)):
        fits.append(fit(points, nominal_pose(box), box, fingers))
    best = max(fits, key=lambda result: result.explained)
    return best if best.explained >= MIN_POINTS else None


def held_entry(pose: Optional[np.ndarray]) -> np.ndarray:
    """`extra.held_in_tcp`: the pose's position (m) and the first two columns of its rotation; zeros: none."""
    return np.zeros(HELD_SIZE) if pose is None else np.concatenate([pose[:3, 3], pose[:3, 0], pose[:3, 1]])


class HeldTracker:
    """Fits a task's held object (`box`) on every observation of an episode, warm-started from the last
    pose, and adds it to the observation (`HELD_KEY`); `reset()` at every episode start."""

    def __init__(self, box: HeldBox) -> None:
        self.box = box
        self.nominal = nominal_pose(box)
        self.reset()

    def reset(self) -> None:
        self.last: Optional[Fit] = None

    @property
    def pose(self) -> Optional[np.ndarray]:
        """The held object's pose in the TCP frame (4x4) at the last observation; None: none found."""
        return None if self.last is None else self.last.pose

    def starts(self) -> List[np.ndarray]:
        """The poses (4x4, in the TCP frame) the next fit may start from: the last fit's and the nominal grasp."""
        return ([] if self.last is None else [self.last.pose]) + [self.nominal]

    def track(self, observation: Dict[str, Any]) -> Dict[str, Any]:
        """A shallow copy of `observation` whose `extra` carries the held object's pose (zeros: none)."""
        tcp = np.asarray(observation["extra"]["tcp_pose"], dtype=np.float64)
        fingers = np.asarray(observation["agent"]["qpos"], dtype=np.float64)[-2:]
        xyzw = np.asarray(observation["pointcloud"]["xyzw"])[::POINT_STRIDE]
        if np.isfinite(tcp).all() and np.isfinite(fingers).all():
            rotation = quaternion_to_matrix(tcp[3:])
            points = self.candidates(xyzw, tcp[:3], rotation)
            self.last = held_fit(points, self.box, (float(fingers[0]), float(fingers[1])), self.last)
        else:
            self.last = None
        return dict(observation, extra=dict(observation["extra"], **{HELD_KEY: held_entry(self.pose)}))

    def candidates(self, xyzw: np.ndarray, tcp: np.ndarray, rotation: np.ndarray) -> np.ndarray:
        """The camera points (TCP frame) `held_fit` may use: kept (`kept_points`), within `REACH` of the TCP and
        within `CROP` (plus `CROP_SLACK`) of a box at a pose a fit may start from (`starts`): a fit looks at no
        other point, so its result is that on all the points within reach."""
        starts = np.stack(self.starts())
        centres = tcp + (starts[:, :3, :3] @ np.asarray(self.box.center) + starts[:, :3, 3]) @ rotation.T
        radius = CROP + CROP_SLACK
        reach = REACH + CROP_SLACK  # (float32 coordinates are cut against float32-rounded bounds)
        low = np.maximum(centres.min(axis=0) - radius, tcp - reach)  # cheap first cuts: the box around the starting
        high = np.minimum(centres.max(axis=0) + radius, tcp + reach)  # boxes' crops, within reach of the TCP
        z = xyzw[:, 2]
        level = xyzw[(z > low[2]) & (z < high[2])]
        x, y = level[:, 0], level[:, 1]
        level = level[(x > low[0]) & (x < high[0]) & (y > low[1]) & (y < high[1])]
        offset = level[:, :3] - tcp  # (NaN or infinite points are never within reach)
        near = (np.einsum("ij,ij->i", offset, offset) < REACH ** 2) & kept_points(level)
        cropped = np.zeros(len(level), dtype=bool)
        for centre in centres:
            gap = level[:, :3] - centre
            cropped |= np.einsum("ij,ij->i", gap, gap) < radius ** 2
        return to_frame(level[near & cropped, :3].astype(np.float64), tcp, rotation)
