"""What a looking policy keeps over an episode: the slot it read (agent.slot_memory) and, with `held_fit`,
the fit of the object in its hand (agent.held_fit). One object, so the agent and training's workers reset and
feed both the same way. Pure numpy (Python 3.8)."""
from typing import Any, Dict, Optional

from agent.held_fit import HeldTracker
from agent.slot_memory import SlotMemory


class Looking:
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
