"""The exported actor: a checkpoint's deterministic actor as an ONNX graph, and its weights read back.

The graph maps `points` (B, N, 6) and `state` (B, S) to `action` (B, A), opset `OPSET` (which onnxruntime
1.19.2, the Docker image's, loads), a dynamic batch axis. It computes the trained network, rearranged for
onnxruntime's CPU kernels (`ExportedActor`: the same actions up to float rounding); `int8_pointnet` turns it into
the int8 variant (the PointNet's widest layer quantised: different actions, validated by success rates).
"""
import io
from pathlib import Path
from typing import Dict, Optional, Tuple

import numpy as np
import onnx
import torch
from torch import nn

from agent.onnx_model import INPUT_NAMES, OUTPUT_NAME
from training.common.networks import ActorCritic, PointNet, mlp_head

OPSET = 17


def tree_max(features: torch.Tensor, n_points: int) -> torch.Tensor:
    """Max over dim 1 (`n_points` rows) by repeated halving at fixed sizes: exports as Slice + elementwise Max with
    constant bounds, which onnxruntime vectorises (its ReduceMax over the point axis does not)."""
    while n_points > 1:
        half = n_points // 2
        pooled = torch.maximum(features[:, :half], features[:, half:2 * half])
        if n_points % 2:  # fold the odd one out into the first row
            pooled = torch.cat([torch.maximum(pooled[:, :1], features[:, 2 * half:]), pooled[:, 1:]], dim=1)
        features, n_points = pooled, half
    return features[:, 0]


def rms_normalised(features: torch.Tensor, eps: float) -> torch.Tensor:
    """Each row divided by its root mean square (`eps` added to the mean square): LayerNorm without its affine
    map, for rows whose mean is already zero."""
    return features * torch.rsqrt((features * features).mean(dim=-1, keepdim=True) + eps)


def centred_weight(linear: nn.Linear) -> nn.Parameter:
    """The weight with its mean over the output channels removed: its outputs have zero mean over the channels,
    which is all a LayerNorm after it keeps of them."""
    weight = linear.weight.detach()
    return nn.Parameter(weight - weight.mean(dim=0, keepdim=True), requires_grad=False)


class ExportedEncoder(nn.Module):
    """The PointNet for `n_points` points rearranged for onnxruntime, computing what `PointNet` computes (up to float
    rounding):
    - every LayerNorm as elementwise operations: the layer's weight centred over its output channels
      (`centred_weight`: its outputs have no mean to remove), the points divided by their root mean square
      (`rms_normalised`), then scaled and shifted. onnxruntime 1.19.2's LayerNormalization kernel is slow;
    - max-pool and ReLU swapped, relu(tree_max(...)) instead of max(relu(...)) (ReLU is monotonic), so the ReLU runs
      on 512 values instead of N x 512;
    - where every scale of the last LayerNorm is positive (`affine_after_pool`): that scale and shift applied after
      the pool (a positive scale and a shift commute with the max)."""

    def __init__(self, pointnet: PointNet, n_points: int) -> None:
        super().__init__()
        self.n_points = n_points
        self.norms = nn.ModuleList(pointnet.mlp[1::3])  # the PointNet's own: their parameters keep their names
        self.weights = nn.ParameterList([centred_weight(linear) for linear in pointnet.mlp[0::3]])
        self.affine_after_pool = bool((self.norms[-1].weight > 0).all())

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        features = points
        for index, (weight, norm) in enumerate(zip(self.weights, self.norms)):
            normalised = rms_normalised(features @ weight.T, norm.eps)
            if index == len(self.norms) - 1 and self.affine_after_pool:
                return torch.relu(tree_max(normalised, self.n_points) * norm.weight + norm.bias)
            features = torch.relu(normalised * norm.weight + norm.bias)
        return tree_max(features, self.n_points)


class ExportedActor(nn.Module):
    """The actor's deterministic path for `n_points` points with the PointNet as `ExportedEncoder`."""

    def __init__(self, model: ActorCritic, n_points: int) -> None:
        super().__init__()
        self.model = model
        self.encoder = ExportedEncoder(model.pointnet, n_points)

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


INT8_LAYER_INPUTS = 128  # `int8_pointnet` quantises the MatMul of the PointNet's 128 -> 512 layer
INT8_SUFFIXES = ("_int8", "_scale", "_zero")  # its initialisers: the weight's name and these


def int8_pointnet(model: bytes, quantised: Optional[Tuple[np.ndarray, np.ndarray]] = None) -> bytes:
    """An `ExportedActor` graph with its PointNet's widest layer (`INT8_LAYER_INPUTS` inputs, ~75 % of the network's
    multiply-adds) in int8: per-output-channel symmetric int8 weights, activations quantised per call
    (onnxruntime's DynamicQuantizeMatMul, which 1.19.2 runs). Its actions differ from the float graph's.
    `quantised`: the int8 weight and scales to use (`int8_weight` of an int8 policy being converted: its layer
    unchanged) instead of quantising the float one."""
    graph = onnx.load_from_string(model)
    constants = {tensor.name: tensor for tensor in graph.graph.initializer}
    nodes = []
    for node in graph.graph.node:
        constant = constants.get(node.input[1]) if node.op_type == "MatMul" and len(node.input) > 1 else None
        weight = None if constant is None else onnx.numpy_helper.to_array(constant)
        if weight is None or weight.ndim != 2 or weight.shape[0] != INT8_LAYER_INPUTS:
            nodes.append(node)
            continue
        if quantised is None:
            scale = (np.maximum(np.abs(weight).max(axis=0), 1e-12) / 127).astype(np.float32)
            integers = np.round(weight / scale).astype(np.int8)
        elif quantised[0].shape == weight.shape:
            integers, scale = quantised
        else:
            raise ValueError("int8 weights of shape {} for a layer of shape {}".format(quantised[0].shape,
                                                                                   weight.shape))
        names = [node.input[1] + suffix for suffix in INT8_SUFFIXES]
        graph.graph.initializer.extend([
            onnx.numpy_helper.from_array(integers, names[0]),
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


def int8_weight(path: Path) -> Optional[Tuple[np.ndarray, np.ndarray]]:
    """The int8 weight and per-channel scales of an `int8_pointnet` graph's quantised layer; None for an fp32 graph."""
    graph = onnx.load(str(path)).graph
    tensors = {tensor.name: tensor for tensor in graph.initializer}
    for node in graph.node:
        if node.op_type == "DynamicQuantizeMatMul":
            return tuple(onnx.numpy_helper.to_array(tensors[name]) for name in node.input[1:3])  # type: ignore
    return None


def actor_weights_from_onnx(path: Path, head: str = "actor") -> Dict[str, torch.Tensor]:
    """The PointNet and actor weights in an `ExportedActor` graph (the inverse of `onnx_bytes`; for an `int8_pointnet`
    graph its int8 weights dequantised), read from the nodes that use them, in layer order: MatMul or
    DynamicQuantizeMatMul (PointNet linear, transposed; centred over its output channels where `ExportedEncoder`
    has them so: an equivalent weight), LayerNorm scale and bias (by their names, as the exporter keeps the
    parameters' names) and Gemm (the MLP `head`'s linear: "actor", or a slot reader's "head"). Their inputs are
    initialisers, or Identity aliases of one: the exporter stores equal tensors once (an all-zero bias and an
    all-zero action centre)."""
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
        state["{}.{}.weight".format(head, index)] = weight if transposed else weight.T.contiguous()
        state["{}.{}.bias".format(head, index)] = tensors[gemm.input[2]]
    return state


ENCODER_OUTPUT = "features"


def encoder_onnx(pointnet: PointNet, n_points: int) -> bytes:
    """`pointnet(points) -> features` for `n_points` points as ONNX (`ExportedEncoder`, dynamic batch axis):
    what env workers run for a learner whose PointNet is frozen (`EnvWorkers.set_encoder`)."""
    buffer = io.BytesIO()
    torch.onnx.export(ExportedEncoder(pointnet, n_points).eval(), (torch.zeros(1, n_points, 6),), buffer,
                      input_names=[INPUT_NAMES[0]], output_names=[ENCODER_OUTPUT],
                      dynamic_axes={INPUT_NAMES[0]: {0: "batch"}, ENCODER_OUTPUT: {0: "batch"}},
                      opset_version=OPSET, dynamo=False)
    return buffer.getvalue()
