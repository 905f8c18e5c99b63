"""Deterministic evaluation of a policy on fixed seeds (episodes end at success or time limit)."""
from typing import Callable, Dict

import numpy as np
import torch
from tqdm import tqdm

from training.common import seeds
from training.common.threads import torch_threads
from training.common.vec_env import EnvWorkers

Actor = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (points or encoded features, state) batches -> actions


def torch_actor(model: torch.nn.Module) -> Actor:
    """The model's deterministic action path as a numpy function."""
    def act(inputs: np.ndarray, state: np.ndarray) -> np.ndarray:
        model.eval()
        with torch.no_grad(), torch_threads(1):
            return model(torch.from_numpy(inputs), torch.from_numpy(state)).numpy()
    return act


def evaluate(actor: Actor, workers: EnvWorkers, n_episodes: int) -> Dict[str, float]:
    """Success rate, mean return and mean length over episodes with seeds first_seed + i, i < n_episodes
    (worker w runs seeds first_seed + w + k * n_workers): the same seeds on every call. The seeds must lie in
    the range of the workers' purpose (`training.common.seeds`): selection workers never play a report seed.
    An episode whose worker was replaced (`Step.restarted`) is played again from its seed and counted once."""
    if workers.purpose == "training":
        raise seeds.SeedRangeError("evaluate on selection or report workers, not on training seeds")
    seeds.check(workers.purpose, workers.first_seed, n_episodes)
    n = workers.n_workers
    wanted = [len(range(w, n_episodes, n)) for w in range(n)]
    done = [0] * n
    returns, lengths = np.zeros(n), np.zeros(n)
    success, episode_returns, episode_lengths = [], [], []
    step = workers.reset(restart_seeds=True)
    bar = tqdm(total=n_episodes, desc="evaluate", unit="episode", leave=False)
    while sum(done) < n_episodes:
        step = workers.step(actor(step.inputs, step.state))
        returns += step.reward
        lengths += 1
        if step.restarted is not None:
            returns[step.restarted] = lengths[step.restarted] = 0  # the episode starts again
        for w in np.flatnonzero(step.terminated | step.truncated):
            if done[w] < wanted[w]:
                success.append(bool(step.success[w]))
                episode_returns.append(returns[w])
                episode_lengths.append(lengths[w])
                done[w] += 1
                bar.update()
                bar.set_postfix(success="{:.2f}".format(np.mean(success)))
            returns[w] = lengths[w] = 0
    bar.close()
    return {"success": float(np.mean(success)), "mean_return": float(np.mean(episode_returns)),
            "mean_length": float(np.mean(episode_lengths)), "episodes": n_episodes}
