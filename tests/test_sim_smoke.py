"""The five asset-free tasks build and step in point-cloud mode on this machine, and each has a
shipped policy (weights/) that acts in it."""
import numpy as np
import pytest

from agent.policy import Policy, resolve
from training.common.envs import make_env

TASKS = ["PickCube-v0", "LiftCube-v0", "StackCube-v0", "PegInsertionSide-v0", "PlugCharger-v0"]


@pytest.mark.sim
@pytest.mark.parametrize("env_id", TASKS)
def test_pointcloud_env_resets_and_steps(env_id: str) -> None:
    env = make_env(env_id, obs_mode="pointcloud", control_mode="pd_ee_delta_pose")
    try:
        obs, _ = env.reset(seed=0)
        for _ in range(3):
            obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        assert env.action_space.shape == (7,)
        assert np.isfinite(reward)
        assert {"agent", "extra", "pointcloud"} <= set(obs)
        assert {"qpos", "qvel", "base_pose"} <= set(obs["agent"])
        assert "tcp_pose" in obs["extra"]
        xyzw, rgb = obs["pointcloud"]["xyzw"], obs["pointcloud"]["rgb"]
        assert xyzw.ndim == 2 and xyzw.shape[1] == 4 and rgb.shape == (xyzw.shape[0], 3)
        assert xyzw.shape[0] == 2 * 128 * 128  # two 128x128 cameras fused
        valid = xyzw[:, 3] > 0.5
        assert valid.sum() > 1000
        assert np.abs(xyzw[valid, :3]).sum() > 0 and rgb[valid].max() > 0
    finally:
        env.close()


@pytest.mark.sim
@pytest.mark.parametrize("env_id", TASKS)
def test_shipped_policy_acts_within_the_action_bounds(env_id: str) -> None:
    task, _ = resolve(env_id)  # the shipped weights/ manifest
    env = make_env(env_id, obs_mode=task.obs_mode, control_mode=task.control_mode)
    try:
        policy = Policy(env_id, env.observation_space, env.action_space)
        obs, _ = env.reset(seed=0)
        for _ in range(2):
            action = policy.act(obs)
            assert action.shape == env.action_space.shape and np.all(np.isfinite(action))
            assert np.all(action >= env.action_space.low) and np.all(action <= env.action_space.high)
            obs, *_ = env.step(action)
        assert not policy.coped  # real observations need no fallback
    finally:
        env.close()
