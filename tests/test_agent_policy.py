"""agent.policy.Policy and user_solution.UserPolicy on small models and synthetic PickCube-v0 observations."""
import json
import warnings
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import pytest
from gymnasium import spaces

from agent.manifest import InputSpec, PolicyNotFoundError, WeightsError
from agent.policy import ControlModeError, ObservationError, ObservationWarning, Policy, missing_keys, resolve
from agent.registry import TASKS
from test_agent_models import ship, tiny_model
from user_solution import UserPolicy

ENV_ID = "PickCube-v0"  # 1150 + 50 goal points, state size 37, 7-D actions in [-1, 1]
CLOUD = 512


def box(*shape: int) -> spaces.Box:
    return spaces.Box(-np.inf, np.inf, shape, np.float32)


def observation_space(qpos: int = 9) -> spaces.Dict:
    """PickCube-v0's pointcloud observation space, with a smaller cloud."""
    return spaces.Dict({
        "agent": spaces.Dict({"qpos": box(qpos), "qvel": box(9), "base_pose": box(7)}),
        "extra": spaces.Dict({"tcp_pose": box(7), "goal_pos": box(3)}),
        "pointcloud": spaces.Dict({"xyzw": box(CLOUD, 4), "rgb": spaces.Box(0, 255, (CLOUD, 3), np.uint8)}),
    })


ACTION_SPACE = spaces.Box(-1.0, 1.0, (7,), np.float32)


def observation(seed: int = 0) -> Dict[str, Dict[str, np.ndarray]]:
    """A plausible observation: half the points valid, above the ground, around the gripper."""
    rng = np.random.default_rng(seed)
    xyzw = np.concatenate([rng.uniform(-0.3, 0.3, (CLOUD, 3)), np.ones((CLOUD, 1))], axis=1).astype(np.float32)
    xyzw[:, 2] = np.abs(xyzw[:, 2]) + 0.01
    xyzw[CLOUD // 2:, 3] = 0.0
    return {
        "agent": {"qpos": rng.normal(size=9).astype(np.float32), "qvel": rng.normal(size=9).astype(np.float32),
                  "base_pose": np.array([-0.615, 0, 0, 1, 0, 0, 0], np.float32)},
        "extra": {"tcp_pose": np.array([0.1, 0, 0.2, 0, 1, 0, 0], np.float32), "goal_pos": rng.uniform(-0.1, 0.3, 3)},
        "pointcloud": {"xyzw": xyzw, "rgb": rng.integers(0, 256, (CLOUD, 3), dtype=np.uint8)},
    }


@pytest.fixture
def weights(tmp_path: Path) -> Path:
    ship(tmp_path, ENV_ID, tiny_model(1200, 37, 7, gain=3.0))  # outputs reach +-3: clipping matters
    return tmp_path


def make_policy(weights: Path, **kwargs: Any) -> Policy:
    return Policy(ENV_ID, observation_space(), ACTION_SPACE, weights=weights, **kwargs)


def recorded(call: Any, *args: Any) -> List[warnings.WarningMessage]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        call(*args)
    return [warning for warning in caught if issubclass(warning.category, ObservationWarning)]


def assert_valid_action(action: np.ndarray) -> None:
    assert action.shape == (7,) and action.dtype == np.float32
    assert np.isfinite(action).all() and (action >= -1).all() and (action <= 1).all()


def test_act_returns_a_clipped_float32_action_before_any_reset(weights: Path) -> None:
    policy = make_policy(weights)
    actions = np.stack([policy.act(observation(seed)) for seed in range(5)])
    for action in actions:
        assert_valid_action(action)
    assert np.abs(actions).max() == 1.0  # the model's +-3 outputs were clipped
    assert np.ptp(actions, axis=0).max() > 0  # and depend on the observation


def test_reset_makes_episodes_reproducible(weights: Path) -> None:
    policy = make_policy(weights, seed=3)
    first = [policy.act(observation(seed)) for seed in range(3)]
    policy.reset()
    np.testing.assert_array_equal(first, [policy.act(observation(seed)) for seed in range(3)])
    assert policy.session.get_session_options().intra_op_num_threads == 1


def test_thread_count_comes_from_the_environment(weights: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MS2AGENT_ORT_THREADS", "2")
    assert make_policy(weights).session.get_session_options().intra_op_num_threads == 2


def test_unknown_env_id_lists_the_tasks_with_weights_and_the_training_command(weights: Path) -> None:
    with pytest.raises(PolicyNotFoundError) as error:
        Policy("NoSuchTask-v0", observation_space(), ACTION_SPACE, weights=weights)
    message = str(error.value)
    assert "Unknown env id 'NoSuchTask-v0'" in message and "Tasks with shipped weights: PickCube-v0" in message
    assert "`ms2agent two-stage ENV_ID`" in message


def test_known_task_without_weights_names_it_and_the_training_command(weights: Path) -> None:
    with pytest.raises(PolicyNotFoundError) as error:
        Policy("LiftCube-v0", observation_space(), ACTION_SPACE, weights=weights)
    message = str(error.value)
    assert "No policy for LiftCube-v0 in {}".format(weights / "manifest.json") in message
    assert "Tasks with shipped weights: PickCube-v0" in message and "`ms2agent two-stage LiftCube-v0`" in message


@pytest.mark.parametrize("ask", [
    lambda weights: Policy("Fill-v0", observation_space(), ACTION_SPACE, weights=weights),
    lambda weights: UserPolicy.get_obs_mode("Fill-v0"),  # what the official evaluator asks first
])
def test_a_bc_task_without_weights_names_the_bc_command(weights: Path, monkeypatch: pytest.MonkeyPatch,
                                                       ask: Any) -> None:
    monkeypatch.setenv("MS2AGENT_WEIGHTS_DIR", str(weights))
    with pytest.raises(PolicyNotFoundError) as error:
        ask(weights)
    message = str(error.value)
    assert "No policy for Fill-v0" in message and "`ms2agent bc Fill-v0 DEMO.h5`" in message
    assert "docs/soft_body.md" in message and "two-stage" not in message


def test_missing_manifest_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="not found") as error:
        make_policy(tmp_path)
    assert str(tmp_path / "manifest.json") in str(error.value)


@pytest.mark.parametrize("damage, message", [
    (lambda path: path.write_bytes(path.read_bytes()[:-3]), "Checksum mismatch"),
    (lambda path: path.unlink(), "Cannot read"),
])
def test_damaged_model_file_is_named(weights: Path, damage: Any, message: str) -> None:
    path = weights / "PickCube-v0.onnx"
    damage(path)
    with pytest.raises(WeightsError, match=message) as error:
        make_policy(weights)
    assert str(path) in str(error.value)


def test_corrupt_model_is_named(tmp_path: Path) -> None:
    ship(tmp_path, ENV_ID, b"\x08\x07garbage", spec=InputSpec(1200, 6, 37, 7))
    with pytest.raises(WeightsError, match="is not a usable ONNX policy") as error:
        make_policy(tmp_path)
    assert str(tmp_path / "PickCube-v0.onnx") in str(error.value)


def test_wrong_shaped_model_is_named(tmp_path: Path) -> None:
    ship(tmp_path, ENV_ID, tiny_model(1200, 40, 7), spec=InputSpec(1200, 6, 37, 7))
    with pytest.raises(WeightsError, match="state_size=40") as error:
        make_policy(tmp_path)
    assert str(tmp_path / "PickCube-v0.onnx") in str(error.value)


def test_a_policy_takes_the_point_count_its_manifest_entry_declares(tmp_path: Path) -> None:
    """Fewer points than the task's default (a cheaper network call): preprocessing samples that many camera points
    and adds the task's goal points."""
    ship(tmp_path, ENV_ID, tiny_model(800, 37, 7), spec=InputSpec(800, 6, 37, 7))
    policy = make_policy(tmp_path)
    network_input = policy.network_input(observation())
    assert network_input.points.shape == (800, 6) and policy.task.n_points == 750 and policy.task.n_goal_points == 50
    assert np.isfinite(policy.act(observation())).all()


def test_a_policy_without_room_for_camera_points_is_rejected(tmp_path: Path) -> None:
    ship(tmp_path, ENV_ID, tiny_model(50, 37, 7), spec=InputSpec(50, 6, 37, 7))
    with pytest.raises(WeightsError, match="50-point network for PickCube-v0: .*50 goal points and at least one camera"):
        make_policy(tmp_path)


@pytest.mark.parametrize("spec, kwargs, message", [
    (None, {"control_mode": "pd_joint_delta_pos"}, "pd_joint_delta_pos"),
    (None, {"obs_mode": "rgbd"}, "rgbd"),
    (None, {"voxel_size": 0.005}, "0.005"),  # trained on another preprocessing
])
def test_manifest_that_disagrees_with_the_registry_is_rejected(tmp_path: Path, spec: Any, kwargs: Dict[str, str],
                                                               message: str) -> None:
    ship(tmp_path, ENV_ID, tiny_model(spec.n_points if spec else 1200, 37, 7), spec=spec, **kwargs)
    with pytest.raises(WeightsError, match=message) as error:
        make_policy(tmp_path)
    assert "agent/registry.py" in str(error.value) and str(tmp_path / "manifest.json") in str(error.value)


def test_a_task_that_drops_the_robot_needs_the_robot_mask() -> None:
    task = TASKS[ENV_ID]._replace(obs_mode="pointcloud+robot_seg")
    assert missing_keys(observation_space(), task) == ["pointcloud/robot_seg"]
    assert missing_keys(observation_space(), TASKS[ENV_ID]) == []


def test_manifest_without_voxel_size_means_plain_sampling(weights: Path) -> None:
    manifest = weights / "manifest.json"
    raw = json.loads(manifest.read_text())
    del raw["policies"][ENV_ID]["voxel_size"]  # written before the field existed
    manifest.write_text(json.dumps(raw))
    assert resolve(ENV_ID, weights)[1].voxel_size == 0.0
    assert_valid_action(make_policy(weights).act(observation()))


def test_env_whose_observations_do_not_fit_the_model_is_rejected(weights: Path) -> None:
    with pytest.raises(WeightsError, match="state size 38") as error:
        Policy(ENV_ID, observation_space(qpos=10), ACTION_SPACE, weights=weights)
    assert str(weights / "PickCube-v0.onnx") in str(error.value)
    assert "trained for another task or on other observations" in str(error.value)


def test_env_made_with_another_control_mode_names_the_expected_one(weights: Path) -> None:
    joint_space = spaces.Box(-1, 1, (8,), np.float32)  # pd_joint_delta_pos: 7 joints + gripper
    with pytest.raises(ControlModeError) as error:
        Policy(ENV_ID, observation_space(), joint_space, weights=weights)
    message = str(error.value)
    assert "control mode 'pd_ee_delta_pose', with actions of shape (7,)" in message and "shape (8,)" in message
    assert "gym.make('PickCube-v0', obs_mode='pointcloud', control_mode='pd_ee_delta_pose')" in message
    assert "UserPolicy.get_obs_mode / get_control_mode" in message


def test_wrong_obs_mode_says_what_is_expected(weights: Path) -> None:
    rgbd = spaces.Dict({"agent": observation_space()["agent"], "extra": observation_space()["extra"],
                        "image": spaces.Dict({"base_camera": spaces.Dict({"rgb": box(128, 128, 3)})})})
    with pytest.raises(ObservationError, match="obs_mode 'pointcloud'") as error:
        Policy(ENV_ID, rgbd, ACTION_SPACE, weights=weights)
    assert "missing: pointcloud/xyzw, pointcloud/rgb" in str(error.value)
    assert "top-level keys: agent, extra, image" in str(error.value)


def malformed(change: Any) -> Dict[str, Any]:
    obs = observation()
    change(obs)
    return obs


@pytest.mark.parametrize("bad, message", [
    (np.zeros(55, np.float32), "dicts with agent/qpos, agent/qvel, agent/base_pose, extra/tcp_pose, pointcloud/xyzw, "
                               "pointcloud/rgb, extra/goal_pos; got numpy.ndarray of shape (55,)"),  # obs_mode "state"
    (malformed(lambda obs: obs["pointcloud"].update(xyzw=obs["pointcloud"]["xyzw"][:, :3])),
     "pointcloud/xyzw has shape (512, 3), expected (N, 4) (x, y, z, w per point)"),
    (malformed(lambda obs: obs["pointcloud"].update(rgb=obs["pointcloud"]["rgb"][:, 0])),
     "pointcloud/rgb has shape (512,), expected (N, 3)"),
    (malformed(lambda obs: obs["agent"].update(qpos=obs["agent"]["qpos"][:7])),
     "agent/qpos has shape (7,), expected (9,), as in the observation space the policy was built with"),
    (malformed(lambda obs: obs["extra"].update(goal_pos=np.zeros((1, 3)))),
     "extra/goal_pos has shape (1, 3), expected (3,)"),
    (malformed(lambda obs: obs["extra"].update(obj_pose=np.zeros(7))),
     "extra entries goal_pos, obj_pose, tcp_pose, expected goal_pos, tcp_pose"),
    (malformed(lambda obs: obs.update(agent=[1.0, 2.0])), "missing: agent/qpos, agent/qvel, agent/base_pose"),
])
def test_malformed_observation_names_the_entry_and_both_shapes(weights: Path, bad: Any, message: str) -> None:
    with pytest.raises(ObservationError) as error:
        make_policy(weights).act(bad)
    assert message in str(error.value)
    assert "gym.make('PickCube-v0', obs_mode='pointcloud', control_mode='pd_ee_delta_pose')" in str(error.value)


def test_a_point_cloud_of_another_size_is_accepted(weights: Path) -> None:
    obs = observation()
    obs["pointcloud"] = {key: value[:300] for key, value in obs["pointcloud"].items()}
    assert_valid_action(make_policy(weights).act(obs))


def test_observation_missing_a_key_says_what_is_expected(weights: Path) -> None:
    obs = observation()
    del obs["extra"]["goal_pos"]
    with pytest.raises(ObservationError, match="missing: extra/goal_pos"):
        make_policy(weights).act(obs)


@pytest.mark.parametrize("group, key, index", [
    ("pointcloud", "xyzw", (slice(0, 10), 0)),  # some points
    ("pointcloud", "xyzw", (slice(None), slice(None))),  # every point: nothing left
    ("agent", "qpos", 3),
    ("agent", "qvel", slice(None)),
    ("extra", "goal_pos", 0),
    ("extra", "tcp_pose", 4),  # the frame itself
])
@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_non_finite_observations_give_a_finite_action_and_one_warning(weights: Path, group: str, key: str,
                                                                       index: Any, value: float) -> None:
    policy = make_policy(weights)
    bad = observation()
    bad[group][key] = bad[group][key].astype(np.float64)
    bad[group][key][index] = value

    def act_repeatedly() -> None:
        for _ in range(3):
            assert_valid_action(policy.act(bad))

    caught = recorded(act_repeatedly)
    assert len(caught) == 1, [str(warning.message) for warning in caught]
    assert "PickCube-v0" in str(caught[0].message)
    assert policy.coped["non-finite"] + policy.coped["empty"] >= 3
    coped = sum(policy.coped.values())
    policy.act(observation())
    assert sum(policy.coped.values()) == coped  # healthy observations are not affected


def test_nan_in_state_counts_as_zero(weights: Path) -> None:
    policy = make_policy(weights)
    obs = observation()
    obs["agent"]["qpos"][3] = 0.0
    expected = policy.act(obs)
    obs["agent"]["qpos"][3] = np.nan
    policy.reset()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ObservationWarning)
        np.testing.assert_array_equal(policy.act(obs), expected)


@pytest.mark.parametrize("make_empty", [
    lambda xyzw: xyzw.__setitem__((slice(None), 3), 0.0),  # no valid point
    lambda xyzw: xyzw.__setitem__((slice(None), 2), 0.0),  # all on the ground
])
def test_empty_point_cloud_gives_the_neutral_action_and_one_warning(weights: Path, make_empty: Any) -> None:
    policy = make_policy(weights)
    obs = observation()
    make_empty(obs["pointcloud"]["xyzw"])
    caught = recorded(lambda: [np.testing.assert_array_equal(policy.act(obs), np.zeros(7)) for _ in range(3)])
    assert len(caught) == 1 and "no valid points" in str(caught[0].message)
    assert policy.coped == {"empty": 3}


def test_non_finite_network_output_gives_the_neutral_action(tmp_path: Path) -> None:
    model = tiny_model(1200, 37, 7, gain=np.nan)
    ship(tmp_path, ENV_ID, model)
    policy = make_policy(tmp_path)
    caught = recorded(lambda: np.testing.assert_array_equal(policy.act(observation()), np.zeros(7)))
    assert len(caught) == 1 and "non-finite action" in str(caught[0].message)


def test_weights_directory_from_the_environment(weights: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MS2AGENT_WEIGHTS_DIR", str(weights))
    assert resolve(ENV_ID)[1].path == weights / "PickCube-v0.onnx"
    assert_valid_action(Policy(ENV_ID, observation_space(), ACTION_SPACE).act(observation()))


def test_user_policy_delegates_to_the_agent(weights: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MS2AGENT_WEIGHTS_DIR", str(weights))
    assert UserPolicy.get_obs_mode(ENV_ID) == "pointcloud"
    assert UserPolicy.get_control_mode(ENV_ID) == "pd_ee_delta_pose"
    user = UserPolicy(ENV_ID, observation_space(), ACTION_SPACE)
    reference = make_policy(weights)
    user.reset(observation())
    np.testing.assert_array_equal(user.act(observation()), reference.act(observation()))
    with pytest.raises(PolicyNotFoundError, match="LiftCube-v0"):
        UserPolicy.get_obs_mode("LiftCube-v0")
