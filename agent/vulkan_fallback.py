"""Select the software-Vulkan fallback (Mesa lavapipe + our compatibility layer) when needed.

`scripts/setup.sh` probes whether SAPIEN can create a renderer on this machine. Only when it
cannot (no GPU), it installs lavapipe, builds the layer from `vulkan/` and writes
`build/vulkan/env.json`: the Vulkan loader variables that make SAPIEN work. `activate()` applies
them to this process before the first renderer is created; it runs on `import agent`, so the
official evaluator picks them up through `user_solution.py` (a shell: `eval "$(python -m agent.vulkan_env)"`).
Machines where setup found working Vulkan have no such file and are left untouched. Standard library only (runs
on Python 3.8).
"""
import ctypes
import ctypes.util
import json
import os
from pathlib import Path
from typing import Dict, Optional

SETUP_COMMAND = "bash scripts/setup.sh"
ENV_FILE = Path(__file__).resolve().parents[1] / "build" / "vulkan" / "env.json"
LOADER_VARIABLES = ("VK_ICD_FILENAMES", "VK_LAYER_PATH", "VK_INSTANCE_LAYERS")


class VulkanUnavailableError(RuntimeError):
    """Vulkan cannot be initialised; the message names the fix."""


def unavailable(reason: str) -> VulkanUnavailableError:
    """An error explaining `reason` and how to fix it."""
    return VulkanUnavailableError(
        "{}\nManiSkill2 (SAPIEN) needs a working Vulkan device. On a machine without a GPU, run "
        "`{}` from the repository root: it installs Mesa lavapipe (software Vulkan) and builds "
        "the compatibility layer. On a GPU machine, install the GPU's Vulkan driver.".format(
            reason, SETUP_COMMAND
        )
    )


def fallback_variables(env_file: Path = ENV_FILE) -> Optional[Dict[str, str]]:
    """The loader variables written by setup, or None when this machine needs no fallback."""
    if not env_file.exists():
        return None
    try:
        variables = json.loads(env_file.read_text())
    except ValueError as error:
        raise unavailable("{} is corrupt ({}).".format(env_file, error))
    for key in ("VK_ICD_FILENAMES", "VK_LAYER_PATH"):
        path = Path(variables.get(key, ""))
        if not path.exists():
            raise unavailable("{} names {}={}, which does not exist.".format(env_file, key, path))
    return variables


class _InstanceCreateInfo(ctypes.Structure):
    _fields_ = [
        ("sType", ctypes.c_int32),
        ("pNext", ctypes.c_void_p),
        ("flags", ctypes.c_uint32),
        ("pApplicationInfo", ctypes.c_void_p),
        ("enabledLayerCount", ctypes.c_uint32),
        ("ppEnabledLayerNames", ctypes.c_void_p),
        ("enabledExtensionCount", ctypes.c_uint32),
        ("ppEnabledExtensionNames", ctypes.c_void_p),
    ]


def count_vulkan_devices() -> int:
    """Physical devices the Vulkan loader finds with the current variables (~20 ms).

    SAPIEN segfaults instead of raising when there is none, so we ask the loader first.
    """
    if ctypes.util.find_library("vulkan") is None:
        raise unavailable("The Vulkan loader (libvulkan.so.1) is not installed.")
    vulkan = ctypes.CDLL("libvulkan.so.1")
    info = _InstanceCreateInfo(sType=1)  # VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO
    instance = ctypes.c_void_p()
    if vulkan.vkCreateInstance(ctypes.byref(info), None, ctypes.byref(instance)) != 0:
        return 0
    count = ctypes.c_uint32()
    vulkan.vkEnumeratePhysicalDevices(instance, ctypes.byref(count), None)
    vulkan.vkDestroyInstance(instance, None)
    return count.value


def activate(env_file: Path = ENV_FILE) -> bool:
    """Set the fallback's loader variables in this process and check that Vulkan has a device.

    Returns True if the software fallback is in use. Variables the user set explicitly win;
    `MS2AGENT_VULKAN=system` disables the fallback. Raises VulkanUnavailableError naming the fix.
    """
    variables = None if os.environ.get("MS2AGENT_VULKAN") == "system" else fallback_variables(env_file)
    for key in LOADER_VARIABLES if variables else ():
        os.environ.setdefault(key, variables[key])
    if count_vulkan_devices() == 0:
        raise unavailable(
            "The Vulkan loader finds no device (VK_ICD_FILENAMES={}).".format(
                os.environ.get("VK_ICD_FILENAMES", "<unset>")
            )
        )
    return variables is not None


def exports() -> str:
    """The `export NAME=VALUE` lines of the fallback's loader variables (empty without the fallback), for
    `eval "$(python -m agent.vulkan_env)"`."""
    if not activate():
        return ""
    return "".join("export {}={}\n".format(key, os.environ[key]) for key in LOADER_VARIABLES)


if __name__ == "__main__":  # kept for old scripts; `python -m agent.vulkan_env` does this without runpy's warning
    print(exports(), end="")
