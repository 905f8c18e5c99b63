"""Where an insertion task's slot is: read once from a close look, then remembered over the episode.

PegInsertionSide's and PlugCharger's observations do not say where the hole / receptacle is. A looking policy
brings its hand camera in front of it first; the observation after `look_step` actions (the reset observation
counts as 0) goes to the slot reader (`agent.insertion.slot_reader`), and from then on every observation carries
the remembered slot as `extra.goal_pos` (the slot frame's origin, world) and `extra.goal_axis` (its x axis, the
insertion direction), which preprocessing turns into goal points and state, including the TCP's pose in the slot
frame (`agent.preprocessing.tcp_in_slot`). Before the read both are zeros; a reading that is not finite (a bad
observation) is retried on the next observation.

A reading is the TCP's position in the slot frame (3) and the slot's world rotation vector (3).
Pure numpy (Python 3.8).
"""
from typing import Any, Callable, Dict, Tuple

import numpy as np

from agent.geometry import rotation_vector_to_matrix

READING_SIZE = 6
READING_NAME = "reading"  # the exported reader's output
SLOT_KEYS = ("goal_pos", "goal_axis")


def slot_from_reading(reading: np.ndarray, tcp_pose: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """The slot's world origin and x axis from a reading taken with the TCP at `tcp_pose` (p, wxyz)."""
    reading = np.asarray(reading, dtype=np.float64)
    rotation = rotation_vector_to_matrix(reading[3:])
    return np.asarray(tcp_pose[:3], dtype=np.float64) - rotation @ reading[:3], rotation[:, 0]


def with_slot(observation: Dict[str, Any], position: np.ndarray, axis: np.ndarray) -> Dict[str, Any]:
    """A shallow copy of `observation` whose `extra` carries the slot (`SLOT_KEYS`)."""
    slot = dict(zip(SLOT_KEYS, (np.asarray(position, np.float32), np.asarray(axis, np.float32))))
    return dict(observation, extra=dict(observation["extra"], **slot))


class SlotMemory:
    """Reads the slot from observation `look_step` of an episode (`read`: raw observation -> reading; a
    later one where that reading is not finite) and adds it to that observation and every later one;
    `reset()` at every episode start. `read_at`: the observation it read (None: not yet)."""

    def __init__(self, read: Callable[[Dict[str, Any]], np.ndarray], look_step: int) -> None:
        if look_step < 1:
            raise ValueError("look_step must be >= 1, got {}".format(look_step))
        self.read, self.look_step = read, look_step
        self.reset()

    def reset(self) -> None:
        self.step, self.read_at = 0, None
        self.position, self.axis = np.zeros(3), np.zeros(3)

    def remember(self, observation: Dict[str, Any]) -> Dict[str, Any]:
        """`observation` with the remembered slot (zeros before the read); reads it from `look_step` on."""
        if self.step >= self.look_step and self.read_at is None:
            reading = np.asarray(self.read(observation), dtype=np.float64).reshape(READING_SIZE)
            tcp = np.asarray(observation["extra"]["tcp_pose"], dtype=np.float64)
            if np.isfinite(reading).all() and np.isfinite(tcp).all():  # else: retried next step
                self.position, self.axis = slot_from_reading(reading, tcp)
                self.read_at = self.step
        self.step += 1
        return with_slot(observation, self.position, self.axis)
