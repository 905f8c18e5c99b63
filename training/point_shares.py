"""What a student sees of each object: shares of a task's camera points per actor while the expert runs.

The agent samples its points uniformly from the fused camera cloud after the same filtering as here
(`agent.preprocessing`: valid points above the ground), so an object holding a share s of the cloud
gets ~s x 1,200 points at inference and ~s x 300 in a BC update (`train_points`). States are split
into the expert's two phases: reaching (nothing held) and carrying (its target object grasped).
Rendered with the official renderer and ManiSkill2's per-point actor segmentation.
"""
from typing import Dict, List

import numpy as np

import gymnasium as gym

from agent.preprocessing import kept_points
from agent.registry import get_task
from training.envs import make_env
from training.experts import make_expert

ROBOT = "robot"


def actor_groups(env: gym.Env) -> Dict[int, str]:
    """Segmentation id -> group name: each scene actor by name, every robot link as `ROBOT`."""
    groups = {actor.id: actor.name for actor in env.unwrapped.get_actors()}
    groups.update({link.id: ROBOT for link in env.unwrapped.agent.robot.get_links()})
    return groups


def shares(obs: Dict, groups: Dict[int, str]) -> Dict[str, float]:
    """Share of the valid, above-ground camera points on each group (others: "other")."""
    cloud = obs["pointcloud"]
    ids = cloud["Segmentation"][kept_points(cloud["xyzw"]), 1]  # actor-level ids
    names = np.array([groups.get(int(i), "other") for i in ids])
    return {name: float(np.mean(names == name)) for name in sorted(set(groups.values()) | {"other"})}


def point_shares(env_id: str, seeds: List[int], max_steps: int = 200, every: int = 4) -> Dict[str, Dict]:
    """Per phase ("reach", "carry"): the number of states sampled (every `every` steps of the expert's
    episodes) and, per group seen in them, the mean share and its 10th percentile over those states."""
    spec = get_task(env_id)
    expert = make_expert(env_id)
    env = make_env(env_id, obs_mode=spec.obs_mode, control_mode=spec.control_mode,
                   camera_cfgs={"add_segmentation": True})
    samples: Dict[str, List[Dict[str, float]]] = {"reach": [], "carry": []}
    try:
        groups = actor_groups(env)
        for seed in seeds:
            obs, _ = env.reset(seed=seed)
            expert.reset(env)
            for step in range(max_steps):
                if step % every == 0:
                    samples["carry" if expert.holds_target(env) else "reach"].append(shares(obs, groups))
                obs, _, terminated, truncated, _ = env.step(expert.act(env))
                if terminated or truncated:
                    break
    finally:
        env.close()
    summary: Dict[str, Dict] = {}
    for phase, rows in samples.items():
        summary[phase] = {"states": len(rows)}
        for name in sorted(rows[0]) if rows else []:
            values = [row[name] for row in rows]
            if any(values):
                summary[phase][name] = {"mean": round(float(np.mean(values)), 3),
                                        "p10": round(float(np.percentile(values, 10)), 3)}
    return summary
