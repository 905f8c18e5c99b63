"""Automatic two-stage PPO fine-tuning with resumable runs.

Stage 1 trains with the paper's settings, evaluating on fixed selection seeds and checkpointing after every
iteration (`eval_every`: after every N-th and the stage's last); a run initialised from another policy (`init_from`,
e.g. a distilled student) evaluates and checkpoints that policy first, as stage-1 iteration 0, so it competes in the
selection. Stage 2 resumes from the highest-scoring stage-1 checkpoint (ties: higher mean return, then earlier) with
batch size x0.9 and samples per iteration x0.875, and tracks its own best. The run's result is the best stage-2
checkpoint if it beats the stage-1 best, else the stage-1 best (`result.json` records which; it is rewritten after
every evaluation, so a stopped run names its choice so far).

With `obs_mode="state"` the run trains on the simulator's state with a policy without PointNet: a learned teacher
(`training.algorithms.teacher`).

Run directory: `config.json`, `checkpoints/stage{S}-{iteration:04d}.pt`, `metrics.csv`,
`result.json`. Re-running the same command continues from the newest checkpoint.
"""
import math
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
import torch
from tqdm import tqdm

from agent.registry import get_task
from training.common.checkpoints import load_checkpoint, model_checkpoint, save_checkpoint
from training.common.evaluation import evaluate, torch_actor
from training.common.networks import ActorCritic
from training.algorithms.ppo import PPO, PPOConfig
from training.common.rewards import check_reward
from training.common.run_dir import RunDirectory, RunDirectoryError
from training.common.seeds import SELECTION_START, TRAIN_START
from training.common.selection import final_choice, select_best
from training.common.vec_env import Backend, EnvWorkers, backend_from
from training.export.onnx_actor import encoder_onnx
from training.common.warm_start import initialise_from


@dataclass
class RunConfig:
    env_id: str
    ppo: PPOConfig = field(default_factory=PPOConfig)
    stage1_iterations: int = 20
    stage2_iterations: int = 10
    stage2_batch_factor: float = 0.9
    stage2_samples_factor: float = 0.875
    stage2_env_steps: Optional[int] = None  # stage 2 stops after this many env steps, its last iteration collecting
    # only what remains (an ablation against stage 1 continued for the same env steps); None: its iterations decide
    n_workers: int = os.cpu_count() or 1
    eval_episodes: int = 50  # selection episodes per evaluation (>= 50 separates 0.95 from 1.00 better than 20)
    eval_every: int = 1  # evaluate and checkpoint after every N-th iteration and a stage's last (the paper: every one)
    seed: int = 0
    init_from: Optional[str] = None  # checkpoint whose "model" initialises stage 1 (e.g. a distilled student)
    # exploration log-std after init_from (a student's is untrained): one for all action dimensions, or one for each
    init_log_std: Union[None, float, List[float]] = None
    max_episode_steps: Optional[int] = None  # shorter episodes than the task's limit (quick tests)
    slot_reader: Optional[str] = None  # a looking policy: this exported slot reader (training.slot_reader.train)
    held_fit: bool = False  # a looking policy that also sees the held object's fitted pose (agent.insertion.held_fit)
    backend: Backend = field(default_factory=Backend)  # where the env workers run (local processes or Ray actors)
    obs_mode: Optional[str] = None  # None: point clouds (PointNet policy); "state": a learned teacher (MLP policy)
    success_ends_episode: bool = True  # False: training episodes run on after success to their time limit
    # (`training.common.envs.SuccessContinues`); selection episodes always end at success, as the evaluator's do
    normalize_state: bool = False  # the policy standardises its state by running statistics (`ActorCritic`)
    reward: str = "dense"  # training and selection rewards: the task's dense reward or "staged" (`common.rewards`)

    def __post_init__(self) -> None:
        self.backend = backend_from(self.backend)  # a stored config holds its dict
        if self.eval_every < 1:
            raise ValueError("eval_every must be at least 1 (evaluate after every N-th iteration), not {}".format(
                self.eval_every))
        if self.normalize_state and self.obs_mode != "state":
            raise ValueError("normalize_state is for state policies (learned teachers, obs_mode 'state'): the exported "
                             "point-cloud runtime does not standardise its state")
        check_reward(self.reward, self.env_id)

    def env_kwargs(self) -> Dict:
        limit = {} if self.max_episode_steps is None else {"max_episode_steps": self.max_episode_steps}
        return {"slot_reader": self.slot_reader, "held_fit": self.held_fit, "backend": self.backend,
                "obs_mode": self.obs_mode, "reward": self.reward, **limit}

    def stage_ppo(self, stage: int) -> PPOConfig:
        """PPO settings of a stage: stage 2 scales batch size and samples per iteration."""
        if stage == 1:
            return self.ppo
        return replace(self.ppo, batch_size=round(self.ppo.batch_size * self.stage2_batch_factor),
                       samples_per_iteration=round(self.ppo.samples_per_iteration * self.stage2_samples_factor))

    def iterations(self, stage: int) -> int:
        return self.stage1_iterations if stage == 1 else self.stage2_iterations

    def iteration_samples(self, stage: int, iteration: int) -> int:
        """Env steps stage `stage`'s iteration `iteration` (from 0) collects: its samples per iteration, the last one
        cut to what `stage2_env_steps` leaves (0: the stage has used them all)."""
        samples = self.stage_ppo(stage).samples_per_iteration
        if stage == 1 or self.stage2_env_steps is None:
            return samples
        return max(0, min(samples, self.stage2_env_steps - iteration * samples))

    def trains(self, stage: int, iteration: int) -> bool:
        """Whether stage `stage` runs its iteration `iteration` (from 0): within its iterations, with env steps left."""
        return iteration < self.iterations(stage) and self.iteration_samples(stage, iteration) > 0

    @classmethod
    def from_dict(cls, data: Dict) -> "RunConfig":
        return cls(**{**data, "ppo": PPOConfig(**data["ppo"])})


# A resumed run may change these: how long it trains, on how many workers where (a run started on two cores goes
# on on a cluster; the workers' seeds follow the run's progress, not the worker count), and how often it evaluates.
FREE_SETTINGS = ("stage1_iterations", "stage2_iterations", "n_workers", "backend", "eval_every")


class TwoStageRun:
    """A training run in `run_dir`; `run(stages)` trains the requested stages to completion."""

    def __init__(self, run_dir: Path, config: RunConfig, resume: bool = False, force: bool = False) -> None:
        get_task(config.env_id)  # unknown env id: clear error before any work
        self.config = config
        self.directory = RunDirectory(run_dir, asdict(config), resume=resume, force=force, free=FREE_SETTINGS,
                                      defaults=asdict(RunConfig(config.env_id)))

    def run(self, stages: Sequence[int] = (1, 2), start_from: Optional[Path] = None) -> Dict:
        """Train `stages`; stage 2 starts from `start_from` or else the best stage-1 checkpoint."""
        c = self.config
        torch.manual_seed(c.seed)
        np.random.seed(c.seed)
        progress = {"records": [], "env_steps": 0, "stage": stages[0], "iteration": 0}
        latest = self.directory.latest_checkpoint()
        checkpoint = load_checkpoint(latest) if latest is not None else None
        if checkpoint is not None:
            progress = checkpoint["progress"]
        train = EnvWorkers(c.env_id, c.n_workers, first_seed=TRAIN_START + progress["env_steps"], **c.env_kwargs(),
                           success_ends_episode=c.success_ends_episode)
        selection = EnvWorkers(c.env_id, c.n_workers, first_seed=SELECTION_START, purpose="selection",
                               **c.env_kwargs())
        try:
            model = ActorCritic(train.state_size, len(train.action_low), train.action_low, train.action_high,
                                points=c.obs_mode is None, normalize_state=c.normalize_state)
            ppo = PPO(model, c.stage_ppo(stages[0]))
            if checkpoint is not None:
                ppo.load_state_dict(checkpoint["ppo"])
                torch.set_rng_state(checkpoint["rng"]["torch"])
                np.random.set_state(checkpoint["rng"]["numpy"])
                print("Resuming {} from {}".format(self.directory.path, latest))
            elif c.init_from:
                initialise_from(model, Path(c.init_from))
                if c.init_log_std is not None:
                    model.log_std.data[:] = torch.as_tensor(c.init_log_std, dtype=model.log_std.dtype)
                self._share_encoder(model, train, selection)
                self._record(ppo, progress, selection)  # stage-1 iteration 0: the initialisation competes too
            for stage in stages:
                if stage < progress["stage"]:
                    continue  # finished before an interruption
                if progress["stage"] < stage or (stage == 2 and progress["iteration"] == 0):
                    source = start_from or self._best_stage1(progress["records"])
                    ppo.load_state_dict(load_checkpoint(Path(source))["ppo"])
                    progress.update(stage=stage, iteration=0)
                    print("Stage {} starts from {}".format(stage, source))
                ppo.config = c.stage_ppo(stage)
                self._share_encoder(model, train, selection)
                ppo.restart_rollouts()
                self._train_stage(ppo, progress, stage, train, selection)
        finally:
            train.close()
            selection.close()
        return self.directory.write_result(final_choice(progress["records"]))

    def _share_encoder(self, model: ActorCritic, *workers: EnvWorkers) -> None:
        """With a frozen PointNet, the workers encode every cloud with it (the PPO epochs then train the heads
        on those features); otherwise they return the clouds."""
        encoder = None if self.config.ppo.train_pointnet else encoder_onnx(model.pointnet, workers[0].n_points)
        for group in workers:
            group.set_encoder(encoder)

    def _best_stage1(self, records: Sequence[Dict]) -> Path:
        best = select_best(records, 1)
        if best is None:
            raise RunDirectoryError("Stage 2 needs a stage-1 checkpoint: run stage 1 in {} first, or pass "
                                    "--from CHECKPOINT".format(self.directory.path))
        return self.directory.checkpoint_path(best)

    def _train_stage(self, ppo: PPO, progress: Dict, stage: int, train: EnvWorkers, selection: EnvWorkers) -> None:
        """Train `stage` to its end, evaluating and checkpointing after every `eval_every`-th iteration and the last
        (an interrupted run resumes from its last checkpoint). A record's train_success and train_return cover the
        episodes that ended since the previous record, its losses the latest iteration."""
        c = self.config
        remaining = sum(c.iteration_samples(stage, iteration)
                        for iteration in range(progress["iteration"], c.iterations(stage)))
        bar = tqdm(total=remaining, desc="stage {}".format(stage), unit="step", dynamic_ncols=True)
        successes, returns, seconds = [], [], {"collect_seconds": 0.0, "learn_seconds": 0.0}
        postfix: Dict = {}
        while c.trains(stage, progress["iteration"]):
            started = time.time()
            rollout = ppo.collect(train, bar, c.iteration_samples(stage, progress["iteration"]))
            collected = time.time()
            stats = ppo.learn(rollout)
            learned = time.time()
            progress["iteration"] += 1
            progress["env_steps"] += rollout["reward"].size
            successes.extend(rollout["episode_successes"])
            returns.extend(rollout["episode_returns"])
            seconds["collect_seconds"] += collected - started
            seconds["learn_seconds"] += learned - collected
            postfix.update(iteration=progress["iteration"],
                           collect_learn_steps_s="{:.1f}".format(rollout["reward"].size / (learned - started)))
            if progress["iteration"] % c.eval_every == 0 or not c.trains(stage, progress["iteration"]):
                record = self._record(ppo, progress, selection, train_success=_mean(successes),
                                      train_return=_mean(returns), **stats, **seconds)
                successes, returns, seconds = [], [], dict.fromkeys(seconds, 0.0)
                postfix.update(success="{:.2f}".format(record["success"]),
                               ret="{:.1f}".format(record["mean_return"]))
            bar.set_postfix(postfix)
        bar.close()

    def _record(self, ppo: PPO, progress: Dict, selection: EnvWorkers, **extra: float) -> Dict:
        """Evaluate the current policy on the selection seeds, then append its record to `progress`, checkpoint
        it as `progress`'s stage and iteration, and rewrite metrics and result.json (`RunDirectory.write_progress`)."""
        started = time.time()
        metrics = evaluate(torch_actor(ppo.model), selection, self.config.eval_episodes)
        record = {"stage": progress["stage"], "iteration": progress["iteration"], "env_steps": progress["env_steps"],
                  **metrics, **extra, "eval_seconds": time.time() - started}
        progress["records"].append(record)
        rng = {"torch": torch.get_rng_state(), "numpy": np.random.get_state()}
        save_checkpoint(model_checkpoint(ppo.model, ppo=ppo.state_dict(), progress=progress,
                                         config=asdict(self.config), rng=rng, record=record),
                        self.directory.checkpoint_path(record))
        self.directory.write_progress(progress["records"], step_key="env_steps")
        return record


def _mean(values: Sequence[float]) -> float:
    return float(np.mean(values)) if len(values) else math.nan
