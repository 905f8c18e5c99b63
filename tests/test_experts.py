"""Privileged experts: registry errors, PickCube success, official demo layout."""
import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from training.common.envs import make_env
from training.experts import EXPERTS, Expert, evaluate_expert, make_expert, parse_settings, record_demos


def test_unsupported_task_names_the_supported_ones() -> None:
    with pytest.raises(ValueError) as error:
        make_expert("TurnFaucet-v0")
    assert "TurnFaucet-v0" in str(error.value)
    assert all(env_id in str(error.value) for env_id in EXPERTS)


def test_settings_override_one_expert_and_unknown_names_are_refused() -> None:
    expert = make_expert("PegInsertionSide-v0", {"lean": 0.5, "sag_gain": 2})
    assert (expert.lean, expert.sag_gain) == (0.5, 2.0)
    assert make_expert("PegInsertionSide-v0").lean == 0.3  # the class default is left alone
    with pytest.raises(ValueError, match="PickCubeExpert has no setting 'lean'"):
        make_expert("PickCube-v0", {"lean": 0.5})
    with pytest.raises(ValueError, match="no setting 'steps'"):  # a counter, not a setting
        make_expert("PegInsertionSide-v0", {"steps": 3})


def test_settings_parse_from_name_equals_number() -> None:
    assert parse_settings(["sag_gain=3", " push_ramp = 1.5"]) == {"sag_gain": 3.0, "push_ramp": 1.5}
    for bad in ("sag_gain", "sag_gain=x", "=3"):
        with pytest.raises(ValueError, match="NAME=NUMBER"):
            parse_settings([bad])


@pytest.mark.sim
def test_pick_cube_expert_succeeds() -> None:
    result = evaluate_expert("PickCube-v0", n_episodes=3, first_seed=0)
    assert result["success_rate"] == 1.0
    assert 0 < result["mean_length"] < 200


class Idle(Expert):
    def act(self, env) -> np.ndarray:
        return np.zeros(7, dtype=np.float32)


@pytest.mark.sim
def test_evaluate_expert_runs_the_expert_it_is_given() -> None:
    """An expert that never moves fails where the task's own succeeds (seed 0, see above)."""
    result = evaluate_expert("PickCube-v0", n_episodes=1, first_seed=0, expert=Idle())
    assert result["success_rate"] == 0.0 and result["failed_seeds"] == [0]
    assert result["mean_length"] == 200


@pytest.mark.sim
def test_expert_labels_states_off_its_own_path() -> None:
    """DAgger use: states reached by random actions still get finite, in-range labels."""
    env = make_env("PickCube-v0", obs_mode="state", control_mode="pd_ee_delta_pose")
    expert = make_expert("PickCube-v0")
    env.action_space.seed(0)
    try:
        env.reset(seed=0)
        expert.reset(env)
        for _ in range(20):
            action = expert.act(env)
            assert action.shape == (7,) and np.all(np.isfinite(action))
            assert np.all(np.abs(action) <= 1.0 + 1e-6)
            env.step(env.action_space.sample())
    finally:
        env.close()


@pytest.mark.sim
def test_record_demos_writes_official_layout(tmp_path: Path) -> None:
    summary = record_demos("PickCube-v0", tmp_path, n_episodes=2, first_seed=0)
    assert summary == {"episodes": 2, "kept": 2}
    meta = json.loads((tmp_path / "trajectory.json").read_text())
    assert meta["env_info"]["env_id"] == "PickCube-v0"
    assert [episode["episode_id"] for episode in meta["episodes"]] == [0, 1]
    assert [episode["reset_kwargs"]["seed"] for episode in meta["episodes"]] == [0, 1]
    assert all(episode["control_mode"] == "pd_ee_delta_pose" for episode in meta["episodes"])
    with h5py.File(tmp_path / "trajectory.h5", "r") as file:
        assert sorted(file) == ["traj_0", "traj_1"]
        for episode in meta["episodes"]:
            traj = file["traj_{}".format(episode["episode_id"])]
            steps = episode["elapsed_steps"]
            assert traj["actions"].shape == (steps, 7)
            assert traj["env_states"].shape[0] == steps + 1
            assert traj["success"][-1] and not traj["success"][:-1].any()


@pytest.mark.sim
@pytest.mark.parametrize("env_id", ["PickCube-v0", "PegInsertionSide-v0", "PlugCharger-v0"])
def test_grasp_descent_is_continuous_in_the_alignment(env_id: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Above the grasp pose, the expert descends further the better aligned the TCP is, with no jump
    between "rise" and "descend" labels (a student averaging such labels stalls in mid-air), and a
    0.03 rad wrist error (inside the grasp tolerances, outside the insertion experts' 0.015 rad
    one for pushing in) does not stop the descent, nor does its speed fade near the closing height."""
    from transforms3d.euler import euler2quat

    import sapien.core as sapien
    from training.experts import base

    env = make_env(env_id, obs_mode="state", control_mode="pd_ee_delta_pose")
    try:
        env.reset(seed=0)
        expert = make_expert(env_id)
        expert.reset(env)
        grasp = expert.grasp_pose(env)
        monkeypatch.setattr(base, "gripper_width", lambda _: 0.08)

        def descent(lateral: float, angle: float = 0.0, height: float = 0.045, axis: int = 0) -> float:
            hover = grasp * sapien.Pose(np.insert([0.0, -height], axis, lateral), euler2quat(0.0, 0.0, angle))
            monkeypatch.setattr(base, "tcp_pose", lambda _: hover)
            return float(expert.reach_and_grasp(env)[2])  # TCP z: towards the object

        assert descent(0.0, angle=0.03) > 0.4  # straight down the 4.5 cm, clipped at 0.5
        # the peg and the charger are grasped with 0.25 rad of yaw tolerance, cubes with 0.1
        assert (descent(0.0, angle=0.1) > 0.4) == (env_id != "PickCube-v0")
        # the peg is grasped within 2 cm along its length and 1.5 cm across, cubes and the charger within 1 cm
        peg = env_id == "PegInsertionSide-v0"
        assert all((descent(0.007, height=0.011, axis=axis) > 0.08) == peg for axis in (0, 1))
        for axis, tolerance in enumerate(expert.grasp_lateral_tolerance):  # along the finger pads, closing axis
            for height in (0.045, 0.011, 0.009):  # above, and either side of, the closing height
                steps = [descent(lateral, height=height, axis=axis) for lateral in np.linspace(0.0, 1.2 * tolerance, 61)]
                assert steps[0] > 0.08 and steps[-1] < 0.0  # aligned: down; 1.2 tolerances off: up to the pregrasp height
                # one step of ~0.1 where closing (towards the grasp pose) gives way to descending (towards ~1 cm)
                assert np.all(np.diff(steps) <= 1e-6) and np.max(np.abs(np.diff(steps))) < 0.12
    finally:
        env.close()


@pytest.mark.parametrize("env_id", ["PegInsertionSide-v0", "PlugCharger-v0"])
def test_insertion_push_slows_continuously_with_the_misalignment(env_id: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Lined up in front of the slot, the insertion expert pushes in at full speed within its tolerances,
    slower and slower up to `push_ramp` times them, and not at all beyond; past its hold point that far
    off, it backs out. No jump between "hold" and "push" labels (students given the exact state stalled
    in front of the hole behind such a switch)."""
    import sapien.core as sapien
    from training.experts import assembly

    env = make_env(env_id, obs_mode="state", control_mode="pd_ee_delta_pose")
    try:
        env.reset(seed=0)
        expert = make_expert(env_id)
        expert.reset(env)
        entrance, goal = expert.entrance(env), expert.goal_pose(env)
        targets = []
        monkeypatch.setattr(assembly, "carry_action", lambda _env, _held, target, *args: targets.append(target))

        def advance(x: float, lateral: float) -> float:
            """Slot-frame distance the expert's target lies ahead of the object at (x, lateral, 0)."""
            monkeypatch.setattr(expert, "slot_offset", lambda _: sapien.Pose([x, lateral, 0.0]))
            expert.carry(env)
            return float((goal.inv() * targets[-1]).p[0]) - x

        tolerance = expert.lateral_tolerance
        in_front = entrance - expert.clearance - 0.005  # behind the hold point for any error swept here
        ahead = [advance(in_front, lateral) for lateral in np.linspace(0.0, 2.5 * tolerance, 51)]
        assert ahead[0] == pytest.approx(expert.push_step, abs=1e-6) and ahead[-1] == pytest.approx(0.0, abs=1e-6)
        assert np.all(np.diff(ahead) <= 1e-6) and np.max(np.abs(np.diff(ahead))) < 0.06 * expert.push_step
        assert expert.push_share(sapien.Pose([0.0, 1.5 * tolerance, 0.0])) == pytest.approx(0.5)
        assert advance(entrance + 0.002, 3 * tolerance) == pytest.approx(-expert.push_step, abs=1e-6)  # inside, out of line: back out
    finally:
        env.close()


@pytest.mark.sim
def test_plug_charger_expert_turns_down_after_its_look_instead_of_stalling_at_the_wrist_limit() -> None:
    """Seed 10000: after the 0.9-rad look, turning straight to the grasp ran the wrist into its joint limit."""
    results = {}
    for unlook_tilt in (None, 0.5):
        expert = make_expert("PlugCharger-v0")
        expert.look_steps, expert.unlook_tilt = 40, unlook_tilt
        results[unlook_tilt] = evaluate_expert("PlugCharger-v0", n_episodes=1, first_seed=10000, expert=expert)
    assert results[None]["success_rate"] == 0.0 and results[None]["mean_length"] == 200
    assert results[0.5]["success_rate"] == 1.0
