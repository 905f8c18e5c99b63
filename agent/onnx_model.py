"""Exported policies on onnxruntime: sessions tuned for one observation per call, checked loading.

An exported policy maps `points` (B, N, C) and `state` (B, S) float32 to `action` (B, A); the
batch dimension may be dynamic, every other one is fixed and must match the manifest.
"""
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import onnxruntime as ort

from agent.manifest import InputSpec, ManifestEntry, SlotReaderEntry, WeightsError, file_sha256, sha256_hex, write_entry

INPUT_NAMES = ("points", "state")
OUTPUT_NAME = "action"
THREADS_VARIABLE = "MS2AGENT_ORT_THREADS"
# Graph optimisers no session runs. onnxruntime 1.19.2 (the Docker image's) takes a Mul by an empty tensor for a
# no-op and removes it, which changes the shapes after it: the slot readers' Fourier features have zero octaves,
# and their sessions fail on that version. None of the shipped graphs has a real no-op for it to remove.
DISABLED_OPTIMIZERS = ["NoopElimination"]


def session_threads(threads: Optional[int] = None) -> int:
    """onnxruntime intra-op threads: `threads`, else `$MS2AGENT_ORT_THREADS`, else 1."""
    return threads or int(os.environ.get(THREADS_VARIABLE, "1"))


def session_options(threads: int = 1,
                    optimization: ort.GraphOptimizationLevel = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
                    ) -> ort.SessionOptions:
    """Options for latency of single calls: few threads, sequential, no spinning between calls."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = optimization
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    options.log_severity_level = 3  # errors only
    return options


def make_session(model: Union[bytes, str], threads: int = 1,
                 optimization: ort.GraphOptimizationLevel = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
                 ) -> ort.InferenceSession:
    """A CPU session for a serialised model or a model file (without `DISABLED_OPTIMIZERS`)."""
    return ort.InferenceSession(model, session_options(threads, optimization), providers=["CPUExecutionProvider"],
                                disabled_optimizers=DISABLED_OPTIMIZERS)


def _fixed_dims(name: str, shape: Sequence[Any], rank: int) -> List[int]:
    """The non-batch dimensions of an input/output, which must be fixed integers."""
    dims = list(shape[1:])
    if len(shape) != rank or not all(isinstance(dim, int) for dim in dims):
        raise ValueError("{!r} has shape {}, expected (batch, {})".format(
            name, list(shape), ", ".join(["fixed size"] * (rank - 1))))
    return dims


def model_spec(session: ort.InferenceSession, output: str = OUTPUT_NAME) -> InputSpec:
    """The input spec a session's model implements (`action_size`: the size of `output`); ValueError if
    it is not a policy's (or slot reader's) interface."""
    inputs: Dict[str, Any] = {node.name: node.shape for node in session.get_inputs()}
    outputs: Dict[str, Any] = {node.name: node.shape for node in session.get_outputs()}
    if sorted(inputs) != sorted(INPUT_NAMES) or output not in outputs:
        raise ValueError("inputs {} and outputs {}, expected inputs {} and output {!r}".format(
            sorted(inputs), sorted(outputs), list(INPUT_NAMES), output))
    n_points, channels = _fixed_dims("points", inputs["points"], 3)
    (state_size,) = _fixed_dims("state", inputs["state"], 2)
    (action_size,) = _fixed_dims(output, outputs[output], 2)
    return InputSpec(n_points, channels, state_size, action_size)


def load_session(entry: Union[ManifestEntry, SlotReaderEntry], threads: int = 1, output: str = OUTPUT_NAME
                 ) -> ort.InferenceSession:
    """The entry's model (a policy; with `output=READING_NAME` a slot reader), after checking its
    checksum and its interface against the manifest."""
    what = "policy" if output == OUTPUT_NAME else "slot reader"
    try:
        data = entry.path.read_bytes()
    except OSError as error:
        raise WeightsError("Cannot read the {} {}: {}".format(what, entry.path, error)) from None
    digest = sha256_hex(data)
    if digest != entry.sha256:
        raise WeightsError("Checksum mismatch for {}: the manifest says sha256 {}, the file has {} "
                           "(re-export it or update the manifest).".format(entry.path, entry.sha256, digest))
    try:
        session = make_session(data, threads)
        spec = model_spec(session, output)
    except Exception as error:  # onnxruntime's errors share no base class besides Exception
        raise WeightsError("{} is not a usable ONNX {}: {}".format(entry.path, what, error)) from error
    if spec != entry.spec:
        raise WeightsError("{} implements {}, but the manifest declares {}".format(entry.path, spec, entry.spec))
    return session


def register(directory: Path, env_id: str, model_file: Path, control_mode: str, obs_mode: str,
             provenance: Dict[str, Any], voxel_size: float = 0.0) -> ManifestEntry:
    """Add an exported model (a file inside `directory`) to the directory's manifest, spec read from the model."""
    entry = ManifestEntry(env_id, Path(model_file), file_sha256(model_file), model_spec(make_session(str(model_file))),
                          control_mode, obs_mode, provenance, voxel_size)
    write_entry(Path(directory), entry)
    return entry
