"""The exported actor: a checkpoint's deterministic actor as an ONNX graph, and its weights read back.

The graph maps `points` (B, N, 6) and `state` (B, S) to `action` (B, A), opset `OPSET` (which onnxruntime
1.19.2, the Docker image's, loads), a dynamic batch axis. It computes exactly the trained network, rearranged for
onnxruntime's CPU kernels (`ExportedActor`).
"""
import io
import warnings
from pathlib import Path
from typing import Dict

import onnx
import torch
from torch import nn

from agent.onnx_model import INPUT_NAMES, OUTPUT_NAME
from training.common.networks import ActorCritic, PointNet, mlp_head

OPSET = 17


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


class ExportedEncoder(nn.Module):
    """The PointNet as relu(tree_max(...)) instead of max(relu(...)): ReLU is monotonic, so the two are
    identical, and the ReLU runs on 512 values instead of N x 512."""

    def __init__(self, pointnet: PointNet) -> None:
        super().__init__()
        self.per_point = pointnet.mlp[:-1]  # all but the final ReLU

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        return torch.relu(tree_max(self.per_point(points)))


class ExportedActor(nn.Module):
    """The actor's deterministic path with the PointNet as `ExportedEncoder`."""

    def __init__(self, model: ActorCritic) -> None:
        super().__init__()
        self.model = model
        self.encoder = ExportedEncoder(model.pointnet)

    def forward(self, points: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        return self.model.mean_action(torch.cat([self.encoder(points), state], dim=-1))


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


ENCODER_OUTPUT = "features"


def encoder_onnx(pointnet: PointNet, n_points: int) -> bytes:
    """`pointnet(points) -> features` for `n_points` points as ONNX (`ExportedEncoder`, dynamic batch axis):
    what env workers run for a learner whose PointNet is frozen (`EnvWorkers.set_encoder`)."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():  # tree_max's loop over the fixed point count traces as intended
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(ExportedEncoder(pointnet).eval(), (torch.zeros(1, n_points, 6),), buffer,
                          input_names=[INPUT_NAMES[0]], output_names=[ENCODER_OUTPUT],
                          dynamic_axes={INPUT_NAMES[0]: {0: "batch"}, ENCODER_OUTPUT: {0: "batch"}},
                          opset_version=OPSET, dynamo=False)
    return buffer.getvalue()
