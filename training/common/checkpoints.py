"""Checkpoint files: written atomically (a crash or a full disk never corrupts the previous checkpoint), read with
clear errors, and the model they hold."""
import os
import tempfile
from pathlib import Path
from typing import Any, Dict, Optional

import torch

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
    """Load a checkpoint; a one-line error naming the file if it is missing (FileNotFoundError) or unreadable
    (CorruptCheckpointError)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError("Checkpoint {} does not exist".format(path))
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # torch raises several types for truncated or foreign files
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise CorruptCheckpointError("Checkpoint {} is corrupt or not a checkpoint: {}".format(path, reason)) from error


def model_checkpoint(model: ActorCritic, **extra: Any) -> Dict[str, Any]:
    """A checkpoint holding `model`, what rebuilds it (`model_spec`), and `extra` entries."""
    low, high = model.action_center - model.action_scale, model.action_center + model.action_scale
    pooled = 0 if model.pointnet is None else model.pointnet.out_features
    spec = {"state_size": model.critic[0].in_features - pooled, "action_low": low.tolist(),
            "action_high": high.tolist(), "points": model.pointnet is not None,
            "normalize_state": model.normalize_state}
    return {"model": model.state_dict(), "model_spec": spec, **extra}


def model_from_checkpoint(path: Path, checkpoint: Optional[Dict[str, Any]] = None) -> ActorCritic:
    """The model stored in a distillation or PPO checkpoint (a point-cloud policy, or a learned teacher's state
    policy: `model_spec["points"]`, which checkpoints older than teachers lack); `checkpoint`: the file's contents
    if already loaded (`load_checkpoint`)."""
    checkpoint = load_checkpoint(path) if checkpoint is None else checkpoint
    if "model_spec" not in checkpoint:
        raise CorruptCheckpointError("Checkpoint {} holds no model (no 'model_spec')".format(path))
    spec = checkpoint["model_spec"]
    model = ActorCritic(spec["state_size"], len(spec["action_low"]), spec["action_low"], spec["action_high"],
                        points=spec.get("points", True), normalize_state=spec.get("normalize_state", False))
    model.load_state_dict(checkpoint["model"])
    return model.eval()
