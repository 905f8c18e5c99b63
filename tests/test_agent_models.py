"""Weights manifest and ONNX loading (agent.manifest, agent.onnx_model), plus model builders for other tests.

`tiny_model` builds a small policy with onnx.helper (fast); `export_actor_critic` exports the
paper's network with torch at opset 17 like training does.
"""
import json
import warnings
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from agent.manifest import (InputSpec, ManifestEntry, WeightsError, file_sha256, read_manifest, weights_dir,
                            write_entry)
from agent.onnx_model import load_session, make_session, model_spec, register

PROVENANCE: Dict[str, Any] = {"command": "pytest", "stage": "untrained", "checkpoint": None, "date": "2000-01-01",
                              "selection": {"rate": None, "episodes": 0, "seeds": []}}


def tiny_model(n_points: int, state_size: int, action_size: int, gain: float = 1.0, seed: int = 0,
               names: Sequence[str] = ("points", "state", "action")) -> bytes:
    """action = gain * tanh([max over points, state] @ W): a policy-shaped model, serialised."""
    weight = np.random.default_rng(seed).normal(size=(6 + state_size, action_size)).astype(np.float32)
    points, state, action = names
    graph = helper.make_graph(
        [helper.make_node("ReduceMax", [points], ["pooled"], axes=[1], keepdims=0),
         helper.make_node("Concat", ["pooled", state], ["features"], axis=1),
         helper.make_node("MatMul", ["features", "weight"], ["logits"]),
         helper.make_node("Tanh", ["logits"], ["squashed"]),
         helper.make_node("Mul", ["squashed", "gain"], [action])],
        "tiny_policy",
        [helper.make_tensor_value_info(points, TensorProto.FLOAT, ["batch", n_points, 6]),
         helper.make_tensor_value_info(state, TensorProto.FLOAT, ["batch", state_size])],
        [helper.make_tensor_value_info(action, TensorProto.FLOAT, ["batch", action_size])],
        [numpy_helper.from_array(weight, "weight"), numpy_helper.from_array(np.float32(gain), "gain")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # what onnxruntime 1.19.2 (the Docker image's) loads
    onnx.checker.check_model(model)
    return model.SerializeToString()


def export_actor_critic(path: Path, state_size: int, action_size: int, n_points: int = 1200) -> None:
    """Export an untrained paper network as training does (training.export.export, opset 17, dynamic batch)."""
    import torch

    from training.export.onnx_actor import onnx_bytes
    from training.common.networks import ActorCritic

    torch.manual_seed(0)
    network = ActorCritic(state_size, action_size, [-1.0] * action_size, [1.0] * action_size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the legacy exporter is the one training uses
        path.write_bytes(onnx_bytes(network, n_points, state_size))


def ship(directory: Path, env_id: str, model: bytes, spec: Optional[InputSpec] = None,
         control_mode: str = "pd_ee_delta_pose", obs_mode: str = "pointcloud", voxel_size: float = 0.0
         ) -> ManifestEntry:
    """Write `model` into `directory` and add it to the manifest (spec read from the model unless given)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "{}.onnx".format(env_id)
    path.write_bytes(model)
    if spec is None:
        return register(directory, env_id, path, control_mode, obs_mode, PROVENANCE, voxel_size)
    entry = ManifestEntry(env_id, path, file_sha256(path), spec, control_mode, obs_mode, PROVENANCE, voxel_size)
    write_entry(directory, entry)
    return entry


def test_register_reads_the_spec_from_the_model_and_round_trips(tmp_path: Path) -> None:
    entry = ship(tmp_path, "PickCube-v0", tiny_model(1200, 37, 7))
    assert entry.spec == InputSpec(1200, 6, 37, 7)
    raw = json.loads((tmp_path / "manifest.json").read_text())["policies"]["PickCube-v0"]
    assert raw["file"] == "PickCube-v0.onnx" and raw["sha256"] == file_sha256(entry.path)
    assert raw["spec"] == {"n_points": 1200, "channels": 6, "state_size": 37, "action_size": 7}
    assert raw["voxel_size"] == 0.0
    assert read_manifest(tmp_path) == {"PickCube-v0": entry}


def test_weights_dir_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("MS2AGENT_WEIGHTS_DIR", raising=False)
    assert weights_dir() == Path(__file__).resolve().parents[1] / "weights"
    monkeypatch.setenv("MS2AGENT_WEIGHTS_DIR", str(tmp_path))
    assert weights_dir() == tmp_path


def test_missing_manifest_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="manifest.json not found") as error:
        read_manifest(tmp_path)
    assert str(tmp_path / "manifest.json") in str(error.value)


@pytest.mark.parametrize("text", [
    "{not json",
    '{"policies": []}',
    '{"policies": {"PickCube-v0": {"file": "a.onnx"}}}',
])
def test_invalid_manifest_names_the_file(tmp_path: Path, text: str) -> None:
    (tmp_path / "manifest.json").write_text(text)
    with pytest.raises(WeightsError, match="is invalid") as error:
        read_manifest(tmp_path)
    assert str(tmp_path / "manifest.json") in str(error.value)


@pytest.mark.parametrize("change, message", [
    ({"file": "/abs/model.onnx"}, "must be relative"),
    ({"file": "../model.onnx"}, "must be relative"),
    ({"provenance": {"command": "x"}}, "provenance lacks stage, checkpoint, selection, date, selection.rate"),
    ({"spec": {"n_points": 1200}}, "channels"),
])
def test_incomplete_entries_are_rejected(tmp_path: Path, change: Dict[str, Any], message: str) -> None:
    ship(tmp_path, "PickCube-v0", tiny_model(1200, 37, 7))
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    manifest["policies"]["PickCube-v0"].update(change)
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(WeightsError, match=message):
        read_manifest(tmp_path)


def test_checksum_mismatch_names_the_file_and_both_digests(tmp_path: Path) -> None:
    entry = ship(tmp_path, "PickCube-v0", tiny_model(1200, 37, 7))
    entry.path.write_bytes(tiny_model(1200, 37, 7, seed=1))
    with pytest.raises(WeightsError, match="Checksum mismatch") as error:
        load_session(entry)
    assert str(entry.path) in str(error.value) and entry.sha256 in str(error.value)
    assert file_sha256(entry.path) in str(error.value)


def test_missing_model_file_names_the_file(tmp_path: Path) -> None:
    entry = ship(tmp_path, "PickCube-v0", tiny_model(1200, 37, 7))
    entry.path.unlink()
    with pytest.raises(WeightsError, match="Cannot read") as error:
        load_session(entry)
    assert str(entry.path) in str(error.value)


def test_corrupt_model_with_matching_checksum_names_the_file(tmp_path: Path) -> None:
    entry = ship(tmp_path, "PickCube-v0", b"this is not an onnx model", spec=InputSpec(1200, 6, 37, 7))
    with pytest.raises(WeightsError, match="is not a usable ONNX policy") as error:
        load_session(entry)
    assert str(entry.path) in str(error.value)


@pytest.mark.parametrize("model, message", [
    (tiny_model(1000, 37, 7), r"InputSpec\(n_points=1000"),
    (tiny_model(1200, 30, 7), "state_size=30"),
    (tiny_model(1200, 37, 8), "action_size=8"),
    (tiny_model(1200, 37, 7, names=("cloud", "state", "action")), "expected inputs"),
])
def test_model_that_does_not_match_the_manifest_names_the_file(tmp_path: Path, model: bytes, message: str) -> None:
    entry = ship(tmp_path, "PickCube-v0", model, spec=InputSpec(1200, 6, 37, 7))
    with pytest.raises(WeightsError, match=message) as error:
        load_session(entry)
    assert str(entry.path) in str(error.value)


def test_model_with_a_dynamic_point_count_is_rejected(tmp_path: Path) -> None:
    model = onnx.load_from_string(tiny_model(1200, 37, 7))
    model.graph.input[0].type.tensor_type.shape.dim[1].dim_param = "n"
    with pytest.raises(ValueError, match="expected \\(batch, fixed size, fixed size\\)"):
        model_spec(make_session(model.SerializeToString()))


def test_sessions_are_tuned_for_single_calls() -> None:
    options = make_session(tiny_model(10, 3, 2), threads=1).get_session_options()
    assert (options.intra_op_num_threads, options.inter_op_num_threads) == (1, 1)
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert str(options.graph_optimization_level).endswith("ORT_ENABLE_ALL")


def test_exported_paper_network_matches_torch(tmp_path: Path) -> None:
    import torch

    from training.common.networks import ActorCritic

    export_actor_critic(tmp_path / "net.onnx", state_size=37, action_size=7)
    session = make_session(str(tmp_path / "net.onnx"))
    assert model_spec(session) == InputSpec(1200, 6, 37, 7)
    torch.manual_seed(0)
    network = ActorCritic(37, 7, [-1.0] * 7, [1.0] * 7).eval()
    rng = np.random.default_rng(0)
    points, state = rng.normal(size=(2, 1200, 6)).astype(np.float32), rng.normal(size=(2, 37)).astype(np.float32)
    with torch.no_grad():
        expected = network(torch.from_numpy(points), torch.from_numpy(state)).numpy()
    actual = session.run(["action"], {"points": points, "state": state})[0]
    np.testing.assert_allclose(actual, expected, atol=1e-5)


def test_a_mul_by_an_empty_tensor_keeps_its_shape() -> None:
    """The slot readers' empty Fourier features: onnxruntime 1.19.2's NoopElimination drops such a Mul."""
    graph = helper.make_graph(
        [helper.make_node("Unsqueeze", ["points", "last"], ["column"]),
         helper.make_node("Mul", ["column", "frequencies"], ["angles"]),
         helper.make_node("Reshape", ["angles", "flat"], ["features"]),
         helper.make_node("Sin", ["features"], ["sines"]),
         helper.make_node("Concat", ["points", "sines"], ["encoded"], axis=2)],
        "empty_fourier_features",
        [helper.make_tensor_value_info("points", TensorProto.FLOAT, ["batch", 5, 3])],
        [helper.make_tensor_value_info("encoded", TensorProto.FLOAT, ["batch", 5, None])],
        [numpy_helper.from_array(np.array([-1], np.int64), "last"),
         numpy_helper.from_array(np.zeros(0, np.float32), "frequencies"),
         numpy_helper.from_array(np.array([0, 0, -1], np.int64), "flat")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    encoded = make_session(model.SerializeToString()).run(None, {"points": np.ones((2, 5, 3), np.float32)})[0]
    assert encoded.shape == (2, 5, 3)
