"""`eval "$(python -m agent.vulkan_env)"` exports the software-Vulkan fallback's loader variables (see
`agent.vulkan_fallback`) into a shell, for tools that do not import our code (e.g. the evaluator's
--use-random-policy, replay_trajectory); it prints nothing where no fallback is needed.

A module of its own: `import agent` imports `agent.vulkan_fallback`, so running that one with `-m` would make
runpy execute a module already imported. Standard library only (Python 3.8).
"""
import os

from agent.vulkan_fallback import LOADER_VARIABLES, activate


def exports() -> str:
    """The `export NAME=VALUE` lines of the fallback's loader variables (empty without the fallback)."""
    if not activate():
        return ""
    return "".join("export {}={}\n".format(key, os.environ[key]) for key in LOADER_VARIABLES)


if __name__ == "__main__":
    print(exports(), end="")
