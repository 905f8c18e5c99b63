"""The paper's observation preprocessing: filtering, sampling, frame transform, goal points, state."""
import numpy as np
import pytest

from agent.geometry import quaternion_to_matrix
from agent.preprocessing import (GOAL_JITTER, kept_points, preprocess, sample_indices, state_size,
                                 tcp_in_slot, voxel_representatives)
from agent.registry import TASKS, get_task

PICK = get_task("PickCube-v0")
LIFT = get_task("LiftCube-v0")


def quaternion_about_z(angle: float) -> np.ndarray:
    return np.array([np.cos(angle / 2), 0.0, 0.0, np.sin(angle / 2)])


def make_obs(xyzw: np.ndarray, rgb: np.ndarray, tcp_pose: np.ndarray, goal=None, robot_seg=None) -> dict:
    extra = {"tcp_pose": tcp_pose}
    if goal is not None:
        extra["goal_pos"] = np.asarray(goal, dtype=np.float32)
    return {
        "agent": {"qpos": np.arange(9.0), "qvel": np.zeros(9), "base_pose": np.array([-0.6, 0, 0, 1, 0, 0, 0.0])},
        "extra": extra,
        "pointcloud": {"xyzw": xyzw.astype(np.float32), "rgb": rgb.astype(np.uint8),
                       **({} if robot_seg is None else {"robot_seg": robot_seg})},
    }


def test_quaternion_to_matrix_rotates_x_to_y_for_90_degrees_about_z() -> None:
    assert np.allclose(quaternion_to_matrix(quaternion_about_z(np.pi / 2)) @ [1, 0, 0], [0, 1, 0])


def test_the_cross_product_is_numpys_to_the_bit() -> None:
    from agent.geometry import cross

    vectors = np.random.default_rng(0).normal(size=(200, 2, 3))
    for a, b in vectors:
        assert np.array_equal(cross(a, b), np.cross(a, b))


def test_points_are_in_the_tcp_frame() -> None:
    # TCP at (1, 0, 0.5), rotated 90 degrees about z; a world point at (1, 1, 0.5) lies 1 m along the
    # TCP's x axis (which points along world y).
    tcp = np.concatenate([[1.0, 0.0, 0.5], quaternion_about_z(np.pi / 2)])
    xyzw = np.array([[1.0, 1.0, 0.5, 1.0]])
    out = preprocess(make_obs(xyzw, np.array([[255, 0, 51]]), tcp), LIFT, np.random.default_rng(0))
    assert np.allclose(out.points[:, :3], [1.0, 0.0, 0.0], atol=1e-6)  # one valid point, repeated
    assert np.allclose(out.points[:, 3:], [1.0, 0.0, 0.2])


def test_invalid_and_ground_points_are_dropped_and_count_is_exact() -> None:
    rng = np.random.default_rng(0)
    n = 5000
    xyz = rng.uniform(0.01, 1.0, (n, 3))
    w = np.ones((n, 1))
    w[:1000] = 0.0  # invalid (no depth)
    xyz[1000:2000, 2] = 0.0  # ground
    obs = make_obs(np.hstack([xyz, w]), np.full((n, 3), 128), np.array([0, 0, 0, 1, 0, 0, 0.0]))
    out = preprocess(obs, LIFT, rng)
    assert out.points.shape == (LIFT.total_points, 6) and out.points.dtype == np.float32
    assert out.n_valid == 3000
    assert (out.points[:, 2] > 1e-4).all()
    valid = {tuple(p) for p in xyz[2000:].astype(np.float32)}
    assert all(tuple(p) in valid for p in out.points[:, :3])
    assert len({tuple(p) for p in out.points[:, :3]}) == LIFT.n_points  # a subset without repeats


def test_robot_seg_drops_the_robot_points_only_where_the_task_asks() -> None:
    xyzw = np.array([[0.1, 0.0, 0.2, 1.0], [0.2, 0.0, 0.2, 1.0], [0.3, 0.0, 0.2, 1.0]])
    robot = np.array([[True], [False], [True]])  # ManiSkill2's (N, 1) mask
    assert kept_points(xyzw, robot).tolist() == [False, True, False]
    obs = make_obs(xyzw, np.zeros((3, 3)), np.array([0, 0, 0, 1, 0, 0, 0.0]), robot_seg=robot)
    dropping = preprocess(obs, LIFT._replace(obs_mode="pointcloud+robot_seg"), np.random.default_rng(0))
    assert dropping.n_valid == 1 and np.allclose(dropping.points[:, 0], 0.2)
    assert preprocess(obs, LIFT, np.random.default_rng(0)).n_valid == 3  # plain pointcloud: mask unused


def test_voxel_representatives_keep_one_point_per_occupied_voxel() -> None:
    rng = np.random.default_rng(0)
    dense = rng.uniform(0.0, 0.01, (1000, 3))  # 1000 points in one 1 cm cube
    sparse = np.array([[0.105, 0.0, 0.0], [0.2, 0.3, 0.005], [-0.3, 0.1, 0.2]])  # three more cubes
    xyz = np.vstack([dense, sparse])
    chosen = voxel_representatives(xyz, 0.01, rng)
    assert len(chosen) == 4 and len(set(chosen.tolist())) == 4
    assert sum(index < 1000 for index in chosen) == 1 and set(range(1000, 1003)) <= set(chosen.tolist())
    again = voxel_representatives(xyz, 0.01, np.random.default_rng(1))
    assert set(again.tolist()) & set(range(1000)) != set(chosen.tolist()) & set(range(1000))  # a random one


def test_voxel_sampling_evens_out_point_density() -> None:
    rng = np.random.default_rng(0)
    near_camera = rng.uniform([0, 0, 0.1], [0.05, 0.05, 0.15], (20000, 3))  # small, densely seen
    far = rng.uniform([0.3, 0.3, 0.1], [0.5, 0.5, 0.3], (2000, 3))  # large, sparsely seen
    xyz = np.vstack([near_camera, far])
    obs = make_obs(np.hstack([xyz, np.ones((len(xyz), 1))]), np.zeros((len(xyz), 3)), np.array([0, 0, 0, 1, 0, 0, 0.0]))
    uniform = preprocess(obs, LIFT, np.random.default_rng(0)).points
    voxel = preprocess(obs, LIFT._replace(voxel_size=0.01), np.random.default_rng(0)).points
    assert np.mean(uniform[:, 0] > 0.2) < 0.15 and np.mean(voxel[:, 0] > 0.2) > 0.5


def test_too_few_points_are_all_kept_and_repeated() -> None:
    xyzw = np.array([[0.1, 0.0, 0.2, 1.0], [0.2, 0.0, 0.2, 1.0], [0.3, 0.0, 0.2, 1.0]])
    out = preprocess(make_obs(xyzw, np.zeros((3, 3)), np.array([0, 0, 0, 1, 0, 0, 0.0])), LIFT,
                     np.random.default_rng(0))
    assert set(out.points[:, 0]) == set(xyzw[:, 0].astype(np.float32))


def test_goal_points_are_green_jittered_and_in_the_frame() -> None:
    tcp = np.array([0.1, 0.2, 0.3, 1, 0, 0, 0.0])
    goal = [0.1, 0.2, 0.5]
    xyzw = np.array([[0.0, 0.0, 0.1, 1.0]] * 10)
    out = preprocess(make_obs(xyzw, np.zeros((10, 3)), tcp, goal), PICK, np.random.default_rng(0))
    goal_points = out.points[PICK.n_points:]
    assert goal_points.shape == (50, 6) and PICK.total_points == 1200
    assert np.allclose(goal_points[:, 3:], [0, 1, 0])
    assert np.abs(goal_points[:, :3] - [0.0, 0.0, 0.2]).max() <= GOAL_JITTER + 1e-6
    assert goal_points[:, :3].std(axis=0).min() > 0


def test_state_holds_proprioception_and_frame_positions() -> None:
    tcp = np.array([0.1, 0.2, 0.3, 1, 0, 0, 0.0])
    obs = make_obs(np.array([[0.0, 0.0, 0.1, 1.0]]), np.zeros((1, 3)), tcp, goal=[0.1, 0.2, 0.5])
    state = preprocess(obs, PICK, np.random.default_rng(0)).state
    assert np.allclose(state[:9], np.arange(9))
    base, tcp_in_frame, goal, tcp_to_goal = state[18:21], state[21:24], state[24:27], state[27:30]
    assert np.allclose(base, [-0.7, -0.2, -0.3]) and np.allclose(tcp_in_frame, 0)
    assert np.allclose(goal, [0, 0, 0.2]) and np.allclose(tcp_to_goal, [0, 0, 0.2])


def test_a_looking_state_holds_the_tcp_pose_in_the_remembered_slot_frame() -> None:
    """The slot along world +y (its frame: x = +y, y = -x, z = up): a TCP 3 cm in front of it, 2 mm to
    its left and 1 mm up is at (-3, 0.2, 0.1) cm; its rotation (turned 90 degrees about z, like the
    slot) is the identity there; positions are clipped at 10 cm; before the read, zeros."""
    slot = {"goal_pos": np.array([0.5, 0.2, 0.1]), "goal_axis": np.array([0.0, 1.0, 0.0])}
    tcp = np.concatenate([[0.5 - 0.002, 0.2 - 0.03, 0.1 + 0.001], quaternion_about_z(np.pi / 2)])
    entries = tcp_in_slot({"tcp_pose": tcp, **slot})
    np.testing.assert_allclose(entries, [-3.0, 0.2, 0.1, 1, 0, 0, 0, 1, 0], atol=1e-9)
    far = tcp_in_slot({"tcp_pose": np.concatenate([[0.5, 0.2 - 0.4, 0.1], tcp[3:]]), **slot})
    assert far[0] == pytest.approx(-10.0)
    unread = {"tcp_pose": tcp, "goal_pos": np.zeros(3), "goal_axis": np.zeros(3)}
    assert not np.any(tcp_in_slot(unread))
    peg = make_obs(np.array([[0.0, 0.0, 0.1, 1.0]]), np.zeros((1, 3)), tcp, goal=slot["goal_pos"])
    peg["extra"]["goal_axis"] = slot["goal_axis"]
    state = preprocess(peg, get_task("PegInsertionSide-v0")._replace(n_points=4), np.random.default_rng(0)).state
    np.testing.assert_allclose(state[-16:-7], entries, atol=1e-6)  # just before the trailing TCP pose


def test_missing_goal_for_a_goal_task_is_a_clear_error() -> None:
    obs = make_obs(np.array([[0.0, 0.0, 0.1, 1.0]]), np.zeros((1, 3)), np.array([0, 0, 0, 1, 0, 0, 0.0]))
    with pytest.raises(KeyError, match="goal_pos"):
        preprocess(obs, PICK, np.random.default_rng(0))


def test_same_seed_same_sample() -> None:
    a = sample_indices(1000, 100, np.random.default_rng(7))
    b = sample_indices(1000, 100, np.random.default_rng(7))
    assert np.array_equal(a, b)


def test_registry_covers_the_challenge_tasks() -> None:
    families = [spec.family for spec in TASKS.values()]
    assert families.count("soft") == 6 and families.count("rigid") == 15  # 14 challenge tasks + LiftCube
    assert all(spec.algorithm == ("bc" if spec.needs_cuda else "ppo") for spec in TASKS.values())
    assert get_task("PickSingleYCB-v0").download_command == "python -m mani_skill2.utils.download_asset ycb"
    with pytest.raises(KeyError, match="Unknown env id 'Nope-v0'"):
        get_task("Nope-v0")


@pytest.mark.sim
def test_real_observation_matches_state_size() -> None:
    from training.common.envs import make_env

    env = make_env("PickCube-v0")
    try:
        obs, _ = env.reset(seed=1)
        out = preprocess(obs, PICK, np.random.default_rng(0))
        assert out.state.shape == (state_size(env.observation_space),)
        assert out.n_valid > PICK.n_points and np.isfinite(out.points).all()
        # The TCP sits at the frame origin: the gripper's own points are within ~15 cm of it.
        assert np.linalg.norm(out.points[: PICK.n_points, :3], axis=1).min() < 0.15
    finally:
        env.close()


@pytest.mark.sim
def test_real_robot_seg_observation_drops_the_robot_and_voxels_thin_the_cloud() -> None:
    from training.common.envs import make_env

    env = make_env("PegInsertionSide-v0", obs_mode="pointcloud+robot_seg")
    try:
        obs, _ = env.reset(seed=1)
        spec = get_task("PegInsertionSide-v0")
        robot = obs["pointcloud"]["robot_seg"].reshape(-1)
        kept = kept_points(obs["pointcloud"]["xyzw"])
        assert 0 < np.sum(kept & robot) < np.sum(kept)  # the robot is in view, and not all of it
        counts = {name: preprocess(obs, variant, np.random.default_rng(0)).n_valid for name, variant in {
            "plain": spec, "no robot": spec._replace(obs_mode="pointcloud+robot_seg"),
            "no robot + voxel": spec._replace(obs_mode="pointcloud+robot_seg", voxel_size=0.005)}.items()}
        assert counts["plain"] == np.sum(kept) and counts["no robot"] == np.sum(kept & ~robot)
        assert counts["no robot + voxel"] < counts["no robot"]
    finally:
        env.close()
