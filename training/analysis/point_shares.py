"""What a student sees of each object: shares of a task's camera points per actor while the expert runs.

The agent samples its points uniformly from the fused camera cloud after the same filtering as here
(`agent.preprocessing`: valid points above the ground), so an object holding a share s of the cloud
gets ~s x 1,200 points at inference and ~s x 300 in a BC update (`train_points`). States are split
into the expert's phases: reaching (nothing held) and carrying (its target object grasped); for the
insertion tasks carrying ends with lining up (the held object within `LINE_UP_RANGE` in front of
its slot's entrance), where the tool also counts the points near the entrance (`entrance_points`).
Rendered with the official renderer and ManiSkill2's per-point actor segmentation.
"""
from typing import Dict, List, Optional

import numpy as np

import gymnasium as gym

from agent.preprocessing import kept_points
from agent.registry import get_task
from training.common.envs import make_env
from training.experts import Expert, make_expert
from training.experts.assembly import InsertionExpert

ROBOT = "robot"
LINE_UP_RANGE = 0.06  # m in front of the slot's entrance where carrying counts as lining up
ENTRANCE_RADIUS = 0.05  # m around the entrance within which `entrance_points` counts camera points


def actor_groups(env: gym.Env) -> Dict[int, str]:
    """Segmentation id -> group name: each scene actor by name, every robot link as `ROBOT`."""
    groups = {actor.id: actor.name for actor in env.unwrapped.get_actors()}
    groups.update({link.id: ROBOT for link in env.unwrapped.agent.robot.get_links()})
    return groups


def shares(ids: np.ndarray, groups: Dict[int, str]) -> Dict[str, float]:
    """Share of the camera points (actor-level segmentation `ids`) on each group (others: "other")."""
    names = np.array([groups.get(int(i), "other") for i in ids])
    return {name: float(np.mean(names == name)) for name in sorted(set(groups.values()) | {"other"})}


def phase(env: gym.Env, expert: Expert, line_up_range: float = LINE_UP_RANGE) -> str:
    """The expert's phase: "reach", "carry" or (insertion tasks, the held object within
    `line_up_range` in front of its slot's entrance) "line-up"."""
    if not expert.holds_target(env):
        return "reach"
    if isinstance(expert, InsertionExpert):
        if -line_up_range < expert.slot_offset(env).p[0] - expert.entrance(env) <= 0:
            return "line-up"
    return "carry"


def entrance_points(xyz: np.ndarray, ids: np.ndarray, groups: Dict[int, str], env: gym.Env,
                    expert: InsertionExpert) -> float:
    """Camera points (positions `xyz`, segmentation `ids`) within `ENTRANCE_RADIUS` of the slot's
    entrance, on neither the held object nor the robot. The entrance is the goal position for both
    insertion tasks: inserted, the peg's centre and the charger's pin roots sit in the plane of the
    opening."""
    hidden = [i for i, name in groups.items() if name in (ROBOT, expert.target(env).name)]
    near = np.linalg.norm(xyz - expert.goal_pose(env).p, axis=1) < ENTRANCE_RADIUS
    return float(np.sum(near & ~np.isin(ids, hidden)))


def summarise(values: List[float], digits: int) -> Dict[str, float]:
    return {"mean": round(float(np.mean(values)), digits), "p10": round(float(np.percentile(values, 10)), digits)}


def point_shares(env_id: str, seeds: List[int], max_steps: int = 200, every: int = 4,
                 lean: Optional[float] = None) -> Dict[str, Dict]:
    """Per phase ("reach", "carry", "line-up"): the number of states sampled (every `every` steps of
    the expert's episodes) and, per group seen in them, the mean share and its 10th percentile over
    those states. Line-up states also give `entrance_points`: how many camera points lie near the
    entrance in the fused cloud ("cloud") and, in expectation, among the agent's `n_points` ("sampled").
    `lean` (insertion tasks): the expert's grasp lean towards the held object's head, rad (None: its own)."""
    spec = get_task(env_id)
    expert = make_expert(env_id, None if lean is None else {"lean": lean})
    env = make_env(env_id, obs_mode=spec.obs_mode, control_mode=spec.control_mode,
                   camera_cfgs={"add_segmentation": True})
    phases = ["reach", "carry"] + ["line-up"] * isinstance(expert, InsertionExpert)
    samples: Dict[str, List[Dict[str, float]]] = {name: [] for name in phases}
    near: Dict[str, List[float]] = {"cloud": [], "sampled": []}
    try:
        groups = actor_groups(env)
        for seed in seeds:
            obs, _ = env.reset(seed=seed)
            expert.reset(env)
            for step in range(max_steps):
                if step % every == 0:
                    cloud = obs["pointcloud"]
                    keep = kept_points(cloud["xyzw"])  # what the agent samples from
                    ids = cloud["Segmentation"][keep, 1]  # actor-level ids
                    current = phase(env, expert)
                    samples[current].append(shares(ids, groups))
                    if current == "line-up":
                        count = entrance_points(cloud["xyzw"][keep, :3], ids, groups, env, expert)
                        near["cloud"].append(count)
                        near["sampled"].append(count * spec.n_points / max(int(keep.sum()), 1))
                obs, _, terminated, truncated, _ = env.step(expert.act(env))
                if terminated or truncated:
                    break
    finally:
        env.close()
    summary: Dict[str, Dict] = {}
    for name, rows in samples.items():
        summary[name] = {"states": len(rows)}
        for group in sorted(rows[0]) if rows else []:
            values = [row[group] for row in rows]
            if any(values):
                summary[name][group] = summarise(values, 3)
    if near["cloud"]:
        summary["line-up"]["entrance_points"] = {key: summarise(values, 1) for key, values in near.items()}
    return summary
