"""PPO as in the challenge winners' ManiSkill2-Learn config (REFERENCE section 3), in one place.

Rollout -> GAE with time-limit bootstrapping -> clipped-surrogate updates with a critic warm-up
on the first update, KL early stopping, reward scaling by the running std of the discounted
return, advantage normalisation, and two Adam optimisers (the actor's skips the shared PointNet).
"""
from dataclasses import asdict, dataclass
from typing import Dict, Optional, Tuple

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from training.common.threads import torch_threads
from training.common.networks import ActorCritic
from training.common.running_stats import RunningMeanStd
from training.common.vec_env import EnvWorkers, Step


@dataclass
class PPOConfig:
    gamma: float = 0.95
    gae_lambda: float = 0.95
    clip: float = 0.2
    epochs: int = 2
    batch_size: int = 330
    samples_per_iteration: int = 20_000
    critic_warmup_epochs: int = 4
    lr: float = 3e-4
    max_grad_norm: float = 0.5
    target_kl: float = 0.2
    kl_stop_factor: float = 1.5
    value_coef: float = 0.5
    entropy_coef: float = 0.0
    # False: the shared PointNet stays fixed (fine-tuning a distilled student: its critic head starts
    # untrained, and the critic's gradient would rewrite the features its actor relies on). The env workers
    # then encode the clouds (`EnvWorkers.set_encoder`) and PPO's epochs train the heads on those features.
    train_pointnet: bool = True


def compute_gae(rewards: np.ndarray, values: np.ndarray, next_values: np.ndarray, terminated: np.ndarray,
                ended: np.ndarray, gamma: float, lam: float) -> Tuple[np.ndarray, np.ndarray]:
    """Advantages and returns for (T, W) arrays.

    `next_values[t]` is the value of the observation after step t (for an episode cut by the time
    limit: its last observation); it is ignored where `terminated`. GAE does not cross `ended`.
    """
    advantages = np.zeros_like(rewards)
    running = np.zeros(rewards.shape[1], dtype=rewards.dtype)
    for t in reversed(range(len(rewards))):
        delta = rewards[t] + gamma * next_values[t] * (1.0 - terminated[t]) - values[t]
        running = delta + gamma * lam * (1.0 - ended[t]) * running
        advantages[t] = running
    return advantages, advantages + values


def clipped_policy_loss(log_prob: torch.Tensor, old_log_prob: torch.Tensor, advantages: torch.Tensor,
                        clip: float) -> Tuple[torch.Tensor, torch.Tensor]:
    """PPO's clipped surrogate loss and the approximate KL(old || new)."""
    log_ratio = log_prob - old_log_prob
    ratio = log_ratio.exp()
    loss = -torch.min(ratio * advantages, ratio.clamp(1 - clip, 1 + clip) * advantages).mean()
    approx_kl = ((ratio - 1) - log_ratio).mean()
    return loss, approx_kl


class PPO:
    """Owns the model, optimisers and normalisers; `iteration()` collects and learns once."""

    def __init__(self, model: ActorCritic, config: PPOConfig) -> None:
        self.model, self.config = model, config
        self.actor_optimizer = torch.optim.Adam(model.actor_parameters(), lr=config.lr)
        self.critic_optimizer = torch.optim.Adam(model.critic_parameters(config.train_pointnet), lr=config.lr)
        self.return_stats = RunningMeanStd()
        self.updates = 0
        self._last: Step = None  # observation the next rollout starts from
        self._running_return: np.ndarray = None  # discounted, for reward scaling
        self._episode_return: np.ndarray = None  # undiscounted, for reporting
        self._episode_solved: np.ndarray = None  # success at any step so far (an episode may run on after it)

    def _evaluate(self, inputs: np.ndarray, state: np.ndarray) -> Tuple[torch.distributions.Normal, torch.Tensor]:
        return self.model.distribution_and_value(torch.from_numpy(inputs), torch.from_numpy(state))

    def restart_rollouts(self) -> None:
        """Make the next `collect` start from freshly reset environments."""
        self._last = None

    def collect(self, workers: EnvWorkers, progress: Optional[tqdm] = None, samples: Optional[int] = None
                ) -> Dict[str, np.ndarray]:
        """`samples` transitions (default `samples_per_iteration`; rounded up to a multiple of the worker count);
        `progress` advances by one per env step. Workers with an encoder (a frozen PointNet's,
        `EnvWorkers.set_encoder`) return features, which the rollout stores instead of the points.

        A worker replaced during a step (`Step.restarted`: it died or hung, and its replacement starts the
        interrupted episode again from its seed) leaves a transition without an outcome: it is kept in the
        (T, W) arrays but marked invalid (`rollout["valid"]`), and `learn` leaves it out. The interrupted
        episode's earlier transitions stay: they end there as if cut by the time limit, bootstrapped from
        the value of the last observation the worker returned (what GAE does at any time-limit cut), and
        no return crosses from them into the replayed episode. The interrupted episode counts towards
        neither `episode_returns` nor `episode_successes`; its replay does when it ends."""
        if workers.encoded and self.config.train_pointnet:
            raise ValueError("the env workers encode the clouds, so the PointNet cannot train: "
                             "set train_pointnet=False or clear the workers' encoder")
        with torch_threads(1):
            return self._collect(workers, progress, samples or self.config.samples_per_iteration)

    def _collect(self, workers: EnvWorkers, progress: Optional[tqdm], samples: int) -> Dict[str, np.ndarray]:
        n_steps = -(-samples // workers.n_workers)
        if self._last is None:
            self._last = workers.reset()
            self._running_return = np.zeros(workers.n_workers)
            self._episode_return = np.zeros(workers.n_workers)
            self._episode_solved = np.zeros(workers.n_workers, bool)
        keys = ("inputs", "state", "action", "log_prob", "value", "reward", "final_value", "truncated", "terminated",
                "ended", "valid")
        buffer = {key: [] for key in keys}
        episode_returns, successes = [], []
        self.model.eval()
        for _ in range(n_steps):
            obs = self._last
            with torch.no_grad():
                dist, value = self._evaluate(obs.inputs, obs.state)
                action = dist.sample()
                log_prob = dist.log_prob(action).sum(-1)
            step = workers.step(action.numpy())
            restarted = np.zeros(workers.n_workers, bool) if step.restarted is None else step.restarted
            valid = ~restarted
            ended = step.terminated | step.truncated | restarted  # GAE never crosses into a replayed episode
            if restarted.any() and buffer["ended"]:
                buffer["ended"][-1] = buffer["ended"][-1] | restarted  # the interrupted episode ends at its last step
            final_value = np.zeros(workers.n_workers, dtype=np.float32)
            if step.truncated.any():  # bootstrap a time-limit cut from the episode's last observation
                with torch.no_grad():
                    final_value = self._evaluate(step.final_inputs, step.final_state)[1].numpy()
            self._episode_return += step.reward
            self._episode_solved |= step.success
            for worker in np.flatnonzero(step.terminated | step.truncated):
                episode_returns.append(self._episode_return[worker])
                successes.append(self._episode_solved[worker])
            self._episode_return[ended] = 0.0
            self._episode_solved[ended] = False
            self._running_return = self._running_return * self.config.gamma + step.reward
            if valid.any():
                self.return_stats.update(self._running_return[valid])
            self._running_return[ended] = 0.0
            for key, value_ in zip(keys, (obs.inputs, obs.state, action.numpy(), log_prob.numpy(), value.numpy(),
                                          step.reward, final_value, step.truncated, step.terminated, ended, valid)):
                buffer[key].append(value_)
            self._last = step
            if progress is not None:
                progress.update(workers.n_workers)
        rollout = {key: np.stack(values) for key, values in buffer.items()}
        with torch.no_grad():
            last_value = self._evaluate(self._last.inputs, self._last.state)[1].numpy()
        # The value after step t is the value computed at step t + 1 (one forward pass per step),
        # except for episodes cut by the time limit.
        next_value = np.concatenate([rollout["value"][1:], last_value[None]])
        rollout["next_value"] = np.where(rollout.pop("truncated"), rollout.pop("final_value"), next_value)
        rollout["episode_returns"] = np.asarray(episode_returns)
        rollout["episode_successes"] = np.asarray(successes, dtype=bool)
        return rollout

    def learn(self, rollout: Dict[str, np.ndarray]) -> Dict[str, float]:
        """Clipped PPO updates on one rollout (its valid transitions: see `collect`); returns training statistics.
        A model that normalises its state (`ActorCritic.normalize_state`) then folds the rollout's states into its
        statistics, so the next rollout and its updates see the same ones.
        With a frozen PointNet the updates
        train the heads alone, on one torch thread (small matrices: more threads only wait on each other)."""
        if self.config.train_pointnet:
            return self._learn(rollout)
        with torch_threads(1):
            return self._learn(rollout)

    def _learn(self, rollout: Dict[str, np.ndarray]) -> Dict[str, float]:
        c = self.config
        scale = np.sqrt(self.return_stats.var + 1e-8)
        advantages, returns = compute_gae(rollout["reward"] / scale, rollout["value"], rollout["next_value"],
                                          rollout["terminated"].astype(np.float32), rollout["ended"].astype(np.float32),
                                          c.gamma, c.gae_lambda)
        valid = rollout["valid"].reshape(-1) if "valid" in rollout else np.ones(advantages.size, bool)
        flat = {key: torch.from_numpy(np.ascontiguousarray(  # (T, W, ...) -> (T * W, ...), also for (T, W, 0)
                    rollout[key].reshape(advantages.size, *rollout[key].shape[2:])[valid]))
                for key in ("inputs", "state", "action", "log_prob")}
        flat["advantage"] = torch.from_numpy(advantages.reshape(-1)[valid])
        flat["return"] = torch.from_numpy(returns.reshape(-1)[valid].astype(np.float32))
        n = len(flat["return"])
        self.model.train()
        stats = {"policy_loss": 0.0, "value_loss": 0.0, "approx_kl": 0.0, "minibatches": 0}
        if self.updates == 0:
            for _ in range(c.critic_warmup_epochs):
                for index in torch.randperm(n).split(c.batch_size):
                    _, value = self.model.distribution_and_value(flat["inputs"][index], flat["state"][index],
                                                                 c.train_pointnet)
                    self._step(c.value_coef * (value - flat["return"][index]).pow(2).mean())
        kl_stop = False
        for _ in range(c.epochs):
            for index in torch.randperm(n).split(c.batch_size):
                dist, value = self.model.distribution_and_value(flat["inputs"][index], flat["state"][index],
                                                                c.train_pointnet)
                log_prob = dist.log_prob(flat["action"][index]).sum(-1)
                advantage = flat["advantage"][index]
                advantage = (advantage - advantage.mean()) / (advantage.std() + 1e-8)
                policy_loss, approx_kl = clipped_policy_loss(log_prob, flat["log_prob"][index], advantage, c.clip)
                if approx_kl.item() > c.kl_stop_factor * c.target_kl:
                    kl_stop = True  # the policy moved too far: stop this update entirely
                    break
                value_loss = (value - flat["return"][index]).pow(2).mean()
                entropy = dist.entropy().sum(-1).mean()
                self._step(policy_loss + c.value_coef * value_loss - c.entropy_coef * entropy)
                stats["policy_loss"] += policy_loss.item()
                stats["value_loss"] += value_loss.item()
                stats["approx_kl"] += approx_kl.item()
                stats["minibatches"] += 1
            if kl_stop:
                break
        self.updates += 1
        if self.model.normalize_state:  # after the updates: a rollout and its updates see the same statistics
            self.model.update_state_normalization(flat["state"].numpy())
        count = max(stats.pop("minibatches"), 1)
        return {key: value / count for key, value in stats.items()}

    def _step(self, loss: torch.Tensor) -> None:
        self.actor_optimizer.zero_grad()
        self.critic_optimizer.zero_grad()
        loss.backward()
        for optimizer in (self.actor_optimizer, self.critic_optimizer):
            params = [p for group in optimizer.param_groups for p in group["params"]]
            nn.utils.clip_grad_norm_(params, self.config.max_grad_norm)
            optimizer.step()

    def state_dict(self) -> Dict:
        return {"model": self.model.state_dict(), "actor_optimizer": self.actor_optimizer.state_dict(),
                "critic_optimizer": self.critic_optimizer.state_dict(), "return_stats": self.return_stats.state_dict(),
                "updates": self.updates, "config": asdict(self.config)}

    def load_state_dict(self, state: Dict) -> None:
        """Restore model, optimisers, normalisers and update count (the config, learning rate included,
        stays this object's)."""
        self.model.load_state_dict(state["model"])
        for optimizer, key in ((self.actor_optimizer, "actor_optimizer"), (self.critic_optimizer, "critic_optimizer")):
            optimizer.load_state_dict(state[key])
            for group in optimizer.param_groups:
                group["lr"] = self.config.lr
        self.return_stats.load_state_dict(state["return_stats"])
        self.updates = state["updates"]
