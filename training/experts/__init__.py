"""Privileged closed-loop experts (simulator state in, `pd_ee_delta_pose` actions out) for
PickCube, LiftCube, StackCube, PegInsertionSide and PlugCharger, to record demonstrations and to
label the states a student policy visits (DAgger).

    expert = make_expert("PickCube-v0"); expert.reset(env); action = expert.act(env)
"""
from .base import Expert
from .registry import EXPERTS, make_expert, parse_settings
from .rollout import evaluate_expert, record_demos

__all__ = ["EXPERTS", "Expert", "evaluate_expert", "make_expert", "parse_settings", "record_demos"]
