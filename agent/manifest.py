"""The weights manifest: which ONNX policy each task ships, what it expects, and where it came from.

`weights/manifest.json` (or `$MS2AGENT_WEIGHTS_DIR/manifest.json`) looks like:

    {"policies": {"PickCube-v0": {
        "file": "PickCube-v0.onnx",                      # relative to the weights directory
        "sha256": "<hex digest of the file>",
        "spec": {"n_points": 1200, "channels": 6, "state_size": 51, "action_size": 7},
        "control_mode": "pd_ee_delta_pose", "obs_mode": "pointcloud", "voxel_size": 0.0,
        "slot_reader": {"file": "...", "sha256": "...", "spec": {...}, "look_step": 30},  # looking policies only
        "held_fit": true,                                # looking policies that fit the held object
        "provenance": {"command": "...", "stage": 2, "checkpoint": "...", "date": "YYYY-MM-DD",
                       "selection": {"rate": 0.96, "episodes": 50, "seeds": "2000000-2000049"},   # chosen on
                       "report": {"rate": 0.93, "episodes": 100, "seeds": "4000000-4000099",     # held out,
                                  "interval": [0.86, 0.97], "sha256": "...", "date": "..."}}}}}    # scored once

`selection` is the figure the policy was chosen on (selection seeds); `report` its held-out figure, recorded
once after it was chosen (`ms2agent record-report`; absent until then). Entries written before 2026-12-06
name their selection figure `success`; they are read as `selection`.

Standard library only (Python 3.8).
"""
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Dict, NamedTuple, Optional, Union

from agent.insertion import check_held_fit

WEIGHTS_DIR_VARIABLE = "MS2AGENT_WEIGHTS_DIR"
DEFAULT_WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"
MANIFEST_NAME = "manifest.json"
TRAIN_COMMAND = "ms2agent two-stage {}"
TRAIN_COMMANDS = {  # by the task's registry algorithm (agent.registry.TaskSpec.algorithm)
    "ppo": "`ms2agent two-stage {}`",
    "bc": "`ms2agent bc {} DEMO.h5` (behaviour cloning from ManiSkill2 demonstrations, see docs/soft_body.md)",
}
PROVENANCE_KEYS = ("command", "stage", "checkpoint", "selection", "date")
FIGURE_KEYS = ("rate", "episodes", "seeds")  # of `selection` and of `report`


class WeightsError(RuntimeError):
    """Shipped weights are missing, corrupt or do not fit the task; the message names the file."""


class PolicyNotFoundError(LookupError):
    """No shipped policy for an env id; the message lists the tasks that have one."""

    def __str__(self) -> str:  # LookupError would quote the message like a dict key
        return str(self.args[0])


class InputSpec(NamedTuple):
    n_points: int  # points per observation, goal points included
    channels: int  # per-point channels (xyz, rgb)
    state_size: int
    action_size: int


class SlotReaderEntry(NamedTuple):
    """A looking policy's slot reader (agent.insertion.slot_reader): the ONNX regressor and the step it reads at."""
    path: Path  # the ONNX file
    sha256: str
    spec: InputSpec  # action_size: the reading's size
    look_step: int

    def to_json(self, directory: Path) -> Dict[str, Any]:
        return {"file": self.path.relative_to(directory).as_posix(), "sha256": self.sha256,
                "spec": self.spec._asdict(), "look_step": self.look_step}


class ManifestEntry(NamedTuple):
    env_id: str
    path: Path  # the ONNX file
    sha256: str
    spec: InputSpec
    control_mode: str
    obs_mode: str
    provenance: Dict[str, Any]
    voxel_size: float = 0.0  # the preprocessing's voxel side (agent.preprocessing); absent in older manifests: 0
    slot_reader: Optional[SlotReaderEntry] = None  # a looking policy's slot reader; absent: none
    held_fit: bool = False  # a looking policy that fits the object in its hand (agent.insertion); absent: False

    def to_json(self, directory: Path) -> Dict[str, Any]:
        """The entry as stored in the manifest of `directory`."""
        raw = {"file": self.path.relative_to(directory).as_posix(), "sha256": self.sha256,
               "spec": self.spec._asdict(), "control_mode": self.control_mode,
               "obs_mode": self.obs_mode, "voxel_size": self.voxel_size, "provenance": self.provenance}
        if self.slot_reader is not None:
            raw["slot_reader"] = self.slot_reader.to_json(directory)
        if self.held_fit:
            raw["held_fit"] = True
        return raw


def weights_dir() -> Path:
    """`$MS2AGENT_WEIGHTS_DIR` if set, else the repository's `weights/`."""
    return Path(os.environ.get(WEIGHTS_DIR_VARIABLE) or DEFAULT_WEIGHTS_DIR)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: Union[str, Path]) -> str:
    return sha256_hex(Path(path).read_bytes())


def _relative_file(raw: Dict[str, Any], directory: Path) -> Path:
    file = Path(raw["file"])
    if file.is_absolute() or ".." in file.parts:
        raise ValueError("'file' must be relative to the weights directory, got {!r}".format(raw["file"]))
    return directory / file


def _input_spec(raw: Dict[str, Any]) -> InputSpec:
    return InputSpec(**{field: int(raw["spec"][field]) for field in InputSpec._fields})


def parse_entry(env_id: str, raw: Dict[str, Any], directory: Path) -> ManifestEntry:
    """One manifest entry, checked for completeness (KeyError/TypeError/ValueError otherwise)."""
    path, spec = _relative_file(raw, directory), _input_spec(raw)
    provenance = dict(raw["provenance"])
    if "selection" not in provenance and "success" in provenance:  # written before 2026-12-06
        provenance["selection"] = provenance.pop("success")
    missing = [key for key in PROVENANCE_KEYS if key not in provenance]
    for figure in ("selection", "report"):
        if figure == "selection" or figure in provenance:
            missing += [figure + "." + key for key in FIGURE_KEYS if key not in (provenance.get(figure) or {})]
    if missing:
        raise ValueError("provenance lacks " + ", ".join(missing))
    reader = raw.get("slot_reader")
    slot_reader = None if reader is None else SlotReaderEntry(
        _relative_file(reader, directory), str(reader["sha256"]), _input_spec(reader), int(reader["look_step"]))
    if slot_reader is not None and slot_reader.look_step < 1:
        raise ValueError("slot_reader.look_step must be >= 1, got {}".format(slot_reader.look_step))
    held_fit = bool(raw.get("held_fit", False))
    check_held_fit(slot_reader, held_fit)
    return ManifestEntry(env_id, path, str(raw["sha256"]), spec, str(raw["control_mode"]),
                         str(raw["obs_mode"]), provenance, float(raw.get("voxel_size", 0.0)), slot_reader, held_fit)


def read_manifest(directory: Path) -> Dict[str, ManifestEntry]:
    """All entries of the directory's manifest; WeightsError naming the manifest if it is unusable."""
    path = directory / MANIFEST_NAME
    try:
        policies = json.loads(path.read_text())["policies"]
        return {env_id: parse_entry(env_id, raw, directory) for env_id, raw in policies.items()}
    except FileNotFoundError:
        raise WeightsError("Weights manifest {} not found (set {} to another weights directory, or "
                           "train and export a policy with `{}`).".format(
                               path, WEIGHTS_DIR_VARIABLE, TRAIN_COMMAND.format("ENV_ID"))) from None
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise WeightsError("Weights manifest {} is invalid: {}: {}".format(
            path, type(error).__name__, error)) from error


def write_entry(directory: Path, entry: ManifestEntry) -> None:
    """Add or replace `entry` in the directory's manifest (created if missing); ValueError if incomplete."""
    path = directory / MANIFEST_NAME
    manifest = json.loads(path.read_text()) if path.exists() else {"policies": {}}
    raw = entry.to_json(directory)
    parse_entry(entry.env_id, raw, directory)
    manifest["policies"][entry.env_id] = raw
    manifest["policies"] = dict(sorted(manifest["policies"].items()))
    partial = path.with_name(MANIFEST_NAME + ".partial")
    partial.write_text(json.dumps(manifest, indent=2) + "\n")
    os.replace(str(partial), str(path))  # readers never see a half-written manifest


def tasks_with_weights(entries: Dict[str, ManifestEntry]) -> str:
    """Human-readable list of the env ids in a manifest."""
    return ", ".join(sorted(entries)) or "none"


def train_command(env_id: str, algorithm: str = "ppo") -> str:
    """The command (in backquotes) that trains a policy for `env_id` with its registry `algorithm`."""
    return TRAIN_COMMANDS[algorithm].format(env_id)


def not_found(reason: str, entries: Dict[str, ManifestEntry], command: str) -> PolicyNotFoundError:
    """The error for an env id without a shipped policy: what has one and how to train one (`command`)."""
    return PolicyNotFoundError("{} Tasks with shipped weights: {}. Train and export a policy with {}.".format(
        reason, tasks_with_weights(entries), command))


def entry_for(env_id: str, entries: Dict[str, ManifestEntry], algorithms: Dict[str, str], manifest: Path
              ) -> ManifestEntry:
    """The entry of `manifest` for `env_id`; PolicyNotFoundError if the id is unknown (not in `algorithms`, the
    known tasks' training algorithms) or has no weights, naming the command that trains the task's policy."""
    if env_id not in algorithms:
        raise not_found("Unknown env id {!r} (known tasks: {}).".format(env_id, ", ".join(sorted(algorithms))),
                        entries, train_command("ENV_ID"))
    if env_id not in entries:
        raise not_found("No policy for {} in {}.".format(env_id, manifest), entries,
                        train_command(env_id, algorithms[env_id]))
    return entries[env_id]
