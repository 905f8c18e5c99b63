"""Staged rewards (`training.common.rewards`): what each stage pays, the checks before any work, and (real
simulator) the scripted StackCube expert's episode climbing the stages to success."""
import numpy as np
import pytest

from test_teachers import invoke
from training.algorithms import teacher as teacher_settings
from training.algorithms.two_stage import RunConfig
from training.common.rewards import (CLEARANCE, STAGES, check_reward, commanded_opening, level, stack_cube_stage,
                                     staged_reward, tilt)


def test_every_stage_pays_more_than_any_state_of_an_earlier_one_and_success_twice_the_last() -> None:
    n = 3
    lowest = [staged_reward(n, stage, 0.0, False) for stage in (1, 2, 3)]
    highest = [staged_reward(n, stage, 1.0, False) for stage in (1, 2, 3)]
    assert lowest == [2.0, 4.0, 6.0] and highest == [3.0, 5.0, 7.0]
    assert all(high < low for high, low in zip(highest, lowest[1:]))
    assert staged_reward(n, 3, 1.0, True) == 16.0 > 2 * highest[-1]  # worth a try at letting go that may fail
    assert staged_reward(n, 1, 0.0, True) == 16.0  # success pays the same whatever the stage function says


def test_unknown_rewards_and_tasks_without_stages_are_refused_naming_the_choices() -> None:
    check_reward("dense", "LiftCube-v0")
    check_reward("staged", "StackCube-v0")
    with pytest.raises(ValueError, match="unknown reward 'sparse'; one of dense, staged"):
        check_reward("sparse", "StackCube-v0")
    with pytest.raises(ValueError, match="no staged reward is defined for LiftCube-v0 .only for StackCube-v0.; use "
                                         "the task's own: reward 'dense'"):
        RunConfig("LiftCube-v0", reward="staged")
    assert teacher_settings.teacher_config("StackCube-v0", reward="staged").env_kwargs()["reward"] == "staged"
    assert RunConfig("StackCube-v0").env_kwargs()["reward"] == "dense"


def test_the_teacher_command_refuses_a_staged_reward_for_a_task_without_stages(monkeypatch: pytest.MonkeyPatch
                                                                               ) -> None:
    output = invoke(monkeypatch, "teacher", "LiftCube-v0", "--reward", "staged")
    assert "--reward" in output and "no staged reward is defined for LiftCube-v0" in output


def test_a_cube_resting_on_any_face_is_level_and_a_tipped_one_is_not() -> None:
    from sapien.core import Pose
    from transforms3d.euler import euler2quat

    assert tilt(Pose([0, 0, 0.02])) == pytest.approx(0.0, abs=1e-6)
    assert tilt(Pose([0, 0, 0.02], euler2quat(np.pi / 2, 0, np.pi / 3))) == pytest.approx(0.0, abs=1e-6)
    assert tilt(Pose([0, 0, 0.02], euler2quat(np.radians(24), 0, 0))) == pytest.approx(np.radians(24))
    assert tilt(Pose([0, 0, 0.02], euler2quat(np.radians(60), 0, 0))) == pytest.approx(np.radians(30))
    assert [level(Pose([0, 0, 0.02], euler2quat(np.radians(degrees), 0, 0))) for degrees in (0, 9, 36, 45)] == \
        pytest.approx([1.0, 0.8, 0.2, 0.0], abs=1e-3)


def _held_stage(offset_from_place: list, tilt_degrees: float = 0.0, on_b: bool = False) -> tuple:
    """StackCube's (stage, progress) with cube A grasped at `offset_from_place` (m) from its place on B, still and
    gripped by a closed gripper; `on_b`: what the env's check said."""
    from types import SimpleNamespace

    from sapien.core import Pose
    from transforms3d.euler import euler2quat

    b = np.array([0.05, -0.1, 0.02])
    place = b + [0.0, 0.0, 0.04]
    gripper = SimpleNamespace(config=SimpleNamespace(lower=-0.01))
    env = SimpleNamespace(box_half_size=np.full(3, 0.02), cubeB=SimpleNamespace(pose=Pose(b)),
                          cubeA=SimpleNamespace(pose=Pose(place + offset_from_place,
                                                          euler2quat(np.radians(tilt_degrees), 0, 0)),
                                                velocity=np.zeros(3), angular_velocity=np.zeros(3)),
                          agent=SimpleNamespace(controller=SimpleNamespace(controllers={"gripper": gripper}),
                                                robot=SimpleNamespace(get_drive_target=lambda: np.full(9, -0.01))))
    return stack_cube_stage(env, {"is_cubeA_on_cubeB": on_b, "is_cubaA_grasped": True})


def _carry_progress(offset_from_place: list, tilt_degrees: float = 0.0) -> float:
    stage, progress = _held_stage(offset_from_place, tilt_degrees)
    assert stage == 3
    return progress


def test_a_held_cube_is_lifted_to_the_height_of_its_place_before_it_is_carried() -> None:
    on_the_table, halfway, nearly = [_held_stage([0.1, 0.0, dz]) for dz in (-0.04, -0.0225, -0.0051)]
    assert [on_the_table[0], halfway[0], nearly[0]] == [2, 2, 2]
    assert on_the_table[1] == pytest.approx(0.0) and halfway[1] == pytest.approx(0.5) and nearly[1] < 1.0
    assert _held_stage([0.1, 0.0, -0.005])[0] == 3  # as high as the success check's tolerance: carried from here


def test_a_held_cube_on_b_counts_as_placed_only_near_b_axis_where_letting_go_leaves_it_there() -> None:
    assert _held_stage([0.005, 0.005, 0.0], on_b=True) == (4, pytest.approx(0.5))  # closed gripper, still cube
    off_centre = _held_stage([0.02, 0.0, 0.0], on_b=True)  # on B by the success check's 3.3 cm, but would fall
    assert off_centre[0] == 3 and off_centre == _held_stage([0.02, 0.0, 0.0])  # carried on towards B's axis


def test_the_carry_target_rises_above_b_away_from_its_axis_and_is_the_place_over_it() -> None:
    assert _carry_progress([0.0, 0.0, 0.0]) == pytest.approx(1.0)
    beside, above = [0.04, 0.0, 0.0], [0.04, 0.0, CLEARANCE]  # at the height of the place (B's side), or above it
    assert _carry_progress(above) > _carry_progress(beside)


def test_a_level_cube_pays_more_near_its_place_and_next_to_nothing_far_from_it() -> None:
    def gain(offset: list) -> float:
        return _carry_progress(offset) - _carry_progress(offset, tilt_degrees=45)

    assert gain([0.0, 0.0, 0.0]) == pytest.approx(0.5)
    assert gain([0.3, 0.0, CLEARANCE]) < 0.05  # 30 cm away: the tilt hardly matters


@pytest.mark.sim
def test_the_commanded_opening_follows_the_gripper_action_even_while_the_fingers_stay_put() -> None:
    """The release is paid on the gripper's drive target: 0 closed, 1 at the given opening, linear in the action."""
    from training.common.envs import make_env

    env = make_env("StackCube-v0", obs_mode="state", reward_mode="dense")
    env.reset(seed=0)
    openings = []
    for gripper in (-1.0, 0.0, 1.0):  # finger targets -0.01, 0.015, 0.04 m
        action = np.zeros(env.action_space.shape, dtype=np.float32)
        action[-1] = gripper
        env.step(action)
        openings.append((commanded_opening(env.unwrapped, 0.04), commanded_opening(env.unwrapped, 0.02)))
    env.close()
    assert openings == [pytest.approx(pair, abs=1e-4) for pair in ((0.0, 0.0), (0.5, 25 / 30), (1.0, 1.0))]


@pytest.mark.sim
def test_the_scripted_stack_cube_expert_climbs_the_stages_to_success() -> None:
    """Along a solved episode the stage never falls back, every stage appears, and success pays 4n + 4."""
    from training.common.envs import make_env
    from training.experts import make_expert

    n_stages, stage_of = STAGES["StackCube-v0"]
    env = make_env("StackCube-v0", obs_mode="state", reward_mode="dense", reward="staged")
    expert = make_expert("StackCube-v0")
    env.reset(seed=5)
    expert.reset(env)
    stages, rewards = [], []
    for _ in range(200):
        _, reward, terminated, truncated, info = env.step(expert.act(env))
        stages.append(stage_of(env.unwrapped, info)[0])
        rewards.append(reward)
        if terminated or truncated:
            break
    env.close()
    assert info["success"] and rewards[-1] == 4 * n_stages + 4
    assert stages[0] == 1 and sorted(set(stages)) == list(range(1, n_stages + 1)) and stages == sorted(stages)
    climbing = np.array(rewards[:-1])
    assert np.all(np.floor(climbing / 2) == np.array(stages[:-1]))  # 2k + progress, progress in [0, 1)
