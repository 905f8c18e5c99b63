"""Distil a privileged expert into a point-cloud student: BC, then DAgger rounds.

Round 0 drives the envs with the expert plus Gaussian action noise (`expert_noise`); every later round drives them
with the current student, while the expert labels every visited observation. Each round's data is stored as
`data/round{k}.npz`, the student is retrained on all rounds so far (warm start, `training.algorithms.bc.
behaviour_cloning` on `train_points` random camera points per cloud), checkpointed as `student-round{k}.pt` and
evaluated on the selection seeds. Re-running the same command skips finished rounds, so an interrupted run loses
at most the round in progress. `collect_episode_steps` shortens the collection episodes (selection episodes keep
the task's limit). `result.json` names the student to ship or fine-tune (`training.common.selection.best_round`).
`init_from` continues from an earlier student (a checkpoint, or a shipped `weights/ENV.onnx`): the model starts
from it and every round, round 0 included, is DAgger driven by the student. `expert_share`: that share of each
DAgger round's samples comes from episodes the expert drives without noise. `slot_reader` distils a looking
student (the insertion add-on, see `training.common.vec_env`): the expert labels a look phase first, and the
student sees the slot it read as its goal. The final student initialises two-stage PPO
(`ms2agent two-stage ENV --init-from .../student.pt`). `backend` runs the env workers as local processes or Ray
actors (`training.common.vec_env.Backend`). A worker replaced during a collection (it died or hung) plays its
interrupted episode again from its seed; the observations it had already labelled in that episode stay in the round's
data (each is an observation with the expert's label, a sample on its own), and only episodes that ended count
towards `episode_success`. `teacher`: a learned teacher (`ms2agent teacher`, `training.experts.teacher`) labels and
drives round 0 in the scripted expert's place; it is checked before any simulator starts.
"""
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, Optional

import numpy as np
import torch
from tqdm import tqdm

from agent.insertion import check_held_fit
from agent.insertion.slot_reader import reader_entry
from agent.registry import TaskSpec, get_task, looking
from training.algorithms.bc import behaviour_cloning, checked_loss
from training.common.checkpoints import load_checkpoint, model_checkpoint, save_checkpoint
from training.common.evaluation import Actor, evaluate, torch_actor
from training.common.seeds import SELECTION_START, TRAIN_START
from training.common.networks import ActorCritic
from training.common.selection import best_round
from training.common.vec_env import Backend, EnvWorkers, backend_from
from training.common.warm_start import initialise_from
from training.experts.teacher import teacher_checkpoint


@dataclass
class DistillConfig:
    env_id: str
    rounds: int = 8  # round 0 (expert data) + DAgger rounds
    samples_per_round: int = 4000
    expert_noise: float = 0.2  # std of the Gaussian noise on the expert's actions in round 0
    updates_per_round: int = 3000
    batch_size: int = 64
    train_points: int = 300  # camera points per cloud in BC updates (0: all)
    loss: str = "mse"  # BC loss, one of training.algorithms.bc.LOSSES
    lr: float = 3e-4
    final_lr_factor: float = 0.1  # each round's BC anneals lr -> lr x this (cosine)
    n_workers: int = os.cpu_count() or 1
    eval_episodes: int = 50  # selection episodes per round (>= 50 separates close candidates)
    collect_episode_steps: Optional[int] = None  # time limit of the collection episodes (None: the task's)
    expert_share: float = 0.0  # share of each DAgger round's samples that the expert drives (no noise)
    seed: int = 0
    init_from: Optional[str] = None  # start from this student (.pt checkpoint or exported .onnx)
    slot_reader: Optional[str] = None  # a looking student: this exported slot reader (training.slot_reader.train)
    held_fit: bool = False  # a looking student that also sees the held object's fitted pose (agent.insertion.held_fit)
    backend: Backend = field(default_factory=Backend)  # where the env workers run (local processes or Ray actors)
    teacher: Optional[str] = None  # a learned teacher's checkpoint or run directory instead of the scripted expert

    def __post_init__(self) -> None:
        self.backend = backend_from(self.backend)  # distill_config.json holds its dict
        if self.teacher is not None and self.slot_reader is not None:
            raise ValueError("a learned teacher does not look: a looking student (--slot-reader) needs the task's "
                             "scripted expert")
        checked_loss(self.loss)
        if self.collect_episode_steps is not None and self.collect_episode_steps < 1:
            raise ValueError("collect_episode_steps must be >= 1 (None: the task's time limit)")
        if not 0.0 <= self.expert_share < 1.0:
            raise ValueError("expert_share must be in [0, 1) (the student drives the rest of a DAgger round)")
        check_held_fit(self.slot_reader, self.held_fit)


def collect(workers: EnvWorkers, n_samples: int, student: Optional[Actor], noise: float,
            rng: np.random.Generator) -> Dict[str, np.ndarray]:
    """Observations and expert labels from `n_samples` steps driven by `student` (or the noisy expert)."""
    points, states, labels, successes = [], [], [], []
    step = workers.reset()
    bar = tqdm(total=n_samples, desc="collect ({})".format("student" if student else "expert"), unit="step")
    while len(labels) * workers.n_workers < n_samples:
        label = step.expert_action
        points.append(step.points.astype(np.float16))
        states.append(step.state)
        labels.append(label)
        if student is None:
            action = np.clip(label + rng.normal(0.0, noise, label.shape), -1.0, 1.0)
        else:
            action = student(step.points, step.state)
        step = workers.step(action.astype(np.float32))
        successes += list(step.success[step.terminated | step.truncated])
        bar.update(workers.n_workers)
        bar.set_postfix(episodes=len(successes), success="{:.2f}".format(np.mean(successes) if successes else 0))
    bar.close()
    return {"points": np.concatenate(points), "state": np.concatenate(states),
            "label": np.clip(np.concatenate(labels), -1.0, 1.0), "episode_success": np.asarray(successes, bool)}


SAMPLE_KEYS = ("points", "state", "label")  # per-sample arrays of a round's data


def load_rounds(data_dir: Path, rounds: int) -> Dict[str, np.ndarray]:
    parts = [np.load(data_dir / "round{}.npz".format(k)) for k in range(rounds)]
    return {key: np.concatenate([part[key] for part in parts]) for key in SAMPLE_KEYS}


def student_spec(config: DistillConfig) -> TaskSpec:
    """The preprocessing the student sees: the task's, or its looking version with a slot reader."""
    spec = get_task(config.env_id)
    if config.slot_reader:  # a looking student sees its reading as goal points
        spec = looking(spec, reader_entry(Path(config.slot_reader), config.env_id).look_step, config.held_fit)
    return spec


def distill(run_dir: Path, config: DistillConfig) -> Dict:
    """Run (or continue) the rounds; returns the per-round records."""
    if config.teacher is not None:
        teacher_checkpoint(config.teacher, config.env_id)  # before any simulator starts
    run_dir.mkdir(parents=True, exist_ok=True)
    data_dir = run_dir / "data"
    data_dir.mkdir(exist_ok=True)
    (run_dir / "distill_config.json").write_text(json.dumps(asdict(config), indent=2))
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    records_file = run_dir / "distill_records.json"
    records = json.loads(records_file.read_text()) if records_file.exists() else []
    spec = student_spec(config)
    selection = EnvWorkers(config.env_id, config.n_workers, first_seed=SELECTION_START, purpose="selection",
                           slot_reader=config.slot_reader, held_fit=config.held_fit, backend=config.backend)
    try:
        model = ActorCritic(selection.state_size, len(selection.action_low), selection.action_low, selection.action_high)
        optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
        if records:
            state = load_checkpoint(run_dir / "student-round{}.pt".format(len(records) - 1))
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            if "rng" in state:  # bit-exact resume (older checkpoints lack it)
                rng.bit_generator.state = state["rng"]["numpy"]
                torch.set_rng_state(state["rng"]["torch"])
        elif config.init_from:
            initialise_from(model, Path(config.init_from))
        for k in range(len(records), config.rounds):
            started = time.time()
            shard = data_dir / "round{}.npz".format(k)
            student_drives = k > 0 or config.init_from is not None
            if not shard.exists():  # data survives an interruption during training
                student = torch_actor(model) if student_drives else None
                limit = {} if config.collect_episode_steps is None else {"max_episode_steps": config.collect_episode_steps}
                with EnvWorkers(config.env_id, config.n_workers, first_seed=TRAIN_START + 1_000_000 * (k + 1),
                                with_expert=True, slot_reader=config.slot_reader, held_fit=config.held_fit,
                                backend=config.backend, teacher=config.teacher, **limit) as workers:
                    shown = round(config.samples_per_round * config.expert_share) if student else 0
                    data = collect(workers, config.samples_per_round - shown, student, config.expert_noise, rng)
                    if shown:  # the expert's episodes; the student's alone give `student_rollout_success`
                        extra = collect(workers, shown, None, 0.0, rng)
                        data.update({key: np.concatenate([data[key], extra[key]]) for key in SAMPLE_KEYS})
                np.savez(data_dir / "round{}.tmp.npz".format(k), **data)
                os.replace(data_dir / "round{}.tmp.npz".format(k), shard)
            collected = time.time()
            finished = np.load(shard)["episode_success"]  # episodes the student drove to their end
            behaviour_success = float(np.mean(finished)) if student_drives and finished.size else float("nan")
            data = load_rounds(data_dir, k + 1)
            loss = behaviour_cloning(model, data, config.updates_per_round, config.batch_size, optimizer, rng,
                                     config.train_points, spec.n_goal_points, config.final_lr_factor, config.loss)
            trained = time.time()
            metrics = evaluate(torch_actor(model), selection, config.eval_episodes)
            record = {"round": k, "samples": len(data["label"]),
                      "bc_loss": loss, "student_rollout_success": behaviour_success, **metrics,
                      "collect_seconds": collected - started, "train_seconds": trained - collected,
                      "eval_seconds": time.time() - trained}
            save_checkpoint(model_checkpoint(model, optimizer=optimizer.state_dict(), record=record,
                                             rng={"numpy": rng.bit_generator.state, "torch": torch.get_rng_state()}),
                            run_dir / "student-round{}.pt".format(k))
            records.append(record)
            records_file.write_text(json.dumps(records, indent=2))
            print("round {round}: {samples} samples, bc loss {bc_loss:.4f}, success {success:.2f} "
                  "({episodes} episodes)".format(**record), flush=True)
    finally:
        selection.close()
    best = best_round(records)
    result = {"student": str(run_dir / "student-round{}.pt".format(best["round"])), "round": best["round"],
              "success": best["success"], "episodes": best["episodes"]}
    (run_dir / "result.json").write_text(json.dumps(result, indent=2))
    return {"records": records, **result}
