"""Looking policies (the insertion add-on, agent.insertion): the slot memory, the manifest's slot_reader entry, the
agent reading its slot, and training's slot reader export, on small models and synthetic PegInsertionSide-v0
observations."""
import json
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest
from gymnasium import spaces
from transforms3d.axangles import axangle2mat
from transforms3d.quaternions import mat2quat

from agent.geometry import rotation_vector_to_matrix
from agent.manifest import SlotReaderEntry, WeightsError, file_sha256, read_manifest, write_entry
from agent.policy import Policy, resolve
from agent.registry import GOAL_POINTS, get_task, looking, reader_spec
from agent.insertion.slot_memory import SlotMemory, slot_from_reading
from test_agent_models import ship, tiny_model
from test_agent_policy import ACTION_SPACE, CLOUD, box, observation

ENV_ID = "PegInsertionSide-v0"  # no goal in its observations: state size 31, 49 when looking
LOOK_STEP = 3


def observation_space() -> spaces.Dict:
    return spaces.Dict({
        "agent": spaces.Dict({"qpos": box(9), "qvel": box(9), "base_pose": box(7)}),
        "extra": spaces.Dict({"tcp_pose": box(7)}),
        "pointcloud": spaces.Dict({"xyzw": box(CLOUD, 4), "rgb": spaces.Box(0, 255, (CLOUD, 3), np.uint8)}),
    })


def peg_observation(seed: int) -> Dict:
    obs = observation(seed)
    del obs["extra"]["goal_pos"]
    return obs


def test_rotation_vectors_match_transforms3d() -> None:
    rng = np.random.default_rng(0)
    for vector in rng.normal(size=(5, 3)):
        angle = np.linalg.norm(vector)
        np.testing.assert_allclose(rotation_vector_to_matrix(vector), axangle2mat(vector / angle, angle), atol=1e-12)
    np.testing.assert_array_equal(rotation_vector_to_matrix(np.zeros(3)), np.eye(3))


def test_a_reading_gives_back_the_slot_it_was_taken_of() -> None:
    yaw = 1.9
    slot_rotation = axangle2mat([0, 0, 1], yaw)
    slot_position = np.array([0.05, 0.3, 0.1])
    tcp_position = np.array([0.02, 0.15, 0.16])
    reading = np.concatenate([slot_rotation.T @ (tcp_position - slot_position), [0.0, 0.0, yaw]])
    tcp_pose = np.concatenate([tcp_position, mat2quat(axangle2mat([1, 0, 0], 2.0))])  # its rotation does not matter
    position, axis = slot_from_reading(reading, tcp_pose)
    np.testing.assert_allclose(position, slot_position, atol=1e-12)
    np.testing.assert_allclose(axis, slot_rotation[:, 0], atol=1e-12)


def test_the_memory_reads_once_at_the_look_step_and_forgets_at_reset() -> None:
    calls: List[int] = []
    reading = np.array([0.0, 0.0, 0.1, 0.0, 0.0, np.pi / 2])

    def read(obs: Dict) -> np.ndarray:
        calls.append(memory.step)
        return reading

    memory = SlotMemory(read, LOOK_STEP)
    seen = [memory.remember(peg_observation(step))["extra"] for step in range(LOOK_STEP + 3)]
    assert calls == [LOOK_STEP]
    for step, extra in enumerate(seen):
        read_yet = step >= LOOK_STEP
        assert np.any(extra["goal_axis"]) == read_yet and np.any(extra["goal_pos"]) == read_yet
    np.testing.assert_allclose(seen[-1]["goal_axis"], [0.0, 1.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(seen[-1]["goal_pos"], [0.1, 0.0, 0.1], atol=1e-6)  # TCP (0.1, 0, 0.2), 0.1 below it
    memory.reset()
    assert not np.any(memory.remember(peg_observation(0))["extra"]["goal_axis"])


def test_a_non_finite_reading_is_retried_on_the_next_observation() -> None:
    readings = [np.full(6, np.nan), np.array([0.0, 0.0, 0.1, 0.0, 0.0, 0.0])]
    memory = SlotMemory(lambda obs: readings.pop(0), 1)
    extras = [memory.remember(peg_observation(step))["extra"] for step in range(3)]
    assert [bool(np.any(extra["goal_axis"])) for extra in extras] == [False, False, True]
    assert memory.read_at == 2 and not readings
    with pytest.raises(ValueError, match="look_step"):
        SlotMemory(lambda obs: np.zeros(6), 0)


def test_looking_turns_camera_points_into_goal_points() -> None:
    spec = looking(get_task(ENV_ID), LOOK_STEP)
    assert (spec.n_goal_points, spec.total_points, spec.look_step) == (GOAL_POINTS, 1200, LOOK_STEP)
    assert reader_spec(spec) == get_task(ENV_ID)
    with pytest.raises(ValueError, match="look_step"):
        looking(get_task(ENV_ID), 0)
    with pytest.raises(ValueError, match="observes its goal"):
        looking(get_task("PickCube-v0"), LOOK_STEP)


def ship_looking(directory: Path, reader_state_size: int = 31) -> SlotReaderEntry:
    """A tiny looking policy for ENV_ID with a tiny slot reader, as `ms2agent export --slot-reader` ships one."""
    entry = ship(directory, ENV_ID, tiny_model(1200, 49, 7))
    path = directory / "{}.slot_reader.onnx".format(ENV_ID)
    path.write_bytes(tiny_model(1200, reader_state_size, 6, gain=0.5, seed=1, names=("points", "state", "reading")))
    from agent.onnx_model import make_session, model_spec

    reader = SlotReaderEntry(path, file_sha256(path), model_spec(make_session(str(path)), "reading"), LOOK_STEP)
    write_entry(directory, entry._replace(slot_reader=reader))
    return reader


def test_the_manifest_keeps_the_slot_reader_and_the_agent_looks(tmp_path: Path) -> None:
    reader = ship_looking(tmp_path)
    assert read_manifest(tmp_path)[ENV_ID].slot_reader == reader
    task, _ = resolve(ENV_ID, tmp_path)
    assert task == looking(get_task(ENV_ID), LOOK_STEP)

    policy = Policy(ENV_ID, observation_space(), ACTION_SPACE, weights=tmp_path)
    axes = []
    for step in range(LOOK_STEP + 2):
        action = policy.act(peg_observation(step))
        assert action.shape == (7,) and np.isfinite(action).all()
        axes.append(policy.insertion.memory.axis.copy())
    assert [bool(np.any(axis)) for axis in axes] == [step >= LOOK_STEP for step in range(LOOK_STEP + 2)]
    policy.reset()
    assert not np.any(policy.insertion.memory.axis) and policy.insertion.memory.step == 0


def without_slot_reader(directory: Path, env_id: str) -> None:
    manifest = directory / "manifest.json"
    raw = json.loads(manifest.read_text())
    del raw["policies"][env_id]["slot_reader"]
    raw["policies"][env_id].pop("held_fit", None)
    manifest.write_text(json.dumps(raw))


def test_a_looking_policy_whose_entry_lost_its_slot_reader_says_so(tmp_path: Path) -> None:
    ship_looking(tmp_path)
    without_slot_reader(tmp_path, ENV_ID)
    with pytest.raises(WeightsError) as error:
        Policy(ENV_ID, observation_space(), ACTION_SPACE, weights=tmp_path)
    message = str(error.value)
    assert "PegInsertionSide-v0.onnx takes a state of size 49, the state of a PegInsertionSide-v0 policy with a slot " \
           "reader, but its entry in {} has no `slot_reader`".format(tmp_path / "manifest.json") in message
    assert "--slot-reader READER" in message and "held_fit" not in message


def test_a_held_fit_policy_whose_entry_lost_its_slot_reader_and_held_fit_says_so(tmp_path: Path) -> None:
    ship(tmp_path, "PlugCharger-v0", tiny_model(1200, 64, 7))  # 31 + the slot's 18 + the held object's 15
    with pytest.raises(WeightsError) as error:
        Policy("PlugCharger-v0", observation_space(), ACTION_SPACE, weights=tmp_path)
    message = str(error.value)
    assert "a PlugCharger-v0 policy with a slot reader and the held-object fit" in message
    assert "has no `slot_reader` and no `held_fit`" in message and "--slot-reader READER --held-fit" in message


def test_a_plain_policy_whose_entry_has_a_slot_reader_says_so(tmp_path: Path) -> None:
    reader = ship_looking(tmp_path)
    entry = ship(tmp_path, ENV_ID, tiny_model(1200, 31, 7))
    write_entry(tmp_path, entry._replace(slot_reader=reader))
    with pytest.raises(WeightsError, match="has a `slot_reader`: remove it"):
        Policy(ENV_ID, observation_space(), ACTION_SPACE, weights=tmp_path)


def test_a_slot_reader_that_does_not_fit_the_env_is_refused(tmp_path: Path) -> None:
    ship_looking(tmp_path, reader_state_size=30)
    with pytest.raises(WeightsError, match="slot reader"):
        Policy(ENV_ID, observation_space(), ACTION_SPACE, weights=tmp_path)


def test_the_exported_slot_reader_computes_the_trained_regressor(tmp_path: Path) -> None:
    import torch

    from training.slot_reader.train import Regressor, SlotEstimator, export_slot_reader, save_estimator

    torch.manual_seed(0)
    spec = get_task(ENV_ID)
    estimator = SlotEstimator(Regressor(31), np.arange(6, dtype=np.float32) / 10, np.full(6, 0.02, np.float32))
    save_estimator(estimator, spec, tmp_path / "uniform.pt")
    entry = export_slot_reader(tmp_path / "uniform.pt", tmp_path / "reader.onnx", LOOK_STEP)
    assert (entry.look_step, entry.spec.n_points, entry.spec.state_size, entry.spec.action_size) == (LOOK_STEP, 1200, 31, 6)

    from agent.onnx_model import make_session

    rng = np.random.default_rng(0)
    points = rng.normal(0, 0.1, (2, 1200, 6)).astype(np.float32)
    state = rng.normal(size=(2, 31)).astype(np.float32)
    reading = make_session(str(entry.path)).run(["reading"], {"points": points, "state": state})[0]
    np.testing.assert_allclose(reading, estimator.predict(points, state), atol=1e-5)
    again = export_slot_reader(entry.path, tmp_path / "again.onnx", LOOK_STEP)  # an exported reader, converted
    np.testing.assert_allclose(make_session(str(again.path)).run(["reading"], {"points": points, "state": state})[0],
                               reading, rtol=0, atol=1e-6)
    import onnx

    ops = {node.op_type for node in onnx.load(str(again.path)).graph.node}
    assert not ops & {"ReduceMax", "LayerNormalization", "Sin"}  # the policies' pool and norms; no empty features

    from agent.insertion.slot_reader import reader_entry

    with pytest.raises(ValueError, match="PegInsertionSide-v0's slot"):
        reader_entry(entry.path, "PlugCharger-v0")
    save_estimator(estimator, spec._replace(voxel_size=0.005), tmp_path / "voxel.pt")
    with pytest.raises(ValueError, match="preprocesses"):
        export_slot_reader(tmp_path / "voxel.pt", tmp_path / "voxel.onnx", LOOK_STEP)


@pytest.mark.sim
@pytest.mark.parametrize("env_id", [ENV_ID, "PlugCharger-v0"])
def test_the_experts_look_phase_brings_the_hand_camera_to_the_look_pose(env_id: str) -> None:
    from training.common.envs import make_env
    from training.experts import make_expert
    from training.experts.base import rotation_angle

    env = make_env(env_id, obs_mode="state")
    expert = make_expert(env_id)
    expert.look_steps = 30
    try:
        for seed in (0, 1):
            env.reset(seed=seed)
            expert.reset(env)
            for _ in range(expert.look_steps):
                action = expert.act(env)
                assert action[-1] == 1.0  # the gripper stays open
                env.step(action)
            offset = expert.look_error(env)
            assert np.abs(offset.p).max() < expert.look_jitter and rotation_angle(offset) < 0.1
    finally:
        env.close()


@pytest.mark.sim
def test_env_workers_remember_the_slot_read_at_the_look_step(tmp_path: Path) -> None:
    import torch

    from training.slot_reader.train import Regressor, SlotEstimator, export_slot_reader, save_estimator
    from training.common.vec_env import EnvWorkers

    torch.manual_seed(0)
    save_estimator(SlotEstimator(Regressor(31), np.zeros(6), np.ones(6)), get_task(ENV_ID), tmp_path / "uniform.pt")
    export_slot_reader(tmp_path / "uniform.pt", tmp_path / "reader.onnx", look_step=2)
    with EnvWorkers(ENV_ID, 1, with_expert=True, slot_reader=str(tmp_path / "reader.onnx")) as workers:
        assert workers.state_size == 49
        steps = [workers.reset()]
        for _ in range(3):
            steps.append(workers.step(np.zeros((1, 7), np.float32)))
    goal_axes = [step.state[0, 30:33] for step in steps]  # after qpos, qvel, base, TCP, goal, TCP->goal
    assert [bool(np.any(axis)) for axis in goal_axes] == [False, False, True, True]
    assert np.linalg.norm(goal_axes[-1]) == pytest.approx(1.0, abs=1e-5)
    assert all(step.expert_action[0, -1] == 1.0 for step in steps[:2])  # looking, gripper open
    assert [step.reward[0] == 0.0 for step in steps[1:]] == [True, True, False]  # the look's two actions are free


def test_only_insertion_tasks_train_a_slot_reader(tmp_path: Path) -> None:
    from training.slot_reader.train import train_slot_reader

    with pytest.raises(ValueError, match="not an insertion task"):
        train_slot_reader("PickCube-v0", tmp_path / "reader.onnx", episodes=4, updates=1, look_step=5)


@pytest.mark.sim
def test_a_slot_reader_trains_on_look_views_and_exports(tmp_path: Path) -> None:
    """Four episodes' views (three to train, one held out), two updates: an exported reader that reads at
    the given step; a re-run finds the saved regressor and only exports."""
    from agent.insertion.slot_reader import reader_entry
    from training.slot_reader.train import train_slot_reader

    out = tmp_path / "reader.onnx"
    report = train_slot_reader("PegInsertionSide-v0", out, episodes=4, updates=2, look_step=5)
    assert report["views"] == {"train": 3, "test": 1}  # the arm reaches these four seeds' look poses
    assert set(report["held_out"]) == set(report["training"]) == set(report["predict_the_mean"]) == {
        "lateral_mm", "along_mm", "angle_rad"}
    assert reader_entry(out, "PegInsertionSide-v0").look_step == 5 and out.with_suffix(".pt").exists()
    again = train_slot_reader("PegInsertionSide-v0", out, episodes=4, updates=2, look_step=7)
    assert "held_out" not in again and reader_entry(out, "PegInsertionSide-v0").look_step == 7
