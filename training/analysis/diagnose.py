"""Where a point-cloud student fails: its rollouts measured against the privileged expert.

For each episode the student drives (deterministic actions, the training render path), the
simulator state tells whether and when it grasped the object, how close above the expert's grasp
pose it came before that, and how far its actions were from the expert's labels.
For the insertion tasks the carry is measured too: the held object's closest approach to its
inserted pose after the grasp, in the slot frame (how far in front of the hole it stopped).
A looking student (`slot_reader`) is run as the agent runs it, and each record adds how far its hand
camera was from the look pose when it read (`look_offset`: m, rad) and how far the slot it read is
from the true one (`reading_error`); its expert labels follow the reading, as in training.
With a learned teacher (`teacher`) in the expert's place, the labels are the teacher's, and the grasp measures,
which need a scripted expert's grasp pose, are None.
"""
from pathlib import Path
from typing import Any, Dict, List, Optional

import gymnasium as gym
import numpy as np
import sapien.core as sapien
from transforms3d.quaternions import quat2axangle

from agent.insertion.memory import insertion_memory
from agent.insertion.slot_reader import reader_entry
from agent.preprocessing import preprocess, state_size
from agent.registry import get_task
from training.common.envs import make_env
from training.common.evaluation import torch_actor
from training.experts import make_expert
from training.experts.assembly import InsertionExpert, slot_pose
from training.experts.base import GraspExpert, rotation_angle, tcp_pose
from training.common.networks import ActorCritic
from training.common.warm_start import initialise_from


def pose_error(offset: sapien.Pose) -> Dict[str, float]:
    """Size of a relative pose: distance, height (-z), lateral (xy) distance (m) and angle (rad)."""
    return {"distance": round(float(np.linalg.norm(offset.p)), 4), "height": round(float(-offset.p[2]), 4),
            "lateral": round(float(np.linalg.norm(offset.p[:2])), 4), "angle": round(rotation_angle(offset), 3)}


def slot_error(offset: sapien.Pose, entrance: Optional[float] = None) -> Dict[str, float]:
    """Size of an object's pose in its slot frame: along the slot axis (x < 0: in front of the
    inserted pose), lateral (yz) distance (m) and angle (rad), and, when given, the `entrance` (the x
    at which the object starts entering the slot: `along` - `entrance` < 0 is the distance still to go)."""
    error = {"along": round(float(offset.p[0]), 4), "lateral": round(float(np.linalg.norm(offset.p[1:])), 4),
             "angle": round(rotation_angle(offset), 3)}
    return error if entrance is None else {**error, "entrance": round(entrance, 4)}


SETTLE_STEPS = 10  # steps after the grasp at which the held object's pose in the hand is first recorded


def in_hand_pose(offset: sapien.Pose) -> Dict[str, List[float]]:
    """The held object's pose in the TCP frame: position (mm) and rotation vector (rad), to compare grasps."""
    axis, angle = quat2axangle(offset.q)
    return {"position_mm": [round(float(v) * 1000, 2) for v in offset.p],
            "rotation": [round(float(v) * angle, 4) for v in axis]}


def nearer(best: Optional[sapien.Pose], candidate: sapien.Pose) -> sapien.Pose:
    """The relative pose of the two with the smaller translation (`best` None: `candidate`)."""
    return candidate if best is None or np.linalg.norm(candidate.p) < np.linalg.norm(best.p) else best


def look_offset(env: gym.Env, expert: InsertionExpert) -> Dict[str, float]:
    """How far the hand camera is from the expert's look pose (on the true slot): distance (m), angle (rad)."""
    offset = expert.look_error(env)
    return {"distance": round(float(np.linalg.norm(offset.p)), 4), "angle": round(rotation_angle(offset), 3)}


def diagnose(env_id: str, student: Path, seeds: List[int], max_steps: int = 200,
             slot_reader: Optional[Path] = None, held_fit: bool = False,
             teacher: Optional[Path] = None) -> List[Dict[str, Any]]:
    """One record per seed: success, steps, first grasp step, closest approach to the grasp pose
    before grasping (distance, height above it, lateral and angle error there; m, rad), the steps
    before the grasp where the expert's label and the student's action closed the gripper, and the
    mean absolute difference between its actions and the expert's labels (all 7 dimensions), over
    the episode and over its steps after the grasp (None without one); insertion tasks add the
    closest approach to the inserted pose after the grasp (`slot_error`) and the object's pose in the hand
    there and `SETTLE_STEPS` after the grasp (`in_hand`); with `slot_reader`, the hand camera's offset
    from the look pose when it read (`look_offset`) and the read slot's error (`reading_error`: along
    its axis, lateral, angle); `held_fit`: the student fits the held object (agent.insertion.held_fit).
    Point sampling is seeded per episode, so a run is repeatable, but not the selection run itself."""
    spec = get_task(env_id)
    expert = make_expert(env_id, teacher=teacher)  # every scripted expert grasps first (GraspExpert)
    grasps, inserts = isinstance(expert, GraspExpert), isinstance(expert, InsertionExpert)
    env = make_env(env_id, obs_mode=spec.obs_mode, control_mode=spec.control_mode, fast_render=None)
    rng = np.random.default_rng(0)  # rebound per episode; the memory's reader reads the current one
    memory = insertion = None
    if slot_reader is not None:
        spec, insertion = insertion_memory(reader_entry(slot_reader, env_id), spec, env.observation_space, lambda: rng,
                                           held_fit)
        memory = insertion.memory
        expert.look_steps = memory.look_step
    model = ActorCritic(state_size(env.observation_space, spec), env.action_space.shape[0],
                        env.action_space.low, env.action_space.high)
    initialise_from(model, student)
    actor = torch_actor(model)
    records = []
    try:
        for seed in seeds:
            obs, _ = env.reset(seed=seed)
            rng = np.random.default_rng(seed)
            expert.reset(env)
            grasp_step, closest, nearest_slot, errors, success = None, None, None, [], False
            settled = in_hand = None  # the held object's pose in the hand: after the grasp, nearest the slot
            closing = np.zeros(2, dtype=int)  # steps before the grasp where the expert / student closed
            looked: Dict[str, Any] = {}
            if insertion is not None:
                insertion.reset()
            for step in range(max_steps):
                if insertion is not None:
                    obs = insertion.observe(obs)
                    if memory.read_at == step:
                        expert.reading = slot_pose(memory.position, memory.axis)
                        looked = {"look_offset": look_offset(env, expert), "read_at": step,
                                  "reading_error": slot_error(env.unwrapped.goal_pose.inv() * expert.reading)}
                net = preprocess(obs, spec, rng)
                action = actor(net.points[None], net.state[None])[0]
                label = expert.act(env)
                errors.append(float(np.mean(np.abs(action - label))))
                if grasp_step is None:
                    if grasps:
                        closest = nearer(closest, expert.grasp_pose(env).inv() * tcp_pose(env))  # z < 0: above
                    closing += np.array([label[-1] < 0, action[-1] < 0])
                elif inserts:  # x < 0: in front of the (true) slot
                    candidate = env.unwrapped.goal_pose.inv() * expert.target(env).pose
                    if nearer(nearest_slot, candidate) is candidate:
                        nearest_slot, in_hand = candidate, tcp_pose(env).inv() * expert.target(env).pose
                obs, _, terminated, truncated, info = env.step(action)
                if grasps and grasp_step is None and expert.holds_target(env):
                    grasp_step = step + 1
                if grasp_step is not None and step + 1 == grasp_step + SETTLE_STEPS and expert.holds_target(env):
                    settled = tcp_pose(env).inv() * expert.target(env).pose
                success = bool(info.get("success", False))
                if terminated or truncated:
                    break
            carried = errors[grasp_step:] if grasp_step is not None else []
            record = {"seed": seed, "success": success, "steps": len(errors), "grasp_step": grasp_step,
                      "closest_before_grasp": None if closest is None else pose_error(closest),
                      "closing_before_grasp": {"expert": int(closing[0]), "student": int(closing[1])},
                      "mean_action_error": round(float(np.mean(errors)), 3),
                      "mean_action_error_after_grasp": round(float(np.mean(carried)), 3) if carried else None}
            if inserts:
                record["closest_to_slot"] = (None if nearest_slot is None
                                             else slot_error(nearest_slot, expert.entrance(env)))
                record["in_hand"] = {key: None if pose is None else in_hand_pose(pose)
                                     for key, pose in (("settled", settled), ("closest_to_slot", in_hand))}
            records.append({**record, **looked})
    finally:
        env.close()
    return records
