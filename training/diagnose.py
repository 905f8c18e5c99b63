"""Where a point-cloud student fails: its rollouts measured against the privileged expert.

For each episode the student drives (deterministic actions, the training render path), the
simulator state tells whether and when it grasped the object, how close above the expert's grasp
pose it came before that, and how far its actions were from the expert's labels. A student that
never grasps and ends hovering a constant height above the grasp pose has stalled where its error
cancels the expert's label (see README, "Privileged experts and distillation").
"""
from pathlib import Path
from typing import Dict, List

import numpy as np

from agent.preprocessing import preprocess, state_size
from agent.registry import get_task
from training.checkpoints import initialise_from
from training.envs import make_env
from training.evaluation import torch_actor
from training.experts import make_expert
from training.experts.base import GraspExpert, is_grasped, rotation_angle, tcp_pose
from training.networks import ActorCritic


def diagnose(env_id: str, student: Path, seeds: List[int], max_steps: int = 200) -> List[Dict]:
    """One record per seed: success, steps, first grasp step, closest approach to the grasp pose
    before grasping (distance, height above it, lateral and angle error there; m, rad), and the
    mean |action - expert label|."""
    spec = get_task(env_id)
    expert = make_expert(env_id)
    if not isinstance(expert, GraspExpert):
        raise ValueError("{} has no grasp phase to diagnose".format(env_id))
    env = make_env(env_id, obs_mode=spec.obs_mode, control_mode=spec.control_mode, fast_render=None)
    model = ActorCritic(state_size(env.observation_space), env.action_space.shape[0],
                        env.action_space.low, env.action_space.high)
    initialise_from(model, Path(student))
    actor = torch_actor(model)
    rng = np.random.default_rng(0)
    records = []
    try:
        for seed in seeds:
            obs, _ = env.reset(seed=seed)
            expert.reset(env)
            grasp_step, closest, errors, success = None, None, [], False
            for step in range(max_steps):
                net = preprocess(obs, spec, rng)
                action = actor(net.points[None], net.state[None])[0]
                errors.append(float(np.mean(np.abs(action - expert.act(env)))))
                if grasp_step is None:
                    offset = expert.grasp_pose(env).inv() * tcp_pose(env)  # z < 0: above the grasp pose
                    distance = float(np.linalg.norm(offset.p))
                    if closest is None or distance < closest["distance"]:
                        closest = {"distance": round(distance, 4), "height": round(float(-offset.p[2]), 4),
                                   "lateral": round(float(np.linalg.norm(offset.p[:2])), 4),
                                   "angle": round(rotation_angle(offset), 3)}
                obs, _, terminated, truncated, info = env.step(action)
                if grasp_step is None and is_grasped(env, expert.target(env), expert.grasp_max_angle):
                    grasp_step = step + 1
                success = bool(info.get("success", False))
                if terminated or truncated:
                    break
            records.append({"seed": seed, "success": success, "steps": step + 1, "grasp_step": grasp_step,
                            "closest_before_grasp": closest, "mean_action_error": round(float(np.mean(errors)), 3)})
    finally:
        env.close()
    return records
