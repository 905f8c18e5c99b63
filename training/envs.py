"""Creating ManiSkill2 environments for training, evaluation and tests."""
from typing import Any

import gymnasium as gym

from agent.vulkan_fallback import activate, unavailable


def make_env(env_id: str, obs_mode: str = "pointcloud", control_mode: str = "pd_ee_delta_pose",
             **kwargs: Any) -> gym.Env:
    """`gym.make` for a ManiSkill2 env, with Vulkan set up first and its failures explained."""
    activate()
    import mani_skill2.envs  # noqa: F401  (registers the environments)

    try:
        return gym.make(env_id, obs_mode=obs_mode, control_mode=control_mode, **kwargs)
    except RuntimeError as error:
        if "vk::" in str(error) or "Vulkan" in str(error) or "rendering device" in str(error):
            raise unavailable("SAPIEN could not create its Vulkan renderer: {}".format(error)) from error
        raise
