"""Continuing from a shipped policy: an exported ONNX actor loads back into the network, and
distillation started from one drives every round, round 0 included, with that student."""
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import training.algorithms.distill
from training.common.checkpoints import CorruptCheckpointError, model_checkpoint, save_checkpoint
from training.algorithms.distill import DistillConfig, collect, distill
from training.common.networks import ActorCritic
from training.common.warm_start import initialise_from
from training.export.onnx_actor import ExportedActor, actor_weights_from_onnx, onnx_bytes


def export(model: ActorCritic, path: Path, n_points: int = 1200) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings of the legacy exporter training uses
        state_size = model.critic[0].in_features - model.pointnet.out_features
        path.write_bytes(onnx_bytes(ExportedActor(model, n_points), n_points, state_size))
    return path


@pytest.mark.parametrize("trained", [False, True])  # fresh: zero output bias, merged with the zero action centre
def test_exported_actor_loads_back_into_the_network(tmp_path: Path, trained: bool) -> None:
    torch.manual_seed(0)
    source = ActorCritic(31, 7, [-1.0] * 7, [1.0] * 7)
    if trained:
        with torch.no_grad():
            for parameter in source.parameters():
                parameter.add_(0.1 * torch.randn_like(parameter))
    target = ActorCritic(31, 7, [-1.0] * 7, [1.0] * 7)
    critic_before = [p.clone() for p in target.critic.parameters()]
    initialise_from(target, export(source, tmp_path / "policy.onnx"))
    points, state = torch.randn(3, 1200, 6), torch.randn(3, 31)
    with torch.no_grad():  # the PointNet layers come back centred (ExportedEncoder): the same up to rounding
        torch.testing.assert_close(target(points, state), source(points, state), rtol=0, atol=1e-6)
    assert all(torch.equal(a, b) for a, b in zip(critic_before, target.critic.parameters()))  # not exported


@pytest.mark.parametrize("kind", ["onnx", "checkpoint"])
@pytest.mark.parametrize("source_state, target_state", [(31, 49), (40, 49), (49, 64), (58, 64)],
                         ids=["not looking", "looking without the TCP in the slot frame", "looking without the held fit",
                              "held fit without the line-up entries"])
def test_a_looking_network_starts_from_a_policy_with_fewer_state_entries(tmp_path: Path, kind: str, source_state: int,
                                                                          target_state: int) -> None:
    torch.manual_seed(0)
    source = ActorCritic(source_state, 7, [-1.0] * 7, [1.0] * 7)
    with torch.no_grad():
        for parameter in source.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    target = ActorCritic(target_state, 7, [-1.0] * 7, [1.0] * 7)
    if kind == "onnx":
        initialise_from(target, export(source, tmp_path / "policy.onnx"))
    else:
        save_checkpoint(model_checkpoint(source), tmp_path / "student.pt")
        initialise_from(target, tmp_path / "student.pt")
    points, state = torch.randn(3, 1200, 6), torch.randn(3, source_state)
    # the new entries (the slot's, the TCP's and the held object's pose in its frame) go before the trailing TCP pose
    looking_state = torch.cat([state[:, :-7], torch.randn(3, target_state - source_state), state[:, -7:]], dim=1)
    with torch.no_grad():
        torch.testing.assert_close(target(points, looking_state), source(points, state), rtol=1e-5, atol=1e-5)
        if kind == "checkpoint":  # the whole model: the critic too
            torch.testing.assert_close(target.distribution_and_value(points, looking_state)[1],
                                       source.distribution_and_value(points, state)[1],
                                       rtol=1e-5, atol=1e-5)


def test_another_tasks_checkpoint_is_refused(tmp_path: Path) -> None:
    save_checkpoint(model_checkpoint(ActorCritic(37, 7, [-1.0] * 7, [1.0] * 7)), tmp_path / "pick.pt")
    with pytest.raises(CorruptCheckpointError, match="does not match the network"):
        initialise_from(ActorCritic(31, 7, [-1.0] * 7, [1.0] * 7), tmp_path / "pick.pt")


def test_a_foreign_onnx_file_is_refused(tmp_path: Path) -> None:
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "foreign",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    (tmp_path / "foreign.onnx").write_bytes(helper.make_model(graph).SerializeToString())
    with pytest.raises(ValueError, match="not an exported ms2agent actor"):
        actor_weights_from_onnx(tmp_path / "foreign.onnx")


@pytest.mark.sim
def test_distill_from_a_shipped_student_starts_with_dagger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(1)
    source = ActorCritic(37, 7, [-1.0] * 7, [1.0] * 7)  # PickCube's state: 37 values
    drivers = []

    def recording_collect(workers, n_samples, student, noise, rng):  # type: ignore[no-untyped-def]
        drivers.append(student)
        return collect(workers, n_samples, student, noise, rng)

    monkeypatch.setattr(training.algorithms.distill, "collect", recording_collect)
    config = DistillConfig("PickCube-v0", rounds=1, samples_per_round=8, updates_per_round=0, batch_size=4,
                           n_workers=1, eval_episodes=1, init_from=str(export(source, tmp_path / "student.onnx")))
    distill(tmp_path / "run", config)
    points = np.random.default_rng(0).normal(size=(2, 1200, 6)).astype(np.float32)
    state = np.zeros((2, 37), np.float32)
    with torch.no_grad():
        expected = source(torch.from_numpy(points), torch.from_numpy(state)).numpy()
    assert len(drivers) == 1 and drivers[0] is not None  # round 0: the student drove, not the expert
    # the export's PointNet layers come back centred (ExportedEncoder): the same network up to float rounding
    np.testing.assert_allclose(drivers[0](points, state), expected, rtol=0, atol=1e-6)
