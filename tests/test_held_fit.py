"""The fit of the object in the hand (agent/insertion/held_fit.py) and the state it gives a looking policy."""
from pathlib import Path

import numpy as np
import pytest

from agent.geometry import rotation_vector_to_matrix
from agent.insertion.held_fit import (HELD_BOXES, HeldTracker, closest_on_faces, held_entry, held_fit, icp_step,
                                      nominal_pose)
from agent.preprocessing import HELD_IN_SLOT_SIZE, HELD_KEY, LINE_UP_CLIP, build_state, held_in_slot

BOX = HELD_BOXES["PlugCharger-v0"]
FINGERS = (0.015, 0.015)  # closed on the charger's 3 cm


def pose(position, rotation_vector) -> np.ndarray:
    matrix = np.eye(4)
    matrix[:3, :3] = rotation_vector_to_matrix(rotation_vector)
    matrix[:3, 3] = position
    return matrix


def face_grid(axis: int, sign: float, step: float = 0.001) -> np.ndarray:
    """Object-frame points on one face of the charger's base box."""
    center, half = np.asarray(BOX.center), np.asarray(BOX.half_size)
    others = [a for a in range(3) if a != axis]
    u, v = np.meshgrid(*(np.arange(-half[a], half[a] + 1e-9, step) for a in others))
    points = np.zeros((u.size, 3))
    points[:, others[0]], points[:, others[1]] = u.ravel(), v.ravel()
    points[:, axis] = sign * half[axis]
    return points + center


def seen_points(held: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """TCP-frame points as the cameras see a held charger: its top (+z) and front/back (x) faces, its pins,
    the finger pads beside it, and clutter well away."""
    faces = np.concatenate([face_grid(2, 1.0), face_grid(0, 1.0), face_grid(0, -1.0)])
    pins = rng.uniform([0.0, -0.008, -0.003], [0.016, 0.008, 0.003], (200, 3))
    local = np.concatenate([faces, pins])
    points = local @ held[:3, :3].T + held[:3, 3]
    pads = np.column_stack([rng.uniform(-0.009, 0.009, 400), np.repeat([0.0152, -0.0152], 200),
                            rng.uniform(-0.03, 0.0, 400)])
    clutter = rng.uniform(-0.3, 0.3, (300, 3)) + [0.0, 0.0, 0.4]
    return np.concatenate([points, pads, clutter])


@pytest.mark.parametrize("offset", [(0.0, 0.0, 0.0, 0.0, 0.0, 0.0),
                                    (0.006, 0.0, 0.004, 0.0, 0.0, 0.15),  # a grasp 6 mm along, 4 mm deeper, yawed
                                    (-0.005, 0.001, -0.003, 0.05, -0.04, -0.1)])
def test_the_fit_finds_the_held_box_from_the_nominal_grasp(offset) -> None:
    held = nominal_pose(BOX) @ pose(offset[:3], offset[3:])
    fitted = held_fit(seen_points(held, np.random.default_rng(0)), BOX, FINGERS).pose
    error = np.linalg.inv(held) @ fitted
    np.testing.assert_allclose(error[:3, 3], 0.0, atol=5e-5)
    np.testing.assert_allclose(error[:3, :3], np.eye(3), atol=1e-3)


def test_no_pose_without_the_object_and_the_tracker_gives_zeros() -> None:
    far = np.random.default_rng(0).uniform(-0.3, 0.3, (2000, 3)) + [0.0, 0.0, 0.5]
    assert held_fit(far, BOX, FINGERS) is None
    observation = {"extra": {"tcp_pose": np.array([0.0, 0.0, 0.5, 0.0, 1.0, 0.0, 0.0])},
                   "agent": {"qpos": np.zeros(9)},
                   "pointcloud": {"xyzw": np.column_stack([far, np.ones(len(far))])}}
    tracked = HeldTracker(BOX).track(observation)
    assert not np.any(tracked["extra"][HELD_KEY]) and HELD_KEY not in observation["extra"]


def test_a_box_fitted_on_its_side_explains_nothing(monkeypatch) -> None:
    """The base's 3 x 2.4 cm cross-section is nearly square: a box rolled 90 degrees about the pins fits points of a
    charger so rolled, but a charger grasped from above off the table never lies so (`MIN_UPRIGHT`)."""
    from agent.insertion import held_fit as module

    on_its_side = nominal_pose(BOX) @ pose((0.0, 0.0, 0.0), (np.pi / 2, 0.0, 0.0))
    points = seen_points(on_its_side, np.random.default_rng(0))
    assert module.fit(points, on_its_side, BOX, FINGERS).explained == 0
    monkeypatch.setattr(module, "MIN_UPRIGHT", 0.0)
    assert module.fit(points, on_its_side, BOX, FINGERS).explained > module.MIN_POINTS  # the fit itself is good


def test_a_fit_from_the_true_pose_takes_one_icp_step_per_selection(monkeypatch) -> None:
    from agent.insertion import held_fit as module

    held = nominal_pose(BOX) @ pose((0.004, 0.0, 0.002), (0.0, 0.0, 0.1))
    points = seen_points(held, np.random.default_rng(0))
    steps = []
    step = module.icp_step
    monkeypatch.setattr(module, "icp_step", lambda *args: steps.append(1) or step(*args))
    found = module.fit(points, held, BOX, FINGERS)
    assert len(steps) == len(module.MARGINS)  # each selection's first step already moves it less than CONVERGED
    np.testing.assert_allclose(found.pose, held, atol=1e-4)
    steps.clear()
    module.fit(points, nominal_pose(BOX), BOX, FINGERS)  # 4 mm and 0.1 rad off: more steps
    assert len(steps) > len(module.MARGINS)


def fitted_then_watched(monkeypatch) -> tuple:
    """Points of a charger held off the nominal grasp, its first fit, and the list to which every later `fit` call
    appends its starting pose."""
    from agent.insertion import held_fit as module

    points = seen_points(nominal_pose(BOX) @ pose((0.004, 0.0, 0.002), (0.0, 0.0, 0.1)), np.random.default_rng(0))
    first = module.held_fit(points, BOX, FINGERS)
    starts: list = []
    fit = module.fit
    monkeypatch.setattr(module, "fit", lambda points, initial, *rest: starts.append(initial) or fit(points, initial,
                                                                                                    *rest))
    return points, first, starts


def test_a_fit_that_explains_as_many_points_as_before_is_kept_without_refitting_from_the_grasp(monkeypatch) -> None:
    from agent.insertion import held_fit as module

    monkeypatch.setattr(module, "SETTLED_SHARE", 1.01)  # never settled by the share of its selection alone
    monkeypatch.setattr(module, "HOLD_SHARE", 1.01)  # and never held as it is
    points, first, starts = fitted_then_watched(monkeypatch)
    again = module.held_fit(points, BOX, FINGERS, first)
    assert len(starts) == 1 and starts[0] is first.pose  # only from the previous pose
    np.testing.assert_allclose(again.pose, first.pose, atol=1e-4)
    module.held_fit(points, BOX, FINGERS, first._replace(explained=2 * first.explained))  # it explained more before
    assert len(starts) == 3 and np.array_equal(starts[2], nominal_pose(BOX))  # so it fits from the grasp too


def test_a_pose_that_still_explains_the_points_is_held_without_fitting_and_a_moved_object_is_refitted(
        monkeypatch) -> None:
    from agent.insertion import held_fit as module

    points, first, starts = fitted_then_watched(monkeypatch)
    again = module.held_fit(points, BOX, FINGERS, first)
    assert not starts and again.pose is first.pose and again.explained == first.explained
    slipped = nominal_pose(BOX) @ pose((0.006, 0.0, 0.002), (0.0, 0.0, 0.13))  # 2 mm along, 0.03 rad turned
    moved = module.held_fit(seen_points(slipped, np.random.default_rng(1)), BOX, FINGERS, first)
    assert len(starts) == 1 and starts[0] is first.pose  # fitted from the previous pose
    np.testing.assert_allclose(moved.pose[:3, 3], slipped[:3, 3], atol=1e-4)


def test_the_tracker_fits_as_on_every_strideth_point_within_reach() -> None:
    """The tracker looks at every `POINT_STRIDE`-th camera point and hands the fit only those near a box it may start
    from (`HeldTracker.candidates`): the poses are those fitted on all those points within reach, here over a grasp
    and a slipped grasp after it."""
    from agent.geometry import quaternion_to_matrix
    from agent.insertion.held_fit import POINT_STRIDE, REACH

    rng = np.random.default_rng(3)
    tcp = np.array([0.05, -0.02, 0.2, 0.0, 0.92388, 0.38268, 0.0])  # pointing down, turned 45 degrees
    rotation = quaternion_to_matrix(tcp[3:])
    tracker, previous = HeldTracker(BOX), None
    for offset in [(0.003, 0.0, 0.001, 0.0, 0.0, 0.05), (0.006, 0.001, 0.003, 0.02, 0.0, 0.12)]:
        local = seen_points(nominal_pose(BOX) @ pose(offset[:3], offset[3:]), rng)
        local = np.concatenate([local, rng.uniform(-0.09, 0.09, (3000, 3))])  # within reach, mostly beyond the box
        world = (local @ rotation.T + tcp[:3]).astype(np.float32)
        observation = {"extra": {"tcp_pose": tcp}, "agent": {"qpos": np.r_[np.zeros(7), FINGERS]},
                       "pointcloud": {"xyzw": np.column_stack([world, np.ones(len(world), np.float32)])}}
        entry = tracker.track(observation)["extra"][HELD_KEY]
        seen = world[::POINT_STRIDE]
        reach = (seen[np.linalg.norm(seen - tcp[:3], axis=1) < REACH] - tcp[:3]) @ rotation
        previous = held_fit(reach, BOX, FINGERS, previous)
        assert len(tracker.candidates(observation["pointcloud"]["xyzw"][::POINT_STRIDE], tcp[:3], rotation)) < (
            0.8 * len(reach))
        np.testing.assert_allclose(entry, held_entry(previous.pose), rtol=0, atol=1e-12)


def test_the_state_gives_the_held_object_in_the_slot_frame_before_the_tcp_pose() -> None:
    tcp = np.array([0.1, -0.05, 0.12, 0.0, 1.0, 0.0, 0.0])  # pointing down
    held = nominal_pose(BOX)
    slot_position, slot_axis = np.array([0.3, 0.0, 0.1]), np.array([0.0, 1.0, 0.0])
    extra = {"tcp_pose": tcp, "goal_pos": slot_position, "goal_axis": slot_axis, HELD_KEY: held_entry(held)}
    entries = held_in_slot(extra)
    tcp_rotation = rotation_vector_to_matrix([np.pi, 0.0, 0.0])
    world = tcp[:3] + tcp_rotation @ held[:3, 3]
    slot = np.stack([slot_axis, [-1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], axis=1)  # agent.geometry.slot_rotation
    np.testing.assert_allclose(entries[:3], np.clip(slot.T @ (world - slot_position), -0.1, 0.1) * 100, atol=1e-9)
    np.testing.assert_allclose(entries[3:6], slot.T @ tcp_rotation @ held[:3, 0], atol=1e-9)
    agent = {"qpos": np.zeros(9), "qvel": np.zeros(9), "base_pose": np.zeros(7)}
    state = build_state(agent, extra, np.zeros(3), np.eye(3))
    np.testing.assert_allclose(state[-7 - HELD_IN_SLOT_SIZE:-7], entries, atol=1e-6)
    assert not np.any(held_in_slot(dict(extra, **{HELD_KEY: held_entry(None)})))  # no fit: zeros


@pytest.mark.parametrize("offset_mm, angle", [(0.3, 0.004), (-2.0, -0.03), (12.0, 0.2)])
def test_the_fine_line_up_entries_give_the_held_objects_error_in_mm_and_hundredths_of_a_radian(
        offset_mm: float, angle: float) -> None:
    slot_position, slot_axis = np.array([0.3, 0.1, 0.1]), np.array([0.0, 1.0, 0.0])
    slot = np.stack([slot_axis, [-1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], axis=1)  # agent.geometry.slot_rotation
    tcp = np.array([0.2, 0.0, 0.2, 1.0, 0.0, 0.0, 0.0])  # world-aligned: held_in_tcp is the world pose
    turned = slot @ rotation_vector_to_matrix([0.0, 0.0, angle])  # yawed about the slot's up axis
    held = np.eye(4)
    held[:3, :3] = turned
    held[:3, 3] = slot_position + slot @ np.array([-0.01, offset_mm / 1000.0, 0.0]) - tcp[:3]
    extra = {"tcp_pose": tcp, "goal_pos": slot_position, "goal_axis": slot_axis, HELD_KEY: held_entry(held)}
    fine = held_in_slot(extra)[-6:]
    clip = lambda value: np.clip(value, -LINE_UP_CLIP, LINE_UP_CLIP)  # noqa: E731
    np.testing.assert_allclose(fine, clip([-10.0, offset_mm, 0.0, 0.0, 0.0, np.sin(angle) / 0.01]), atol=1e-9)


@pytest.mark.sim
def test_the_fit_places_the_charger_an_expert_holds_to_a_tenth_of_a_millimetre() -> None:
    """Real views (official renderer) while the expert carries the charger: every 5th held step from step 10
    on is fitted, across the pins (the charger's y and z) within 0.2 mm and its pins' axis within 0.006."""
    from training.common.envs import make_env
    from training.experts import make_expert
    from training.experts.base import tcp_pose

    env = make_env("PlugCharger-v0", obs_mode="pointcloud", control_mode="pd_ee_delta_pose", fast_render=None)
    expert, tracker, errors = make_expert("PlugCharger-v0"), HeldTracker(BOX), []
    try:
        obs, _ = env.reset(seed=3002)
        expert.reset(env)
        for step in range(60):
            fitted = tracker.track(obs)["extra"][HELD_KEY]
            if step % 5 == 0 and step >= 10 and expert.holds_target(env):
                true = (tcp_pose(env).inv() * env.unwrapped.charger.pose).to_transformation_matrix()
                across = true[:3, :3].T @ (fitted[:3] - true[:3, 3])
                errors.append((np.abs(across[1:]).max(), np.abs(fitted[3:6] - true[:3, 0]).max()))
            obs, *_ = env.step(expert.act(env))
    finally:
        env.close()
    assert len(errors) >= 5
    assert max(e[0] for e in errors) < 2e-4 and max(e[1] for e in errors) < 6e-3


def test_a_manifest_sets_held_fit_only_for_a_looking_policy(tmp_path) -> None:
    from agent.manifest import parse_entry

    raw = {"file": "PlugCharger-v0.onnx", "sha256": "0", "control_mode": "pd_ee_delta_pose", "obs_mode": "pointcloud",
           "spec": {"n_points": 1200, "channels": 6, "state_size": 58, "action_size": 7}, "held_fit": True,
           "provenance": {"command": "c", "stage": 1, "checkpoint": "x", "date": "d",
                          "success": {"rate": 0.0, "episodes": 0, "seeds": "none"}}}
    with pytest.raises(ValueError, match="held_fit needs a slot_reader"):
        parse_entry("PlugCharger-v0", raw, tmp_path)
    reader = {"file": "r.onnx", "sha256": "0", "look_step": 40,
              "spec": {"n_points": 1200, "channels": 6, "state_size": 31, "action_size": 6}}
    entry = parse_entry("PlugCharger-v0", dict(raw, slot_reader=reader), tmp_path)
    assert entry.held_fit and entry.to_json(tmp_path)["held_fit"] is True
    assert "held_fit" not in entry._replace(held_fit=False).to_json(tmp_path)  # older manifests stay as they were


@pytest.mark.sim
def test_a_held_fit_policy_sees_the_charger_in_the_slot_frame(tmp_path) -> None:
    """A looking PlugCharger policy with `held_fit` (untrained network, the shipped reader) acts in the real env;
    its state holds the held entries (64 = 49 + 15), zeros while nothing is in the hand."""
    import shutil

    from agent.manifest import write_entry
    from agent.onnx_model import register
    from agent.policy import Policy
    from test_agent_models import PROVENANCE, export_actor_critic
    from training.common.envs import make_env
    from agent.insertion.slot_reader import reader_entry

    env_id, weights = "PlugCharger-v0", tmp_path / "weights"
    weights.mkdir()
    shipped = Path(__file__).resolve().parents[1] / "weights" / "{}.slot_reader.onnx".format(env_id)
    shutil.copy(shipped, weights / shipped.name)
    export_actor_critic(weights / "{}.onnx".format(env_id), 64, 7)
    entry = register(weights, env_id, weights / "{}.onnx".format(env_id), "pd_ee_delta_pose", "pointcloud", PROVENANCE)
    write_entry(weights, entry._replace(slot_reader=reader_entry(weights / shipped.name, env_id), held_fit=True))
    env = make_env(env_id, obs_mode="pointcloud", control_mode="pd_ee_delta_pose")
    try:
        policy = Policy(env_id, env.observation_space, env.action_space, weights=weights)
        assert policy.task.held_fit and policy.insertion.tracker is not None
        obs, _ = env.reset(seed=0)
        for _ in range(3):
            state = policy.network_input(obs).state
            assert state.shape == (64,) and not np.any(state[-7 - HELD_IN_SLOT_SIZE:-7])  # no slot read yet
            obs, *_ = env.step(policy.act(obs))
    finally:
        env.close()


def test_held_fit_without_a_slot_reader_is_refused() -> None:
    from training.algorithms.distill import DistillConfig
    from training.common.vec_env import EnvWorkers

    with pytest.raises(ValueError, match="looking"):
        EnvWorkers("PlugCharger-v0", 1, held_fit=True)
    with pytest.raises(ValueError, match="looking"):
        DistillConfig("PlugCharger-v0", held_fit=True)


@pytest.mark.sim
def test_env_workers_fit_the_held_object_as_the_agent_does() -> None:
    """Training's workers give a held-fit student the agent's state (64 entries), the expert labelling it."""
    from training.common.vec_env import EnvWorkers

    reader = Path(__file__).resolve().parents[1] / "weights" / "PlugCharger-v0.slot_reader.onnx"
    with EnvWorkers("PlugCharger-v0", 1, with_expert=True, slot_reader=str(reader), held_fit=True) as workers:
        assert workers.state_size == 64
        step = workers.reset()
        assert step.state.shape == (1, 64) and step.expert_action.shape == (1, 7)


def test_the_closest_visible_face_point_is_found_for_every_point() -> None:
    box = HELD_BOXES["PlugCharger-v0"]
    local = np.random.default_rng(0).normal(scale=0.02, size=(500, 3)) + box.center
    closest, normals, distances = closest_on_faces(local, box)
    half, center = np.asarray(box.half_size), np.asarray(box.center)
    for point, found, normal, distance in zip(local, closest, normals, distances):
        best = None  # brute force over the visible faces (all but -z), first of equals
        for axis in range(3):
            for sign in (1.0, -1.0):
                if (axis, sign) == (2, -1.0):
                    continue
                candidate = np.clip(point - center, -half, half)
                candidate[axis] = sign * half[axis]
                gap = np.linalg.norm(point - center - candidate)
                if best is None or gap < best[0]:
                    best = (gap, candidate + center, axis, sign)
        assert distance == pytest.approx(best[0], abs=1e-12)
        np.testing.assert_allclose(found, best[1], atol=1e-12)
        assert normal[best[2]] == best[3] and np.count_nonzero(normal) == 1


def test_an_icp_step_moves_the_box_onto_shifted_points() -> None:
    box = HELD_BOXES["PlugCharger-v0"]
    rng = np.random.default_rng(1)
    true_pose = nominal_pose(box)
    half, center = np.asarray(box.half_size), np.asarray(box.center)
    faces = []  # points on the +x, +y, -y and +z faces, in the object frame
    for axis, sign in ((0, 1.0), (1, 1.0), (1, -1.0), (2, 1.0)):
        points = rng.uniform(-half, half, size=(200, 3))
        points[:, axis] = sign * half[axis]
        faces.append(points + center)
    local = np.concatenate(faces)
    observed = local @ true_pose[:3, :3].T + true_pose[:3, 3]  # in the TCP frame
    start = true_pose.copy()
    start[:3, 3] += [0.002, -0.001, 0.0015]  # 2 mm off
    pose = start
    moves = []
    for _ in range(4):
        pose, moved, turned = icp_step(observed, pose, box)
        moves.append(moved)
    assert moves[0] > 1e-3 and moves[-1] < 1e-5  # the first step moves it by about its 2.5 mm offset; the last barely
    assert np.abs(pose[:3, 3] - true_pose[:3, 3]).max() < 1e-5
    np.testing.assert_allclose(pose[:3, :3].T @ pose[:3, :3], np.eye(3), atol=1e-9)  # still a rotation


def test_a_fit_from_a_pose_the_object_barely_left_selects_narrowly_and_one_it_left_in_all_selections(
        monkeypatch) -> None:
    from agent.insertion import held_fit as module

    points, first, _ = fitted_then_watched(monkeypatch)
    margins: list = []
    fit = module.fit
    monkeypatch.setattr(module, "fit", lambda *args: margins.append(args[4] if len(args) > 4 else module.MARGINS)
                        or fit(*args))
    tilted = first.pose @ pose((0.0, 0.0, 0.0), (0.0, 0.01, 0.0))  # about half its points still within 0.1 mm
    again = module.held_fit(seen_points(tilted, np.random.default_rng(1)), BOX, FINGERS, first)
    assert margins == [module.WARM_MARGINS] and len(module.WARM_MARGINS) < len(module.MARGINS)
    np.testing.assert_allclose(again.pose, tilted, atol=5e-4)  # to ~0.3 mrad: tracked on
    slipped = first.pose @ pose((0.001, 0.0, 0.001), (0.0, 0.0, 0.0))  # 1 mm along and 1 mm deeper: no point
    moved = module.held_fit(seen_points(slipped, np.random.default_rng(1)), BOX, FINGERS, first)  # stays close
    assert margins[1:] == [module.MARGINS]
    np.testing.assert_allclose(moved.pose[:3, 3], slipped[:3, 3], atol=1e-4)
