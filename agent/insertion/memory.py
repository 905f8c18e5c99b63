"""What a looking policy keeps over an episode (`InsertionMemory`): the slot it read (`agent.insertion.
slot_memory`) and, with the held-object fit, the pose of the object in its hand (`agent.insertion.held_fit`);
and the one builder of it (`insertion_memory`) that the agent and training's environment workers both use, so
both read, remember and fit alike. Pure numpy and onnxruntime (Python 3.8).
"""
from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np

from agent.blas_threads import limit_openblas_threads
from agent.insertion import check_held_fit
from agent.insertion.held_fit import HELD_BOXES, HeldTracker
from agent.insertion.slot_memory import SlotMemory
from agent.insertion.slot_reader import reader
from agent.manifest import SlotReaderEntry
from agent.registry import TaskSpec, looking, reader_spec


class InsertionMemory:
    """`observe(observation)`: the observation with the remembered slot and, with a `tracker`, the held
    object's fitted pose; `reset()` at every episode start."""

    def __init__(self, memory: SlotMemory, tracker: Optional[HeldTracker] = None) -> None:
        self.memory, self.tracker = memory, tracker

    def reset(self) -> None:
        self.memory.reset()
        if self.tracker is not None:
            self.tracker.reset()

    def observe(self, observation: Dict[str, Any]) -> Dict[str, Any]:
        observation = self.memory.remember(observation)
        return observation if self.tracker is None else self.tracker.track(observation)


def insertion_memory(entry: SlotReaderEntry, task: TaskSpec, observation_space: Any,
                     rng: Callable[[], np.random.Generator], held_fit: bool = False, threads: Optional[int] = None
                     ) -> Tuple[TaskSpec, InsertionMemory]:
    """A looking policy of `task` (the task's own spec) with the slot reader `entry`: its spec (`registry.looking`)
    and its per-episode memory, reading with the slot reader (checked against the env's `observation_space`; `rng()`:
    the preprocessing RNG in use when it reads; `threads`: `agent.onnx_model.session_threads`) and, with `held_fit`,
    fitting the held object (its box: `HELD_BOXES`; the process's OpenBLAS then runs on one thread,
    `agent.blas_threads`)."""
    check_held_fit(entry, held_fit)
    read = reader(entry, reader_spec(task), observation_space, threads)
    memory = SlotMemory(lambda observation: read(observation, rng()), entry.look_step)
    tracker = HeldTracker(HELD_BOXES[task.env_id]) if held_fit else None
    if held_fit:
        limit_openblas_threads(1)
    return looking(task, entry.look_step, held_fit), InsertionMemory(memory, tracker)
