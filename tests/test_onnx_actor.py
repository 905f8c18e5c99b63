"""The exported graph (`training.export.onnx_actor`): the rearranged PointNet computes the trained one, its int8
variant stays close to it and loads back, and training's readers handle both."""
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from agent.onnx_model import make_session
from training.common.networks import ActorCritic, PointNet
from training.common.warm_start import initialise_from
from training.export.onnx_actor import (ExportedActor, ExportedEncoder, actor_weights_from_onnx, int8_pointnet,
                                        int8_weight, onnx_bytes)


def trained_like(state_size: int = 31, seed: int = 0) -> ActorCritic:
    """A network with perturbed weights (LayerNorm scales around 1, as training leaves them)."""
    torch.manual_seed(seed)
    model = ActorCritic(state_size, 7, [-1.0] * 7, [1.0] * 7)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
        model.actor[-1].weight.mul_(0.1)  # actions inside the bounds, not saturated
    return model.eval()


def exported(model: ActorCritic, n_points: int = 1200) -> bytes:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        state_size = model.critic[0].in_features - model.pointnet.out_features
        return onnx_bytes(ExportedActor(model, n_points), n_points, state_size)


def cloud(batch: int = 3, n_points: int = 1200, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.cat([torch.rand(batch, n_points, 3, generator=generator) * 0.6 - 0.3,
                      torch.rand(batch, n_points, 3, generator=generator)], dim=-1)


@pytest.mark.parametrize("negative_scale", [False, True], ids=["affine after the pool", "a negative LayerNorm scale"])
def test_the_exported_encoder_computes_the_pointnet(negative_scale: bool) -> None:
    pointnet = trained_like().pointnet
    if negative_scale:
        with torch.no_grad():
            pointnet.mlp[-2].weight[5] = -0.5  # the max no longer commutes with the scale: the plain layout
    points = cloud(n_points=1199)  # an odd count: the pool folds the odd rows in
    encoder = ExportedEncoder(pointnet, 1199)
    assert encoder.affine_after_pool is not negative_scale
    with torch.no_grad():
        torch.testing.assert_close(encoder(points), pointnet(points), rtol=0, atol=2e-5)


def test_the_export_has_no_layer_norm_kernel_and_no_shape_arithmetic() -> None:
    """onnxruntime 1.19.2's LayerNormalization kernel is slow, and every node costs a call: the norms are elementwise
    operations and the pool's bounds constants (the point count is fixed)."""
    ops = {node.op_type for node in onnx.load_from_string(exported(trained_like())).graph.node}
    assert not ops & {"LayerNormalization", "Shape", "Cast", "Unsqueeze"} and {"Max", "ReduceMean"} <= ops


def test_int8_quantises_the_widest_layer_and_stays_close() -> None:
    model = trained_like()
    fp32 = exported(model)
    int8 = int8_pointnet(fp32)
    ops = [node.op_type for node in onnx.load_from_string(int8).graph.node]
    assert ops.count("DynamicQuantizeMatMul") == 1 and ops.count("MatMul") == 2
    points, state = cloud(seed=1).numpy(), np.random.default_rng(1).normal(size=(3, 31)).astype(np.float32)
    feed = {"points": points, "state": state}
    with torch.no_grad():
        expected = model(torch.from_numpy(points), torch.from_numpy(state)).numpy()
    fp32_actions = make_session(fp32).run(None, feed)[0]
    int8_actions = make_session(int8).run(None, feed)[0]
    assert np.abs(expected).max() < 0.9  # not saturated: differences show
    assert np.abs(fp32_actions - expected).max() < 1e-5
    assert 0 < np.abs(int8_actions - expected).max() < 0.05  # quantised: close, not equal
    assert len(fp32) - len(int8) > 0.7 * 128 * 512 * 4  # the float weight is gone, the int8 one is a quarter of it


def test_int8_refuses_a_graph_without_the_layer() -> None:
    graph = onnx.helper.make_graph([onnx.helper.make_node("Relu", ["x"], ["y"])], "foreign",
                                   [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
                                   [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])])
    with pytest.raises(ValueError, match="not an exported ms2agent actor"):
        int8_pointnet(onnx.helper.make_model(graph).SerializeToString())


def test_an_int8_policy_loads_back_with_dequantised_weights(tmp_path: Path) -> None:
    model = trained_like()
    path = tmp_path / "policy.onnx"
    path.write_bytes(int8_pointnet(exported(model)))
    quantised = int8_weight(path)
    assert quantised is not None and quantised[0].dtype == np.int8
    weights = actor_weights_from_onnx(path)
    last = weights["pointnet.mlp.6.weight"]
    centred = model.pointnet.mlp[6].weight - model.pointnet.mlp[6].weight.mean(dim=0, keepdim=True)
    step = centred.abs().max(dim=1).values / 127  # one int8 step per output channel
    assert torch.all((last - centred).abs() <= step[:, None] / 2 + 1e-7)
    target = ActorCritic(31, 7, [-1.0] * 7, [1.0] * 7)
    initialise_from(target, path)
    points, state = cloud(seed=2), torch.randn(3, 31)
    with torch.no_grad():
        assert (target(points, state) - model(points, state)).abs().max() < 0.02


def test_the_workers_encoder_is_the_pointnet() -> None:
    from training.export.onnx_actor import ENCODER_OUTPUT, encoder_onnx

    pointnet: PointNet = trained_like().pointnet
    points = cloud(seed=3)
    features = make_session(encoder_onnx(pointnet, 1200)).run([ENCODER_OUTPUT], {"points": points.numpy()})[0]
    with torch.no_grad():
        np.testing.assert_allclose(features, pointnet(points).numpy(), rtol=0, atol=2e-5)


def test_a_conversion_to_int8_moves_the_report_and_a_re_export_in_int8_keeps_weights_and_report(tmp_path: Path,
                                                                                                monkeypatch) -> None:
    """Converting a shipped policy (`ms2agent export ENV weights/ENV.onnx`): to int8 the actions change, so its
    report figure moves aside; an int8 policy re-exported in int8 (e.g. to the current graph) keeps its int8 weights,
    its actions up to float rounding and so its report (re-dated to the new file, which counts as scored)."""
    import gymnasium as gym

    from agent.manifest import read_manifest, write_entry
    from agent.preprocessing import NetworkInput
    from training.export import export as module
    from training.export.onnx_actor import int8_weight

    rng = np.random.default_rng(4)
    inputs = [NetworkInput(cloud(1, seed=seed)[0].numpy(), rng.normal(size=31).astype(np.float32), 1200)
              for seed in range(4)]
    monkeypatch.setattr(module, "real_inputs", lambda spec: (inputs, None, gym.spaces.Box(-1.0, 1.0, (7,))))
    weights, source = tmp_path / "weights", tmp_path / "source.onnx"
    source.write_bytes(exported(trained_like()))
    module.export_checkpoint(source, "PickCube-v0", weights, "test")  # fp32, as a fresh export
    entry = read_manifest(weights)["PickCube-v0"]
    report = {"rate": 0.9, "episodes": 100, "seeds": "4000000-4000099", "interval": [0.82, 0.95],
              "sha256": entry.sha256, "date": "2026-12-06"}
    write_entry(weights, entry._replace(provenance=dict(entry.provenance, report=report)))
    policy = weights / "PickCube-v0.onnx"

    module.export_checkpoint(policy, "PickCube-v0", weights, "test", precision="int8")
    first = read_manifest(weights)["PickCube-v0"]
    assert "report" not in first.provenance and first.provenance["converted"]["source_report"] == report
    first_weight = int8_weight(policy)
    first.provenance["report"] = dict(report, sha256=first.sha256)  # as record-report would add its own
    write_entry(weights, first)

    module.export_checkpoint(policy, "PickCube-v0", weights, "test", precision="int8")
    again = read_manifest(weights)["PickCube-v0"]
    assert all(np.array_equal(a, b) for a, b in zip(int8_weight(policy), first_weight))
    converted = again.provenance["converted"]
    assert converted["max_abs_diff_from_source"] < 1e-5 and converted["earlier"]["from_sha256"] == entry.sha256
    assert again.provenance["report"] == dict(report, sha256=again.sha256, measured_on=first.sha256)


def test_a_conversion_to_fewer_points_moves_the_report_and_a_later_conversion_keeps_the_point_count(
        tmp_path: Path, monkeypatch) -> None:
    import gymnasium as gym

    from agent.manifest import read_manifest, write_entry
    from agent.preprocessing import NetworkInput
    from training.export import export as module

    states = np.random.default_rng(5).normal(size=(4, 31)).astype(np.float32)
    sampled = []

    def real_inputs(spec):  # the same observations, sampled to the spec's point count
        sampled.append(spec.total_points)
        return ([NetworkInput(cloud(1, spec.total_points, seed)[0].numpy(), states[seed], spec.total_points)
                 for seed in range(4)], None, gym.spaces.Box(-1.0, 1.0, (7,)))

    monkeypatch.setattr(module, "real_inputs", real_inputs)
    weights, source = tmp_path / "weights", tmp_path / "source.onnx"
    source.write_bytes(exported(trained_like()))
    module.export_checkpoint(source, "PickCube-v0", weights, "test")
    entry = read_manifest(weights)["PickCube-v0"]
    report = {"rate": 0.9, "episodes": 100, "seeds": "4000000-4000099", "sha256": entry.sha256}
    write_entry(weights, entry._replace(provenance=dict(entry.provenance, report=report)))
    policy = weights / "PickCube-v0.onnx"

    module.export_checkpoint(policy, "PickCube-v0", weights, "test", points=800)
    fewer = read_manifest(weights)["PickCube-v0"]
    assert fewer.spec.n_points == 800 and sampled[-2:] == [800, 1200]  # the source's actions on its own count
    assert "report" not in fewer.provenance and fewer.provenance["converted"]["source_report"] == report
    assert fewer.provenance["converted"]["points"] == 800
    write_entry(weights, fewer._replace(provenance=dict(fewer.provenance, report=dict(report, sha256=fewer.sha256))))

    module.export_checkpoint(policy, "PickCube-v0", weights, "test")  # fp32 again, the source's point count
    again = read_manifest(weights)["PickCube-v0"]
    assert again.spec.n_points == 800 and again.provenance["report"]["measured_on"] == fewer.sha256
    with pytest.raises(ValueError, match="40 points: a PickCube-v0 policy takes its 50 goal points"):
        module.export_checkpoint(policy, "PickCube-v0", weights, "test", points=40)


def test_a_conversion_of_a_looking_policy_keeps_its_slot_reader_unless_given_another(tmp_path: Path,
                                                                                     monkeypatch) -> None:
    """`ms2agent export PegInsertionSide-v0 weights/PegInsertionSide-v0.onnx --precision int8` needs no
    --slot-reader: the conversion of the policy in --weights-dir keeps its entry's reader (and held fit)."""
    import shutil

    import gymnasium as gym

    from agent.manifest import read_manifest, write_entry
    from agent.preprocessing import NetworkInput
    from training.export import export as module

    env_id, shipped = "PegInsertionSide-v0", read_manifest(Path(__file__).resolve().parents[1] / "weights")
    entry, weights = shipped[env_id], tmp_path / "weights"
    weights.mkdir()
    for source in (entry.path, entry.slot_reader.path):
        shutil.copy(source, weights / source.name)
    reader = entry.slot_reader._replace(path=weights / entry.slot_reader.path.name)
    write_entry(weights, entry._replace(path=weights / entry.path.name, slot_reader=reader))
    rng = np.random.default_rng(6)
    monkeypatch.setattr(module, "real_inputs", lambda spec: (
        [NetworkInput(cloud(1, spec.total_points, seed)[0].numpy(), rng.normal(size=entry.spec.state_size).astype(
            np.float32), spec.total_points) for seed in range(2)], None, gym.spaces.Box(-1.0, 1.0, (7,))))
    module.export_checkpoint(weights / entry.path.name, env_id, weights, "test", precision="int8")
    converted = read_manifest(weights)[env_id]
    assert converted.slot_reader is not None and converted.slot_reader.sha256 == entry.slot_reader.sha256
    assert converted.provenance["converted"]["from_sha256"] == entry.sha256


@pytest.mark.parametrize("key", ["checkpoint", "student"], ids=["a PPO run", "a distillation run"])
def test_a_run_directory_exports_the_checkpoint_its_result_names(tmp_path: Path, key: str) -> None:
    import json

    from training.export.export import chosen_checkpoint

    (tmp_path / "result.json").write_text(json.dumps({key: "runs/X/round2.pt", "success": 0.9}))
    assert chosen_checkpoint(tmp_path) == Path("runs/X/round2.pt")
    (tmp_path / "result.json").write_text(json.dumps({"success": 0.9}))
    with pytest.raises(ValueError, match="names no checkpoint"):
        chosen_checkpoint(tmp_path)
