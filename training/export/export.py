"""Export a checkpoint's deterministic actor to ONNX for the agent (`training.export.onnx_actor`), with a parity
check: on real observations of the task the ONNX and torch actions differ by at most the precision's tolerance
(`PARITY_TOLERANCE`). The manifest entry records sha256, precision and provenance.

The source may also be an exported policy (`weights/ENV.onnx`): a conversion, e.g. of a shipped policy to int8 or
to the current graph. It keeps the policy's provenance (from the manifest entry of that file) and records what it
was converted from and how far its actions are from the source's. A conversion to the source's precision and point
count (by default its own) keeps its weights (an int8 source its int8 weights) and so its actions, up to float
rounding, and its report figure; one to another precision or point count changes the actions: the source's report
figure moves to `converted.source_report` and the converted policy needs its own (`ms2agent record-report`).
"""
import datetime
import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch

from agent.insertion import check_held_fit
from agent.insertion.held_fit import HELD_BOXES, HeldTracker
from agent.insertion.slot_memory import with_slot
from agent.insertion.slot_reader import reader_entry
from agent.manifest import InputSpec, ManifestEntry, file_sha256, read_manifest, sha256_hex, write_entry
from agent.onnx_model import INPUT_NAMES, OUTPUT_NAME, make_session, model_spec
from agent.policy import LAYOUTS, Layout, state_sizes
from agent.preprocessing import TCP_IN_SLOT_SIZE, preprocess
from agent.registry import TaskSpec, get_task, looking, with_points
from training.common.checkpoints import load_checkpoint, model_from_checkpoint
from training.common.networks import ActorCritic
from training.common.seeds import SELECTION_START
from training.common.warm_start import initialise_from
from training.export.onnx_actor import ExportedActor, int8_pointnet, int8_weight, onnx_bytes

PRECISIONS = ("fp32", "int8")  # the first is the default
PARITY_TOLERANCE = {"fp32": 1e-4, "int8": 0.05}  # max |ONNX - torch| action difference an export may show


EXPORT_FLAGS: Dict[Layout, str] = {  # how to export a policy of each layout (agent.policy.LAYOUTS)
    (False, False): "without --slot-reader",
    (True, False): "with --slot-reader (the slot reader it was trained with)",
    (True, True): "with --slot-reader (the slot reader it was trained with) and --held-fit",
}


class ParityError(RuntimeError):
    pass


def state_size_mismatch(checkpoint: Path, state_size: int, env_id: str, sizes: Dict[Layout, int],
                        trained_for: Optional[str] = None) -> str:
    """Why a checkpoint whose model takes a state of `state_size` does not export for `env_id` with the flags given
    (`sizes`: the task's state sizes by layout, `agent.policy.state_sizes`): the flags that fit where the size is
    one of the task's; else that the checkpoint was trained for another task (`trained_for`, where it names one)."""
    matching = [layout for layout in sorted(sizes) if sizes[layout] == state_size]
    if matching:
        return "{} takes a state of size {}, the state of a {} policy {}: export it {}".format(
            checkpoint, state_size, env_id, LAYOUTS[matching[0]], EXPORT_FLAGS[matching[0]])
    known = ", ".join("{} {}".format(size, LAYOUTS[layout]) for layout, size in sorted(sizes.items()))
    task = " ({})".format(trained_for) if trained_for and trained_for != env_id else ""
    return ("{} takes a state of size {}, but {} policies take {}: the checkpoint was probably trained for another "
            "task{}".format(checkpoint, state_size, env_id, known, task))


def real_inputs(spec: TaskSpec, n_steps: int = 8, seed: int = 0) -> Tuple[List[Any], Any, Any]:
    """Network inputs (preprocessed as `spec`) from a short random-action episode of the real task, and the
    env's observation and action spaces; a looking spec's observations carry a made-up slot (1 dm ahead of the TCP)
    and, with `held_fit`, the held-object fit's pose (agent.insertion.held_fit)."""
    from training.common.envs import make_env

    env = make_env(spec.env_id, obs_mode=spec.obs_mode, control_mode=spec.control_mode)
    rng = np.random.default_rng(seed)
    tracker = HeldTracker(HELD_BOXES[spec.env_id]) if spec.held_fit else None

    def network_input(obs: Dict[str, Any]) -> Any:
        if spec.look_step:
            obs = with_slot(obs, np.asarray(obs["extra"]["tcp_pose"][:3]) + [0.0, 0.1, 0.0], np.array([0.0, 1.0, 0.0]))
        if tracker is not None:
            obs = tracker.track(obs)
        return preprocess(obs, spec, rng)

    env.action_space.seed(seed)
    try:
        obs, _ = env.reset(seed=seed)
        inputs = [network_input(obs)]
        for _ in range(n_steps - 1):
            obs, *_ = env.step(env.action_space.sample())
            inputs.append(network_input(obs))
        return inputs, env.observation_space, env.action_space
    finally:
        env.close()


def check_parity(model: ActorCritic, onnx_model: bytes, inputs: List[Any], tolerance: float = 1e-4) -> float:
    """Max |onnx - torch| over `inputs`; ParityError above `tolerance`."""
    session = make_session(onnx_model)
    points = np.stack([x.points for x in inputs])
    state = np.stack([x.state for x in inputs])
    with torch.no_grad():
        expected = model(torch.from_numpy(points), torch.from_numpy(state)).numpy()
    actual = session.run([OUTPUT_NAME], {INPUT_NAMES[0]: points, INPUT_NAMES[1]: state})[0]
    difference = float(np.abs(actual - expected).max())
    if difference > tolerance:
        raise ParityError("ONNX and torch actions differ by {:.2e} (> {:.0e})".format(difference, tolerance))
    return difference


RESULT_KEYS = ("checkpoint", "student")  # what a run's result.json calls its choice: PPO runs, distillation runs


def chosen_checkpoint(path: Path) -> Path:
    """`path` itself, or for a run directory the checkpoint its result.json names (the run's choice: `RESULT_KEYS`)."""
    path = Path(path)
    if not path.is_dir():
        return path
    result = path / "result.json"
    if not result.is_file():
        raise ValueError("{} is a directory without result.json: pass a checkpoint, or a finished run's "
                         "directory".format(path))
    chosen = json.loads(result.read_text())
    for key in RESULT_KEYS:
        if key in chosen:
            return Path(chosen[key])
    raise ValueError("{} names no checkpoint ({}): pass a checkpoint".format(result, " or ".join(RESULT_KEYS)))


def model_from_onnx(path: Path, spec: InputSpec, action_space: Any) -> ActorCritic:
    """The network of an exported policy with interface `spec` (its PointNet and actor; the action bounds those of
    the task's `action_space`)."""
    model = ActorCritic(spec.state_size, spec.action_size, action_space.low, action_space.high)
    initialise_from(model, path)
    return model.eval()


def manifest_entry(weights_dir: Path, env_id: str) -> Optional[ManifestEntry]:
    """`env_id`'s entry in the manifest of `weights_dir`, if there is one."""
    return read_manifest(weights_dir).get(env_id) if (weights_dir / "manifest.json").is_file() else None


def converted_provenance(digest: str, entry: Optional[ManifestEntry], precision: str, difference: float,
                         same_actions: bool, from_source: float, new_digest: str, points: int
                         ) -> Optional[Dict[str, Any]]:
    """The provenance of a policy (sha256 `new_digest`) converted from an exported policy whose sha256 is `digest`:
    that of the manifest `entry` (the task's, if any) if it is that file, plus `converted` (with `from_source`, the
    largest action difference from the source, its `points`, and an earlier conversion's record nested as `earlier`);
    else None. A conversion that acts differently (not `same_actions`: another precision or point count): the
    source's report figure moves to `converted.source_report`; else the figure is the converted policy's too (its
    `sha256` the new file's, `measured_on` the source's, so that the policy is not scored on report seeds again)."""
    if entry is None or entry.sha256 != digest:
        return None
    provenance = dict(entry.provenance)
    converted = {"from_sha256": digest, "precision": precision, "points": points, "max_abs_diff": difference,
                 "max_abs_diff_from_source": from_source, "date": datetime.date.today().isoformat()}
    if "converted" in provenance:
        converted["earlier"] = provenance["converted"]
    if not same_actions and "report" in provenance:
        converted["source_report"] = provenance.pop("report")
    elif "report" in provenance:
        report = provenance["report"]
        provenance["report"] = dict(report, sha256=new_digest, measured_on=report.get("measured_on", report.get(
            "sha256")))
    provenance["converted"] = converted
    return provenance


def action_difference(first: bytes, second: bytes, inputs: List[Any], first_inputs: Optional[List[Any]] = None
                      ) -> float:
    """Max |first - second| over the actions of two ONNX policies on `inputs` (the first's on `first_inputs`, where
    it takes another point count: the same observations sampled for it)."""
    def actions(model: bytes, given: List[Any]) -> np.ndarray:
        feed = {INPUT_NAMES[0]: np.stack([x.points for x in given]), INPUT_NAMES[1]: np.stack([x.state for x in given])}
        return make_session(model).run([OUTPUT_NAME], feed)[0]

    return float(np.abs(actions(first, first_inputs or inputs) - actions(second, inputs)).max())


def export_checkpoint(checkpoint: Path, env_id: str, weights_dir: Path, command: str,
                      slot_reader: Optional[Path] = None, held_fit: bool = False, precision: str = "fp32",
                      points: Optional[int] = None) -> Dict[str, Any]:
    """Write `weights_dir/ENV.onnx` in `precision` (`PRECISIONS`) for `points` points per observation (goal points
    included; default: the task's, for a conversion the source's) and its manifest entry (a looking policy's
    `slot_reader` is copied next to it as `ENV.slot_reader.onnx`; `held_fit`: it also fits the held object);
    returns a summary. `checkpoint` may be an exported policy (`.onnx`): a conversion (see the module's doc); of
    the policy of `env_id`'s manifest entry in `weights_dir`, it keeps the entry's slot reader and held-object fit
    unless `slot_reader` or `held_fit` is given."""
    if precision not in PRECISIONS:
        raise ValueError("precision {!r}: expected one of {}".format(precision, ", ".join(PRECISIONS)))
    checkpoint = chosen_checkpoint(checkpoint)
    converting = checkpoint.suffix == ".onnx"
    if converting:
        source = checkpoint.read_bytes()  # before the export may overwrite the file
        source_int8 = int8_weight(checkpoint)  # None: an fp32 source
        source_sha256, source_spec, stored = sha256_hex(source), model_spec(make_session(source)), {}
        shipped = manifest_entry(weights_dir, env_id)
        if slot_reader is None and not held_fit and shipped is not None and shipped.sha256 == source_sha256:
            slot_reader, held_fit = (None, False) if shipped.slot_reader is None else (shipped.slot_reader.path,
                                                                                      shipped.held_fit)
    check_held_fit(slot_reader, held_fit)
    reader = None if slot_reader is None else reader_entry(slot_reader, env_id)
    spec = get_task(env_id) if reader is None else looking(get_task(env_id), reader.look_step, held_fit)
    if not converting:
        stored = load_checkpoint(checkpoint)
        model = model_from_checkpoint(checkpoint, stored)
        trained_for = (stored.get("config") or {}).get("env_id")
        if trained_for and trained_for != env_id:
            raise ValueError("{} was trained for {} (its run's config), not {}: export it as {}, or pass a {} "
                             "checkpoint".format(checkpoint, trained_for, env_id, trained_for, env_id))
    default_points = source_spec.n_points if converting else spec.total_points
    spec = with_points(spec, default_points if points is None else points)
    inputs, observation_space, action_space = real_inputs(spec)
    if converting:
        model = model_from_onnx(checkpoint, source_spec, action_space)
    record = stored.get("record", {})
    state_size = model.critic[0].in_features - model.pointnet.out_features
    if reader is not None and state_size + TCP_IN_SLOT_SIZE == inputs[0].state.size:  # looking, from before
        # the TCP's pose in the slot frame was in the state: those entries join with zero weights
        widened = ActorCritic(inputs[0].state.size, len(model.action_scale), model.action_center - model.action_scale,
                              model.action_center + model.action_scale)
        initialise_from(widened, checkpoint)
        model, state_size = widened.eval(), inputs[0].state.size
    if state_size != inputs[0].state.size:
        raise ValueError(state_size_mismatch(checkpoint, state_size, env_id, state_sizes(observation_space, env_id),
                                             (stored.get("config") or {}).get("env_id")))
    data = onnx_bytes(ExportedActor(model, spec.total_points), spec.total_points, state_size)
    if precision == "int8":
        data = int8_pointnet(data, source_int8 if converting else None)  # an int8 source: its weights
    difference = check_parity(model, data, inputs, PARITY_TOLERANCE[precision])
    provenance = None
    if converting:
        same_points = spec.total_points == source_spec.n_points
        source_inputs = None if same_points else real_inputs(with_points(spec, source_spec.n_points))[0]
        provenance = converted_provenance(source_sha256, shipped, precision, difference,
                                          same_points and precision == ("fp32" if source_int8 is None else "int8"),
                                          action_difference(source, data, inputs, source_inputs), sha256_hex(data),
                                          spec.total_points)
    weights_dir.mkdir(parents=True, exist_ok=True)
    path = weights_dir / "{}.onnx".format(env_id)
    path.write_bytes(data)
    if reader is not None:
        copy = weights_dir / "{}.slot_reader.onnx".format(env_id)
        copy.write_bytes(reader.path.read_bytes())
        reader = reader._replace(path=copy)
    episodes = int(record.get("episodes", 0))
    provenance = provenance or {
        "command": command,
        "stage": record.get("stage", "distilled (before PPO)" if "round" in record else "unknown"),
        "checkpoint": str(checkpoint),
        "selection": {"rate": record.get("success"), "episodes": episodes,
                      "seeds": "{}-{}".format(SELECTION_START, SELECTION_START + episodes - 1) if episodes else "none"},
        "date": datetime.date.today().isoformat(),
    }
    provenance["precision"] = precision
    entry = ManifestEntry(env_id, path, file_sha256(path),
                          InputSpec(spec.total_points, 6, state_size, len(model.action_scale)),
                          spec.control_mode, spec.obs_mode, provenance, spec.voxel_size, reader, held_fit)
    write_entry(weights_dir, entry)
    return {"onnx": str(path), "bytes": len(data), "points": spec.total_points, "max_abs_diff": difference,
            "provenance": provenance,
            "slot_reader": None if reader is None else str(reader.path)}
