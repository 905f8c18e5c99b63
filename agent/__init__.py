"""Lightweight ManiSkill2 challenge agent: numpy preprocessing + onnxruntime policies.

Importing the package makes Vulkan usable for ManiSkill2 on this machine (see `vulkan_fallback`).
"""
from agent.vulkan_fallback import activate as _activate_vulkan

_activate_vulkan()
