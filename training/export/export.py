"""Export a checkpoint's deterministic actor to ONNX for the agent, with a parity check.

The ONNX graph maps `points` (B, N, 6) and `state` (B, S) to `action` (B, A); opset 17, which
onnxruntime 1.19.2 (the Docker image's) loads. The graph computes exactly the trained network, rearranged
for onnxruntime's CPU kernels (`ExportedActor`: ~1.5 ms less per act, see README "Agent latency"). Parity: on real observations of the task the ONNX
and torch actions differ by at most `tolerance`. The manifest entry records sha256 and provenance.
"""
import datetime
import io
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import onnx
import onnxruntime
import torch
from torch import nn

from agent.insertion import check_held_fit
from agent.insertion.held_fit import HELD_BOXES, HeldTracker
from agent.insertion.slot_memory import with_slot
from agent.insertion.slot_reader import reader_entry
from agent.manifest import InputSpec, ManifestEntry, file_sha256, write_entry
from agent.preprocessing import TCP_IN_SLOT_SIZE, preprocess
from agent.registry import TaskSpec, get_task, looking
from training.common.checkpoints import initialise_from, load_checkpoint, model_from_checkpoint
from agent.onnx_model import INPUT_NAMES, OUTPUT_NAME
from training.common.networks import ActorCritic, PointNet, mlp_head

OPSET = 17


class ParityError(RuntimeError):
    pass


def tree_max(features: torch.Tensor) -> torch.Tensor:
    """Max over dim 1 by repeated halving: exports as Slice + elementwise Max, which onnxruntime
    vectorises (its ReduceMax over the point axis does not)."""
    while features.shape[1] > 1:
        half = features.shape[1] // 2
        pooled = torch.maximum(features[:, :half], features[:, half:2 * half])
        if features.shape[1] % 2:  # fold the odd one out into the first row
            pooled = torch.cat([torch.maximum(pooled[:, :1], features[:, 2 * half:]), pooled[:, 1:]], dim=1)
        features = pooled
    return features[:, 0]


class ExportedActor(nn.Module):
    """The actor's deterministic path as relu(tree_max(...)) instead of max(relu(...)): ReLU is
    monotonic, so the two are identical, and the ReLU runs on 512 values instead of N x 512."""

    def __init__(self, model: ActorCritic) -> None:
        super().__init__()
        self.model = model
        self.per_point = model.pointnet.mlp[:-1]  # all but the final ReLU

    def forward(self, points: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        pooled = torch.relu(tree_max(self.per_point(points)))
        return self.model.mean_action(torch.cat([pooled, state], dim=-1))


def onnx_bytes(actor: nn.Module, n_points: int, state_size: int) -> bytes:
    """`actor(points, state) -> action` for `n_points` points as ONNX, with a dynamic batch axis."""
    buffer = io.BytesIO()
    example = (torch.zeros(1, n_points, 6), torch.zeros(1, state_size))
    torch.onnx.export(actor.eval(), example, buffer, input_names=list(INPUT_NAMES), output_names=[OUTPUT_NAME],
                      dynamic_axes={name: {0: "batch"} for name in (*INPUT_NAMES, OUTPUT_NAME)},
                      opset_version=OPSET, dynamo=False)
    return buffer.getvalue()


def actor_weights_from_onnx(path: Path) -> Dict[str, torch.Tensor]:
    """The PointNet and actor weights in an `ExportedActor` graph (the inverse of `onnx_bytes`), read
    from the nodes that use them, in layer order: MatMul (PointNet linear, transposed), LayerNormalization
    (scale, bias) and Gemm (actor linear). Their inputs are initialisers, or Identity aliases of one:
    the exporter stores equal tensors once (an all-zero bias and an all-zero action centre)."""
    graph = onnx.load(str(path)).graph
    tensors = {tensor.name: torch.from_numpy(onnx.numpy_helper.to_array(tensor).copy()) for tensor in graph.initializer}
    tensors.update({node.output[0]: tensors[node.input[0]] for node in graph.node
                    if node.op_type == "Identity" and node.input[0] in tensors})
    nodes = {op: [node for node in graph.node if node.op_type == op] for op in ("MatMul", "LayerNormalization", "Gemm")}
    linears = [index for index, layer in enumerate(PointNet().mlp) if isinstance(layer, nn.Linear)]
    actor_linears = [index for index, layer in enumerate(mlp_head(1, 1)) if isinstance(layer, nn.Linear)]
    if (len(nodes["MatMul"]), len(nodes["LayerNormalization"]), len(nodes["Gemm"])) != (
            len(linears), len(linears), len(actor_linears)):
        raise ValueError("{} is not an exported ms2agent actor".format(path))
    state = {}
    for index, matmul, norm in zip(linears, nodes["MatMul"], nodes["LayerNormalization"]):
        state["pointnet.mlp.{}.weight".format(index)] = tensors[matmul.input[1]].T.contiguous()
        state["pointnet.mlp.{}.weight".format(index + 1)] = tensors[norm.input[1]]
        state["pointnet.mlp.{}.bias".format(index + 1)] = tensors[norm.input[2]]
    for index, gemm in zip(actor_linears, nodes["Gemm"]):
        transposed = any(attribute.name == "transB" and attribute.i for attribute in gemm.attribute)
        weight = tensors[gemm.input[1]]
        state["actor.{}.weight".format(index)] = weight if transposed else weight.T.contiguous()
        state["actor.{}.bias".format(index)] = tensors[gemm.input[2]]
    return state


def real_inputs(spec: TaskSpec, n_steps: int = 8, seed: int = 0) -> List[Any]:
    """Network inputs (preprocessed as `spec`) from a short random-action episode of the real task; a
    looking spec's observations carry a made-up slot (1 dm ahead of the TCP) and, with `held_fit`, the
    held-object fit's pose (agent.insertion.held_fit)."""
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

    try:
        obs, _ = env.reset(seed=seed)
        inputs = [network_input(obs)]
        for _ in range(n_steps - 1):
            obs, *_ = env.step(env.action_space.sample())
            inputs.append(network_input(obs))
        return inputs
    finally:
        env.close()


def check_parity(model: ActorCritic, onnx_model: bytes, inputs: List[Any], tolerance: float = 1e-4) -> float:
    """Max |onnx - torch| over `inputs`; ParityError above `tolerance`."""
    session = onnxruntime.InferenceSession(onnx_model, providers=["CPUExecutionProvider"])
    points = np.stack([x.points for x in inputs])
    state = np.stack([x.state for x in inputs])
    with torch.no_grad():
        expected = model(torch.from_numpy(points), torch.from_numpy(state)).numpy()
    actual = session.run([OUTPUT_NAME], {INPUT_NAMES[0]: points, INPUT_NAMES[1]: state})[0]
    difference = float(np.abs(actual - expected).max())
    if difference > tolerance:
        raise ParityError("ONNX and torch actions differ by {:.2e} (> {:.0e})".format(difference, tolerance))
    return difference


def export_checkpoint(checkpoint: Path, env_id: str, weights_dir: Path, command: str,
                      slot_reader: Optional[Path] = None, held_fit: bool = False) -> Dict[str, Any]:
    """Write `weights_dir/ENV.onnx` and its manifest entry (a looking policy's `slot_reader` is copied
    next to it as `ENV.slot_reader.onnx`; `held_fit`: it also fits the held object); returns a summary."""
    check_held_fit(slot_reader, held_fit)
    reader = None if slot_reader is None else reader_entry(slot_reader, env_id)
    spec = get_task(env_id) if reader is None else looking(get_task(env_id), reader.look_step, held_fit)
    model = model_from_checkpoint(checkpoint)
    record = load_checkpoint(checkpoint).get("record", {})
    state_size = model.critic[0].in_features - model.pointnet.out_features
    inputs = real_inputs(spec)
    if reader is not None and state_size + TCP_IN_SLOT_SIZE == inputs[0].state.size:  # looking, from before
        # the TCP's pose in the slot frame was in the state: those entries join with zero weights
        widened = ActorCritic(inputs[0].state.size, len(model.action_scale), model.action_center - model.action_scale,
                              model.action_center + model.action_scale)
        initialise_from(widened, checkpoint)
        model, state_size = widened.eval(), inputs[0].state.size
    if state_size != inputs[0].state.size:
        raise ValueError("{} takes a state of size {}, but {} {} gives {}: {} --slot-reader".format(
            checkpoint, state_size, env_id, "with a slot reader" if reader else "without one", inputs[0].state.size,
            "omit" if reader else "pass the policy's"))
    data = onnx_bytes(ExportedActor(model), spec.total_points, state_size)
    difference = check_parity(model, data, inputs)
    weights_dir.mkdir(parents=True, exist_ok=True)
    path = weights_dir / "{}.onnx".format(env_id)
    path.write_bytes(data)
    if reader is not None:
        copy = weights_dir / "{}.slot_reader.onnx".format(env_id)
        copy.write_bytes(reader.path.read_bytes())
        reader = reader._replace(path=copy)
    episodes = int(record.get("episodes", 0))
    provenance = {
        "command": command,
        "stage": record.get("stage", "distilled (before PPO)" if "round" in record else "unknown"),
        "checkpoint": str(checkpoint),
        "success": {"rate": record.get("success"), "episodes": episodes,
                    "seeds": "{}-{} (selection seeds, training-time evaluation)".format(
                        2_000_000, 2_000_000 + episodes - 1) if episodes else "none"},
        "date": datetime.date.today().isoformat(),
    }
    entry = ManifestEntry(env_id, path, file_sha256(path),
                          InputSpec(spec.total_points, 6, state_size, len(model.action_scale)),
                          spec.control_mode, spec.obs_mode, provenance, spec.voxel_size, reader, held_fit)
    write_entry(weights_dir, entry)
    return {"onnx": str(path), "bytes": len(data), "max_abs_diff": difference, "provenance": provenance,
            "slot_reader": None if reader is None else str(reader.path)}
