"""Learned teachers: PPO on the simulator's privileged state, for rigid-body tasks without a scripted expert.

A teacher run is a stage-1 PPO run (`training.algorithms.two_stage.TwoStageRun`, the same PPO, checkpoints,
selection evaluation and resume) whose env workers return ManiSkill2's flat state observation (`obs_mode="state"`)
and whose policy is the actor-critic without a PointNet (MLP heads on the state). Its settings default to
ManiSkill2's state-PPO example (stable-baselines3 on LiftCube: 3,200 samples per iteration, batch 400, 15 epochs,
gamma 0.85, target KL 0.05, 100-step episodes) and, like it, its training episodes run on after success
(`RunConfig.success_ends_episode`): ManiSkill2's dense rewards pay a success that ends the episode less than staying
just short of it, which a teacher otherwise learns to do. The run's `result.json` (rewritten after every
evaluation) names the teacher (`--teacher runs/ENV_ID/teacher` of `distill` and `diagnose`;
`training.experts.teacher` labels with it).
"""
from dataclasses import replace
from pathlib import Path
from typing import Dict, List, Optional, Union

from agent.registry import get_task
from training.algorithms.ppo import PPOConfig
from training.algorithms.two_stage import RunConfig, TwoStageRun
from training.common.threads import torch_threads
from training.common.vec_env import Backend
from training.experts.teacher import TeacherError, loaded_teacher

PPO_SETTINGS = PPOConfig(gamma=0.85, epochs=15, batch_size=400, samples_per_iteration=3200, target_kl=0.05,
                         critic_warmup_epochs=0)
ITERATIONS = 100  # ~320,000 env steps
EVAL_EPISODES = 16  # selection episodes per evaluation
EVAL_EVERY = 4  # evaluate (and checkpoint) after every 4th iteration: 16 failing episodes cost half a collection
MAX_EPISODE_STEPS = 100  # training and selection episodes
NORMALIZE_STATE = False  # the policy reads the state as it is (True: standardised by running statistics)
REWARD = "dense"  # the task's own dense reward ("staged": `training.common.rewards`, where a task defines one)


def check_teacher_task(env_id: str) -> None:
    """`TeacherError` naming the way to train `env_id` where a learned teacher cannot (a soft-body task), or
    `KeyError` for an unknown env id; nothing otherwise."""
    spec = get_task(env_id)
    if spec.family != "rigid":
        raise TeacherError("{} is a soft-body task: learned teachers (state PPO) are for rigid-body tasks; soft-body "
                           "tasks train with behaviour cloning from demos (`ms2agent bc {} DEMO.h5`, "
                           "docs/soft_body.md)".format(env_id, env_id))


def teacher_config(env_id: str, ppo: PPOConfig = PPO_SETTINGS, iterations: int = ITERATIONS,
                   eval_episodes: int = EVAL_EPISODES, eval_every: int = EVAL_EVERY,
                   max_episode_steps: Optional[int] = MAX_EPISODE_STEPS,
                   n_workers: int = RunConfig.n_workers, seed: int = RunConfig.seed,
                   backend: Optional[Backend] = None, normalize_state: bool = NORMALIZE_STATE,
                   init_from: Optional[str] = None, init_log_std: Union[None, float, List[float]] = None,
                   reward: str = REWARD) -> RunConfig:
    """The run config of a teacher for `env_id` (checked with `check_teacher_task`). `init_from`: a teacher
    checkpoint of `env_id` to start from (checked with `teacher_checkpoint`: a point-cloud policy or another task's
    teacher is refused), e.g. to continue a teacher with other settings in a new run; `init_log_std` then resets its
    exploration noise: one log-std for every action dimension, or a list with one per dimension (checked against the
    checkpoint's action). `reward`: the task's dense reward, or "staged" where `training.common.rewards` defines one
    (`RunConfig` refuses another)."""
    check_teacher_task(env_id)
    if not ppo.train_pointnet:
        raise TeacherError("a teacher has no PointNet to freeze")
    if init_from is not None:
        _, checkpoint = loaded_teacher(init_from, env_id)
        dimensions = len(checkpoint["model_spec"]["action_low"])
        if isinstance(init_log_std, list) and len(init_log_std) != dimensions:
            raise TeacherError("--init-log-std gives {} values; {}'s action has {} dimensions: give one value, or one "
                               "per dimension".format(len(init_log_std), env_id, dimensions))
    elif init_log_std is not None:
        raise TeacherError("--init-log-std resets the noise of the policy --init-from names: pass both")
    return RunConfig(env_id, replace(ppo), stage1_iterations=iterations, stage2_iterations=0, n_workers=n_workers,
                     eval_episodes=eval_episodes, eval_every=eval_every, seed=seed, max_episode_steps=max_episode_steps,
                     backend=backend or Backend(), obs_mode="state", success_ends_episode=False,
                     normalize_state=normalize_state, init_from=init_from, init_log_std=init_log_std, reward=reward)


def train_teacher(run_dir: Path, config: RunConfig, resume: bool = False, force: bool = False) -> Dict:
    """Train (or, with `resume`, continue) the teacher run in `run_dir`, learning on one torch thread; returns its
    result (the checkpoint with the best selection success)."""
    if config.obs_mode != "state":
        raise TeacherError("a teacher trains on state observations (obs_mode 'state'), not {!r}".format(
            config.obs_mode))
    with torch_threads(1):  # small matrices: more threads only wait on each other and on the env workers
        return TwoStageRun(run_dir, config, resume=resume, force=force).run([1])
