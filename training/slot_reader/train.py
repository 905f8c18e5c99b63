"""Training a looking policy's slot reader: a PointNet regressor that places an insertion task's slot from one
close look, and its ONNX export.

Its reading is the TCP's position in the slot frame (`goal_pose`) and the slot's world rotation vector, the layout
`agent.insertion.slot_memory` turns back into a slot pose. `train_slot_reader` (`ms2agent train-slot-reader`)
trains one on the views of the task expert's look pose (`training.slot_reader.views`) and exports it to ONNX
(`export_slot_reader`, also `ms2agent export-slot-reader` for a regressor the benchmark saved) with the task and
the step at which a looking policy reads in its metadata (`agent.insertion.slot_reader`).
"""
import io
from pathlib import Path
from typing import Any, Dict, List, NamedTuple, Tuple

import numpy as np
import onnx
import torch
from torch import nn

from agent.insertion.slot_memory import READING_NAME
from agent.insertion.slot_reader import ENV_ID_KEY, LOOK_STEP_KEY, reader_entry
from agent.manifest import SlotReaderEntry
from agent.onnx_model import INPUT_NAMES
from agent.registry import TaskSpec, get_task, reader_spec
from training.experts import make_expert
from training.experts.assembly import InsertionExpert
from training.common.networks import PointNet, mlp_head
from training.export.onnx_actor import ExportedEncoder, actor_weights_from_onnx
from training.slot_reader import BATCH_SIZE
from training.slot_reader.views import View, collect_views, errors, inputs, split_by_seed

LONGEST_WAVELENGTH = 0.5  # m, of the Fourier point features (`fourier_octaves`)
PROGRESS_EVERY = 500  # updates between progress lines


class Regressor(nn.Module):
    """The policy's network shape with a 6-D output: PointNet feature + state -> MLP; with
    `fourier_octaves` > 0 each point also carries sin/cos of its coordinates at that many octaves
    (wavelengths LONGEST_WAVELENGTH down to LONGEST_WAVELENGTH / 2^(octaves-1))."""

    def __init__(self, state_size: int, fourier_octaves: int = 0) -> None:
        super().__init__()
        self.state_size, self.fourier_octaves = state_size, fourier_octaves
        self.register_buffer("frequencies", 2 * np.pi / LONGEST_WAVELENGTH * 2.0 ** torch.arange(fourier_octaves))
        self.pointnet = PointNet(in_channels=6 + 6 * fourier_octaves)
        self.head = mlp_head(self.pointnet.out_features + state_size, 6)

    def encoded(self, points: torch.Tensor) -> torch.Tensor:
        """The points with their Fourier features (none with 0 octaves)."""
        if not self.fourier_octaves:
            return points
        angles = (points[..., :3].unsqueeze(-1) * self.frequencies).flatten(-2)
        return torch.cat([points, angles.sin(), angles.cos()], dim=-1)

    def forward(self, points: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        return self.head(torch.cat([self.pointnet(self.encoded(points)), state], dim=-1))


class SlotEstimator(NamedTuple):
    """A trained regressor with the target normalisation it predicts in."""
    model: Regressor
    mean: np.ndarray
    std: np.ndarray

    def predict(self, points: np.ndarray, states: np.ndarray) -> np.ndarray:
        """Targets for a batch of network inputs, points (B, N, C) and states (B, S)."""
        self.model.eval()
        with torch.no_grad():
            return self.model(torch.from_numpy(points), torch.from_numpy(states)).numpy() * self.std + self.mean


def train_regressor(points: np.ndarray, states: np.ndarray, targets: np.ndarray, updates: int,
                    batch_size: int, seed: int, fourier_octaves: int = 0) -> SlotEstimator:
    """Adam on the MSE of normalised targets, cosine-annealed, each update drawing one of the D
    preprocessings of every sampled state: points (O, D, N, C), states (O, D, S), targets (O, 6)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    mean, std = targets.mean(axis=0), targets.std(axis=0) + 1e-6
    normalised = torch.from_numpy((targets - mean) / std)
    model = Regressor(states.shape[-1], fourier_octaves)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, updates, eta_min=1e-5)
    for update in range(1, updates + 1):
        index = rng.integers(0, len(points), batch_size)
        draw = rng.integers(0, points.shape[1], batch_size)
        prediction = model(torch.from_numpy(points[index, draw]), torch.from_numpy(states[index, draw]))
        loss = (prediction - normalised[index]).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        if update % PROGRESS_EVERY == 0:
            print("  update {}/{}: loss {:.4f}".format(update, updates, loss.item()), flush=True)
    return SlotEstimator(model, mean, std)


class Fit(NamedTuple):
    """A regressor trained on the training views, its RMS errors (`errors`) on the held-out and the training
    views, and the held-out errors of predicting the training targets' mean."""
    estimator: SlotEstimator
    held_out: Dict[str, float]
    training: Dict[str, float]
    predict_the_mean: Dict[str, float]


def fit_reader(split: Dict[str, List[View]], spec: TaskSpec, updates: int, batch_size: int, draws: int = 3,
               fourier_octaves: int = 0) -> Fit:
    """Train a regressor on `split["train"]`'s views (`draws` preprocessings of each, as `spec` preprocesses)
    and score it on `split["test"]`'s (one preprocessing each) and on the training views."""
    rng = np.random.default_rng(1)
    targets = {name: np.stack([target for _, _, target in rows]) for name, rows in split.items()}
    train = inputs([view for _, view, _ in split["train"]], spec, draws, rng)
    test = inputs([view for _, view, _ in split["test"]], spec, 1, rng)
    estimator = train_regressor(*train, targets["train"], updates, batch_size, seed=0, fourier_octaves=fourier_octaves)
    mean = np.broadcast_to(targets["train"].mean(axis=0), targets["test"].shape)
    return Fit(estimator, errors(estimator.predict(test[0][:, 0], test[1][:, 0]), targets["test"]),
               errors(estimator.predict(train[0][:, 0], train[1][:, 0]), targets["train"]), errors(mean, targets["test"]))


def save_estimator(estimator: SlotEstimator, spec: TaskSpec, path: Path) -> None:
    """Save a trained regressor with the preprocessing it was trained on (`load_estimator` reads it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    model = estimator.model
    torch.save({"state_dict": model.state_dict(), "state_size": model.state_size, "fourier_octaves": model.fourier_octaves,
                "mean": estimator.mean, "std": estimator.std, "spec": spec._asdict()}, path)


def load_estimator(path: Path) -> Tuple[SlotEstimator, TaskSpec]:
    """A regressor saved by `save_estimator`, with the preprocessing it was trained on."""
    saved = torch.load(path, weights_only=False)
    model = Regressor(saved["state_size"], saved["fourier_octaves"])
    model.load_state_dict(saved["state_dict"])
    return SlotEstimator(model, saved["mean"], saved["std"]), TaskSpec(**saved["spec"])


class _Reading(nn.Module):
    """The regressor for `n_points` points with its normalisation undone, network inputs -> reading, its PointNet
    as the policies export theirs (`ExportedEncoder`: the same readings up to float rounding)."""

    def __init__(self, estimator: SlotEstimator, n_points: int) -> None:
        super().__init__()
        self.model = estimator.model
        self.encoder = ExportedEncoder(estimator.model.pointnet, n_points)
        self.register_buffer("mean", torch.as_tensor(estimator.mean, dtype=torch.float32))
        self.register_buffer("std", torch.as_tensor(estimator.std, dtype=torch.float32))

    def forward(self, points: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        features = self.encoder(self.model.encoded(points))
        return self.model.head(torch.cat([features, state], dim=-1)) * self.std + self.mean


def estimator_from_onnx(path: Path) -> Tuple[SlotEstimator, str]:
    """The estimator in an exported slot reader (the inverse of `reader_onnx`) and the task it reads for."""
    model_proto = onnx.load(str(path))
    metadata = {prop.key: prop.value for prop in model_proto.metadata_props}
    tensors = {tensor.name: onnx.numpy_helper.to_array(tensor) for tensor in model_proto.graph.initializer}
    if ENV_ID_KEY not in metadata or "mean" not in tensors or "std" not in tensors:
        raise ValueError("{} is not an exported slot reader (no {!r} metadata, mean and std)".format(path, ENV_ID_KEY))
    weights = actor_weights_from_onnx(path, head="head")
    octaves = (weights["pointnet.mlp.0.weight"].shape[1] - 6) // 6
    model = Regressor(weights["head.0.weight"].shape[1] - PointNet().out_features, octaves)
    model.load_state_dict(dict(weights, frequencies=model.frequencies))
    return SlotEstimator(model.eval(), tensors["mean"].copy(), tensors["std"].copy()), metadata[ENV_ID_KEY]


def reader_onnx(estimator: SlotEstimator, spec: TaskSpec, look_step: int) -> bytes:
    """The estimator (trained on `spec`'s preprocessing) as ONNX (opset 17): `points` (B, N, 6), `state`
    (B, S) -> `reading` (B, 6), with `look_step` and the task's env id in its metadata."""
    n_points = spec.total_points
    buffer = io.BytesIO()
    example = (torch.zeros(1, n_points, 6), torch.zeros(1, estimator.model.state_size))
    torch.onnx.export(_Reading(estimator, n_points).eval(), example, buffer, input_names=list(INPUT_NAMES),
                      output_names=[READING_NAME], opset_version=17, dynamo=False,
                      dynamic_axes={name: {0: "batch"} for name in (*INPUT_NAMES, READING_NAME)})
    model = onnx.load_from_string(buffer.getvalue())
    onnx.helper.set_model_props(model, {LOOK_STEP_KEY: str(look_step), ENV_ID_KEY: spec.env_id})
    return model.SerializeToString()


def export_slot_reader(estimator_path: Path, out: Path, look_step: int) -> SlotReaderEntry:
    """Write a saved estimator as an ONNX slot reader that reads at `look_step`; ValueError if it was
    trained on another preprocessing than its task's slot reader uses (`reader_spec`). `estimator_path` may be an
    exported slot reader (.onnx): its network in the current graph, the same readings up to float rounding."""
    if look_step < 1:
        raise ValueError("look_step must be >= 1, got {}".format(look_step))
    if Path(estimator_path).suffix == ".onnx":
        estimator, env_id = estimator_from_onnx(estimator_path)
        spec = reader_spec(get_task(env_id))
    else:
        estimator, spec = load_estimator(estimator_path)
    expected = reader_spec(get_task(spec.env_id))
    if spec != expected:
        raise ValueError("{} was trained on {}, but the slot reader preprocesses as {}".format(
            estimator_path, spec, expected))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(reader_onnx(estimator, spec, look_step))
    return reader_entry(out, spec.env_id)


def train_slot_reader(env_id: str, out: Path, episodes: int, updates: int, look_step: int, first_seed: int = 0,
                      test_share: float = 0.25, look_jitter: float = 0.02, draws: int = 3,
                      batch_size: int = BATCH_SIZE) -> Dict[str, Any]:
    """Train a slot reader on the views from the task expert's look pose (`look_distance`, `look_pitch`,
    give or take `look_jitter` m and 0.1 rad) of seeds `first_seed`.., `draws` preprocessings per view,
    save it next to `out` (`.pt`; a re-run with it there only exports) and export it to `out`. Returns
    the held-out RMS errors of the last `test_share` of the episodes, beside predicting the training mean,
    and the errors on the training views (far below the held-out ones: memorised)."""
    expert = make_expert(env_id)
    if not isinstance(expert, InsertionExpert):
        raise ValueError("{} has no slot to read (not an insertion task)".format(env_id))
    saved, report = out.with_suffix(".pt"), {}
    if not saved.exists():
        seeds = list(range(first_seed, first_seed + episodes))
        views = collect_views(env_id, seeds, (expert.look_distance, expert.look_pitch, look_jitter))
        split = split_by_seed(views, seeds, test_share)
        if not all(split.values()):
            raise ValueError("{} episodes leave no {} views: raise the episodes".format(
                episodes, " or ".join(name for name, rows in split.items() if not rows)))
        spec = reader_spec(get_task(env_id))
        fit = fit_reader(split, spec, updates, batch_size, draws)
        save_estimator(fit.estimator, spec, saved)
        report = {"views": {name: len(rows) for name, rows in split.items()}, "episodes": episodes,
                  "held_out": fit.held_out, "training": fit.training, "predict_the_mean": fit.predict_the_mean}
    entry = export_slot_reader(saved, out, look_step)
    return {"onnx": str(entry.path), "estimator": str(saved), "look_step": entry.look_step, **report}
