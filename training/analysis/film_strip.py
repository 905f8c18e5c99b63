"""An image strip of one successful episode of a shipped policy, for the README.

The shipped ONNX policy (`agent.policy.Policy`, what the official evaluator scores) drives the env
with the official renderer on held-out seeds; the first episode that succeeds is drawn as `frames`
evenly spaced views from ManiSkill2's third-person render camera, left to right.
"""
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from agent.policy import Policy
from agent.registry import get_task
from training.common.envs import make_env
from training.common.seeds import REPORT_START


def successful_episode(env_id: str, first_seed: int = REPORT_START, attempts: int = 5,
                       weights: Optional[Path] = None) -> Dict:
    """Frames (render-camera rgb, one per step, reset included) of the first episode among seeds
    `first_seed .. first_seed + attempts - 1` that the shipped policy solves, with its seed."""
    spec = get_task(env_id)
    env = make_env(env_id, obs_mode=spec.obs_mode, control_mode=spec.control_mode, render_mode="rgb_array")
    try:
        policy = Policy(env_id, env.observation_space, env.action_space, weights=weights)
        for seed in range(first_seed, first_seed + attempts):
            observation, _ = env.reset(seed=seed)
            policy.reset()
            frames: List[np.ndarray] = [env.render()]
            while True:
                observation, _, terminated, truncated, info = env.step(policy.act(observation))
                frames.append(env.render())
                if terminated or truncated:
                    break
            if info["success"]:
                return {"seed": seed, "frames": frames}
    finally:
        env.close()
    raise RuntimeError("the shipped {} policy solved none of seeds {}..{}".format(
        env_id, first_seed, first_seed + attempts - 1))


def save_strip(frames: List[np.ndarray], path: Path, n_frames: int = 6, pixel_stride: int = 2) -> Path:
    """`n_frames` evenly spaced frames (first and last included), side by side, keeping every
    `pixel_stride`-th pixel (512x512 render-camera frames -> 256x256), as a PNG."""
    import matplotlib.pyplot as plt

    chosen = np.linspace(0, len(frames) - 1, min(n_frames, len(frames))).round().astype(int)
    path.parent.mkdir(parents=True, exist_ok=True)
    plt.imsave(path, np.concatenate([frames[i][::pixel_stride, ::pixel_stride] for i in chosen], axis=1))
    return path
