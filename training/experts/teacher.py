"""A learned teacher: a state-PPO policy (`ms2agent teacher`, `training.algorithms.teacher`) acting as an expert.

It labels exactly where a scripted expert does (`make_expert(env_id, teacher=PATH)`): `act(env)` reads the
simulator's flat privileged state of the env's current state (`privileged_state`, whatever the env's observation
mode: a point-cloud env the student drives gives the same state a state env would) and returns the teacher's
deterministic action, in the task's control mode. `teacher_checkpoint` checks a checkpoint before any simulator
starts: it must be a teacher (state observations) of the same task.
"""
import json
from pathlib import Path
from typing import Any, Dict, Tuple, Union

import gymnasium as gym
import numpy as np
import torch

from training.common.checkpoints import load_checkpoint, model_from_checkpoint
from training.common.threads import torch_threads

from .base import Expert


class TeacherError(ValueError):
    """A teacher checkpoint that cannot label this task; the message names the fix."""


def privileged_state(env: gym.Env) -> np.ndarray:
    """The flat state observation (ManiSkill2's obs_mode "state") of `env`'s current state, as float32. The
    tasks add their privileged entries (object poses, goal offsets) only in state modes, so the env's mode is
    switched to "state" while the observation is made."""
    base = env.unwrapped
    mode = base._obs_mode
    base._obs_mode = "state"
    try:
        return np.asarray(base.get_obs(), dtype=np.float32)
    finally:
        base._obs_mode = mode


def teacher_checkpoint(path: Union[str, Path], env_id: str) -> Path:
    """The checkpoint a teacher path names (a checkpoint, or a teacher run's directory: its result.json's choice,
    the best checkpoint it has evaluated so far), checked to hold a state policy trained on `env_id`; `TeacherError`
    (or FileNotFoundError / CorruptCheckpointError for an unreadable file) otherwise, before any simulator starts."""
    return loaded_teacher(path, env_id)[0]


def loaded_teacher(path: Union[str, Path], env_id: str) -> Tuple[Path, Dict[str, Any]]:
    """`teacher_checkpoint`'s path and the checkpoint's contents."""
    path = Path(path)
    if path.is_dir():
        result = path / "result.json"
        if not result.is_file():
            raise TeacherError("{} holds no result.json: pass a teacher checkpoint (.pt) or the directory of an "
                               "`ms2agent teacher {}` run that has evaluated a checkpoint".format(path, env_id))
        path = Path(json.loads(result.read_text())["checkpoint"])
    checkpoint = load_checkpoint(path)
    train_one = "train one with `ms2agent teacher {0}` and pass --teacher runs/{0}/teacher".format(env_id)
    if "model_spec" not in checkpoint or checkpoint["model_spec"].get("points", True):
        raise TeacherError("{} is a point-cloud policy, not a learned teacher (a teacher reads the simulator's "
                           "state): {}".format(path, train_one))
    config = checkpoint.get("config") or {}
    if config.get("obs_mode") != "state":
        raise TeacherError("{} was not trained on state observations (obs_mode {!r}): {}".format(
            path, config.get("obs_mode"), train_one))
    if config.get("env_id") != env_id:
        raise TeacherError("{} is a teacher for {}, not {}: {}".format(path, config.get("env_id"), env_id, train_one))
    return path, checkpoint


class LearnedTeacher(Expert):
    """A teacher checkpoint's deterministic action on the env's privileged state (one torch thread: it runs in
    every env worker)."""

    def __init__(self, checkpoint: Union[str, Path], env_id: str) -> None:
        self.path, loaded = loaded_teacher(checkpoint, env_id)
        self.model = model_from_checkpoint(self.path, loaded)

    def reset(self, env: gym.Env) -> None:
        pass

    def act(self, env: gym.Env) -> np.ndarray:
        state = privileged_state(env)
        expected = self.model.critic[0].in_features
        if state.shape[0] != expected:
            raise TeacherError("teacher {} reads {} state entries, the env gives {}".format(
                self.path, expected, state.shape[0]))
        with torch_threads(1), torch.no_grad():
            action = self.model(torch.zeros((1, 0)), torch.from_numpy(state)[None])[0]
        return action.numpy().astype(np.float32)
