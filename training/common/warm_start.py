"""Starting a model from another policy: a checkpoint's model, or an exported ONNX policy's PointNet and actor,
widened where the new model's state holds more insertion entries than the old one's (`WIDENINGS`)."""
from pathlib import Path

import torch

from agent.preprocessing import HELD_IN_SLOT_SIZE, LINE_UP_SIZE, TCP_IN_SLOT_SIZE
from training.common.checkpoints import CorruptCheckpointError, load_checkpoint
from training.common.networks import ActorCritic
from training.export.onnx_actor import actor_weights_from_onnx

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
