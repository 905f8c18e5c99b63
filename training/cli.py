"""The `ms2agent` command line: train, fine-tune, distil, evaluate and export policies.

Every default comes from where the setting lives: the config dataclasses (`PPOConfig`, `RunConfig`,
`DistillConfig`, `BCConfig`), the seed ranges (`training.common.evaluation`) and the slot reader's settings
(`training.slot_reader`). `train`, `finetune` and `two-stage` share one option set (`PPOOptions`).
"""
import ctypes
import importlib.util
import inspect
import json
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, List, Optional

import torch
import typer

from agent.registry import TaskSpec, get_task
from agent.vulkan_fallback import LOADER_VARIABLES, activate
from training import slot_reader as reader_settings
from training.algorithms.bc import BCConfig, BCRun, SimulatorUnavailable, check_simulator
from training.algorithms.demos import DemoError, read_demo
from training.algorithms.distill import DistillConfig
from training.algorithms import teacher as teacher_settings
from training.algorithms.ppo import PPOConfig
from training.algorithms.two_stage import RunConfig
from training.common.envs import has_cuda, missing_assets
from training.common.seeds import REPORT_START, SELECTION_START
from training.common.run_dir import RunDirectoryError
from training.common.vec_env import BACKENDS, Backend
from training.export.export import PRECISIONS

app = typer.Typer(help="Train, evaluate and export ManiSkill2 point-cloud policies.", no_args_is_help=True,
                  pretty_exceptions_enable=False)

MMAP_THRESHOLD = 64 * 1024  # bytes; glibc's M_MMAP_THRESHOLD


def fixed_mmap_threshold() -> bool:
    """Serve every allocation over 64 KiB with its own mmap, returned to the OS when freed (glibc only), instead
    of glibc raising that threshold after freeing a large block and serving torch's per-step activations from a
    heap that fragments. Returns whether the setting was applied."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc (macOS, musl): nothing to do
        return False
    return bool(libc.mallopt(-3, MMAP_THRESHOLD))  # -3: M_MMAP_THRESHOLD


@app.callback()
def main() -> None:
    """Train, evaluate and export ManiSkill2 point-cloud policies."""
    fixed_mmap_threshold()


RUNS = Path("runs")
ENV_HELP = "ManiSkill2 env id, e.g. PickCube-v0"
WORKERS_HELP = "environment processes (default: one per CPU core)"
SLOT_READER_HELP = ("a looking policy (insertion tasks): this exported slot reader (`ms2agent export-slot-reader`) "
                    "reads the slot at its look step and the policy sees it as its goal")
HELD_FIT_HELP = ("with --slot-reader (PlugCharger): the policy also sees the pose of the object in its hand in the "
                 "slot's frame, fitted on its known box (agent/insertion/held_fit.py)")
LOOK_STEP_HELP = "the step at which a looking policy reads the slot (the expert's look phase lasts that many steps)"
BACKEND_HELP = ("where the env workers run: {} (one process per worker on this machine) or ray (one Ray actor per "
                "worker on a Ray cluster; pip install -e '.[cluster]'; docs/cluster.md)".format(Backend.kind))
ADDRESS_HELP = ("with --backend ray: the Ray cluster to join, e.g. 10.0.0.1:6379 (default: RAY_ADDRESS, else the newest "
                "cluster started on this machine, else a new Ray instance here)")
WORKER_TIMEOUT_HELP = "seconds an env worker may take to answer one call; one that does not is replaced"
WORKER_RESTARTS_HELP = ("replacements of a dead or hung env worker within one episode (it starts the episode again) "
                        "before the command fails")


def known_env_id(env_id: str) -> str:
    """The env id if the registry knows it, else a usage error listing the known ones."""
    try:
        get_task(env_id)
    except KeyError as error:
        raise typer.BadParameter(str(error.args[0])) from None
    return env_id


ENV_ID = typer.Argument(..., help=ENV_HELP, callback=known_env_id)
SLOT_READER = typer.Option(None, help=SLOT_READER_HELP)
HELD_FIT = typer.Option(False, "--held-fit", help=HELD_FIT_HELP)
WORKERS = typer.Option(None, help=WORKERS_HELP)
BACKEND = typer.Option(Backend.kind, help=BACKEND_HELP)
ADDRESS = typer.Option(Backend.address, help=ADDRESS_HELP)
WORKER_TIMEOUT = typer.Option(Backend.timeout, help=WORKER_TIMEOUT_HELP)
WORKER_RESTARTS = typer.Option(Backend.max_restarts, min=0, help=WORKER_RESTARTS_HELP)


def worker_backend(backend: str, address: Optional[str], timeout: float, restarts: int) -> Backend:
    """The env workers' backend from the options, or a clear exit before any work (unknown kind, an address
    without ray, ray not installed)."""
    if backend not in BACKENDS:
        raise typer.BadParameter("{!r} is not one of {}".format(backend, ", ".join(BACKENDS)), param_hint="--backend")
    try:
        chosen = Backend(backend, address, timeout, restarts)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    if chosen.kind == "ray" and importlib.util.find_spec("ray") is None:
        raise typer.BadParameter("the ray backend needs Ray: pip install -e '.[cluster]'", param_hint="--backend")
    return chosen


def checked_task(env_id: str, algorithm: str) -> TaskSpec:
    """The task (its id checked by `known_env_id`), or a clear exit before any work: wrong algorithm, no CUDA, no
    assets."""
    spec = get_task(env_id)
    if spec.needs_cuda and not has_cuda():
        raise typer.BadParameter("{} is a soft-body task: ManiSkill2 simulates it with warp on a CUDA GPU, "
                                 "and this machine has none.".format(env_id), param_hint="ENV_ID")
    missing = missing_assets(spec)
    if missing:
        raise typer.BadParameter("{} needs assets that are not downloaded ({}). Run: {}".format(
            env_id, ", ".join(missing[:3]), spec.download_command), param_hint="ENV_ID")
    if spec.algorithm != algorithm:
        raise typer.BadParameter("{} is trained with {}, not {} (see agent/registry.py)".format(
            env_id, spec.algorithm.upper(), algorithm.upper()), param_hint="ENV_ID")
    return spec


def checked_expert(env_id: str) -> None:
    """A clear exit before any work when no privileged expert exists for the task."""
    from training.experts import EXPERTS

    if env_id not in EXPERTS:
        raise typer.BadParameter("no expert for {}; experts exist for {}; for another task train a learned teacher "
                                 "(`ms2agent teacher {}`) and pass --teacher".format(
                                     env_id, ", ".join(sorted(EXPERTS)), env_id), param_hint="ENV_ID")


TEACHER_HELP = ("label with this learned teacher (`ms2agent teacher ENV_ID`: a checkpoint, or its run directory "
                "runs/ENV_ID/teacher) instead of the task's scripted expert")
TEACHER = typer.Option(None, help=TEACHER_HELP)


def checked_labeller(env_id: str, teacher: Optional[Path]) -> None:
    """A clear exit before any work when the task has no scripted expert and no teacher is given, or when the
    teacher is not a state policy of this task (the message names the fix)."""
    if teacher is None:
        checked_expert(env_id)
        return
    from training.common.checkpoints import CorruptCheckpointError
    from training.experts.teacher import TeacherError, teacher_checkpoint

    try:
        teacher_checkpoint(teacher, env_id)
    except (TeacherError, FileNotFoundError, CorruptCheckpointError) as error:
        raise typer.BadParameter(str(error), param_hint="--teacher") from None


def checked_model(checkpoint: Path) -> Any:
    """The checkpoint's model (`ActorCritic`), or a one-line exit naming the file if it is missing, corrupt or
    holds no model."""
    from training.common.checkpoints import CorruptCheckpointError, model_from_checkpoint

    try:
        return model_from_checkpoint(checkpoint)
    except (FileNotFoundError, CorruptCheckpointError) as error:
        raise typer.BadParameter(str(error), param_hint="CHECKPOINT") from None


def checked_onnx_policy(path: Path) -> None:
    """A one-line exit naming the file unless it is an exported ms2agent policy."""
    from training.export.onnx_actor import actor_weights_from_onnx

    try:
        actor_weights_from_onnx(path)
    except Exception as error:  # onnx raises several types for missing or foreign files
        raise typer.BadParameter("{} is not an exported ms2agent policy: {}".format(
            path, (str(error).strip().splitlines() or [type(error).__name__])[0]), param_hint="CHECKPOINT") from None


def optional_str(path: Optional[Path]) -> Optional[str]:
    """A path option as a config stores it (None stays None)."""
    return str(path) if path else None


def option(default: Any, *flags: str, **settings: Any) -> Any:
    """A dataclass field holding a CLI option: its value's default is `default`, and its flag is built with
    `flags` and `settings` (`typer.Option`'s help, min, max, ...)."""
    return field(default=default, metadata={"flags": flags, "settings": settings})


def with_options(options_class: type) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """A command taking `options: OPTIONS_CLASS` gets one CLI flag per field of that dataclass (`option`), after
    its own parameters; typer calls it with the flags' values gathered into an `options_class`."""
    def decorate(command: Callable[..., None]) -> Callable[..., None]:
        signature = inspect.signature(command)
        own = [parameter for name, parameter in signature.parameters.items() if name != "options"]
        shared = [inspect.Parameter(item.name, inspect.Parameter.KEYWORD_ONLY, annotation=item.type,
                                    default=typer.Option(item.default, *item.metadata["flags"],
                                                         **item.metadata["settings"]))
                  for item in fields(options_class)]
        names = [item.name for item in fields(options_class)]

        def run(**values: Any) -> None:
            chosen = options_class(**{name: values.pop(name) for name in names})
            command(**values, options=chosen)

        run.__name__, run.__doc__ = command.__name__, command.__doc__
        run.__signature__ = signature.replace(parameters=own + shared)  # type: ignore[attr-defined]
        run.__annotations__ = {parameter.name: parameter.annotation for parameter in own + shared}
        return run
    return decorate


STAGE2_BATCH = round(PPOConfig.batch_size * RunConfig.stage2_batch_factor)
STAGE2_SAMPLES = round(PPOConfig.samples_per_iteration * RunConfig.stage2_samples_factor)


@dataclass(frozen=True)
class PPOOptions:
    """The options `train`, `finetune` and `two-stage` share; their defaults are `PPOConfig`'s and `RunConfig`'s."""
    run_dir: Optional[Path] = option(None, help="run directory (default: runs/ENV_ID/ppo)")
    resume: bool = option(False, help="continue the run in --run-dir from its newest checkpoint")
    samples_per_iteration: int = option(PPOConfig.samples_per_iteration,
                                        help="stage-1 env steps per iteration (stage 2: x --samples-factor)")
    batch_size: int = option(PPOConfig.batch_size, help="stage-1 minibatch size (stage 2: x --batch-factor)")
    lr: float = option(PPOConfig.lr, help="Adam learning rate of actor and critic (the paper's 3e-4 trains from "
                       "scratch; fine-tuning a distilled student with std 0.1 needs ~3e-5)")
    eval_episodes: int = option(RunConfig.eval_episodes,
                                help="evaluation episodes per iteration (fixed selection seeds)")
    workers: Optional[int] = option(None, help=WORKERS_HELP)
    freeze_pointnet: bool = option(not PPOConfig.train_pointnet, "--freeze-pointnet",
                                   help="keep the PointNet fixed and train the heads only (for --init-from a distilled "
                                   "student: the untrained critic would otherwise rewrite its features)")
    seed: int = option(RunConfig.seed, help="random seed")
    max_episode_steps: Optional[int] = option(RunConfig.max_episode_steps,
                                              help="cut episodes shorter than the task's time limit (quick trials)")
    slot_reader: Optional[Path] = option(None, help=SLOT_READER_HELP)
    held_fit: bool = option(RunConfig.held_fit, "--held-fit", help=HELD_FIT_HELP)
    backend: str = option(Backend.kind, help=BACKEND_HELP)
    address: Optional[str] = option(Backend.address, help=ADDRESS_HELP)
    worker_timeout: float = option(Backend.timeout, help=WORKER_TIMEOUT_HELP)
    worker_restarts: int = option(Backend.max_restarts, min=0, help=WORKER_RESTARTS_HELP)


FORCE = typer.Option(False, help="restart the run in --run-dir, discarding its checkpoints")
STAGE1 = typer.Option(RunConfig.stage1_iterations, help="stage-1 iterations (each: collect, learn, evaluate, "
                      "checkpoint)")
STAGE2 = typer.Option(RunConfig.stage2_iterations, help="stage-2 iterations")
BATCH_FACTOR = typer.Option(RunConfig.stage2_batch_factor, help="stage-2 batch size factor ({} -> {})".format(
    PPOConfig.batch_size, STAGE2_BATCH))
SAMPLES_FACTOR = typer.Option(RunConfig.stage2_samples_factor, help="stage-2 samples-per-iteration factor "
                              "({:,} -> {:,})".format(PPOConfig.samples_per_iteration, STAGE2_SAMPLES))
INIT_FROM = typer.Option(None, help="initialise from this checkpoint's model (e.g. a distilled student) or an "
                         "exported weights/ENV.onnx (actor and PointNet; the critic starts fresh)")
INIT_LOG_STD = typer.Option(RunConfig.init_log_std, help="exploration log-std after --init-from (a distilled "
                            "student's is untrained; -2.3: std 0.1 of the action range)")


def _ppo_run(env_id: str, stages: List[int], options: PPOOptions, *, force: bool = False,
             stage1_iterations: int = RunConfig.stage1_iterations,
             stage2_iterations: int = RunConfig.stage2_iterations,
             stage2_batch_factor: float = RunConfig.stage2_batch_factor,
             stage2_samples_factor: float = RunConfig.stage2_samples_factor, init_from: Optional[Path] = None,
             init_log_std: Optional[float] = RunConfig.init_log_std, start_from: Optional[Path] = None,
             stage2_env_steps: Optional[int] = RunConfig.stage2_env_steps) -> None:
    from training.algorithms.two_stage import TwoStageRun

    checked_task(env_id, "ppo")
    o = options
    backend = worker_backend(o.backend, o.address, o.worker_timeout, o.worker_restarts)
    config = RunConfig(env_id, PPOConfig(batch_size=o.batch_size, samples_per_iteration=o.samples_per_iteration,
                                         lr=o.lr, train_pointnet=not o.freeze_pointnet),
                       stage1_iterations=stage1_iterations, stage2_iterations=stage2_iterations,
                       stage2_batch_factor=stage2_batch_factor, stage2_samples_factor=stage2_samples_factor,
                       stage2_env_steps=stage2_env_steps, n_workers=o.workers or os.cpu_count() or 1,
                       eval_episodes=o.eval_episodes, seed=o.seed,
                       init_from=optional_str(init_from), init_log_std=init_log_std,
                       max_episode_steps=o.max_episode_steps, slot_reader=optional_str(o.slot_reader),
                       held_fit=o.held_fit, backend=backend)
    try:
        run = TwoStageRun(o.run_dir or RUNS / env_id / "ppo", config, resume=o.resume, force=force)
        result = run.run(stages, start_from=start_from)
    except RunDirectoryError as error:
        raise typer.BadParameter(str(error), param_hint="--run-dir") from None
    typer.echo(json.dumps(result, indent=2))


@app.command()
@with_options(PPOOptions)
def train(env_id: str = ENV_ID, force: bool = FORCE, iterations: int = STAGE1,
          init_from: Optional[Path] = INIT_FROM, init_log_std: Optional[float] = INIT_LOG_STD, *,
          options: PPOOptions) -> None:
    """Stage 1: PPO with the paper's settings, evaluated and checkpointed every iteration."""
    _ppo_run(env_id, [1], options, force=force, stage1_iterations=iterations, init_from=init_from,
             init_log_std=init_log_std)


@app.command()
@with_options(PPOOptions)
def finetune(env_id: str = ENV_ID,
             from_checkpoint: Optional[Path] = typer.Option(None, "--from", help="stage-1 checkpoint to start from "
                                                            "(default: the best one in --run-dir)"),
             iterations: int = STAGE2, batch_factor: float = BATCH_FACTOR, samples_factor: float = SAMPLES_FACTOR,
             env_steps: Optional[int] = typer.Option(RunConfig.stage2_env_steps, help="stop after this many env "
                                                     "steps, the last iteration cut short (e.g. --batch-factor 1 "
                                                     "--samples-factor 1: stage 1 continued, for as many env steps as "
                                                     "a stage 2)"), *,
             options: PPOOptions) -> None:
    """Stage 2: resume from a stage-1 checkpoint with smaller batches and fewer samples per iteration."""
    _ppo_run(env_id, [2], options, stage2_iterations=iterations, stage2_batch_factor=batch_factor,
             stage2_samples_factor=samples_factor, start_from=from_checkpoint, stage2_env_steps=env_steps)


@app.command("two-stage")
@with_options(PPOOptions)
def two_stage(env_id: str = ENV_ID, force: bool = FORCE, stage1_iterations: int = STAGE1,
              stage2_iterations: int = STAGE2, batch_factor: float = BATCH_FACTOR,
              samples_factor: float = SAMPLES_FACTOR, init_from: Optional[Path] = INIT_FROM,
              init_log_std: Optional[float] = INIT_LOG_STD, *, options: PPOOptions) -> None:
    """Both stages in one command; the result is the best stage-2 checkpoint, or stage 1's if never beaten
    (with --init-from, stage 1's candidates include the initialisation itself, as iteration 0)."""
    _ppo_run(env_id, [1, 2], options, force=force, stage1_iterations=stage1_iterations,
             stage2_iterations=stage2_iterations, stage2_batch_factor=batch_factor,
             stage2_samples_factor=samples_factor, init_from=init_from, init_log_std=init_log_std)


@app.command()
def teacher(env_id: str = ENV_ID,
            run_dir: Optional[Path] = typer.Option(None, help="run directory (default: runs/ENV_ID/teacher)"),
            resume: bool = typer.Option(False, help="continue the run in --run-dir from its newest checkpoint"),
            force: bool = FORCE,
            iterations: int = typer.Option(teacher_settings.ITERATIONS, min=1, help="PPO iterations (each: collect, "
                                           "learn; every --eval-every-th also evaluate, checkpoint)"),
            samples_per_iteration: int = typer.Option(teacher_settings.PPO_SETTINGS.samples_per_iteration, min=1,
                                                      help="env steps per iteration"),
            batch_size: int = typer.Option(teacher_settings.PPO_SETTINGS.batch_size, min=1, help="minibatch size"),
            epochs: int = typer.Option(teacher_settings.PPO_SETTINGS.epochs, min=1, help="PPO epochs per iteration"),
            lr: float = typer.Option(teacher_settings.PPO_SETTINGS.lr, help="Adam learning rate of actor and critic"),
            gamma: float = typer.Option(teacher_settings.PPO_SETTINGS.gamma, help="discount"),
            target_kl: float = typer.Option(teacher_settings.PPO_SETTINGS.target_kl, help="an iteration's updates stop "
                                            "at {} x this approximate KL".format(PPOConfig.kl_stop_factor)),
            entropy_coef: float = typer.Option(teacher_settings.PPO_SETTINGS.entropy_coef, min=0.0,
                                               help="weight of the policy's entropy bonus in the PPO loss (keeps "
                                               "its action noise from shrinking)"),
            eval_episodes: int = typer.Option(teacher_settings.EVAL_EPISODES, min=1, help="selection episodes per "
                                              "evaluation"),
            eval_every: int = typer.Option(teacher_settings.EVAL_EVERY, min=1, help="evaluate and checkpoint after "
                                           "every N-th iteration and the last (may change on --resume)"),
            max_episode_steps: Optional[int] = typer.Option(teacher_settings.MAX_EPISODE_STEPS, min=1,
                                                            help="time limit of the training and selection episodes"),
            normalize_state: bool = typer.Option(teacher_settings.NORMALIZE_STATE, help="the policy reads the "
                                                 "state standardised by running statistics (mean and variance of "
                                                 "every entry, updated after each iteration)"),
            init_from: Optional[Path] = typer.Option(None, help="start from this teacher checkpoint of ENV_ID (a new "
                                                     "run, e.g. to go on with other settings; evaluated first)"),
            init_log_std: Optional[str] = typer.Option(None, help="exploration log-std after --init-from: one value "
                                                       "(e.g. -2.3) or one per action dimension, comma-separated "
                                                       "(default: the checkpoint's)"),
            reward: str = typer.Option(teacher_settings.REWARD, help="dense: the task's own dense reward; staged: "
                                       "stages that each pay more than the last (StackCube-v0; docs/training.md)"),
            workers: Optional[int] = WORKERS, seed: int = typer.Option(RunConfig.seed, help="random seed"),
            backend: str = BACKEND, address: Optional[str] = ADDRESS, worker_timeout: float = WORKER_TIMEOUT,
            worker_restarts: int = WORKER_RESTARTS) -> None:
    """A learned teacher: PPO on the simulator's state (MLP policy), for distill/diagnose --teacher where a task
    has no scripted expert. Resumable (--resume); result.json names the best checkpoint on selection seeds."""
    from dataclasses import replace

    from training.algorithms.teacher import train_teacher
    from training.common.checkpoints import CorruptCheckpointError
    from training.common.rewards import check_reward
    from training.experts.teacher import TeacherError

    try:
        teacher_settings.check_teacher_task(env_id)
    except TeacherError as error:
        raise typer.BadParameter(str(error), param_hint="ENV_ID") from None
    checked_task(env_id, "ppo")
    try:
        check_reward(reward, env_id)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--reward") from None
    try:
        log_std = None if init_log_std is None else [float(value) for value in init_log_std.split(",")]
    except ValueError:
        raise typer.BadParameter("{!r} is not a number or a comma-separated list of numbers".format(init_log_std),
                                 param_hint="--init-log-std") from None
    if log_std is not None and len(log_std) == 1:
        log_std = log_std[0]
    chosen_backend = worker_backend(backend, address, worker_timeout, worker_restarts)
    ppo = replace(teacher_settings.PPO_SETTINGS, samples_per_iteration=samples_per_iteration, batch_size=batch_size,
                  epochs=epochs, lr=lr, gamma=gamma, target_kl=target_kl, entropy_coef=entropy_coef)
    try:
        config = teacher_settings.teacher_config(env_id, ppo, iterations, eval_episodes, eval_every, max_episode_steps,
                                                 workers or os.cpu_count() or 1, seed, chosen_backend, normalize_state,
                                                 optional_str(init_from), log_std, reward)
    except (TeacherError, FileNotFoundError, CorruptCheckpointError) as error:
        raise typer.BadParameter(str(error), param_hint="--init-from") from None
    try:
        result = train_teacher(run_dir or RUNS / env_id / "teacher", config, resume=resume, force=force)
    except RunDirectoryError as error:
        raise typer.BadParameter(str(error), param_hint="--run-dir") from None
    typer.echo(json.dumps(result, indent=2))


@app.command()
def distill(
        env_id: str = ENV_ID,
        run_dir: Optional[Path] = typer.Option(None, help="run directory (default: runs/ENV_ID/distill)"),
        rounds: int = typer.Option(DistillConfig.rounds, help="round 0 (noisy expert) + DAgger rounds"),
        samples_per_round: int = typer.Option(DistillConfig.samples_per_round, help="env steps collected per round"),
        updates_per_round: int = typer.Option(DistillConfig.updates_per_round, help="BC gradient updates per round"),
        batch_size: int = typer.Option(DistillConfig.batch_size, help="BC minibatch size"),
        train_points: int = typer.Option(DistillConfig.train_points, help="camera points per cloud in BC updates "
                                         "(0: all; fewer is faster, evaluation always sees all)"),
        lr: float = typer.Option(DistillConfig.lr, help="BC learning rate at the start of each round"),
        loss: str = typer.Option(DistillConfig.loss, help="BC loss: mse, or l1 (small label errors count more)"),
        final_lr_factor: float = typer.Option(DistillConfig.final_lr_factor, help="each round's BC anneals the "
                                              "learning rate to this fraction (cosine); 1: constant"),
        expert_noise: float = typer.Option(DistillConfig.expert_noise, help="action noise std while the expert "
                                           "drives (round 0)"),
        expert_share: float = typer.Option(DistillConfig.expert_share, min=0.0, max=0.99, help="share of each DAgger "
                                           "round's samples that the expert drives, without noise (shows the phases "
                                           "the student cannot reach yet)"),
        eval_episodes: int = typer.Option(DistillConfig.eval_episodes, help="evaluation episodes after each round"),
        collect_episode_steps: Optional[int] = typer.Option(
            DistillConfig.collect_episode_steps, min=1, help="time limit of the collection episodes (default: the "
            "task's); shorter episodes give each round more scenes"),
        init_from: Optional[Path] = typer.Option(None, help="continue from this student: a checkpoint or an "
                                                 "exported weights/ENV.onnx (every round is then DAgger)"),
        slot_reader: Optional[Path] = SLOT_READER, held_fit: bool = HELD_FIT, workers: Optional[int] = WORKERS,
        seed: int = typer.Option(DistillConfig.seed, help="random seed"), backend: str = BACKEND,
        address: Optional[str] = ADDRESS, worker_timeout: float = WORKER_TIMEOUT,
        worker_restarts: int = WORKER_RESTARTS, teacher: Optional[Path] = TEACHER) -> None:
    """Distil the privileged expert (or a learned teacher) into a point-cloud student (BC + DAgger); re-run to
    resume. result.json names the round with the best selection success."""
    from training.algorithms.distill import distill as run_distill

    checked_task(env_id, "ppo")
    checked_labeller(env_id, teacher)
    chosen_backend = worker_backend(backend, address, worker_timeout, worker_restarts)
    try:  # the config validates its settings (the BC loss) before any simulation starts
        config = DistillConfig(env_id, rounds=rounds, samples_per_round=samples_per_round,
                               updates_per_round=updates_per_round, batch_size=batch_size,
                               train_points=train_points, lr=lr, loss=loss, final_lr_factor=final_lr_factor,
                               expert_noise=expert_noise, expert_share=expert_share,
                               n_workers=workers or os.cpu_count() or 1,
                               eval_episodes=eval_episodes, collect_episode_steps=collect_episode_steps,
                               seed=seed, init_from=optional_str(init_from),
                               slot_reader=optional_str(slot_reader), held_fit=held_fit, backend=chosen_backend,
                               teacher=optional_str(teacher))
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    typer.echo(json.dumps(run_distill(run_dir or RUNS / env_id / "distill", config), indent=2))


@app.command("bc")
def bc(
        env_id: str = typer.Argument(..., help="ManiSkill2 env id, e.g. Excavate-v0"),
        demo: Path = typer.Argument(..., help="demo trajectory .h5 in ManiSkill2's format (its .json next to it), "
                                    "in the task's control mode (see docs/soft_body.md)"),
        run_dir: Optional[Path] = typer.Option(None, help="run directory (default: runs/ENV_ID/bc); the converted "
                                               "demo is cached in RUN_DIR/demos"),
        updates: int = typer.Option(BCConfig.updates, min=1, help="stage-1 gradient updates (stage 2: x{})".format(
            BCConfig.stage2_updates_factor)),
        batch_size: int = typer.Option(BCConfig.batch_size, min=1, help="stage-1 minibatch size (stage 2: x{})".format(
            BCConfig.stage2_batch_factor)),
        eval_every: int = typer.Option(BCConfig.eval_every, min=1, help="updates between evaluations and checkpoints"),
        eval_episodes: int = typer.Option(BCConfig.eval_episodes, min=0, help="episodes per evaluation on the fixed "
                                          "selection seeds; 0: select checkpoints by MSE on {:.0%} held-out "
                                          "trajectories".format(BCConfig.validation_fraction)),
        workers: Optional[int] = typer.Option(None, min=1, help="processes converting the demo and evaluating "
                                              "(default: one per CPU core)"),
        device: Optional[str] = typer.Option(None, help="torch device for training (default: cuda if available)"),
        resume: bool = typer.Option(False, help="continue the run in --run-dir from its newest checkpoint"),
        force: bool = typer.Option(False, help="restart the run in --run-dir, discarding its checkpoints"),
        seed: int = typer.Option(BCConfig.seed, help="random seed (initialisation, minibatches, validation split)"),
        max_episode_steps: Optional[int] = typer.Option(BCConfig.max_episode_steps, min=1, help="cut evaluation "
                                                        "episodes shorter than the task's time limit (quick trials)"),
        backend: str = BACKEND, address: Optional[str] = ADDRESS, worker_timeout: float = WORKER_TIMEOUT,
        worker_restarts: int = WORKER_RESTARTS
) -> None:
    """Behaviour cloning from ManiSkill2 demos in two stages (the soft-body track; rigid tasks work too)."""
    try:
        spec = get_task(env_id)
    except KeyError as error:
        raise typer.BadParameter(error.args[0], param_hint="ENV_ID") from None
    run_dir = run_dir or RUNS / env_id / "bc"
    chosen_backend = worker_backend(backend, address, worker_timeout, worker_restarts)
    try:
        demo_file = read_demo(demo, spec)
        check_simulator(spec, demo_file, run_dir / "demos", eval_episodes)
        config = BCConfig(env_id, str(demo.resolve()), updates=updates, batch_size=batch_size, eval_every=eval_every,
                          eval_episodes=eval_episodes, seed=seed, max_episode_steps=max_episode_steps)
        run = BCRun(run_dir, config, demo_file, resume=resume, force=force)
        result = run.run(workers or os.cpu_count() or 1, device or ("cuda" if torch.cuda.is_available() else "cpu"),
                         chosen_backend)
    except SimulatorUnavailable as error:
        raise typer.BadParameter(str(error), param_hint="ENV_ID") from None
    except DemoError as error:
        raise typer.BadParameter(str(error), param_hint="DEMO") from None
    except RunDirectoryError as error:
        raise typer.BadParameter(str(error), param_hint="--run-dir") from None
    typer.echo(json.dumps(result, indent=2))


@app.command()
def evaluate(env_id: str = ENV_ID,
             checkpoint: Path = typer.Argument(..., help="checkpoint to evaluate (distillation, PPO or a learned teacher)"),
             episodes: int = typer.Option(100, help="number of episodes"),
             first_seed: int = typer.Option(SELECTION_START, help="seeds first_seed .. first_seed+episodes-1, all "
                                            "selection or all report seeds (training/common/seeds.py)"),
             slot_reader: Optional[Path] = SLOT_READER, held_fit: bool = HELD_FIT,
             workers: Optional[int] = WORKERS, backend: str = BACKEND, address: Optional[str] = ADDRESS,
             worker_timeout: float = WORKER_TIMEOUT, worker_restarts: int = WORKER_RESTARTS) -> None:
    """Success rate of a checkpoint's deterministic policy on given seeds (torch, our own env loop); a learned
    teacher's on state observations."""
    from training.common.evaluation import evaluate as run_evaluate, torch_actor
    from training.common.vec_env import EnvWorkers

    from training.common.seeds import SeedRangeError, check, purpose_of

    model = checked_model(checkpoint)  # before the env workers start
    chosen_backend = worker_backend(backend, address, worker_timeout, worker_restarts)
    purpose = purpose_of(first_seed)
    try:
        check(purpose, first_seed, episodes)
    except SeedRangeError as error:
        raise typer.BadParameter(str(error), param_hint="--first-seed") from None
    if purpose == "training":
        raise typer.BadParameter("{} is a training seed: evaluate on selection seeds (from {}) or report seeds (from "
                                 "{})".format(first_seed, SELECTION_START, REPORT_START), param_hint="--first-seed")
    # Reported success rates come from the official renderer, not the fast training path; a learned teacher's
    # (a checkpoint without a PointNet) from state observations.
    with EnvWorkers(env_id, workers or os.cpu_count() or 1, first_seed=first_seed, purpose=purpose,
                    fast_render=False, slot_reader=optional_str(slot_reader), held_fit=held_fit,
                    backend=chosen_backend, obs_mode=None if model.pointnet is not None else "state") as envs:
        metrics = run_evaluate(torch_actor(model), envs, episodes)
    typer.echo(json.dumps({"env_id": env_id, "checkpoint": str(checkpoint), "first_seed": first_seed, **metrics}))


@app.command()
def export(env_id: str = ENV_ID,
           checkpoint: Path = typer.Argument(..., help="checkpoint to export, or a finished run's directory (its "
                                             "result.json names the run's choice), or an exported policy (.onnx) "
                                             "to convert, e.g. weights/ENV_ID.onnx to int8"),
           weights_dir: Path = typer.Option(Path("weights"), help="where the ONNX file and manifest go"),
           command: str = typer.Option("", help="training command recorded as provenance"),
           slot_reader: Optional[Path] = typer.Option(None, help="the slot reader a looking policy was trained with "
                                                      "(copied into --weights-dir; a conversion of the policy in "
                                                      "--weights-dir keeps its own, and its held-object fit)"),
           held_fit: bool = HELD_FIT,
           precision: str = typer.Option(PRECISIONS[0], help="fp32, or int8 (the PointNet's widest layer: "
                                         "faster, different actions; ship it only after its report-seed check)"),
           points: Optional[int] = typer.Option(None, min=2, help="points per observation, goal points included "
                                                "(default: the task's; a conversion keeps its source's): fewer, a "
                                                "cheaper network call and different actions; ship it only after its "
                                                "report-seed check")
           ) -> None:
    """Export to ONNX (opset 17), check parity with torch on real observations, update the manifest."""
    from training.export.export import chosen_checkpoint, export_checkpoint

    try:
        source = chosen_checkpoint(checkpoint)
        if source.suffix == ".onnx":
            checked_onnx_policy(source)
        else:
            checked_model(source)  # before the simulator starts
        summary = export_checkpoint(checkpoint, env_id, weights_dir, command or "unknown", slot_reader, held_fit,
                                    precision, points)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    typer.echo(json.dumps(summary, indent=2))


@app.command("compare-evaluations")
def compare_evaluations(first: Path = typer.Argument(..., help="an evaluate.sh output directory (e.g. eval_out/ENV_ID)"),
                        second: Path = typer.Argument(..., help="another one, of the same seeds")) -> None:
    """Two official-evaluator runs of the same seeds, episode by episode: rates, the episodes only one solved, and
    McNemar's exact test (e.g. an int8 conversion against its fp32 policy on report seeds)."""
    from training.analysis.compare import compare
    from training.export.report import ReportError

    try:
        typer.echo(json.dumps(compare(first, second), indent=2))
    except (ReportError, ValueError, FileNotFoundError) as error:
        raise typer.BadParameter(str(error)) from None


@app.command("record-report")
def record_report(env_id: str = ENV_ID,
                  eval_dir: Optional[Path] = typer.Option(None, help="what scripts/evaluate.sh wrote (default: "
                                                          "eval_out/ENV_ID)"),
                  weights_dir: Path = typer.Option(Path("weights"), help="the manifest to record in"),
                  runtime_change: Optional[str] = typer.Option(
                      None, help="what changed in the agent's runtime since this policy's report figure (no weight "
                      "changed): the new figure replaces it, the old one is kept in earlier_reports")) -> None:
    """Record the shipped policy's held-out figure: its official-evaluator score on report seeds
    (`bash scripts/evaluate.sh ENV_ID 100`), once per policy, in the manifest's provenance."""
    from training.export.report import ReportError, record_report as record

    try:
        report = record(weights_dir, env_id, eval_dir or Path("eval_out") / env_id, runtime_change)
    except ReportError as error:
        raise typer.BadParameter(str(error)) from None
    typer.echo(json.dumps({"env_id": env_id, "report": report}, indent=2))


@app.command("train-slot-reader")
def train_slot_reader(env_id: str = ENV_ID,
                      out: Optional[Path] = typer.Option(None, help="the ONNX file to write (default: runs/ENV_ID/"
                                                         "slot_reader.onnx; the regressor goes beside it, .pt)"),
                      episodes: int = typer.Option(reader_settings.EPISODES, min=2,
                                                   help="episodes, one view of the slot each"),
                      updates: int = typer.Option(reader_settings.UPDATES, min=1,
                                                  help="Adam updates of {} views".format(reader_settings.BATCH_SIZE)),
                      first_seed: int = typer.Option(0, help="seed of the first episode"),
                      look_step: int = typer.Option(reader_settings.LOOK_STEP, min=1, help=LOOK_STEP_HELP)) -> None:
    """Train a looking policy's slot reader (an insertion task's slot placed from the hand camera's view at
    the expert's look pose) and export it to ONNX; prints its held-out errors (the last quarter of the
    episodes). A re-run with the regressor saved only exports."""
    from training.slot_reader.train import train_slot_reader as run_training

    try:
        report = run_training(env_id, out or RUNS / env_id / "slot_reader.onnx", episodes, updates, look_step,
                              first_seed, batch_size=reader_settings.BATCH_SIZE)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    typer.echo(json.dumps(report, indent=2))


@app.command("export-slot-reader")
def export_slot_reader(estimator: Path = typer.Argument(..., help="a slot reader saved by benchmarks/line_up_perception.py "
                                                         "--close-look 0.1 --save DIR (DIR/uniform.pt)"),
                       out: Path = typer.Argument(..., help="the ONNX file to write, e.g. runs/ENV_ID/slot_reader.onnx"),
                       look_step: int = typer.Option(reader_settings.LOOK_STEP, min=1, help=LOOK_STEP_HELP)) -> None:
    """Export a slot reader to ONNX for looking policies (--slot-reader of distill, train, evaluate, export)."""
    from training.slot_reader.train import export_slot_reader as run_export

    try:
        entry = run_export(estimator, out, look_step)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    typer.echo(json.dumps({"onnx": str(entry.path), "sha256": entry.sha256, "spec": entry.spec._asdict(),
                           "look_step": entry.look_step}, indent=2))


@app.command()
def plot(run_dir: Path = typer.Argument(..., help="a PPO or BC run directory (holding metrics.csv), or a task's "
                                         "directory runs/ENV_ID (distill/ then ppo/)")) -> None:
    """(Re)draw RUN_DIR/learning_curve.png: success vs env steps (or BC updates), stage boundaries marked."""
    from training.analysis.plots import plot_learning_curve, plot_recipe

    typer.echo(str(plot_learning_curve(run_dir) if (run_dir / "metrics.csv").exists() else plot_recipe(run_dir)))


@app.command()
def summary(run_dir: Path = typer.Argument(..., help="a two-stage run directory (holding metrics.csv)")) -> None:
    """A two-stage run as a markdown table: every checkpoint's selection success, env steps and hours, each stage's
    best and the run's choice."""
    from training.analysis.summary import summary_table

    try:
        typer.echo(summary_table(run_dir))
    except FileNotFoundError as error:
        raise typer.BadParameter(str(error), param_hint="RUN_DIR") from None


@app.command("film-strip")
def film_strip(env_id: str = ENV_ID,
               out: Optional[Path] = typer.Option(None, help="PNG to write (default: docs/results/ENV_ID_episode.png)"),
               first_seed: int = typer.Option(REPORT_START, help="try seeds from here until an episode succeeds"),
               attempts: int = typer.Option(5, help="seeds to try"),
               frames: int = typer.Option(6, help="evenly spaced frames in the strip")) -> None:
    """Image strip of one successful held-out episode of the shipped policy (official renderer)."""
    from training.analysis.film_strip import save_strip, successful_episode

    episode = successful_episode(env_id, first_seed, attempts)
    path = save_strip(episode["frames"], out or Path("docs/results/{}_episode.png".format(env_id)), frames)
    typer.echo(json.dumps({"env_id": env_id, "seed": episode["seed"], "steps": len(episode["frames"]) - 1,
                           "png": str(path)}))


@app.command()
def expert(env_id: str = ENV_ID,
           episodes: int = typer.Option(100, help="number of episodes"),
           first_seed: int = typer.Option(0, help="first episode seed"),
           record_dir: Optional[Path] = typer.Option(None, help="also record demos (ManiSkill2 trajectory.h5/.json)")) -> None:
    """Evaluate the privileged expert (state observations), optionally recording demonstrations."""
    from training.experts import evaluate_expert, record_demos

    checked_expert(env_id)
    if record_dir is not None:
        typer.echo(json.dumps(record_demos(env_id, record_dir, episodes, first_seed), default=str))
    else:
        typer.echo(json.dumps(evaluate_expert(env_id, episodes, first_seed)))


@app.command()
def diagnose(env_id: str = ENV_ID,
             student: Path = typer.Argument(..., help="student checkpoint (.pt) or exported weights/ENV.onnx"),
             episodes: int = typer.Option(4, help="number of episodes"),
             first_seed: int = typer.Option(SELECTION_START, help="first episode seed (default: the selection seeds)"),
             slot_reader: Optional[Path] = SLOT_READER, held_fit: bool = HELD_FIT,
             teacher: Optional[Path] = TEACHER) -> None:
    """Where a student fails: per episode, its grasp, closest approach and distance from the expert's labels."""
    from training.analysis.diagnose import diagnose as run

    checked_labeller(env_id, teacher)
    for record in run(env_id, student, list(range(first_seed, first_seed + episodes)), slot_reader=slot_reader,
                      held_fit=held_fit, teacher=teacher):
        typer.echo(json.dumps(record))


@app.command("point-shares")
def point_shares(env_id: str = ENV_ID,
                 episodes: int = typer.Option(4, help="number of expert episodes"),
                 first_seed: int = typer.Option(0, help="first episode seed"),
                 every: int = typer.Option(4, help="sample every this many steps"),
                 lean: Optional[float] = typer.Option(None, help="insertion tasks: the expert's grasp lean "
                                                      "towards the held object's head, rad (default: its own)")) -> None:
    """What a student sees of each object: shares of the camera points per actor, reaching, carrying and (insertion tasks) lining up, where it also counts the points at the slot entrance."""
    from training.analysis.point_shares import point_shares as run

    checked_expert(env_id)
    typer.echo(json.dumps(run(env_id, list(range(first_seed, first_seed + episodes)), every=every, lean=lean),
                          indent=2))


@app.command()
def info() -> None:
    """Show which Vulkan setup ManiSkill2 uses on this machine and the key package versions."""
    import mani_skill2
    import numpy
    import sapien

    software = activate()
    typer.echo("Vulkan: " + ("software fallback (Mesa lavapipe + compatibility layer)" if software else "system driver"))
    typer.echo(json.dumps({key: os.environ.get(key) for key in LOADER_VARIABLES}, indent=2))
    typer.echo("mani_skill2 {}, sapien {}, numpy {}".format(mani_skill2.__version__, sapien.__version__, numpy.__version__))


if __name__ == "__main__":
    app()
