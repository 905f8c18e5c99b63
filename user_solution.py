"""Entry point for the official ManiSkill2 evaluator (`from user_solution import UserPolicy`).

The evaluator asks for the observation and control modes (from `agent/registry.py`, after checking
that the task has shipped weights), makes the env, then delegates every step to `agent.policy.Policy`.
"""
import agent  # noqa: F401, I001  (first: sets up Vulkan before anything creates a renderer)

from typing import Any, Dict

import numpy as np
from mani_skill2.evaluation.solution import BasePolicy

from agent.policy import Policy, resolve


class UserPolicy(BasePolicy):
    def __init__(self, env_id: str, observation_space: Any, action_space: Any) -> None:
        super().__init__(env_id, observation_space, action_space)
        self.policy = Policy(env_id, observation_space, action_space)

    def reset(self, observations: Dict[str, Any]) -> None:
        self.policy.reset()

    def act(self, observations: Dict[str, Any]) -> np.ndarray:
        return self.policy.act(observations)

    @classmethod
    def get_obs_mode(cls, env_id: str) -> str:
        return resolve(env_id)[0].obs_mode

    @classmethod
    def get_control_mode(cls, env_id: str) -> str:
        return resolve(env_id)[0].control_mode
