"""Learned teachers: the state policy and its checkpoint, PPO on state inputs, the checks before any simulator starts,
the privileged state a point-cloud env gives the teacher, and (real simulator) the whole pipeline on a task that needs
downloaded assets, PickSingleEGAD-v0, on a synthetic asset set: teacher PPO, a DAgger round, export, the agent."""
import inspect
import json
from dataclasses import replace
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from synthetic_assets import use_assets, write_egad, write_ycb
from training.algorithms import teacher as teacher_settings
from training.algorithms.ppo import PPO
from training.algorithms.two_stage import RunConfig
from training.cli import app
from training.common.checkpoints import model_checkpoint, model_from_checkpoint, save_checkpoint
from training.common.networks import ActorCritic
from training.experts.teacher import TeacherError


def state_teacher(state_size: int = 9) -> ActorCritic:
    torch.manual_seed(0)
    return ActorCritic(state_size, 7, [-1.0] * 7, [1.0] * 7, points=False)


def test_a_state_policy_reads_the_state_alone_and_survives_its_checkpoint(tmp_path: Path) -> None:
    model = state_teacher()
    assert model.pointnet is None and model.critic[0].in_features == 9
    assert {id(p) for p in model.critic_parameters()} == {id(p) for p in model.critic.parameters()}
    state = torch.randn(4, 9)
    save_checkpoint(model_checkpoint(model), tmp_path / "t.pt")
    loaded = model_from_checkpoint(tmp_path / "t.pt")
    assert loaded.pointnet is None
    with torch.no_grad():
        assert torch.equal(loaded(torch.zeros(4, 0), state), model(torch.zeros(4, 0), state))
    point_policy = ActorCritic(9, 7, [-1.0] * 7, [1.0] * 7)
    save_checkpoint(model_checkpoint(point_policy), tmp_path / "p.pt")
    assert model_from_checkpoint(tmp_path / "p.pt").pointnet is not None


def state_rollout(model, T: int = 64, W: int = 2, S: int = 9) -> dict:
    """A rollout of state observations ((T, W, 0) inputs) whose reward favours a positive first action entry."""
    rng = np.random.default_rng(0)
    state = rng.normal(size=(T, W, S)).astype(np.float32)
    action = rng.normal(0, 0.3, size=(T, W, 7)).astype(np.float32)
    with torch.no_grad():
        dist, value = model.distribution_and_value(torch.zeros(T * W, 0), torch.from_numpy(state.reshape(T * W, S)))
        log_prob = dist.log_prob(torch.from_numpy(action.reshape(T * W, 7))).sum(-1).reshape(T, W).numpy()
    reward = (action[..., 0] > 0).astype(np.float32)  # better where the first action entry is positive
    return {"inputs": np.zeros((T, W, 0), np.float32), "state": state, "action": action, "log_prob": log_prob,
            "value": value.reshape(T, W).numpy(), "reward": reward, "next_value": np.zeros((T, W), np.float32),
            "terminated": np.ones((T, W), bool), "ended": np.ones((T, W), bool), "valid": np.ones((T, W), bool)}


def test_ppo_learns_from_state_rollouts_without_points() -> None:
    """A rollout whose inputs are (T, W, 0) (state observations) trains the same PPO: the advantage-weighted
    action becomes more likely."""
    S = 9
    model = state_teacher(S)
    ppo = PPO(model, replace(teacher_settings.PPO_SETTINGS, batch_size=32, epochs=4, critic_warmup_epochs=0))
    rollout = state_rollout(model, S=S)

    def first_entry() -> float:
        with torch.no_grad():
            return float(model(torch.zeros(1, 0), torch.zeros(1, S))[0, 0])

    before = first_entry()
    stats = ppo.learn(rollout)
    assert np.isfinite(stats["policy_loss"]) and first_entry() > before


def test_an_entropy_bonus_keeps_more_action_noise() -> None:
    noise = []
    for entropy_coef in (0.0, 0.5):
        torch.manual_seed(0)
        np.random.seed(0)  # the same model, rollout and minibatches: only the bonus differs
        model = state_teacher(9)
        ppo = PPO(model, replace(teacher_settings.PPO_SETTINGS, batch_size=32, epochs=4, critic_warmup_epochs=0,
                                 entropy_coef=entropy_coef))
        ppo.learn(state_rollout(model))
        noise.append(float(model.log_std.detach().sum()))
    assert noise[1] > noise[0]


def test_teacher_options_default_to_the_teacher_settings() -> None:
    command = next(c for c in app.registered_commands if (c.name or c.callback.__name__) == "teacher")
    defaults = {key: getattr(parameter.default, "default", None)
                for key, parameter in inspect.signature(command.callback).parameters.items()}
    ppo = teacher_settings.PPO_SETTINGS
    assert (defaults["samples_per_iteration"], defaults["batch_size"], defaults["epochs"], defaults["lr"],
            defaults["gamma"], defaults["target_kl"], defaults["entropy_coef"]) == (
        ppo.samples_per_iteration, ppo.batch_size, ppo.epochs, ppo.lr, ppo.gamma, ppo.target_kl, ppo.entropy_coef)
    assert (defaults["iterations"], defaults["eval_episodes"], defaults["eval_every"],
            defaults["max_episode_steps"], defaults["normalize_state"]) == (
        teacher_settings.ITERATIONS, teacher_settings.EVAL_EPISODES, teacher_settings.EVAL_EVERY,
        teacher_settings.MAX_EPISODE_STEPS, teacher_settings.NORMALIZE_STATE)
    config = teacher_settings.teacher_config("LiftCube-v0")
    assert config.eval_every == teacher_settings.EVAL_EVERY
    assert config.normalize_state == teacher_settings.NORMALIZE_STATE
    assert teacher_settings.teacher_config("LiftCube-v0", normalize_state=True).normalize_state
    with pytest.raises(ValueError, match="state policies"):
        RunConfig("LiftCube-v0", normalize_state=True)  # a point-cloud run: its export would drop the statistics
    assert config.obs_mode == "state" and config.ppo == ppo and config.ppo is not ppo
    assert not config.success_ends_episode  # a terminal success pays less than hovering just short of it


def test_success_does_not_end_an_episode_that_continues_but_the_time_limit_does() -> None:
    import gymnasium as gym

    from training.common.envs import SuccessContinues

    class Solved(gym.Env):
        observation_space = action_space = gym.spaces.Box(-1.0, 1.0, (1,))

        def reset(self, seed=None, options=None):
            return np.zeros(1, np.float32), {}

        def step(self, action):
            return np.zeros(1, np.float32), 5.0, True, False, {"success": True}

    env = SuccessContinues(gym.wrappers.TimeLimit(Solved(), max_episode_steps=2))
    env.reset(seed=0)
    assert env.step(np.zeros(1))[1:] == (5.0, False, False, {"success": True})
    assert env.step(np.zeros(1))[2:4] == (False, True)


def refuse(*args: Any, **kwargs: Any) -> None:
    raise AssertionError("started the simulator before checking the input")


def invoke(monkeypatch: pytest.MonkeyPatch, *args: str) -> str:
    """`ms2agent ARGS`, which must exit with a usage error before any env worker starts; its output."""
    import training.algorithms.two_stage as two_stage
    import training.common.vec_env as vec_env

    monkeypatch.setattr(vec_env, "EnvWorkers", refuse)
    monkeypatch.setattr(two_stage, "EnvWorkers", refuse)
    monkeypatch.setenv("COLUMNS", "500")  # the error box on one line
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    return " ".join(result.output.split())


def test_a_teacher_for_a_soft_body_task_is_refused_naming_bc(monkeypatch: pytest.MonkeyPatch) -> None:
    output = invoke(monkeypatch, "teacher", "Excavate-v0")
    assert "Excavate-v0 is a soft-body task" in output and "ms2agent bc Excavate-v0 DEMO.h5" in output


def save_teacher(path: Path, env_id: str, obs_mode: Optional[str] = "state", points: bool = False) -> Path:
    model = ActorCritic(9, 7, [-1.0] * 7, [1.0] * 7, points=points)
    save_checkpoint(model_checkpoint(model, config={"env_id": env_id, "obs_mode": obs_mode}), path)
    return path


@pytest.mark.parametrize("command", ["distill", "diagnose"])
def test_a_teacher_of_another_task_or_observation_mode_is_refused_naming_the_fix(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str) -> None:
    student = [str(tmp_path / "student.pt")] if command == "diagnose" else []
    fix = "train one with `ms2agent teacher LiftCube-v0` and pass --teacher runs/LiftCube-v0/teacher"
    other_task = save_teacher(tmp_path / "pick.pt", "PickCube-v0")
    output = invoke(monkeypatch, command, "LiftCube-v0", *student, "--teacher", str(other_task))
    assert "{} is a teacher for PickCube-v0, not LiftCube-v0: {}".format(other_task, fix) in output
    point_cloud = save_teacher(tmp_path / "student-round3.pt", "LiftCube-v0", obs_mode=None, points=True)
    output = invoke(monkeypatch, command, "LiftCube-v0", *student, "--teacher", str(point_cloud))
    assert "{} is a point-cloud policy, not a learned teacher".format(point_cloud) in output and fix in output
    output = invoke(monkeypatch, command, "LiftCube-v0", *student, "--teacher", str(tmp_path))
    assert "{} holds no result.json".format(tmp_path) in output


def test_a_teacher_starts_from_a_teacher_of_its_task_and_nothing_else(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    own = save_teacher(tmp_path / "lift.pt", "LiftCube-v0")
    config = teacher_settings.teacher_config("LiftCube-v0", init_from=str(own), init_log_std=-2.0)
    assert (config.init_from, config.init_log_std, config.obs_mode) == (str(own), -2.0, "state")
    with pytest.raises(TeacherError, match="pass both"):
        teacher_settings.teacher_config("LiftCube-v0", init_log_std=-2.0)
    point_cloud = save_teacher(tmp_path / "student-round3.pt", "LiftCube-v0", obs_mode=None, points=True)
    output = invoke(monkeypatch, "teacher", "LiftCube-v0", "--init-from", str(point_cloud))
    assert "{} is a point-cloud policy, not a learned teacher".format(point_cloud) in output
    output = invoke(monkeypatch, "teacher", "LiftCube-v0", "--init-from", str(save_teacher(tmp_path / "pick.pt",
                                                                                             "PickCube-v0")))
    assert "is a teacher for PickCube-v0, not LiftCube-v0" in output
    assert "no-such.pt" in invoke(monkeypatch, "teacher", "LiftCube-v0", "--init-from", str(tmp_path / "no-such.pt"))


def test_a_teacher_run_directory_names_its_chosen_checkpoint(tmp_path: Path) -> None:
    from training.experts.teacher import teacher_checkpoint

    chosen = save_teacher(tmp_path / "checkpoints" / "stage1-0002.pt", "LiftCube-v0")
    (tmp_path / "result.json").write_text(json.dumps({"checkpoint": str(chosen)}))
    assert teacher_checkpoint(tmp_path, "LiftCube-v0") == chosen


@pytest.mark.sim
def test_a_point_cloud_env_gives_the_teacher_the_state_observation() -> None:
    from training.common.envs import make_env
    from training.experts.teacher import privileged_state

    state_env = make_env("PickCube-v0", obs_mode="state")
    cloud_env = make_env("PickCube-v0", obs_mode="pointcloud", fast_render=None)
    try:
        observation, _ = state_env.reset(seed=7)
        cloud_env.reset(seed=7)
        mode = cloud_env.unwrapped._obs_mode
        assert np.allclose(privileged_state(cloud_env), observation, atol=1e-6)
        action = np.float32([0.3, -0.2, 0.1, 0.0, 0.0, 0.1, -1.0])
        observation = state_env.step(action)[0]
        cloud_observation = cloud_env.step(action)[0]
        assert np.allclose(privileged_state(cloud_env), observation, atol=1e-6)
        assert isinstance(cloud_observation, dict) and mode != "state" and cloud_env.unwrapped._obs_mode == mode
    finally:
        state_env.close()
        cloud_env.close()


@pytest.mark.sim
def test_the_synthetic_assets_are_what_both_pick_single_tasks_read(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from agent.registry import get_task
    from training.common.envs import make_env, missing_assets

    use_assets(tmp_path, monkeypatch)
    for env_id, write in (("PickSingleEGAD-v0", write_egad), ("PickSingleYCB-v0", write_ycb)):
        assert missing_assets(get_task(env_id))  # the CLI's check sees an empty asset directory
        models = write(tmp_path)
        assert not missing_assets(get_task(env_id))
        env = make_env(env_id, obs_mode="state")
        try:
            env.reset(seed=0)
            assert env.unwrapped.model_id in models and sorted(env.unwrapped.model_ids) == models
            observation, reward, *_ = env.step(env.action_space.sample())
            assert np.isfinite(observation).all() and np.isfinite(reward)
        finally:
            env.close()


@pytest.mark.sim
def test_egad_on_synthetic_assets_teacher_dagger_export_and_agent(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """PickSingleEGAD-v0 without its download: two teacher PPO iterations on state observations, round 0 and one
    DAgger round labelled by that teacher, the export, and the shipped agent acting on the exported policy."""
    from agent.policy import Policy
    from training.algorithms.distill import DistillConfig, distill
    from training.common.envs import make_env
    from training.export.export import export_checkpoint

    env_id = "PickSingleEGAD-v0"
    models = write_egad(tmp_path / "assets")
    use_assets(tmp_path / "assets", monkeypatch)
    ppo = replace(teacher_settings.PPO_SETTINGS, samples_per_iteration=200, batch_size=100, epochs=2)
    config = teacher_settings.teacher_config(env_id, ppo, iterations=2, eval_episodes=1, max_episode_steps=50,
                                             n_workers=1)
    result = teacher_settings.train_teacher(tmp_path / "teacher", config)
    assert result["iteration"] in (1, 2) and (tmp_path / "teacher" / "checkpoints" / "stage1-0002.pt").exists()
    assert model_from_checkpoint(Path(result["checkpoint"])).pointnet is None

    distilled = distill(tmp_path / "distill", DistillConfig(
        env_id, rounds=2, samples_per_round=40, updates_per_round=5, eval_episodes=1, n_workers=1,
        teacher=str(tmp_path / "teacher")))
    assert [record["round"] for record in distilled["records"]] == [0, 1]
    labels = np.load(tmp_path / "distill" / "data" / "round1.npz")["label"]
    assert labels.shape == (40, 7) and np.abs(labels).max() <= 1.0 and labels.std(axis=0).max() > 0

    summary = export_checkpoint(Path(distilled["student"]), env_id, tmp_path / "weights", "test")
    assert summary["max_abs_diff"] <= 1e-4
    env = make_env(env_id, obs_mode="pointcloud")
    try:
        policy = Policy(env_id, env.observation_space, env.action_space, weights=tmp_path / "weights")
        observation, _ = env.reset(seed=0)
        assert env.unwrapped.model_id in models
        for _ in range(3):
            action = policy.act(observation)
            assert action.shape == (7,) and np.isfinite(action).all()
            observation = env.step(action)[0]
    finally:
        env.close()


def test_the_teacher_noise_after_init_from_is_one_value_or_one_per_action_dimension(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    own = str(save_teacher(tmp_path / "lift.pt", "LiftCube-v0"))
    per_dimension = [-2.3] * 6 + [-1.0]
    assert teacher_settings.teacher_config("LiftCube-v0", init_from=own, init_log_std=per_dimension).init_log_std == \
        per_dimension
    with pytest.raises(TeacherError, match="--init-log-std gives 2 values; LiftCube-v0's action has 7 dimensions"):
        teacher_settings.teacher_config("LiftCube-v0", init_from=own, init_log_std=[-2.3, -1.0])
    assert "gives 2 values" in invoke(monkeypatch, "teacher", "LiftCube-v0", "--init-from", own,
                                      "--init-log-std", "-2.3,-1")
    assert "'-2.3;-1' is not a number or a comma-separated list of numbers" in invoke(
        monkeypatch, "teacher", "LiftCube-v0", "--init-from", own, "--init-log-std", "-2.3;-1")


@pytest.mark.sim
def test_a_teacher_started_from_another_takes_its_policy_and_the_noise_of_each_action_dimension(
        tmp_path: Path) -> None:
    import torch

    ppo = replace(teacher_settings.PPO_SETTINGS, samples_per_iteration=100, batch_size=50, epochs=1)
    tiny = dict(iterations=1, eval_episodes=1, eval_every=1, max_episode_steps=20, n_workers=1)
    first = teacher_settings.train_teacher(tmp_path / "first", teacher_settings.teacher_config("LiftCube-v0", ppo,
                                                                                               **tiny))
    per_dimension = [-2.3] * 6 + [-1.0]
    teacher_settings.train_teacher(tmp_path / "second", teacher_settings.teacher_config(
        "LiftCube-v0", ppo, init_from=first["checkpoint"], init_log_std=per_dimension, **tiny))
    start = torch.load(tmp_path / "second" / "checkpoints" / "stage1-0000.pt", weights_only=False)["model"]
    source = torch.load(first["checkpoint"], weights_only=False)["model"]
    assert torch.allclose(start["log_std"], torch.tensor(per_dimension))
    assert all(torch.equal(start[key], source[key]) for key in source if key != "log_std")
