"""`eval "$(python -m agent.vulkan_env)"` exports the software-Vulkan fallback's loader variables (see
`agent.vulkan_fallback`) into a shell, for tools that do not import our code (e.g. the evaluator's
--use-random-policy, replay_trajectory); it prints nothing where no fallback is needed.

A module of its own: `import agent` imports `agent.vulkan_fallback`, so running that one with `-m` would make
runpy execute a module already imported. Standard library only (Python 3.8).
"""
from agent.vulkan_fallback import exports

if __name__ == "__main__":
    print(exports(), end="")
