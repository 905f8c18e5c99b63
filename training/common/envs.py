"""Creating ManiSkill2 environments for training, evaluation and tests."""
from contextlib import nullcontext
from pathlib import Path
from typing import Any, List, Optional

import gymnasium as gym

from agent.registry import TaskSpec
from agent.vulkan_fallback import activate, unavailable
from training.common.rewards import StagedReward, check_reward


class SuccessContinues(gym.Wrapper):
    """Success does not end the episode: it runs on to its time limit (ManiSkill2's ContinuousTaskWrapper), so a
    policy that keeps the task solved earns the success reward on every step. ManiSkill2's dense rewards pay a success
    that ends the episode less than staying just short of it (PickCube: 5 once, against up to 3 on every step)."""

    def step(self, action: Any) -> Any:
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, reward, terminated and not info.get("success", False), truncated, info


def make_env(env_id: str, obs_mode: str = "pointcloud", control_mode: str = "pd_ee_delta_pose",
             fast_render: Optional[bool] = False, success_ends_episode: bool = True, reward: str = "dense",
             **kwargs: Any) -> gym.Env:
    """`gym.make` for a ManiSkill2 env, with Vulkan set up first and its failures explained.

    `fast_render`: light robot meshes and a one-pass shader (`training.common.fast_render`), for faster point
    clouds on software Vulkan. None: fast exactly when the software-Vulkan fallback is in use.
    `success_ends_episode=False`: episodes run on after success (`SuccessContinues`; training only).
    `reward`: "dense", the task's own dense reward (with `reward_mode="dense"`), or "staged" (`StagedReward`).
    """
    check_reward(reward, env_id)
    software = activate()
    import mani_skill2.envs  # noqa: F401  (registers the environments)

    if fast_render is None:
        fast_render = software
    if fast_render:
        from training.common.fast_render import fast_rendering

        rendering = fast_rendering(env_id, kwargs)
    else:
        rendering = nullcontext(kwargs)
    try:
        with rendering as env_kwargs:
            env = gym.make(env_id, obs_mode=obs_mode, control_mode=control_mode, **env_kwargs)
            if reward == "staged":
                env = StagedReward(env, env_id)
            return env if success_ends_episode else SuccessContinues(env)
    except RuntimeError as error:
        if "vk::" in str(error) or "Vulkan" in str(error) or "rendering device" in str(error):
            raise unavailable("SAPIEN could not create its Vulkan renderer: {}".format(error)) from error
        raise


def missing_assets(spec: TaskSpec) -> List[str]:
    """The task's `download_asset` entries whose files are not on disk."""
    from mani_skill2 import ASSET_DIR
    from mani_skill2.utils import download_asset as assets

    if not assets.DATA_SOURCES:
        assets.initialize_sources()
    uids = [uid for name in spec.assets for uid in assets.DATA_GROUPS.get(name, [name])]
    missing = []
    for uid in uids:
        source = assets.DATA_SOURCES[uid]
        name = source.get("target_path") or Path(source["url"]).name.removesuffix(".zip")
        if not (Path(source.get("output_dir", ASSET_DIR)) / name).exists():
            missing.append(uid)
    return missing


def has_cuda() -> bool:
    """Whether an NVIDIA GPU is present (ManiSkill2's soft-body simulation needs CUDA)."""
    return Path("/dev/nvidiactl").exists()
