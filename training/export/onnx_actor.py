"""The exported actor: a checkpoint's deterministic actor as an ONNX graph, and its weights read back.

The graph maps `points` (B, N, 6) and `state` (B, S) to `action` (B, A), opset `OPSET` (which onnxruntime
1.19.2, the Docker image's, loads), a dynamic batch axis. It computes the trained network, rearranged for
onnxruntime's CPU kernels (`ExportedActor`: the same actions up to float rounding); `int8_pointnet` turns it into
the int8 variant (the PointNet's widest layer quantised: different actions, validated by success rates).
"""
import io
import warnings
from pathlib import Path
from typing import Dict

import numpy as np
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
    """The PointNet rearranged for onnxruntime, computing what `PointNet` computes:
    - max-pool and ReLU swapped, relu(tree_max(...)) instead of max(relu(...)) (ReLU is monotonic), so the ReLU runs
      on 512 values instead of N x 512;
    - where every scale of the last LayerNorm is positive (`affine_after_pool`): its weight centred over the output
      channels (LayerNorm removes each point's mean anyway), the points normalised by their root mean square alone,
      pooled, and only then scaled and shifted (a positive scale and a shift commute with the max). onnxruntime 1.19.2's
      LayerNormalization kernel is slow; this replaces its widest use with a few elementwise operations."""

    def __init__(self, pointnet: PointNet) -> None:
        super().__init__()
        last, norm = pointnet.mlp[-3], pointnet.mlp[-2]
        self.affine_after_pool = bool((norm.weight > 0).all())
        if not self.affine_after_pool:
            self.per_point = pointnet.mlp[:-1]  # all but the final ReLU
            return
        self.per_point = pointnet.mlp[:-3]  # the narrower layers, unchanged
        weight = last.weight.detach()
        self.centred = nn.Parameter(weight - weight.mean(dim=0, keepdim=True), requires_grad=False)
        self.norm = norm

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        if not self.affine_after_pool:
            return torch.relu(tree_max(self.per_point(points)))
        centred = self.per_point(points) @ self.centred.T
        normalised = centred * torch.rsqrt((centred * centred).mean(dim=-1, keepdim=True) + self.norm.eps)
        return torch.relu(tree_max(normalised) * self.norm.weight + self.norm.bias)


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
    with warnings.catch_warnings():  # tree_max's loop over the fixed point count traces as intended
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(actor.eval(), example, buffer, input_names=list(INPUT_NAMES), output_names=[OUTPUT_NAME],
                          dynamic_axes={name: {0: "batch"} for name in (*INPUT_NAMES, OUTPUT_NAME)},
                          opset_version=OPSET, dynamo=False)
    return buffer.getvalue()


INT8_LAYER_INPUTS = 128  # `int8_pointnet` quantises the MatMul of the PointNet's 128 -> 512 layer
INT8_SUFFIXES = ("_int8", "_scale", "_zero")  # its initialisers: the weight's name and these


def int8_pointnet(model: bytes) -> bytes:
    """An `ExportedActor` graph with its PointNet's widest layer (`INT8_LAYER_INPUTS` inputs, ~75 % of the network's
    multiply-adds) in int8: per-output-channel symmetric int8 weights, activations quantised per call
    (onnxruntime's DynamicQuantizeMatMul, which 1.19.2 runs). Its actions differ from the float graph's."""
    graph = onnx.load_from_string(model)
    constants = {tensor.name: tensor for tensor in graph.graph.initializer}
    nodes = []
    for node in graph.graph.node:
        constant = constants.get(node.input[1]) if node.op_type == "MatMul" and len(node.input) > 1 else None
        weight = None if constant is None else onnx.numpy_helper.to_array(constant)
        if weight is None or weight.ndim != 2 or weight.shape[0] != INT8_LAYER_INPUTS:
            nodes.append(node)
            continue
        scale = (np.maximum(np.abs(weight).max(axis=0), 1e-12) / 127).astype(np.float32)
        names = [node.input[1] + suffix for suffix in INT8_SUFFIXES]
        graph.graph.initializer.extend([
            onnx.numpy_helper.from_array(np.round(weight / scale).astype(np.int8), names[0]),
            onnx.numpy_helper.from_array(scale, names[1]),
            onnx.numpy_helper.from_array(np.zeros(scale.shape, np.int8), names[2])])
        nodes.append(onnx.helper.make_node("DynamicQuantizeMatMul", [node.input[0], *names], list(node.output),
                                           name=node.name, domain="com.microsoft"))
    if not any(node.op_type == "DynamicQuantizeMatMul" for node in nodes):
        raise ValueError("the graph has no MatMul with {} inputs to quantise: not an exported ms2agent actor".format(
            INT8_LAYER_INPUTS))
    del graph.graph.node[:]
    graph.graph.node.extend(nodes)
    graph.opset_import.append(onnx.helper.make_opsetid("com.microsoft", 1))
    used = {name for node in graph.graph.node for name in node.input}
    kept = [tensor for tensor in graph.graph.initializer if tensor.name in used]
    del graph.graph.initializer[:]
    graph.graph.initializer.extend(kept)
    return graph.SerializeToString()


def precision(path: Path) -> str:
    """"int8" for an `int8_pointnet` graph, else "fp32"."""
    return "int8" if any(node.op_type == "DynamicQuantizeMatMul" for node in onnx.load(str(path)).graph.node) else "fp32"


def actor_weights_from_onnx(path: Path) -> Dict[str, torch.Tensor]:
    """The PointNet and actor weights in an `ExportedActor` graph (the inverse of `onnx_bytes`; for an `int8_pointnet`
    graph its int8 weights dequantised), read from the nodes that use them, in layer order: MatMul or
    DynamicQuantizeMatMul (PointNet linear, transposed; the last one centred where `ExportedEncoder` moved the
    LayerNorm's scale and shift after the pool: an equivalent weight), LayerNorm scale and bias (by their names, as
    the exporter keeps the parameters' names) and Gemm (actor linear). Their inputs are initialisers, or Identity
    aliases of one: the exporter stores equal tensors once (an all-zero bias and an all-zero action centre)."""
    graph = onnx.load(str(path)).graph
    tensors = {tensor.name: torch.from_numpy(onnx.numpy_helper.to_array(tensor).copy()) for tensor in graph.initializer}
    tensors.update({node.output[0]: tensors[node.input[0]] for node in graph.node
                    if node.op_type == "Identity" and node.input[0] in tensors})
    matmuls = [node for node in graph.node if node.op_type in ("MatMul", "DynamicQuantizeMatMul")
               and len(node.input) > 1 and node.input[1] in tensors]
    gemms = [node for node in graph.node if node.op_type == "Gemm"]
    linears = [index for index, layer in enumerate(PointNet().mlp) if isinstance(layer, nn.Linear)]
    actor_linears = [index for index, layer in enumerate(mlp_head(1, 1)) if isinstance(layer, nn.Linear)]
    norm_names = ["model.pointnet.mlp.{}.{}".format(index + 1, kind) for index in linears for kind in ("weight", "bias")]
    if (len(matmuls), len(gemms)) != (len(linears), len(actor_linears)) or not all(
            name in tensors for name in norm_names):
        raise ValueError("{} is not an exported ms2agent actor".format(path))
    state = {name[len("model."):]: tensors[name] for name in norm_names}
    for index, matmul in zip(linears, matmuls):
        weight = tensors[matmul.input[1]]
        if matmul.op_type == "DynamicQuantizeMatMul":
            weight = weight.float() * tensors[matmul.input[2]]
        state["pointnet.mlp.{}.weight".format(index)] = weight.T.contiguous()
    for index, gemm in zip(actor_linears, gemms):
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
