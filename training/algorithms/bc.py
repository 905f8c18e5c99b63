"""Behaviour cloning from ManiSkill2 demonstrations, with the two-stage recipe applied to BC.

The paper's BC (REFERENCE section 3): the PointNet actor's deterministic (tanh-scaled) action is
regressed onto the demo's actions with MSE, Adam 3e-4, batch 256, 50k updates. Here the demo is
first validated and converted once to network inputs (`training.algorithms.demos`, cached in RUN/demos).
Every `eval_every` updates the model is scored and checkpointed (`checkpoints/stage{S}-{k:04d}.pt`,
`metrics.csv`): by its success on the fixed selection seeds (`evaluate`), or, with
`eval_episodes=0`, by its MSE on held-out trajectories (10%, never trained on). The latter needs no
simulator, so a soft-body cache converted on a GPU machine can be trained on a CPU-only one.

What the second stage means for BC: there are no rollouts, so the paper's "samples per iteration
x0.875" becomes "stage-2 length = 0.875 x the stage-1 updates". Stage 2 restarts from the best
stage-1 checkpoint (model and Adam state), not from where stage 1 ended, and trains with batch
size x0.9 (256 -> 230): a shorter, noisier fine-tuning of the best point found, which helps where
BC over-fits late. It keeps its own best; the result is stage 2's best if it beats stage 1's best
(`final_choice`), else stage 1's (`result.json` says which, and by what it was selected).

Re-running with --resume continues from the newest checkpoint (conversion resumes on its own).
`behaviour_cloning` is the update loop, shared with distillation (`training.algorithms.distill`).
"""
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from agent.registry import TaskSpec
from training.algorithms.demos import Demo, DemoError, Episode, convert_demo, converted_source, load_converted
from training.common.checkpoints import load_checkpoint, model_checkpoint, save_checkpoint
from training.common.envs import has_cuda, missing_assets
from training.common.evaluation import evaluate, torch_actor
from training.common.seeds import SELECTION_START
from training.common.networks import ActorCritic
from training.common.run_dir import RunDirectory
from training.common.selection import final_choice, select_best
from training.common.vec_env import Backend, EnvWorkers


@dataclass
class BCConfig:
    env_id: str
    demo: str  # the trajectory .h5 (absolute path)
    updates: int = 50_000  # stage 1; stage 2: x stage2_updates_factor
    batch_size: int = 256  # stage 1; stage 2: x stage2_batch_factor
    lr: float = 3e-4
    eval_every: int = 5_000  # updates between evaluations (and checkpoints)
    eval_episodes: int = 50  # 0: select checkpoints by validation MSE instead
    stage2_batch_factor: float = 0.9
    stage2_updates_factor: float = 0.875
    validation_fraction: float = 0.1  # of the trajectories, held out from training
    seed: int = 0
    max_episode_steps: Optional[int] = None  # shorter evaluation episodes than the task's limit (quick tests)

    def stage_batch_size(self, stage: int) -> int:
        return self.batch_size if stage == 1 else max(1, round(self.batch_size * self.stage2_batch_factor))

    def stage_updates(self, stage: int) -> int:
        return self.updates if stage == 1 else round(self.updates * self.stage2_updates_factor)

    def env_kwargs(self) -> Dict[str, Any]:
        return {} if self.max_episode_steps is None else {"max_episode_steps": self.max_episode_steps}


def point_subset(total_points: int, n_goal_points: int, train_points: int, rng: np.random.Generator
                 ) -> Optional[np.ndarray]:
    """Columns of `train_points` random camera points plus the same share of the goal points
    (clouds hold camera points first, then `n_goal_points` goal points); None keeps all of them."""
    n_camera = total_points - n_goal_points
    if train_points <= 0 or train_points >= n_camera:
        return None
    n_goal = round(n_goal_points * train_points / n_camera)
    return np.concatenate([np.sort(rng.choice(n_camera, train_points, replace=False)),
                           n_camera + np.sort(rng.choice(n_goal_points, n_goal, replace=False))])


LOSSES = ("mse", "l1")


def checked_loss(loss: str) -> str:
    """`loss` if it names a BC loss (one of LOSSES), else a ValueError."""
    if loss not in LOSSES:
        raise ValueError("Unknown BC loss {!r} (expected one of {})".format(loss, ", ".join(LOSSES)))
    return loss


def behaviour_cloning(model: ActorCritic, data: Dict[str, np.ndarray], updates: int, batch_size: int,
                      optimizer: torch.optim.Optimizer, rng: np.random.Generator,
                      train_points: int = 0, n_goal_points: int = 0, final_lr_factor: float = 1.0,
                      loss: str = "mse") -> float:
    """MSE (or `loss="l1"`: mean absolute error) between the deterministic (tanh-scaled) action and
    the labels; returns the mean loss. L1 pulls small residuals as hard as large ones (MSE hardly
    sees a 0.05 error in a 0.05 label) and fits the median of conflicting labels (the majority
    label, where there is one), not their mean.
    `train_points` > 0: each minibatch sees that many random camera points per cloud (`point_subset`).
    `final_lr_factor` < 1: the learning rate follows a cosine from its value down to that fraction
    over the updates (and is restored afterwards)."""
    checked_loss(loss)
    model.train()
    total = 0.0
    base_lrs = [group["lr"] for group in optimizer.param_groups]
    for update in tqdm(range(updates), desc="behaviour cloning", unit="update"):
        scale = final_lr_factor + (1 - final_lr_factor) * 0.5 * (1 + math.cos(math.pi * update / max(updates, 1)))
        for group, lr in zip(optimizer.param_groups, base_lrs):
            group["lr"] = lr * scale
        index = rng.integers(0, len(data["label"]), batch_size)
        points = data["points"][index]
        columns = point_subset(points.shape[1], n_goal_points, train_points, rng)
        if columns is not None:
            points = points[:, columns]
        prediction = model(torch.from_numpy(points.astype(np.float32)), torch.from_numpy(data["state"][index]))
        error = prediction - torch.from_numpy(data["label"][index])
        value = error.abs().mean() if loss == "l1" else error.pow(2).mean()
        optimizer.zero_grad()
        value.backward()
        optimizer.step()
        total += value.item()
    for group, lr in zip(optimizer.param_groups, base_lrs):
        group["lr"] = lr
    return total / max(updates, 1)


class OnDevice(nn.Module):
    """`model` on `device` behind the CPU-tensor interface of `behaviour_cloning` and `torch_actor`."""

    def __init__(self, model: nn.Module, device: str) -> None:
        super().__init__()
        self.device = torch.device(device)
        self.model = model.to(self.device)

    def forward(self, points: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        return self.model(points.to(self.device), state.to(self.device)).cpu()


def split_episodes(episodes: Sequence[Episode], fraction: float, seed: int) -> Tuple[List[Episode], List[Episode]]:
    """Training and held-out validation trajectories (`fraction` of them; at least one when there are two)."""
    n_validation = 0 if len(episodes) < 2 else max(1, round(len(episodes) * fraction))
    held_out = set(np.random.default_rng(seed).permutation(len(episodes))[:n_validation].tolist())
    return ([e for i, e in enumerate(episodes) if i not in held_out],
            [e for i, e in enumerate(episodes) if i in held_out])


def validation_mse(model: nn.Module, data: Optional[Dict[str, np.ndarray]], batch_size: int) -> Optional[float]:
    """Mean squared error of the deterministic action on `data` (None without validation data)."""
    if data is None:
        return None
    model.eval()
    total = 0.0
    with torch.no_grad():
        for start in range(0, len(data["label"]), batch_size):
            part = slice(start, start + batch_size)
            prediction = model(torch.from_numpy(data["points"][part].astype(np.float32)),
                               torch.from_numpy(data["state"][part]))
            total += (prediction - torch.from_numpy(data["label"][part])).pow(2).sum().item()
    return total / data["label"].size


def _restore(path: Path, model: ActorCritic, optimizer: torch.optim.Optimizer) -> Dict[str, Any]:
    """Load a checkpoint's model and optimizer state; returns the checkpoint."""
    checkpoint = load_checkpoint(path)
    model.load_state_dict(checkpoint["model"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    return checkpoint


class BCRun:
    """A BC run in `run_dir`: config.json, checkpoints/, metrics.csv, result.json, demos/ (the cache)."""

    def __init__(self, run_dir: Path, config: BCConfig, demo: Demo, resume: bool = False, force: bool = False) -> None:
        if not config.eval_episodes and len(demo.episodes) < 2:
            raise DemoError("{} holds one trajectory: selecting by validation MSE needs at least two "
                            "(or evaluate: --eval-episodes N)".format(demo.path))
        self.config, self.demo = config, demo
        self.directory = RunDirectory(run_dir, asdict(config), resume=resume, force=force)
        self.cache_dir = self.directory.path / "demos"

    def run(self, n_workers: int = 1, device: str = "cpu", backend: Optional[Backend] = None) -> Dict[str, Any]:
        """Convert the demo (if not cached), train both stages to completion; returns result.json's content.
        `backend`: where the evaluation's env workers run (default: local processes)."""
        c = self.config
        source = convert_demo(self.demo, self.cache_dir, n_workers)
        train_episodes, validation_episodes = split_episodes(self.demo.episodes, c.validation_fraction, c.seed)
        train = load_converted(self.cache_dir, train_episodes)
        validation = load_converted(self.cache_dir, validation_episodes) if validation_episodes else None
        print("{} training samples from {} trajectories, {} held out".format(
            len(train["label"]), len(train_episodes), len(validation_episodes)), flush=True)
        self.selected_by = ("success on {} selection episodes".format(c.eval_episodes) if c.eval_episodes
                            else "validation MSE on {} held-out trajectories".format(len(validation_episodes)))

        torch.manual_seed(c.seed)
        low, high = source["action_low"], source["action_high"]
        model = ActorCritic(source["state_size"], len(low), low, high)
        net = OnDevice(model, device)
        optimizer = torch.optim.Adam(model.parameters(), lr=c.lr)
        rng = np.random.default_rng(c.seed)
        progress: Dict[str, Any] = {"stage": 1, "iteration": 0, "updates": 0, "records": []}
        latest = self.directory.latest_checkpoint()
        if latest is not None:
            checkpoint = _restore(latest, model, optimizer)
            rng.bit_generator.state = checkpoint["rng"]
            progress = checkpoint["progress"]
            print("Resuming {} from {}".format(self.directory.path, latest), flush=True)

        selection = (EnvWorkers(c.env_id, n_workers, first_seed=SELECTION_START, purpose="selection", backend=backend,
                                **c.env_kwargs()) if c.eval_episodes else None)
        try:
            for stage in (1, 2):
                if stage < progress["stage"]:
                    continue  # finished before an interruption
                if stage == 2 and progress["stage"] == 1:
                    start = self.directory.checkpoint_path(select_best(progress["records"], 1))
                    _restore(start, model, optimizer)
                    progress.update(stage=2, iteration=0, updates=0)
                    print("Stage 2 starts from {}".format(start), flush=True)
                while progress["updates"] < c.stage_updates(stage):
                    self._train_step(net, optimizer, rng, progress, train, validation, selection)
        finally:
            if selection is not None:
                selection.close()
        return self.directory.write_result(final_choice(progress["records"]), selected_by=self.selected_by)

    def _train_step(self, net: OnDevice, optimizer: torch.optim.Optimizer, rng: np.random.Generator,
                    progress: Dict[str, Any], train: Dict[str, np.ndarray],
                    validation: Optional[Dict[str, np.ndarray]], selection: Optional[EnvWorkers]) -> None:
        """`eval_every` updates (fewer at the end of a stage), then evaluate, checkpoint, and rewrite metrics and
        result.json (`RunDirectory.write_progress`)."""
        c, stage = self.config, progress["stage"]
        started = time.time()
        updates = min(c.eval_every, c.stage_updates(stage) - progress["updates"])
        loss = behaviour_cloning(net, train, updates, c.stage_batch_size(stage), optimizer, rng)
        trained = time.time()
        metrics = (evaluate(torch_actor(net), selection, c.eval_episodes) if selection is not None else
                   {"success": None, "mean_return": None, "mean_length": None, "episodes": 0})
        progress["updates"] += updates
        progress["iteration"] += 1
        record = {"stage": stage, "iteration": progress["iteration"], "updates": progress["updates"],
                  "batch_size": c.stage_batch_size(stage), "train_loss": loss,
                  "val_mse": validation_mse(net, validation, c.batch_size), **metrics,
                  "train_seconds": trained - started, "eval_seconds": time.time() - trained}
        progress["records"].append(record)
        save_checkpoint(model_checkpoint(net.model, optimizer=optimizer.state_dict(), progress=progress,
                                         config=asdict(c), rng=rng.bit_generator.state, record=record),
                        self.directory.checkpoint_path(record))
        self.directory.write_progress(progress["records"], step_key="updates", selected_by=self.selected_by)
        print("stage {stage} update {updates}: train loss {train_loss:.5f}, validation MSE {val_mse}, "
              "success {success}".format(**record), flush=True)


class SimulatorUnavailable(RuntimeError):
    """The run needs a simulator this machine cannot run; the message names the way out."""


def check_simulator(spec: TaskSpec, demo: Demo, cache_dir: Path, eval_episodes: int) -> None:
    """`SimulatorUnavailable` where the run needs a simulator this machine cannot run: converting the demo
    (unless already cached) and evaluating need the task's env; training alone needs neither."""
    converted = converted_source(demo, cache_dir) is not None
    if converted and not eval_episodes:
        return
    work = "evaluating policies" if converted else "converting its demos to point clouds"
    if spec.needs_cuda and not has_cuda():
        hint = (" With the demos already converted in {}, --eval-episodes 0 trains here without a simulator."
                .format(cache_dir) if converted else " Run it on a GPU machine (scripts/train_soft_body.sh).")
        raise SimulatorUnavailable("{} is a soft-body task: {} needs a CUDA GPU (ManiSkill2 simulates it with warp "
                                   "MPM), and this machine has none.{}".format(spec.env_id, work, hint))
    if spec.assets and missing_assets(spec):
        raise SimulatorUnavailable("{} needs assets for {} that are not downloaded ({}). Run: {}".format(
            spec.env_id, work, ", ".join(missing_assets(spec)[:3]), spec.download_command))
