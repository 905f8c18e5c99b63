"""ManiSkill2 demonstrations: validation, and conversion to the network's inputs.

A demo is what `RecordEpisode` writes (and `python -m mani_skill2.utils.download_demo` downloads):
`NAME.h5` with groups `traj_{episode_id}` holding `actions` (T, A), `success` (T,) and either
`env_states` (T+1, D; rigid-body envs: the state before every step and after the last one) or
`env_init_state` (D,; soft-body MPM envs store only the initial state), plus `NAME.json` with
`env_info` {env_id, max_episode_steps, env_kwargs} and `episodes` [{episode_id, episode_seed,
reset_kwargs, control_mode, elapsed_steps, info}]. `read_demo` checks all of that against the task
before any simulator work.

Conversion observes the state before each action in the task's `pointcloud` mode and runs the
agent's `preprocess` on it; the label is the recorded action (clipped to the action bounds):
- rigid body: reset with the episode's seed (the scene's objects), then `set_state(env_states[t])`;
- soft body: reset, `set_state(env_init_state)`, then replay the actions (MPM states are not stored).
Each trajectory is cached as `CACHE/traj_{id}.npz` {"points" float16, "state", "label" float32}, so
an interrupted conversion resumes where it stopped; `CACHE/source.json` ties the cache to the demo
file (path, size, mtime): a changed demo file is converted again.
"""
import json
import multiprocessing as mp
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import gymnasium as gym
import h5py
import numpy as np

from agent.preprocessing import preprocess
from agent.registry import TaskSpec

DOWNLOAD_COMMAND = "python -m mani_skill2.utils.download_demo {env_id} -o demos/"
CONVERT_COMMAND = ("python -m mani_skill2.trajectory.replay_trajectory --traj-path {path} "
                   "--target-control-mode {control_mode} --obs-mode none --save-traj")
SOURCE_FILE = "source.json"
KEYS = ("points", "state", "label")


class DemoError(ValueError):
    """A demonstration that cannot be used for a task; the message names the file and the fix."""


@dataclass(frozen=True)
class Episode:
    episode_id: int
    seed: int
    options: Dict[str, Any]  # the other reset_kwargs, passed as reset(options=...)
    length: int  # recorded actions

    @property
    def key(self) -> str:
        return "traj_{}".format(self.episode_id)


@dataclass(frozen=True)
class Demo:
    path: Path  # the .h5 file (its .json lies next to it)
    spec: TaskSpec
    episodes: Tuple[Episode, ...]  # those with at least one action
    action_size: int

    @property
    def soft(self) -> bool:
        return self.spec.family == "soft"


def _required(mapping: Any, key: str, where: str) -> Any:
    if not isinstance(mapping, dict) or key not in mapping:
        raise DemoError("{} lacks '{}', which ManiSkill2 trajectory files have".format(where, key))
    return mapping[key]


def _read_json(path: Path) -> Dict[str, Any]:
    if not path.is_file():
        raise DemoError("{} does not exist: a trajectory .h5 needs its .json next to it".format(path))
    try:
        return json.loads(path.read_text())
    except ValueError as error:
        raise DemoError("{} is not valid JSON: {}".format(path, error)) from None


def _episode_entry(entry: Dict[str, Any], default_control_mode: Optional[str], spec: TaskSpec, path: Path,
                   json_path: Path) -> Tuple[int, int, Dict[str, Any]]:
    """Episode id, seed and reset options of one `episodes` entry; checks its control mode."""
    where = "{} episode {}".format(json_path, entry.get("episode_id", "?") if isinstance(entry, dict) else "?")
    episode_id = _required(entry, "episode_id", where)
    reset_kwargs = dict(_required(entry, "reset_kwargs", where))
    control_mode = entry.get("control_mode", default_control_mode)
    if control_mode is None:
        raise DemoError("{} names no control_mode (nor does env_info.env_kwargs)".format(where))
    if control_mode != spec.control_mode:
        raise DemoError(
            "{} was recorded in control mode {}, but {} policies act in {}. Convert it first:\n  {}\n"
            "and pass the file it writes ({})".format(
                path, control_mode, spec.env_id, spec.control_mode,
                CONVERT_COMMAND.format(path=path, control_mode=spec.control_mode),
                path.with_name("{}.none.{}.h5".format(path.stem, spec.control_mode))))
    seed = reset_kwargs.pop("seed", entry.get("episode_seed"))
    if seed is None:
        raise DemoError("{} has no seed (reset_kwargs.seed or episode_seed)".format(where))
    nested = reset_kwargs.pop("options", None) or {}  # gymnasium-style reset(seed=..., options={...})
    return int(episode_id), int(seed), {**reset_kwargs, **nested}


def _trajectory_length(h5: h5py.File, key: str, soft: bool, path: Path) -> Tuple[int, int]:
    """Number of actions and action size of group `key`, after checking its datasets' shapes."""
    group = h5.get(key)
    if not isinstance(group, h5py.Group):
        raise DemoError("{} has no group {} (listed in its .json)".format(path, key))
    state_key = "env_init_state" if soft else "env_states"
    for name in ("actions", "success", state_key):
        if not isinstance(group.get(name), h5py.Dataset):
            why = {"env_init_state": " (soft-body demos store the initial state and are replayed from it)",
                   "env_states": " (rigid-body demos store the state of every step)"}.get(name, "")
            raise DemoError("{} {} lacks '{}'{}".format(path, key, name, why))
    actions, success, states = group["actions"], group["success"], group[state_key]
    steps = actions.shape[0] if actions.ndim == 2 else -1
    expected_states = 1 if soft else 2
    if (steps < 0 or success.shape != (steps,) or states.ndim != expected_states
            or (not soft and states.shape[0] != steps + 1)):
        raise DemoError("{} {} has inconsistent shapes: actions {}, success {}, {} {}".format(
            path, key, actions.shape, success.shape, state_key, states.shape))
    return steps, actions.shape[1]


def read_demo(path: Path, spec: TaskSpec) -> Demo:
    """The demo at `path` (a trajectory .h5), checked against task `spec`; DemoError if unusable."""
    path = Path(path)
    if not path.is_file():
        raise DemoError("Demo file {} does not exist. ManiSkill2's demos download with: {}".format(
            path, DOWNLOAD_COMMAND.format(env_id=spec.env_id)))
    json_path = path.with_suffix(".json")
    meta = _read_json(json_path)
    env_info = _required(meta, "env_info", str(json_path))
    env_id = _required(env_info, "env_id", "{} env_info".format(json_path))
    if env_id != spec.env_id:
        raise DemoError("{} holds demos of {}, not {}".format(path, env_id, spec.env_id))
    entries = _required(meta, "episodes", str(json_path))
    default_control_mode = (env_info.get("env_kwargs") or {}).get("control_mode")
    parsed = [_episode_entry(entry, default_control_mode, spec, path, json_path) for entry in entries]
    try:
        h5 = h5py.File(path, "r")
    except OSError as error:
        raise DemoError("{} is not a readable HDF5 file: {}".format(path, error)) from None
    with h5:
        shapes = [_trajectory_length(h5, "traj_{}".format(episode_id), spec.family == "soft", path)
                  for episode_id, _, _ in parsed]
    episodes = tuple(Episode(episode_id, seed, options, steps)
                     for (episode_id, seed, options), (steps, _) in zip(parsed, shapes) if steps)
    if not episodes:
        raise DemoError("{} holds no trajectory with actions".format(path))
    action_sizes = {size for steps, size in shapes if steps}
    if len(action_sizes) > 1:
        raise DemoError("{} mixes action sizes {}".format(path, sorted(action_sizes)))
    return Demo(path, spec, episodes, action_sizes.pop())


def current_observation(env: gym.Env) -> Dict[str, Any]:
    """The env's observation of its current state, passed through its observation wrappers
    (ManiSkill2's `pointcloud` mode is one: the raw env only returns camera images)."""
    wrappers = []
    while isinstance(env, gym.Wrapper):
        wrappers.append(env)
        env = env.env
    obs = env.get_obs()
    for wrapper in reversed(wrappers):
        if isinstance(wrapper, gym.ObservationWrapper):
            obs = wrapper.observation(obs)
    return obs


def _check_state_size(env: gym.Env, state: np.ndarray, demo: Demo, episode: Episode) -> None:
    size = env.unwrapped.get_state().size
    if state.shape[-1] != size:
        raise DemoError("{} {} stores states of size {}, but {} has states of size {}: it was recorded "
                        "with other env_kwargs or another ManiSkill2 version".format(
                            demo.path, episode.key, state.shape[-1], demo.spec.env_id, size))


def observations(env: gym.Env, demo: Demo, episode: Episode, group: h5py.Group) -> Iterator[Dict[str, Any]]:
    """The observation before each recorded action of one trajectory."""
    env.reset(seed=episode.seed, options=episode.options)
    if demo.soft:
        initial = group["env_init_state"][:]
        _check_state_size(env, initial, demo, episode)
        env.unwrapped.set_state(initial)
        obs = current_observation(env)
        for action in group["actions"][:]:
            yield obs
            obs = env.step(action)[0]
    else:
        states = group["env_states"][:-1]
        _check_state_size(env, states, demo, episode)
        for state in states:
            env.unwrapped.set_state(state)
            yield current_observation(env)


def convert_episode(env: gym.Env, demo: Demo, episode: Episode, group: h5py.Group) -> Dict[str, np.ndarray]:
    """Network inputs and action labels of one trajectory (points sampled reproducibly per trajectory).
    Labels are clipped to the action bounds, as the env clips what it executes (the policy's tanh
    output cannot leave them either)."""
    rng = np.random.default_rng(episode.episode_id)
    inputs = [preprocess(obs, demo.spec, rng) for obs in observations(env, demo, episode, group)]
    return {"points": np.stack([x.points for x in inputs]).astype(np.float16),
            "state": np.stack([x.state for x in inputs]),
            "label": np.clip(group["actions"][:], env.action_space.low, env.action_space.high).astype(np.float32)}


def episode_file(cache_dir: Path, episode: Episode) -> Path:
    return cache_dir / "{}.npz".format(episode.key)


def save_episode(cache_dir: Path, episode: Episode, arrays: Dict[str, np.ndarray]) -> None:
    """Write one converted trajectory atomically."""
    temporary = cache_dir / "{}.tmp{}.npz".format(episode.key, os.getpid())
    with temporary.open("wb") as file:
        np.savez(file, **arrays)
    os.replace(temporary, episode_file(cache_dir, episode))


def demo_signature(demo: Demo) -> Dict[str, Any]:
    """What a cache must have been converted from: this file, unchanged, for this task's inputs."""
    status = demo.path.stat()
    return {"demo": str(demo.path.resolve()), "bytes": status.st_size, "mtime_ns": status.st_mtime_ns,
            "env_id": demo.spec.env_id, "points": demo.spec.total_points, "frame": demo.spec.frame}


def write_source(cache_dir: Path, demo: Demo, state_size: int, action_low: Sequence[float],
                 action_high: Sequence[float]) -> None:
    """Record the cache's origin and what builds a model for it (no simulator needed later)."""
    source = {"signature": demo_signature(demo), "state_size": int(state_size),
              "action_low": [float(x) for x in action_low], "action_high": [float(x) for x in action_high]}
    temporary = cache_dir / "{}.tmp{}".format(SOURCE_FILE, os.getpid())
    temporary.write_text(json.dumps(source, indent=2))
    os.replace(temporary, cache_dir / SOURCE_FILE)


def _source(demo: Demo, cache_dir: Path) -> Optional[Dict[str, Any]]:
    """The cache's source.json if it was made from `demo` as it is now."""
    path = cache_dir / SOURCE_FILE
    if not path.is_file():
        return None
    source = json.loads(path.read_text())
    return source if source.get("signature") == demo_signature(demo) else None


def converted_source(demo: Demo, cache_dir: Path) -> Optional[Dict[str, Any]]:
    """source.json (state_size, action bounds) if the cache holds every trajectory of `demo`, else None."""
    source = _source(demo, cache_dir)
    if source is None or not all(episode_file(cache_dir, e).is_file() for e in demo.episodes):
        return None
    return source


def _convert_episodes(demo: Demo, cache_dir: Path, episodes: Sequence[Episode], worker: bool) -> None:
    if worker:
        os.environ.setdefault("LP_NUM_THREADS", "1")  # one lavapipe thread per process renders fastest
    from training.common.envs import make_env

    spec = demo.spec
    env = make_env(spec.env_id, obs_mode=spec.obs_mode, control_mode=spec.control_mode)
    try:
        if env.action_space.shape != (demo.action_size,):
            raise DemoError("{} has actions of size {}, but {} in {} takes {}".format(
                demo.path, demo.action_size, spec.env_id, spec.control_mode, env.action_space.shape[0]))
        with h5py.File(demo.path, "r") as h5:
            for episode in episodes:
                arrays = convert_episode(env, demo, episode, h5[episode.key])
                if _source(demo, cache_dir) is None:
                    write_source(cache_dir, demo, arrays["state"].shape[1], env.action_space.low,
                                 env.action_space.high)
                save_episode(cache_dir, episode, arrays)
                print("converted {} ({} steps)".format(episode.key, episode.length), flush=True)
    finally:
        env.close()


def convert_demo(demo: Demo, cache_dir: Path, n_workers: int = 1) -> Dict[str, Any]:
    """Convert the trajectories not yet in `cache_dir` (in `n_workers` processes); returns source.json."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    if _source(demo, cache_dir) is None:  # no cache, or one made from another file: start afresh
        for stale in [*cache_dir.glob("traj_*.npz"), cache_dir / SOURCE_FILE]:
            stale.unlink(missing_ok=True)
    todo = [episode for episode in demo.episodes if not episode_file(cache_dir, episode).is_file()]
    if todo:
        print("Converting {} of {} trajectories of {} to point clouds".format(len(todo), len(demo.episodes), demo.path),
              flush=True)
    n_workers = max(1, min(n_workers, len(todo)))
    if n_workers == 1 and todo:
        _convert_episodes(demo, cache_dir, todo, worker=False)
    elif todo:
        with mp.get_context("spawn").Pool(n_workers) as pool:
            pool.starmap(_convert_episodes, [(demo, cache_dir, todo[w::n_workers], True) for w in range(n_workers)])
    source = converted_source(demo, cache_dir)
    assert source is not None, "every trajectory was converted"
    return source


def load_converted(cache_dir: Path, episodes: Sequence[Episode]) -> Dict[str, np.ndarray]:
    """The cached arrays of `episodes`, concatenated."""
    parts: List[Any] = [np.load(episode_file(cache_dir, episode)) for episode in episodes]
    return {key: np.concatenate([part[key] for part in parts]) for key in KEYS}
