"""Running experts: success-rate evaluation and demonstration recording."""
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Union

import gymnasium as gym
import numpy as np
from mani_skill2.utils.wrappers import RecordEpisode

from ..common.envs import make_env
from .base import Expert
from .registry import make_expert

CONTROL_MODE = "pd_ee_delta_pose"


def run_episode(env: gym.Env, expert: Expert, seed: int,
                perturb: Optional[Callable[[gym.Env, np.ndarray], np.ndarray]] = None) -> Dict[str, float]:
    """One episode from `env.reset(seed=seed)`, ended at the first success (as the official
    evaluator does) or by the time limit; `perturb(env, action)`, if given, changes each of the
    expert's actions before it is taken. Returns success and length."""
    env.reset(seed=seed)
    expert.reset(env)
    steps, success, done = 0, False, False
    while not done:
        action = expert.act(env)
        if perturb is not None:
            action = perturb(env, action)
        _, _, terminated, truncated, info = env.step(action)
        steps += 1
        success = bool(info["success"])
        done = success or terminated or truncated
    return {"success": float(success), "length": float(steps)}


def evaluate_expert(env_id: str, n_episodes: int, first_seed: int = 0, obs_mode: str = "state",
                    progress: bool = False, expert: Optional[Expert] = None,
                    fast_render: Optional[bool] = False) -> Dict[str, Any]:
    """Success rate, mean episode length and failed seeds of the expert (`expert`, default the
    task's own) on seeds first_seed .. first_seed + n_episodes - 1 (`progress`: print one line per
    episode; `fast_render`: as in `make_env`, for camera observation modes)."""
    env = make_env(env_id, obs_mode=obs_mode, control_mode=CONTROL_MODE, fast_render=fast_render)
    if expert is None:
        expert = make_expert(env_id)
    results = []
    try:
        for seed in range(first_seed, first_seed + n_episodes):
            results.append(run_episode(env, expert, seed))
            if progress:
                rate = sum(r["success"] for r in results) / len(results)
                print("seed {}: success {:.0f} length {:.0f} | running rate {:.3f}".format(
                    seed, results[-1]["success"], results[-1]["length"], rate), flush=True)
    finally:
        env.close()
    return {
        "success_rate": sum(r["success"] for r in results) / n_episodes,
        "mean_length": sum(r["length"] for r in results) / n_episodes,
        "n_episodes": n_episodes,
        "failed_seeds": [first_seed + i for i, r in enumerate(results) if not r["success"]],
    }


def record_demos(env_id: str, out_dir: Union[str, Path], n_episodes: int, first_seed: int = 0,
                 obs_mode: str = "state") -> Dict[str, int]:
    """Record the expert's successful episodes among seeds first_seed .. first_seed + n_episodes - 1
    with the official `RecordEpisode` layout (`out_dir/trajectory.h5` + `.json`, traj_0, traj_1, ...;
    each json episode keeps its `reset_kwargs` seed). Returns episodes run and kept."""
    env = RecordEpisode(make_env(env_id, obs_mode=obs_mode, control_mode=CONTROL_MODE), str(out_dir),
                        trajectory_name="trajectory", save_video=False, save_on_reset=False)
    expert = make_expert(env_id)
    kept = 0
    try:
        for seed in range(first_seed, first_seed + n_episodes):
            if run_episode(env, expert, seed)["success"]:
                env.flush_trajectory()
                kept += 1
    finally:
        env.close()
    return {"episodes": n_episodes, "kept": kept}
