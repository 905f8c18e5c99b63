"""Per-`act()` latency of the agent (preprocessing + inference) on real PickCube-v0 observations.

    .venv/bin/python benchmarks/act_latency.py [--calls 300] [--observations 20] [--rounds 3]

One process, one thread for every variant, the paper network (1150 + 50 points, untrained weights),
timed in interleaved rounds so that load from other processes hits every variant alike:
- `preprocess only`: agent.preprocessing alone;
- `torch eager`: the agent's preprocessing + the torch module;
- `agent, ORT fp32 <level>`: `Policy.act` at each onnxruntime graph-optimisation level (ALL is what ships);
- `agent, ORT fp32, 2 threads`;
- `agent, ORT int8 dyn`: PointNet MatMul weights quantised to int8 per output channel, activations
  per call (DynamicQuantizeMatMul); all three layers, or only the 128 -> 512 one (quantising the
  first layer means quantising raw xyz/rgb, the main source of error);
- `plain export`: the torch module exported as is (ReduceMax over the points after the last ReLU);
  what ships is `training.export.onnx_actor.ExportedActor`: the max-pool as a tree of elementwise Max
  (onnxruntime's ReduceMax over the point axis is slow) and the last ReLU after the pool (max and
  ReLU commute): identical outputs, different graph.
`CPU ms/call` (process CPU time) is robust to load from other processes; on an idle machine it
matches the wall clock for the one-thread variants. The last column is the largest action
difference from the shipped fp32 export over all observations (untrained weights: their output
layer is scaled by 0.01, so compare it with the printed max |action|).
"""
import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Tuple

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import helper, numpy_helper
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.onnx_model import OUTPUT_NAME, make_session, register  # noqa: E402
from agent.policy import Policy  # noqa: E402
from agent.preprocessing import NetworkInput, preprocess, state_size  # noqa: E402
from agent.registry import get_task  # noqa: E402
from training.common.envs import make_env  # noqa: E402
from training.export.onnx_actor import ExportedActor, onnx_bytes  # noqa: E402
from training.common.networks import ActorCritic  # noqa: E402

ENV_ID = "PickCube-v0"
LEVELS = ort.GraphOptimizationLevel
SHIPPED = "agent, ORT fp32 ENABLE_ALL"  # what the agent ships: fp32, ENABLE_ALL, 1 thread
LAST_LAYER_INPUTS = 128  # the PointNet's 128 -> 512 layer: ~75% of the network's multiply-adds
PROVENANCE = {"command": "benchmarks/act_latency.py", "stage": "untrained", "checkpoint": None, "date": None,
              "success": {"rate": None, "episodes": 0, "seeds": []}}


class Variant(NamedTuple):
    name: str
    act: Callable[[Dict], np.ndarray]
    infer: Optional[Callable[[NetworkInput], np.ndarray]]  # network only, for comparing actions


def collect_observations(count: int, seed: int = 0) -> Tuple[List[Dict], Tuple[Any, Any]]:
    """`count` observations along a random-action episode, and the env's spaces."""
    task = get_task(ENV_ID)
    env = make_env(ENV_ID, obs_mode=task.obs_mode, control_mode=task.control_mode)
    env.action_space.seed(seed)
    observations = [env.reset(seed=seed)[0]]
    while len(observations) < count:
        observations.append(env.step(env.action_space.sample())[0])
    spaces = env.observation_space, env.action_space
    env.close()
    return observations, spaces


def export(module: nn.Module, path: Path, n_points: int, n_state: int) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path.write_bytes(onnx_bytes(module, n_points, n_state))  # as training exports
    return path


def quantize_matmuls(source: Path, target: Path, min_inputs: int = 1) -> Path:
    """int8 per-channel weights (onnxruntime DynamicQuantizeMatMul) for every MatMul whose constant
    weight has at least `min_inputs` input features; activations are quantised per call."""
    model = onnx.load(str(source))
    constants = {tensor.name: tensor for tensor in model.graph.initializer}
    nodes = []
    for node in model.graph.node:
        constant = constants.get(node.input[1]) if node.op_type == "MatMul" else None
        weight = None if constant is None else numpy_helper.to_array(constant)
        if weight is None or weight.shape[0] < min_inputs:
            nodes.append(node)
            continue
        scale = (np.maximum(np.abs(weight).max(axis=0), 1e-12) / 127).astype(np.float32)
        names = [node.input[1] + suffix for suffix in ("_int8", "_scale", "_zero")]
        model.graph.initializer.extend([
            numpy_helper.from_array(np.round(weight / scale).astype(np.int8), names[0]),
            numpy_helper.from_array(scale, names[1]),
            numpy_helper.from_array(np.zeros(scale.shape, np.int8), names[2])])
        nodes.append(helper.make_node("DynamicQuantizeMatMul", [node.input[0], *names], list(node.output),
                                      name=node.name, domain="com.microsoft"))
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    onnx.save(model, str(target))
    return target


def onnx_variant(name: str, policy: Policy, model: Path, threads: int = 1,
                 level: ort.GraphOptimizationLevel = LEVELS.ORT_ENABLE_ALL) -> Variant:
    """`Policy.act` with its session replaced by one for `model` (same interface) with these settings."""
    session = make_session(str(model), threads, level)

    def infer(network_input: NetworkInput) -> np.ndarray:
        return session.run([OUTPUT_NAME], {"points": network_input.points[None], "state": network_input.state[None]})[0][0]

    def act(observation: Dict) -> np.ndarray:
        policy.session = session  # every variant shares the policy object
        return policy.act(observation)

    return Variant(name, act, infer)


def torch_variant(policy: Policy, network: ActorCritic) -> Variant:
    def infer(network_input: NetworkInput) -> np.ndarray:
        with torch.inference_mode():
            return network(torch.from_numpy(network_input.points[None]),
                           torch.from_numpy(network_input.state[None]))[0].numpy()

    return Variant("torch eager", lambda observation: np.clip(infer(policy.network_input(observation)),
                                                              policy.low, policy.high), infer)


def timed(act: Callable[[Dict], np.ndarray], observations: List[Dict], calls: int) -> np.ndarray:
    """(calls, 2) seconds per call: wall clock, and this process's CPU time (robust to other load)."""
    times = []
    for call in range(calls):
        observation = observations[call % len(observations)]
        wall, cpu = time.perf_counter(), time.process_time()
        act(observation)
        times.append((time.perf_counter() - wall, time.process_time() - cpu))
    return np.array(times)


def build_variants(weights: Path, network: ActorCritic, observation_space: Any, action_space: Any
                   ) -> Tuple[List[Variant], Policy]:
    """All variants and the policy they share."""
    task = get_task(ENV_ID)
    n_state = state_size(observation_space)
    shipped = export(ExportedActor(network), weights / "{}.onnx".format(ENV_ID), task.total_points, n_state)
    register(weights, ENV_ID, shipped, task.control_mode, task.obs_mode, PROVENANCE)
    policy = Policy(ENV_ID, observation_space, action_space, weights=weights)
    plain = export(network, weights / "plain.onnx", task.total_points, n_state)

    rng = np.random.default_rng(0)
    variants = [Variant("preprocess only", lambda observation: preprocess(observation, task, rng), None),
                torch_variant(policy, network)]
    variants += [onnx_variant("agent, ORT fp32 " + level.name.replace("ORT_", ""), policy, shipped, level=level)
                 for level in (LEVELS.ORT_DISABLE_ALL, LEVELS.ORT_ENABLE_BASIC, LEVELS.ORT_ENABLE_EXTENDED,
                               LEVELS.ORT_ENABLE_ALL)]
    variants += [
        onnx_variant("agent, ORT fp32 ENABLE_ALL, 2 threads", policy, shipped, threads=2),
        onnx_variant("agent, ORT int8 dyn, all 3 PointNet MatMuls", policy,
                     quantize_matmuls(shipped, weights / "int8_all.onnx")),
        onnx_variant("agent, ORT int8 dyn, 128->512 MatMul only", policy,
                     quantize_matmuls(shipped, weights / "int8_last.onnx", LAST_LAYER_INPUTS)),
        onnx_variant("agent, ORT fp32, plain export", policy, plain),
    ]
    return variants, policy


def report(variants: List[Variant], policy: Policy, observations: List[Dict], calls: int, rounds: int) -> None:
    """Time every variant in interleaved rounds and print the table."""
    inputs = [policy.network_input(observation) for observation in observations]
    shipped = next(variant for variant in variants if variant.name == SHIPPED)
    reference = [shipped.infer(network_input) for network_input in inputs]
    times: Dict[str, List[np.ndarray]] = {variant.name: [] for variant in variants}
    for variant in variants:  # warm-up
        timed(variant.act, observations, len(observations))
    for _ in range(rounds):
        for variant in variants:
            times[variant.name].append(timed(variant.act, observations, calls // rounds))
    milliseconds = {name: np.concatenate(runs) * 1e3 for name, runs in times.items()}

    torch_p50 = np.median(milliseconds["torch eager"][:, 0])
    print("ort {}, torch {}, numpy {}; {} calls per variant on {} observations, 1 thread unless noted".format(
        ort.__version__, torch.__version__, np.__version__, calls, len(observations)))
    print("max |action| of the fp32 export: {:.2e}".format(np.abs(reference).max()))
    print("| variant | act p50 ms | act p99 ms | p50 vs torch eager | CPU ms/call p50 | max abs action diff vs fp32 |")
    print("|---|---|---|---|---|---|")
    for variant in variants:
        wall, cpu = milliseconds[variant.name].T
        p50, p99 = np.percentile(wall, [50, 99])
        diff = "" if variant.infer is None else "{:.1e}".format(
            max(np.abs(variant.infer(x) - y).max() for x, y in zip(inputs, reference)))
        print("| {} | {:.2f} | {:.2f} | {:.2f}x | {:.2f} | {} |".format(
            variant.name, p50, p99, p50 / torch_p50, np.median(cpu), diff))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=300, help="timed act() calls per variant")
    parser.add_argument("--observations", type=int, default=20, help="real observations cycled through")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)

    observations, (observation_space, action_space) = collect_observations(args.observations)
    network = ActorCritic(state_size(observation_space), action_space.shape[0], action_space.low,
                          action_space.high).eval()
    with tempfile.TemporaryDirectory(prefix="act_latency_") as directory:
        variants, policy = build_variants(Path(directory), network, observation_space, action_space)
        report(variants, policy, observations, args.calls, args.rounds)


if __name__ == "__main__":
    main()
