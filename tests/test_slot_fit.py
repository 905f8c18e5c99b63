"""The face fit that refines PlugCharger's slot reading (agent/insertion/slot_fit.py)."""
import numpy as np
import pytest

from agent.geometry import slot_rotation
from agent.insertion.slot_fit import SLOT_FACES, SlotFace, refine, refined_reading
from agent.insertion.slot_memory import slot_from_reading

FACE = SlotFace(half_width=0.05, half_height=0.05, height=0.1, depth=0.02)


def turned(axis: np.ndarray, yaw: float) -> np.ndarray:
    """`axis` turned by `yaw` about the vertical."""
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([c * axis[0] - s * axis[1], s * axis[0] + c * axis[1], 0.0])


def slot_points(position: np.ndarray, axis: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """World points on the front face (a grid reaching its edges) and top face of a slot, with clutter
    in front of it (an arm) and below it (a table)."""
    y, z = np.meshgrid(np.linspace(-0.05, 0.05, 81), np.linspace(-0.05, 0.05, 81))
    front = np.stack([np.zeros(y.size), y.ravel(), z.ravel()], axis=1)
    x, y = np.meshgrid(np.linspace(0.0, 0.02, 11), np.linspace(-0.05, 0.05, 81))
    top = np.stack([x.ravel(), y.ravel(), np.full(x.size, 0.05)], axis=1)
    arm = rng.uniform([-0.12, -0.03, -0.02], [-0.04, 0.03, 0.08], size=(500, 3))
    table = np.column_stack([rng.uniform(-0.2, 0.2, (500, 2)), np.full(500, -0.1)])
    local = np.concatenate([front, top, arm, table])
    return position + local @ slot_rotation(axis).T


def test_refine_finds_the_slot_from_an_estimate_millimetres_and_degrees_off() -> None:
    rng = np.random.default_rng(0)
    position, axis = np.array([0.06, -0.03, FACE.height]), turned(np.array([1.0, 0.0, 0.0]), 0.3)
    points = slot_points(position, axis, rng)
    guess = position + slot_rotation(axis) @ np.array([0.004, -0.003, 0.002])
    fitted_position, fitted_axis = refine(points, guess, turned(axis, 0.05), FACE)
    np.testing.assert_allclose(fitted_position, position, atol=1e-6)
    np.testing.assert_allclose(fitted_axis, axis, atol=1e-6)


def test_refine_gives_up_without_a_face_in_view() -> None:
    position, axis = np.array([0.06, -0.03, FACE.height]), np.array([1.0, 0.0, 0.0])
    far = slot_points(position + np.array([0.0, 0.3, 0.0]), axis, np.random.default_rng(0))
    assert refine(far, position, axis, FACE) is None


def test_refined_reading_is_a_reading_of_the_fitted_slot() -> None:
    position, axis = np.array([0.03, 0.05, FACE.height]), turned(np.array([1.0, 0.0, 0.0]), -0.2)
    points = slot_points(position, axis, np.random.default_rng(1))
    tcp = np.array([-0.05, 0.02, 0.16, 0.0, 1.0, 0.0, 0.0])
    rough = np.concatenate([slot_rotation(axis).T @ (tcp[:3] - position) + [0.002, 0.003, 0.0], [0, 0, -0.17]])
    observation = {"extra": {"tcp_pose": tcp},
                   "pointcloud": {"xyzw": np.column_stack([points, np.ones(len(points))])}}
    read_position, read_axis = slot_from_reading(refined_reading(rough, observation, FACE), tcp)
    np.testing.assert_allclose(read_position, position, atol=1e-6)
    np.testing.assert_allclose(read_axis, axis, atol=1e-6)
    nan = np.full(6, np.nan)
    assert np.isnan(refined_reading(nan, observation, FACE)).all()  # a bad reading stays bad: the memory retries


@pytest.mark.sim
def test_the_face_fit_places_plugchargers_receptacle_to_a_fraction_of_its_clearance() -> None:
    """On real look views (the official renderer), from an estimate as far off as the learned reader's."""
    from training.slot_reader.views import collect_views

    rng = np.random.default_rng(0)
    views = collect_views("PlugCharger-v0", [70000, 70001, 70002], look=(0.1, 0.9, 0.02), fast_render=False)
    assert views
    for _, observation, target in views:
        position, axis = slot_from_reading(target, observation["extra"]["tcp_pose"])
        guess = position + slot_rotation(axis) @ np.array([*rng.normal(0, 0.002, 2), 0.0])
        fitted = refine(observation["pointcloud"]["xyzw"][:, :3], guess, turned(axis, rng.normal(0, 0.04)),
                        SLOT_FACES["PlugCharger-v0"])
        offset = slot_rotation(axis).T @ (fitted[0] - position)
        assert abs(offset[1]) < 0.0004 and abs(offset[0]) < 0.0001  # the pins leave 0.5 mm on each side
        assert np.degrees(np.arccos(min(1.0, fitted[1] @ axis))) < 0.05
