"""A looking policy's slot reader at run time: the exported ONNX regressor that places the slot from the look
view, its reading refined on the slot's known face (`agent.insertion.slot_fit`) where the task has one.

An exported slot reader maps `points` (B, N, 6) and `state` (B, S) to `reading` (B, 6) (`agent.insertion.
slot_memory`) and names its task (`ENV_ID_KEY`) and the step at which a looking policy reads (`LOOK_STEP_KEY`)
in its ONNX metadata: that file is all training and export need to know about the look.
Pure numpy and onnxruntime (Python 3.8).
"""
from pathlib import Path
from typing import Any, Callable, Dict, Optional

import numpy as np

from agent.insertion.slot_fit import SLOT_FACES, refined_reading
from agent.insertion.slot_memory import READING_NAME, READING_SIZE
from agent.manifest import InputSpec, SlotReaderEntry, WeightsError, file_sha256
from agent.onnx_model import INPUT_NAMES, load_session, make_session, model_spec, session_threads
from agent.preprocessing import CHANNELS, is_finite, preprocess, state_size
from agent.registry import TaskSpec

LOOK_STEP_KEY = "look_step"  # ONNX metadata: the step at which a looking policy reads the slot
ENV_ID_KEY = "env_id"  # ONNX metadata: the task whose slot it reads

Reader = Callable[[Dict[str, Any], np.random.Generator], np.ndarray]  # (raw observation, rng) -> reading


def reader(entry: SlotReaderEntry, spec: TaskSpec, observation_space: Any, threads: Optional[int] = None,
           face_fit: bool = True) -> Reader:
    """A slot reader's `read(observation, rng) -> reading` (`spec`: its preprocessing, `registry.reader_spec`),
    checked against the env's observation space; where the task's slot has a known face (`SLOT_FACES`), the
    reading is refined on it (unless `face_fit` is False: the network's reading alone)."""
    session = load_session(entry, session_threads(threads), READING_NAME)
    expected = InputSpec(spec.total_points, CHANNELS, state_size(observation_space), READING_SIZE)
    if entry.spec != expected:
        raise WeightsError("{} declares {}, but a {} slot reader takes and gives {}".format(
            entry.path, entry.spec, spec.env_id, expected))
    face = SLOT_FACES.get(spec.env_id) if face_fit else None

    def read(observation: Dict[str, Any], rng: np.random.Generator) -> np.ndarray:
        """The reading; NaN (the memory retries) for an empty cloud or non-finite inputs."""
        network_input = preprocess(observation, spec, rng)
        if network_input.n_valid == 0 or not is_finite(network_input):
            return np.full(READING_SIZE, np.nan)
        reading = session.run([READING_NAME], {INPUT_NAMES[0]: network_input.points[None],
                                               INPUT_NAMES[1]: network_input.state[None]})[0][0]
        return reading if face is None else refined_reading(reading, observation, face)

    return read


def reader_entry(path: Path, env_id: str) -> SlotReaderEntry:
    """The manifest entry of an exported slot reader of `env_id` (its look step from its metadata);
    ValueError naming the file if it is not one."""
    session = make_session(str(path))
    metadata = session.get_modelmeta().custom_metadata_map
    if LOOK_STEP_KEY not in metadata or ENV_ID_KEY not in metadata:
        raise ValueError("{} is not an exported slot reader (no {!r} / {!r} metadata); export one with "
                         "`ms2agent export-slot-reader`".format(path, LOOK_STEP_KEY, ENV_ID_KEY))
    if metadata[ENV_ID_KEY] != env_id or int(metadata[LOOK_STEP_KEY]) < 1:
        raise ValueError("{} reads {}'s slot at step {}, not {}'s at a step >= 1".format(
            path, metadata[ENV_ID_KEY], metadata[LOOK_STEP_KEY], env_id))
    return SlotReaderEntry(Path(path), file_sha256(path), model_spec(session, READING_NAME), int(metadata[LOOK_STEP_KEY]))
