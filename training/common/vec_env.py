"""Point-cloud environments in workers, observations preprocessed where they are made.

Each worker (`EnvWorker`) owns one ManiSkill2 env (dense reward, the registry's control mode), runs the agent's
`preprocess` (so training sees exactly what the shipped agent sees), resets itself when an
episode ends (seeds `first_seed + worker + k * n_workers`), and can also return a privileged
expert's action for every observation (DAgger labels). An episode's preprocessing randomness (the point
sampling) comes from a generator seeded with the episode's seed, so an episode played again with the same
actions gives the same observations. On software Vulkan each worker renders
with one lavapipe thread (`LP_NUM_THREADS=1`) and, unless
`fast_render=False` is passed, with `training.common.fast_render`'s light meshes and one-pass shader.
With `slot_reader` (an exported slot reader, `training.slot_reader.train`) the policy looks: each worker
runs the insertion add-on as the agent does (`agent.insertion.memory.insertion_memory`: it remembers the slot
read at the reader's look step), and the expert starts with a look phase of that many steps and then acts on the
reading; with `held_fit` too, each worker also fits the held object on every observation. The look's actions
get no reward: the tasks' dense rewards punish a gripper that does not point down, which would teach
PPO to skip the look.

With an encoder (`set_encoder`: a frozen PointNet as ONNX, `training.export.onnx_actor.encoder_onnx`) each worker
also encodes its clouds and returns the pooled features instead of the points, so a learner whose
PointNet is fixed never sees a cloud: the encoder runs once per observation, in the worker that made it.
Every episode seed is checked against the workers' `purpose` (`training.common.seeds`).

With `obs_mode="state"` (a learned teacher's training, `training.algorithms.teacher`) each worker makes its env with
ManiSkill2's flat privileged state instead: `Step.state` is that state and the points are (W, 0) arrays. With
`teacher` (a learned teacher's checkpoint) the expert labels come from that teacher instead of the task's scripted
expert (`training.experts.teacher`).

`EnvWorkers` drives `n_workers` of them in parallel on a backend (`Backend`, `training.common.backends`): local
processes (the default) or Ray actors spread over a cluster's nodes; the learner stays in the calling process.
Both backends run the same `EnvWorker`, so the seeds and observations do not depend on the backend.

Faults: every answer of a worker is awaited for at most `Backend.timeout` seconds. A worker that dies (its process
ends, its connection breaks, its Ray actor fails) or does not answer in time is reported on stderr with the env id,
its index, the episode seed it was playing, its pid and node; it is killed and replaced by a fresh worker that
starts that episode again from its seed (`Step.restarted` marks the step at which that happened); the other
workers go on untouched. After `Backend.max_restarts` failures in one episode the call raises `EnvWorkerError`.
An exception raised by the worker's own code is not retried (playing the same episode again would raise it again):
it raises `EnvWorkerError` with the worker's traceback at once.
"""
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from agent.insertion import check_held_fit
from agent.preprocessing import preprocess, state_size
from agent.registry import get_task
from training.common import seeds

BACKENDS = ("local", "ray")
OBS_MODES = (None, "state")  # None: the task's point clouds, preprocessed as the agent does; "state": privileged
NO_POINTS = np.zeros((0,), np.float32)  # what a state observation holds besides the state


@dataclass(frozen=True)
class Backend:
    """Where the env workers run and how their faults are handled; not part of a run's identity."""

    kind: str = "local"  # "local": one process per worker on this machine; "ray": one Ray actor per worker
    address: Optional[str] = None  # ray: the cluster to join (None: RAY_ADDRESS, else a Ray instance on this machine)
    timeout: float = 300.0  # seconds a worker may take to answer one call (starting its env, a reset, a step)
    max_restarts: int = 3  # replacements of a worker within one episode before the call fails

    def __post_init__(self) -> None:
        if self.kind not in BACKENDS:
            raise ValueError("unknown worker backend {!r}; one of {}".format(self.kind, ", ".join(BACKENDS)))
        if self.address is not None and self.kind != "ray":
            raise ValueError("an address applies to the ray backend only")
        if not self.timeout > 0:
            raise ValueError("the worker timeout must be > 0 seconds")
        if self.max_restarts < 0:
            raise ValueError("max_restarts must be >= 0")


def backend_from(value: Any) -> Backend:
    """A `Backend` from itself, its dict (a stored config) or None (the default)."""
    if value is None:
        return Backend()
    return value if isinstance(value, Backend) else Backend(**value)


class EnvWorkerError(RuntimeError):
    """A worker failed beyond recovery: its code raised, or it died or hung more often than allowed."""


class Step(NamedTuple):
    """A batch over workers (leading axis = worker)."""

    points: Optional[np.ndarray]  # (W, N, 6) float32, observation after any reset (None with an encoder)
    state: np.ndarray  # (W, S) float32
    reward: np.ndarray  # (W,) float32 (0 after reset())
    terminated: np.ndarray  # (W,) bool: success ended the episode
    truncated: np.ndarray  # (W,) bool: the time limit ended it
    success: np.ndarray  # (W,) bool: info["success"] at this step
    final_points: np.ndarray  # (W, N, 6): last observation of an ended episode (else zeros)
    final_state: np.ndarray  # (W, S)
    expert_action: Optional[np.ndarray]  # (W, A) expert label of `points`/`state`, if requested
    features: Optional[np.ndarray] = None  # (W, F) the encoder's pooled features of `points`, with an encoder
    final_features: Optional[np.ndarray] = None  # (W, F) of `final_points`
    seed: Optional[np.ndarray] = None  # (W,) int64: the episode seed of each observation
    # (W,) bool: the worker was replaced during this step (it died or hung): the action sent to it has no outcome
    # (reward 0, neither terminated nor truncated), the episode it was playing is abandoned, and the observation is
    # the first of that episode again, from its seed
    restarted: Optional[np.ndarray] = None

    @property
    def inputs(self) -> np.ndarray:
        """What the policy reads besides the state: the features with an encoder, else the points."""
        return self.points if self.features is None else self.features

    @property
    def final_inputs(self) -> np.ndarray:
        return self.final_points if self.features is None else self.final_features


class Reply(NamedTuple):
    """One worker's answer to a reset or a step (a row of `Step`)."""

    inputs: np.ndarray  # points, or the encoder's features
    state: np.ndarray
    reward: float
    terminated: bool
    truncated: bool
    success: bool
    final_inputs: Optional[np.ndarray]
    final_state: Optional[np.ndarray]
    label: Optional[np.ndarray]
    episode: int  # index k of the episode the observation belongs to (seed first_seed + worker + k * n_workers)
    restarted: bool = False


class Spaces(NamedTuple):
    """What a started worker tells about its env."""

    state_size: int
    action_low: np.ndarray
    action_high: np.ndarray
    n_points: int


class EnvWorker:
    """One env and everything done next to it: the logic of a worker, whichever backend runs it.

    Constructing it only stores its settings (it is sent to a process or a Ray actor as it is); `start()` makes
    the env. Then `reset(episode)` and `step(action)` return `Reply`s; `set_encoder` switches clouds to features.
    """

    def __init__(self, env_id: str, worker: int, n_workers: int, first_seed: int, purpose: str, with_expert: bool,
                 slot_reader: Optional[str], held_fit: bool, env_kwargs: Dict, obs_mode: Optional[str] = None,
                 teacher: Optional[str] = None) -> None:
        self.env_id, self.worker, self.n_workers, self.first_seed = env_id, worker, n_workers, first_seed
        self.purpose, self.with_expert, self.slot_reader, self.held_fit = purpose, with_expert, slot_reader, held_fit
        self.env_kwargs, self.obs_mode, self.teacher = env_kwargs, obs_mode, teacher
        self.env = None

    def seed_of(self, episode: int) -> int:
        return self.first_seed + self.worker + episode * self.n_workers

    def start(self) -> Spaces:
        os.environ.setdefault("LP_NUM_THREADS", "1")
        from training.common.envs import make_env

        spec = get_task(self.env_id)
        # fast point clouds on software Vulkan unless the caller overrides; state observations render nothing
        env_kwargs = {"fast_render": None if self.obs_mode is None else False, **self.env_kwargs}
        self.env = make_env(self.env_id, obs_mode=self.obs_mode or spec.obs_mode, control_mode=spec.control_mode,
                            reward_mode="dense", **env_kwargs)
        self.rng = np.random.default_rng(self.seed_of(0))
        self.memory = self.insertion = None
        if self.slot_reader is not None:
            from agent.insertion.memory import insertion_memory
            from agent.insertion.slot_reader import reader_entry

            spec, self.insertion = insertion_memory(reader_entry(Path(self.slot_reader), self.env_id), spec,
                                                        self.env.observation_space, lambda: self.rng, self.held_fit)
            self.memory = self.insertion.memory
        self.expert = None
        if self.with_expert:
            from training.experts import make_expert

            self.expert = make_expert(self.env_id, teacher=self.teacher)
            if self.memory is not None:
                self.expert.look_steps = self.memory.look_step
        self.spec = spec
        self.episode = -1  # the episode in progress (none yet)
        self.encoder = None  # an onnxruntime session: points (1, N, 6) -> features (1, F)
        if self.obs_mode == "state":
            return Spaces(self.env.observation_space.shape[0], self.env.action_space.low, self.env.action_space.high, 0)
        return Spaces(state_size(self.env.observation_space, spec), self.env.action_space.low,
                      self.env.action_space.high, spec.total_points)

    def set_encoder(self, encoder: Optional[bytes]) -> None:
        from agent.onnx_model import make_session

        self.encoder = None if encoder is None else make_session(encoder)

    def _reset(self, episode: int):
        seed = self.seed_of(episode)
        seeds.check(self.purpose, seed)
        self.episode = episode
        self.rng = np.random.default_rng(seed)
        obs, _ = self.env.reset(seed=seed)
        if self.expert is not None:
            self.expert.reset(self.env)
        if self.insertion is not None:
            self.insertion.reset()
        return obs

    def _observe(self, obs) -> Tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
        if self.insertion is not None:
            obs = self.insertion.observe(obs)
            if self.expert is not None and self.memory.axis.any():  # the slot was read: the expert acts on it
                from training.experts.assembly import slot_pose

                self.expert.reading = slot_pose(self.memory.position, self.memory.axis)
        label = self.expert.act(self.env) if self.expert is not None else None
        if self.obs_mode == "state":
            return NO_POINTS, obs.astype(np.float32), label
        net = preprocess(obs, self.spec, self.rng)
        if self.encoder is not None:
            return self.encoder.run(None, {"points": net.points[None]})[0][0], net.state, label
        return net.points, net.state, label

    def reset(self, episode: Optional[int] = None) -> Reply:
        """Start episode `episode` (None: the next one)."""
        inputs, state, label = self._observe(self._reset(self.episode + 1 if episode is None else episode))
        return Reply(inputs, state, 0.0, False, False, False, None, None, label, self.episode)

    def step(self, action: np.ndarray) -> Reply:
        """One env step; an episode that ends is followed by the next one's first observation."""
        obs, reward, terminated, truncated, info = self.env.step(action)
        if self.memory is not None and self.memory.step <= self.memory.look_step:  # a look action: free (see above)
            reward = 0.0
        final_inputs = final_state = None
        if terminated or truncated:
            final_inputs, final_state, _ = self._observe(obs)
            obs = self._reset(self.episode + 1)
        inputs, state, label = self._observe(obs)
        return Reply(inputs, state, float(reward), bool(terminated), bool(truncated), bool(info.get("success", False)),
                     final_inputs, final_state, label, self.episode)

    def close(self) -> None:
        if self.env is not None:
            self.env.close()
            self.env = None


class EnvWorkers:
    """`n_workers` envs of one task stepping in parallel on `backend`; call `reset()` first."""

    def __init__(self, env_id: str, n_workers: int, first_seed: int = 0, with_expert: bool = False,
                 slot_reader: Optional[str] = None, held_fit: bool = False, purpose: str = "training",
                 backend: Optional[Backend] = None, obs_mode: Optional[str] = None, teacher: Optional[str] = None,
                 **env_kwargs) -> None:
        """`purpose`: the seed range every episode must lie in (`training.common.seeds`; a clear error before any
        worker starts if `first_seed` does not). `backend`: where the workers run and their fault handling.
        `obs_mode`: one of `OBS_MODES`. `teacher`: a learned teacher's checkpoint labels instead of the scripted expert."""
        from training.common.backends import launcher

        check_held_fit(slot_reader, held_fit)
        if obs_mode not in OBS_MODES:
            raise ValueError("unknown observation mode {!r}; one of {}".format(obs_mode, OBS_MODES))
        if obs_mode is not None and slot_reader is not None:
            raise ValueError("a slot reader reads point clouds: it does not go with obs_mode={!r}".format(obs_mode))
        seeds.check(purpose, first_seed, n_workers)
        self.env_id, self.first_seed, self.purpose = env_id, first_seed, purpose
        self.backend = backend_from(backend)
        self.encoded = False
        self.n_workers = n_workers
        self._settings = (env_id, n_workers, first_seed, purpose, with_expert, slot_reader, held_fit, env_kwargs,
                          obs_mode, teacher)
        self._launch = launcher(self.backend)
        self._encoder: Optional[bytes] = None
        self._episodes: List[Optional[int]] = [None] * n_workers  # each worker's episode in progress
        self._failures: List[Tuple[Optional[int], int]] = [(None, 0)] * n_workers  # (episode, failures in it)
        self._pending: Dict[int, Reply] = {}  # a replacement's first observation, returned by the next step
        self._handles: List[Any] = []
        try:
            for w in range(n_workers):
                self._handles.append(self._launch(self._worker(w), self._handles))
            spaces = self._call_all("start", lambda w: ())
        except BaseException:
            self.close()
            raise
        self.state_size, self.action_low, self.action_high, self.n_points = spaces[0]
        if self.backend.kind == "ray":  # which node runs which worker
            print("[env workers] {} on Ray: {}".format(env_id, ", ".join(
                "worker {} on node {} (pid {})".format(w, where["node"], where["pid"])
                for w, where in enumerate(self.locations()))), file=sys.stderr, flush=True)

    def _worker(self, index: int) -> EnvWorker:
        env_id, n_workers, first_seed, purpose, with_expert, slot_reader, held_fit, env_kwargs, obs_mode, teacher = \
            self._settings
        return EnvWorker(env_id, index, n_workers, first_seed, purpose, with_expert, slot_reader, held_fit, env_kwargs,
                         obs_mode, teacher)

    def _seed(self, worker: int, episode: Optional[int]) -> str:
        return "none yet" if episode is None else str(self.first_seed + worker + episode * self.n_workers)

    def locations(self) -> List[Dict[str, Any]]:
        """Where each worker runs: its process id and node (the host name; on Ray, the node id)."""
        return [handle.location() for handle in self._handles]

    # -- calls with fault handling ------------------------------------------------------------------------------
    def _call_all(self, method: str, arguments, workers: Optional[Sequence[int]] = None) -> List[Any]:
        """Call `method(*arguments(w))` on every worker in `workers` (default: all) at once and return their answers;
        a worker lost on the way is replaced (`_replace`)."""
        from training.common.backends import WorkerLost, WorkerRaised

        workers = range(self.n_workers) if workers is None else workers
        deadline = time.monotonic() + self.backend.timeout
        for w in workers:
            self._handles[w].call(method, *arguments(w))
        answers = []
        for w in workers:
            try:
                answers.append(self._handles[w].result(deadline))
            except WorkerLost as lost:
                answers.append(self._replace(w, method, arguments(w), lost.cause))
            except WorkerRaised as raised:
                raise EnvWorkerError("env worker {} of {} (episode seed {}) raised an error:\n{}".format(
                    w, self.env_id, self._seed(w, self._episodes[w]), raised.traceback)) from None
        return answers

    def _call_one(self, worker: int, method: str, *arguments: Any) -> Any:
        """One call on one worker, without recovery (`WorkerLost` propagates)."""
        from training.common.backends import WorkerRaised

        self._handles[worker].call(method, *arguments)
        try:
            return self._handles[worker].result(time.monotonic() + self.backend.timeout)
        except WorkerRaised as raised:
            raise EnvWorkerError("env worker {} of {} raised an error:\n{}".format(
                worker, self.env_id, raised.traceback)) from None

    def _replace(self, w: int, method: str, arguments: tuple, cause: str) -> Any:
        """Replace lost worker `w` by a fresh one that starts the interrupted episode again, and answer `method`
        for it: `start` -> its spaces; `set_encoder` -> None (the replacement's first observation is kept for the
        next step); `reset` -> the requested episode's first observation; `step` -> the interrupted episode's first
        observation again, marked `restarted`."""
        from training.common.backends import WorkerLost

        episode = arguments[0] if method == "reset" else self._episodes[w]
        while True:
            failed_episode, count = self._failures[w]
            count = count + 1 if failed_episode == episode else 1
            self._failures[w] = (episode, count)
            where = self._handles[w].location()
            report = "env worker {} of {} (episode seed {}; pid {}, node {}) {}".format(
                w, self.env_id, self._seed(w, episode), where.get("pid"), where.get("node"), cause)
            self._handles[w].kill()
            if count > self.backend.max_restarts:
                raise EnvWorkerError("{}: giving up after {} replacement(s) in this episode".format(
                    report, self.backend.max_restarts))
            print("[env workers] {}: replacing it and starting the episode again (replacement {} of at most {})"
                  .format(report, count, self.backend.max_restarts), file=sys.stderr, flush=True)
            try:
                self._handles[w] = self._launch(self._worker(w), self._handles[:w] + self._handles[w + 1:])
                spaces = self._call_one(w, "start")
                if self._encoder is not None:
                    self._call_one(w, "set_encoder", self._encoder)
                if method == "start":
                    return spaces
                if episode is None:  # no episode in progress (set_encoder before the first reset)
                    return None
                reply = self._call_one(w, "reset", episode)._replace(restarted=method != "reset")
            except WorkerLost as lost:
                cause = lost.cause
                continue
            if method == "set_encoder":
                self._pending[w] = reply
                return None
            return reply

    # -- the interface ------------------------------------------------------------------------------------------
    def set_encoder(self, encoder: Optional[bytes]) -> None:
        """From now on return `encoder(points)` (an ONNX graph: points (B, N, 6) -> features (B, F)) in
        `Step.features` instead of the points; None: the points again."""
        self._encoder = encoder
        self._call_all("set_encoder", lambda w: (encoder,))
        self.encoded = encoder is not None

    def _gather(self, replies: Sequence[Reply]) -> Step:
        for w, reply in enumerate(replies):
            if reply.episode != self._failures[w][0]:
                self._failures[w] = (None, 0)  # an episode that went on: its failure count starts again
            self._episodes[w] = reply.episode
        inputs, state = np.stack([r.inputs for r in replies]), np.stack([r.state for r in replies])
        final_inputs = _stack_or_zeros([r.final_inputs for r in replies], inputs[0])
        points, final_points = (None, None) if self.encoded else (inputs, final_inputs)
        features, final_features = (inputs, final_inputs) if self.encoded else (None, None)
        labels = [r.label for r in replies]
        episode_seeds = np.array([self.first_seed + w + r.episode * self.n_workers for w, r in enumerate(replies)],
                                 np.int64)
        return Step(points, state, np.array([r.reward for r in replies], np.float32),
                    np.array([r.terminated for r in replies]), np.array([r.truncated for r in replies]),
                    np.array([r.success for r in replies]), final_points,
                    _stack_or_zeros([r.final_state for r in replies], state[0]),
                    None if labels[0] is None else np.stack(labels).astype(np.float32), features, final_features,
                    episode_seeds, np.array([r.restarted for r in replies]))

    def reset(self, restart_seeds: bool = False) -> Step:
        """Start new episodes (with `restart_seeds`, from each worker's first seed again)."""
        self._pending.clear()
        self._failures = [(None, 0)] * self.n_workers
        return self._gather(self._call_all("reset", lambda w: (0 if restart_seeds or self._episodes[w] is None
                                                               else self._episodes[w] + 1,)))

    def step(self, actions: np.ndarray) -> Step:
        """Step every worker with its action; a worker replaced since the last call skips its action and returns
        its first observation (`Step.restarted`)."""
        pending, self._pending = self._pending, {}
        stepped = [w for w in range(self.n_workers) if w not in pending]
        answers = dict(zip(stepped, self._call_all("step", lambda w: (actions[w],), stepped)))
        return self._gather([pending[w] if w in pending else answers[w] for w in range(self.n_workers)])

    def close(self) -> None:
        for handle in self._handles:
            handle.close()
        self._handles = []

    def __enter__(self) -> "EnvWorkers":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _stack_or_zeros(arrays: List[Optional[np.ndarray]], like: np.ndarray) -> np.ndarray:
    return np.stack([np.zeros_like(like) if array is None else array for array in arrays])
