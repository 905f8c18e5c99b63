"""Point-cloud environments in worker processes, observations preprocessed where they are made.

Each worker owns one ManiSkill2 env (dense reward, the registry's control mode), runs the agent's
`preprocess` (so training sees exactly what the shipped agent sees), resets itself when an
episode ends (seeds `first_seed + worker + k * n_workers`), and can also return a privileged
expert's action for every observation (DAgger labels). On software Vulkan each worker renders
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
"""
import multiprocessing as mp
import os
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional

import numpy as np

from agent.insertion import check_held_fit
from agent.preprocessing import preprocess, state_size
from agent.registry import get_task
from training.common import seeds


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

    @property
    def inputs(self) -> np.ndarray:
        """What the policy reads besides the state: the features with an encoder, else the points."""
        return self.points if self.features is None else self.features

    @property
    def final_inputs(self) -> np.ndarray:
        return self.final_points if self.features is None else self.final_features


def _worker(conn, env_id: str, worker: int, n_workers: int, first_seed: int, purpose: str, with_expert: bool,
            slot_reader: Optional[str], held_fit: bool, env_kwargs: Dict) -> None:
    os.environ.setdefault("LP_NUM_THREADS", "1")
    from training.common.envs import make_env

    spec = get_task(env_id)
    env_kwargs = {"fast_render": None, **env_kwargs}  # on software Vulkan unless the caller overrides
    env = make_env(env_id, obs_mode=spec.obs_mode, control_mode=spec.control_mode,
                   reward_mode="dense", **env_kwargs)
    rng = np.random.default_rng(first_seed + worker)
    memory = insertion = None
    if slot_reader is not None:
        from agent.insertion.memory import insertion_memory
        from agent.insertion.slot_reader import reader_entry

        spec, insertion = insertion_memory(reader_entry(Path(slot_reader), env_id), spec, env.observation_space,
                                               lambda: rng, held_fit)
        memory = insertion.memory
    expert = None
    if with_expert:
        from training.experts import make_expert
        from training.experts.assembly import slot_pose

        expert = make_expert(env_id)
        if memory is not None:
            expert.look_steps = memory.look_step
    episode = 0
    encoder = None  # an onnxruntime session: points (1, N, 6) -> features (1, F)
    conn.send((state_size(env.observation_space, spec), env.action_space.low, env.action_space.high,
               spec.total_points))

    def reset():
        nonlocal episode
        seed = first_seed + worker + episode * n_workers
        seeds.check(purpose, seed)
        obs, _ = env.reset(seed=seed)
        episode += 1
        if expert is not None:
            expert.reset(env)
        if insertion is not None:
            insertion.reset()
        return obs

    def observe(obs):
        if insertion is not None:
            obs = insertion.observe(obs)
            if expert is not None and memory.axis.any():  # the slot was read: the expert acts on the reading
                expert.reading = slot_pose(memory.position, memory.axis)
        net = preprocess(obs, spec, rng)
        label = expert.act(env) if expert is not None else None
        if encoder is not None:
            return encoder.run(None, {"points": net.points[None]})[0][0], net.state, label
        return net.points, net.state, label

    try:
        while True:
            command, action = conn.recv()
            if command == "close":
                break
            if command == "encoder":
                from agent.onnx_model import make_session

                encoder = None if action is None else make_session(action)
                conn.send(None)
                continue
            if command == "reset":
                if action == "restart_seeds":
                    episode = 0
                points, state, label = observe(reset())
                conn.send((points, state, 0.0, False, False, False, None, None, label))
                continue
            obs, reward, terminated, truncated, info = env.step(action)
            if memory is not None and memory.step <= memory.look_step:  # a look action: free (see module docstring)
                reward = 0.0
            final_points = final_state = None
            if terminated or truncated:
                final_points, final_state, _ = observe(obs)
                obs = reset()
            points, state, label = observe(obs)
            conn.send((points, state, float(reward), bool(terminated), bool(truncated),
                       bool(info.get("success", False)), final_points, final_state, label))
    finally:
        env.close()
        conn.close()


class EnvWorkers:
    """`n_workers` envs of one task stepping in parallel processes; call `reset()` first."""

    def __init__(self, env_id: str, n_workers: int, first_seed: int = 0, with_expert: bool = False,
                 slot_reader: Optional[str] = None, held_fit: bool = False, purpose: str = "training",
                 **env_kwargs) -> None:
        """`purpose`: the seed range every episode must lie in (`training.common.seeds`; a clear error before any
        worker starts if `first_seed` does not)."""
        check_held_fit(slot_reader, held_fit)
        seeds.check(purpose, first_seed, n_workers)
        self.first_seed, self.purpose = first_seed, purpose
        self.encoded = False
        context = mp.get_context("spawn")
        self.n_workers = n_workers
        self.connections = []
        self.processes = []
        for worker in range(n_workers):
            parent, child = context.Pipe()
            process = context.Process(target=_worker, daemon=True,
                                      args=(child, env_id, worker, n_workers, first_seed, purpose, with_expert, slot_reader,
                                            held_fit, env_kwargs))
            process.start()
            child.close()
            self.connections.append(parent)
            self.processes.append(process)
        self.state_size, self.action_low, self.action_high, self.n_points = self._receive_all()[0]

    def _receive_all(self) -> list:
        try:
            return [connection.recv() for connection in self.connections]
        except EOFError:
            self.close()
            raise RuntimeError("An environment worker died; see its error above.") from None

    def set_encoder(self, encoder: Optional[bytes]) -> None:
        """From now on return `encoder(points)` (an ONNX graph: points (B, N, 6) -> features (B, F)) in
        `Step.features` instead of the points; None: the points again."""
        for connection in self.connections:
            connection.send(("encoder", encoder))
        self._receive_all()
        self.encoded = encoder is not None

    def _gather(self) -> Step:
        inputs, state, reward, terminated, truncated, success, final_inputs, final_state, label = zip(*self._receive_all())
        inputs, state = np.stack(inputs), np.stack(state)
        final_inputs = _stack_or_zeros(final_inputs, inputs[0])
        points, final_points = (None, None) if self.encoded else (inputs, final_inputs)
        features, final_features = (inputs, final_inputs) if self.encoded else (None, None)
        return Step(points, state, np.asarray(reward, np.float32), np.asarray(terminated), np.asarray(truncated),
                    np.asarray(success), final_points, _stack_or_zeros(final_state, state[0]),
                    None if label[0] is None else np.stack(label).astype(np.float32), features, final_features)

    def reset(self, restart_seeds: bool = False) -> Step:
        """Start new episodes (with `restart_seeds`, from each worker's first seed again)."""
        for connection in self.connections:
            connection.send(("reset", "restart_seeds" if restart_seeds else None))
        return self._gather()

    def step(self, actions: np.ndarray) -> Step:
        for connection, action in zip(self.connections, actions):
            connection.send(("step", action))
        return self._gather()

    def close(self) -> None:
        for connection in self.connections:
            try:
                connection.send(("close", None))
            except (BrokenPipeError, OSError):
                pass
        for process in self.processes:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()

    def __enter__(self) -> "EnvWorkers":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _stack_or_zeros(arrays: List[Optional[np.ndarray]], like: np.ndarray) -> np.ndarray:
    return np.stack([np.zeros_like(like) if array is None else array for array in arrays])
