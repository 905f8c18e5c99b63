"""PPO pieces against hand-computed values, two-stage selection/schedule, checkpoints."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from training.common.checkpoints import (CorruptCheckpointError, load_checkpoint, model_checkpoint, model_from_checkpoint,
                                  save_checkpoint)
from training.common.networks import ActorCritic
from training.algorithms.ppo import PPO, PPOConfig, clipped_policy_loss, compute_gae
from training.common.running_stats import RunningMeanStd
from training.common.vec_env import Step
from training.common.run_dir import RunDirectory, RunDirectoryError
from training.algorithms.two_stage import RunConfig, TwoStageRun
from training.common.selection import final_choice, select_best


def test_gae_by_hand_with_termination_and_truncation() -> None:
    # One env, 3 steps, gamma 0.5, lambda 0.5.
    # t=0: normal step; t=1: truncated (bootstrap from the final observation's value 4);
    # t=2: terminated (no bootstrap).
    rewards = np.array([[1.0], [2.0], [3.0]])
    values = np.array([[0.5], [1.0], [2.0]])
    next_values = np.array([[1.0], [4.0], [9.0]])
    terminated = np.array([[0.0], [0.0], [1.0]])
    ended = np.array([[0.0], [1.0], [1.0]])
    advantages, returns = compute_gae(rewards, values, next_values, terminated, ended, 0.5, 0.5)
    a2 = 3.0 - 2.0  # delta = r - V (terminated)
    a1 = 2.0 + 0.5 * 4.0 - 1.0  # delta with the truncation bootstrap; GAE stops at the episode end
    a0 = (1.0 + 0.5 * 1.0 - 0.5) + 0.25 * a1
    assert np.allclose(advantages[:, 0], [a0, a1, a2])
    assert np.allclose(returns, advantages + values)


def test_clipped_loss_and_kl_by_hand() -> None:
    old = torch.log(torch.tensor([0.5, 0.5]))
    new = torch.log(torch.tensor([0.8, 0.2]))  # ratios 1.6 and 0.4
    advantages = torch.tensor([1.0, -1.0])
    loss, kl = clipped_policy_loss(new, old, advantages, clip=0.2)
    # min(1.6*1, 1.2*1) = 1.2 ; min(0.4*-1, 0.8*-1) = -0.8 -> loss = -(1.2 - 0.8)/2
    assert loss.item() == pytest.approx(-0.2)
    expected_kl = np.mean([(1.6 - 1) - np.log(1.6), (0.4 - 1) - np.log(0.4)])
    assert kl.item() == pytest.approx(expected_kl, rel=1e-5)


def test_running_mean_std_matches_numpy() -> None:
    stats = RunningMeanStd()
    data = np.random.default_rng(0).normal(3.0, 2.0, 1000)
    for chunk in np.split(data, 10):
        stats.update(chunk)
    assert stats.mean == pytest.approx(data.mean(), rel=1e-3)
    assert stats.var == pytest.approx(data.var(), rel=1e-3)


def test_stage_two_schedule_follows_the_paper() -> None:
    config = RunConfig("PickCube-v0")
    assert (config.stage_ppo(1).batch_size, config.stage_ppo(1).samples_per_iteration) == (330, 20_000)
    assert (config.stage_ppo(2).batch_size, config.stage_ppo(2).samples_per_iteration) == (297, 17_500)


def test_a_stage_two_env_step_budget_cuts_its_last_iteration() -> None:
    continued = RunConfig("PickCube-v0", stage2_batch_factor=1.0, stage2_samples_factor=1.0, stage2_env_steps=35_000)
    assert [continued.iteration_samples(2, iteration) for iteration in range(3)] == [20_000, 15_000, 0]
    assert continued.iteration_samples(1, 5) == 20_000  # stage 1 has no budget
    assert [continued.trains(2, iteration) for iteration in range(3)] == [True, True, False]
    assert [RunConfig("PickCube-v0").iteration_samples(2, iteration) for iteration in range(3)] == [17_500] * 3


def record(stage: int, iteration: int, success: float, mean_return: float) -> dict:
    return {"stage": stage, "iteration": iteration, "success": success, "mean_return": mean_return}


def test_best_checkpoint_selection_and_ties() -> None:
    records = [record(1, 1, 0.5, 10), record(1, 2, 0.7, 5), record(1, 3, 0.7, 8), record(1, 4, 0.7, 8)]
    assert select_best(records, 1)["iteration"] == 3  # higher return wins the tie, then the earlier one
    assert final_choice(records)["iteration"] == 3
    assert final_choice(records + [record(2, 1, 0.7, 8)])["stage"] == 1  # equal is not better
    assert final_choice(records + [record(2, 1, 0.8, 1)])["stage"] == 2
    assert select_best(records, 2) is None


def test_checkpoint_round_trip_restores_model_and_optimisers(tmp_path: Path) -> None:
    ppo = PPO(ActorCritic(5, 3, [-1] * 3, [1] * 3), PPOConfig())
    ppo._step(ppo.model(torch.randn(2, 10, 6), torch.randn(2, 5)).pow(2).sum())
    ppo.return_stats.update(np.array([1.0, 2.0, 3.0]))
    path = tmp_path / "ckpt.pt"
    save_checkpoint(model_checkpoint(ppo.model, ppo=ppo.state_dict()), path)
    restored = PPO(ActorCritic(5, 3, [-1] * 3, [1] * 3), PPOConfig())
    restored.load_state_dict(load_checkpoint(path)["ppo"])
    for a, b in zip(ppo.model.state_dict().values(), restored.model.state_dict().values()):
        assert torch.equal(a, b)
    assert restored.actor_optimizer.state_dict()["state"].keys() == ppo.actor_optimizer.state_dict()["state"].keys()
    assert restored.return_stats.state_dict() == ppo.return_stats.state_dict()
    assert isinstance(model_from_checkpoint(path), ActorCritic)
    assert not list(tmp_path.glob("*.tmp"))  # the atomic write leaves no temporary file


def test_restored_optimisers_keep_this_runs_learning_rate(tmp_path: Path) -> None:
    ppo = PPO(ActorCritic(5, 3, [-1] * 3, [1] * 3), PPOConfig(lr=3e-4))
    ppo._step(ppo.model(torch.randn(2, 10, 6), torch.randn(2, 5)).pow(2).sum())
    fine_tuning = PPO(ActorCritic(5, 3, [-1] * 3, [1] * 3), PPOConfig(lr=3e-5))
    fine_tuning.load_state_dict(ppo.state_dict())  # e.g. stage 2 of a run with another --lr
    for optimizer in (fine_tuning.actor_optimizer, fine_tuning.critic_optimizer):
        assert [group["lr"] for group in optimizer.param_groups] == [3e-5]
        assert optimizer.state  # the Adam moments came along


def test_corrupt_checkpoint_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.pt"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(CorruptCheckpointError, match=str(path)):
        load_checkpoint(path)


def test_run_directory_with_another_config_is_refused(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"env_id": "LiftCube-v0"}))
    with pytest.raises(RunDirectoryError, match="another configuration"):
        TwoStageRun(tmp_path, RunConfig("PickCube-v0"))


def test_a_run_resumes_with_more_iterations_or_another_worker_count(tmp_path: Path) -> None:
    from dataclasses import replace

    TwoStageRun(tmp_path, RunConfig("PickCube-v0", stage1_iterations=2, n_workers=2))
    longer = replace(RunConfig("PickCube-v0"), stage1_iterations=9, stage2_iterations=4, n_workers=8)
    TwoStageRun(tmp_path, longer, resume=True)  # how long and on how many workers is not the run's identity
    assert json.loads((tmp_path / "config.json").read_text())["stage1_iterations"] == 9
    with pytest.raises(RunDirectoryError, match="another configuration"):
        TwoStageRun(tmp_path, replace(longer, seed=1), resume=True)


def test_a_run_started_before_a_setting_existed_resumes_with_its_default(tmp_path: Path) -> None:
    """A config.json without `success_ends_episode` (runs before 2026-12-07, whose success ended the episode) is the
    default config's run; one that lets episodes run on (a teacher's setting) is not."""
    from dataclasses import replace

    TwoStageRun(tmp_path, RunConfig("PickCube-v0"))
    stored = json.loads((tmp_path / "config.json").read_text())
    del stored["success_ends_episode"]
    (tmp_path / "config.json").write_text(json.dumps(stored))
    TwoStageRun(tmp_path, RunConfig("PickCube-v0"), resume=True)
    (tmp_path / "config.json").write_text(json.dumps(stored))
    with pytest.raises(RunDirectoryError, match="another configuration"):
        TwoStageRun(tmp_path, replace(RunConfig("PickCube-v0"), success_ends_episode=False), resume=True)


def test_unknown_env_id_is_refused_before_any_work(tmp_path: Path) -> None:
    with pytest.raises(KeyError, match="Unknown env id"):
        TwoStageRun(tmp_path / "run", RunConfig("Nope-v0"))
    assert not (tmp_path / "run").exists()


def test_metrics_are_written_as_csv_tensorboard_and_png(tmp_path: Path) -> None:
    directory = RunDirectory(tmp_path / "run", {"env_id": "PickCube-v0"})
    records = [{"stage": 1, "iteration": 0, "env_steps": 0, "success": 0.5, "mean_return": 2.0}]  # an initialisation
    for stage, iteration, steps, success in [(1, 1, 100, 0.1), (1, 2, 200, 0.3), (2, 1, 290, 0.4)]:
        records.append({"stage": stage, "iteration": iteration, "env_steps": steps, "success": success,
                        "mean_return": 1.0, "train_success": 0.2})  # training iterations add statistics
        directory.write_metrics(records, step_key="env_steps")
    lines = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    assert lines[0] == "stage,iteration,env_steps,success,mean_return,train_success"
    assert lines[1] == "1,0,0,0.5,2.0," and len(lines) == 5
    assert list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))
    assert (tmp_path / "run" / "learning_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


class ScriptedWorkers:
    """Two envs without a simulator: env 1 is cut by the time limit at its second step."""

    n_workers = 2
    encoded = False

    def __init__(self) -> None:
        self.t = 0

    def observation(self, value: float) -> tuple:
        return np.full((2, 8, 6), value, np.float32), np.full((2, 5), value, np.float32)

    def reset(self) -> Step:
        return self.step(None)

    def step(self, actions) -> Step:
        self.t += 1
        points, state = self.observation(self.t)
        truncated = np.array([False, self.t == 3])
        final_points, final_state = self.observation(100.0)
        return Step(points, state, np.ones(2, np.float32), np.zeros(2, bool), truncated, np.zeros(2, bool),
                    final_points, final_state, None)


def test_collect_bootstraps_from_the_next_observation_or_the_truncated_episodes_last() -> None:
    model = ActorCritic(5, 3, [-1] * 3, [1] * 3)
    ppo = PPO(model, PPOConfig(samples_per_iteration=6))
    rollout = ppo.collect(ScriptedWorkers())
    with torch.no_grad():
        def value(x: float) -> float:
            return model.distribution_and_value(torch.full((1, 8, 6), float(x)), torch.full((1, 5), float(x)))[1].item()
    # Observations 1, 2, 3 were acted on; after step 2 (observation 3 returned), env 1 was truncated.
    expected = np.array([[value(2), value(2)], [value(3), value(100)], [value(4), value(4)]])
    assert np.allclose(rollout["next_value"], expected, atol=1e-5)
    assert np.allclose(rollout["value"][:, 0], [value(1), value(2), value(3)], atol=1e-5)
    assert rollout["ended"].tolist() == [[False, False], [False, True], [False, False]]


class SolvedOnTheWayWorkers(ScriptedWorkers):
    """ScriptedWorkers whose env 1 succeeds at its first step and runs on (`success_ends_episode=False`) until the
    time limit cuts it, not succeeding then."""

    def step(self, actions) -> Step:
        step = super().step(actions)
        return step._replace(success=np.array([False, self.t == 2]))


def test_an_episode_that_succeeded_on_the_way_counts_as_a_success() -> None:
    rollout = PPO(ActorCritic(5, 3, [-1] * 3, [1] * 3), PPOConfig(samples_per_iteration=6)).collect(
        SolvedOnTheWayWorkers())
    assert rollout["episode_successes"].tolist() == [True]  # env 1's episode, ended by the time limit


class EncodedWorkers(ScriptedWorkers):
    """ScriptedWorkers whose clouds are encoded by a frozen PointNet, as `EnvWorkers.set_encoder` does."""

    encoded = True

    def __init__(self, pointnet: torch.nn.Module) -> None:
        super().__init__()
        self.pointnet = pointnet

    def step(self, actions) -> Step:
        step = super().step(actions)
        with torch.no_grad():
            features, final = (self.pointnet(torch.from_numpy(x)).numpy() for x in (step.points, step.final_points))
        return step._replace(points=None, final_points=None, features=features, final_features=final)


def test_a_frozen_pointnet_learns_from_the_workers_features_and_stays_fixed() -> None:
    torch.manual_seed(0)
    model = ActorCritic(5, 3, [-1] * 3, [1] * 3)
    reference = ActorCritic(5, 3, [-1] * 3, [1] * 3)
    reference.load_state_dict(model.state_dict())
    rollout = PPO(reference, PPOConfig(samples_per_iteration=6)).collect(ScriptedWorkers())
    ppo = PPO(model, PPOConfig(samples_per_iteration=6, batch_size=3, train_pointnet=False))
    torch.manual_seed(1)
    encoded = ppo.collect(EncodedWorkers(model.pointnet))
    assert encoded["inputs"].shape == (3, 2, model.pointnet.out_features)  # features, not (3, 2, 8, 6) clouds
    assert np.allclose(encoded["value"], rollout["value"], atol=1e-5)  # the same values as from the clouds
    assert np.allclose(encoded["next_value"], rollout["next_value"], atol=1e-5)
    pointnet_before = {k: v.clone() for k, v in model.pointnet.state_dict().items()}
    actor_before = model.actor[0].weight.clone()
    ppo.learn(encoded)
    assert all(torch.equal(v, model.pointnet.state_dict()[k]) for k, v in pointnet_before.items())
    assert not torch.equal(actor_before, model.actor[0].weight)


def test_a_learning_pointnet_refuses_encoded_workers() -> None:
    model = ActorCritic(5, 3, [-1] * 3, [1] * 3)
    with pytest.raises(ValueError, match="train_pointnet=False"):
        PPO(model, PPOConfig(samples_per_iteration=6)).collect(EncodedWorkers(model.pointnet))


class RestartingWorkers(ScriptedWorkers):
    """ScriptedWorkers whose env 0 is replaced during its third step (`Step.restarted`), as `EnvWorkers` does
    with a worker that died or hung: that step has no outcome and env 0 starts its episode again."""

    def step(self, actions) -> Step:
        step = super().step(actions)
        restarted = np.array([self.t == 4, False])
        reward = np.where(restarted, 0.0, step.reward).astype(np.float32)
        return step._replace(reward=reward, restarted=restarted)


def test_a_replaced_workers_lost_transition_is_masked_and_its_episode_cut_cleanly() -> None:
    model = ActorCritic(5, 3, [-1] * 3, [1] * 3)
    ppo = PPO(model, PPOConfig(samples_per_iteration=8, batch_size=4, critic_warmup_epochs=0))
    rollout = ppo.collect(RestartingWorkers())
    # Observations 1..4 were acted on; env 0's worker was lost while stepping from observation 3 (row 2).
    assert rollout["valid"].tolist() == [[True, True], [True, True], [False, True], [True, True]]
    assert rollout["ended"][:, 0].tolist() == [False, True, True, False]  # cut before, and at, the lost step
    with torch.no_grad():
        value_3 = model.distribution_and_value(torch.full((1, 8, 6), 3.0), torch.full((1, 5), 3.0))[1].item()
    assert rollout["next_value"][1, 0] == pytest.approx(value_3, abs=1e-5)  # bootstrapped from its last observation
    assert ppo.return_stats.count == pytest.approx(1e-4 + 7)  # the lost step adds no return sample
    learned = {}
    original = ppo.model.distribution_and_value

    def spy(inputs, state, *args):
        learned.setdefault("states", []).append(state[:, 0].clone())
        return original(inputs, state, *args)

    ppo.model.distribution_and_value = spy
    ppo.learn(rollout)
    seen = sorted(torch.cat(learned["states"]).tolist())  # two epochs over the 7 valid transitions
    assert seen == sorted([1.0, 1.0, 2.0, 2.0, 3.0, 4.0, 4.0] * 2)  # env 0's observation 3 is left out


def test_a_normalising_model_standardises_its_state_by_running_statistics(tmp_path: Path) -> None:
    model = ActorCritic(3, 2, [-1] * 2, [1] * 2, points=False, normalize_state=True)
    data = np.random.default_rng(0).normal([5.0, -2.0, 0.0], [0.01, 3.0, 1.0], (600, 3))
    for chunk in np.split(data, 3):
        model.update_state_normalization(chunk)
    assert np.allclose(model.state_mean.numpy(), data.mean(0), atol=1e-5)
    assert np.allclose(model.state_var.numpy(), data.var(0), rtol=1e-4)
    state = torch.tensor([[5.02, 1.0, 50.0]])
    standardised = (state - data.mean(0)) / np.sqrt(data.var(0))
    expected = torch.cat([standardised[:, :2], torch.tensor([[10.0]])], dim=1).float()  # clipped at +-10
    assert torch.allclose(model.features(torch.zeros((1, 0)), state), expected, atol=1e-3)
    path = tmp_path / "teacher.pt"
    save_checkpoint(model_checkpoint(model), path)
    restored = model_from_checkpoint(path)
    assert restored.normalize_state and torch.equal(restored.state_var, model.state_var)
    assert torch.equal(restored(torch.zeros((1, 0)), state), model(torch.zeros((1, 0)), state))
    plain = ActorCritic(3, 2, [-1] * 2, [1] * 2, points=False)
    assert torch.equal(plain.features(torch.zeros((1, 0)), state), state)  # the default reads the state as it is


def test_ppo_folds_a_rollouts_valid_states_into_the_statistics_after_its_updates() -> None:
    model = ActorCritic(5, 3, [-1] * 3, [1] * 3, normalize_state=True)
    ppo = PPO(model, PPOConfig(samples_per_iteration=8, batch_size=4, critic_warmup_epochs=0))
    rollout = ppo.collect(RestartingWorkers())
    assert model.state_count.item() == 0  # collecting leaves the statistics alone
    original, seen_means = model.distribution_and_value, []

    def spy(inputs, state, *args):
        seen_means.append(model.state_mean[0].item())
        return original(inputs, state, *args)

    model.distribution_and_value = spy
    ppo.learn(rollout)
    assert set(seen_means) == {0.0}  # the updates saw the statistics the rollout was collected with
    valid_states = [1.0, 1.0, 2.0, 2.0, 3.0, 4.0, 4.0]  # env 0's lost step (observation 3) is left out
    assert model.state_count.item() == 7
    assert model.state_mean[0].item() == pytest.approx(np.mean(valid_states))
    assert model.state_var[0].item() == pytest.approx(np.var(valid_states), rel=1e-5)


def test_a_run_resumes_on_another_backend(tmp_path: Path) -> None:
    from dataclasses import replace

    from training.common.vec_env import Backend

    TwoStageRun(tmp_path, RunConfig("PickCube-v0", n_workers=2))
    on_ray = replace(RunConfig("PickCube-v0"), n_workers=16, backend=Backend("ray", "10.0.0.1:6379", timeout=600))
    TwoStageRun(tmp_path, on_ray, resume=True)  # where the workers run is not the run's identity
    stored = json.loads((tmp_path / "config.json").read_text())
    assert stored["backend"] == {"kind": "ray", "address": "10.0.0.1:6379", "timeout": 600, "max_restarts": 3}
    assert RunConfig.from_dict(stored).backend == on_ray.backend


def test_a_run_evaluating_every_third_iteration_records_those_and_the_last(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Iterations 3, 6 and the stage's last (7) are evaluated and checkpointed; each record's training success
    covers the episodes that ended since the previous record."""
    class OneEpisodePerIteration:
        def __init__(self) -> None:
            self.iterations = 0

        def collect(self, train, bar, samples):
            self.iterations += 1
            return {"reward": np.zeros(samples), "episode_successes": np.array([float(self.iterations % 2)]),
                    "episode_returns": np.array([float(self.iterations)])}

        def learn(self, rollout):
            return {"policy_loss": float(self.iterations)}

    recorded = []
    monkeypatch.setattr(TwoStageRun, "_record", lambda self, ppo, progress, selection, **extra: recorded.append(
        {"iteration": progress["iteration"], **extra}) or {"success": 0.0, "mean_return": 0.0})
    run = TwoStageRun(tmp_path, RunConfig("PickCube-v0", stage1_iterations=7, eval_every=3))
    progress = {"records": [], "env_steps": 0, "stage": 1, "iteration": 0}
    run._train_stage(OneEpisodePerIteration(), progress, 1, train=None, selection=None)
    assert [record["iteration"] for record in recorded] == [3, 6, 7]
    assert [record["train_return"] for record in recorded] == [2.0, 5.0, 7.0]  # the mean of 1-3, 4-6, 7
    assert [record["train_success"] for record in recorded] == pytest.approx([2 / 3, 1 / 3, 1.0])
    assert [record["policy_loss"] for record in recorded] == [3.0, 6.0, 7.0]  # the latest iteration's
    assert progress["env_steps"] == 7 * RunConfig("PickCube-v0").ppo.samples_per_iteration
    with pytest.raises(ValueError, match="eval_every"):
        RunConfig("PickCube-v0", eval_every=0)


def test_every_evaluation_rewrites_result_json_with_the_choice_so_far(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A run stopped between evaluations (a session's end) leaves result.json naming its best evaluated
    checkpoint, which `distill --teacher RUN_DIR` then uses, not the choice of an earlier, shorter finish."""
    import training.algorithms.two_stage as two_stage

    scores = iter([(0.5, 10.0), (0.75, 5.0), (0.25, 50.0)])
    monkeypatch.setattr(two_stage, "evaluate", lambda actor, workers, episodes: dict(
        zip(("success", "mean_return"), next(scores))))
    run = TwoStageRun(tmp_path, RunConfig("PickCube-v0", stage1_iterations=3))
    ppo = PPO(ActorCritic(5, 3, [-1] * 3, [1] * 3), PPOConfig())
    progress = {"records": [], "env_steps": 0, "stage": 1, "iteration": 0}
    chosen = []
    for iteration in (1, 2, 3):
        progress.update(iteration=iteration, env_steps=100 * iteration)
        run._record(ppo, progress, selection=None)
        chosen.append(json.loads((tmp_path / "result.json").read_text()))
    assert [result["iteration"] for result in chosen] == [1, 2, 2]
    assert chosen[-1]["checkpoint"] == str(tmp_path / "checkpoints" / "stage1-0002.pt")
    assert (tmp_path / "checkpoints" / "stage1-0002.pt").is_file()
