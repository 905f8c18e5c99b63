"""Atomic checkpoint files: a crash or a full disk never corrupts the previous checkpoint."""
import os
import tempfile
from pathlib import Path
from typing import Any, Dict

import torch

from agent.preprocessing import HELD_IN_SLOT_SIZE, LINE_UP_SIZE, TCP_IN_SLOT_SIZE
from training.common.networks import ActorCritic


class CorruptCheckpointError(RuntimeError):
    pass


def save_checkpoint(state: Dict[str, Any], path: Path) -> None:
    """Write to a temporary file in the same directory, fsync, then rename over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            torch.save(state, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def load_checkpoint(path: Path) -> Dict[str, Any]:
    """Load a checkpoint; a clear error naming the file if it is missing or unreadable."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError("Checkpoint {} does not exist".format(path))
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # torch raises several types for truncated or foreign files
        raise CorruptCheckpointError("Checkpoint {} is corrupt or not a checkpoint: {}".format(path, error)) from error


def model_checkpoint(model: ActorCritic, **extra: Any) -> Dict[str, Any]:
    """A checkpoint holding `model`, what rebuilds it (`model_spec`), and `extra` entries."""
    low, high = model.action_center - model.action_scale, model.action_center + model.action_scale
    spec = {"state_size": model.critic[0].in_features - model.pointnet.out_features,
            "action_low": low.tolist(), "action_high": high.tolist()}
    return {"model": model.state_dict(), "model_spec": spec, **extra}


SLOT_STATE_SIZE = 9 + TCP_IN_SLOT_SIZE  # state entries a remembered slot adds: its position, TCP -> slot,
# its axis, and the TCP's pose in its frame (agent.preprocessing.tcp_in_slot), which older looking policies lack
TCP_POSE_SIZE = 7  # the state's last entries (agent.preprocessing.build_state)
WIDENINGS = (SLOT_STATE_SIZE, TCP_IN_SLOT_SIZE, HELD_IN_SLOT_SIZE, LINE_UP_SIZE)  # state entries a checkpoint may
# lack: a policy that does not look, an older looking one, a looking one without the held object's fit, an
# older held-fit one without the fine line-up entries (each kind joins its new entries just before the TCP pose)


def with_slot_columns(weight: torch.Tensor, count: int) -> torch.Tensor:
    """A first layer's weight (out, features + state) with `count` zero columns for the slot state entries
    a checkpoint lacks (all of them, or the TCP's pose in the slot frame), where `build_state` puts them
    for the insertion tasks (whose only other `extra` entry is the TCP pose): just before the trailing
    TCP pose. The wider layer computes what the narrow one did from the same features (a looking cloud's
    50 goal points still change a non-looking policy's PointNet features)."""
    zeros = weight.new_zeros(weight.shape[0], count)
    return torch.cat([weight[:, :-TCP_POSE_SIZE], zeros, weight[:, -TCP_POSE_SIZE:]], dim=1)


def initialise_from(model: ActorCritic, path: Path) -> None:
    """Load `path` into `model`: a checkpoint's whole model, or an exported ONNX policy's PointNet and
    actor (`weights/ENV.onnx`, so training can continue from a shipped policy when its run directory is
    gone); the ONNX file holds no critic or log-std, so those keep their fresh initialisation (the
    action bounds come from the task, as for any new model). A looking model (`--slot-reader`, `--held-fit`)
    may start from an insertion policy with fewer state entries (`WIDENINGS`): the entries it lacks start with
    zero weights."""
    path = Path(path)
    exported = path.suffix == ".onnx"
    if exported:
        from training.export.export import actor_weights_from_onnx

        weights = actor_weights_from_onnx(path)
    else:
        weights = dict(load_checkpoint(path)["model"])
    wanted = model.state_dict()
    for first in ("actor.0.weight", "critic.0.weight"):
        missing_columns = wanted[first].shape[1] - weights[first].shape[1] if first in weights else 0
        if missing_columns in WIDENINGS:
            weights[first] = with_slot_columns(weights[first], missing_columns)
    try:
        missing, unexpected = model.load_state_dict(weights, strict=False)
    except RuntimeError as error:  # mismatched shapes: another task's network
        raise CorruptCheckpointError("{} does not match the network: {}".format(path, error)) from None
    fresh = ("log_std", "action_center", "action_scale")  # what an exported actor does not hold
    absent = [key for key in missing if not (exported and (key.startswith("critic.") or key in fresh))]
    if absent or unexpected:
        raise CorruptCheckpointError("{} does not match the network: missing {}, unexpected {}".format(
            path, absent, list(unexpected)))


def model_from_checkpoint(path: Path) -> ActorCritic:
    """The model stored in a distillation or PPO checkpoint."""
    checkpoint = load_checkpoint(path)
    if "model_spec" not in checkpoint:
        raise CorruptCheckpointError("Checkpoint {} holds no model (no 'model_spec')".format(path))
    spec = checkpoint["model_spec"]
    model = ActorCritic(spec["state_size"], len(spec["action_low"]), spec["action_low"], spec["action_high"])
    model.load_state_dict(checkpoint["model"])
    return model.eval()
