"""The runtime agent: raw ManiSkill2 observation -> action with a task's shipped ONNX policy.

Everything that can be wrong with the weights or the env fails at construction with a message
naming the file or the fix. Mid-episode, bad observation *values* (NaN/inf, an empty point cloud)
never raise: the agent returns a finite action within the bounds, warns once per policy and
counts the cases in `Policy.coped`.
A missing observation key (wrong obs mode) is a set-up error and raises ObservationError.
"""
import warnings
from collections import Counter
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np

from agent.insertion.held_fit import HELD_BOXES
from agent.insertion.memory import InsertionMemory, insertion_memory
from agent.manifest import MANIFEST_NAME, ManifestEntry, WeightsError, entry_for, read_manifest, weights_dir
from agent.onnx_model import INPUT_NAMES, OUTPUT_NAME, load_session, session_threads
from agent.preprocessing import CHANNELS, NetworkInput, is_finite, preprocess, state_size
from agent.registry import TASKS, TaskSpec, looking

SANITISED_GROUPS = ("agent", "extra")


class ObservationError(ValueError):
    """An observation or observation space lacks entries the task's policy reads."""


class ObservationWarning(RuntimeWarning):
    """An observation had non-finite values or no usable points; the agent coped with it."""


def required_keys(task: TaskSpec) -> List[str]:
    """The `group/key` observation entries the task's preprocessing reads."""
    keys = ["agent/qpos", "agent/qvel", "agent/base_pose", "extra/tcp_pose", "pointcloud/xyzw", "pointcloud/rgb"]
    env_goal = bool(task.n_goal_points) and not task.look_step  # a looking policy's goal is its own reading
    return keys + ["extra/goal_pos"] * env_goal + ["pointcloud/robot_seg"] * task.drops_robot


def missing_keys(observation: Any, task: TaskSpec) -> List[str]:
    """Required entries absent from an observation dict or a gymnasium Dict observation space."""
    def present(path: str) -> bool:
        group, key = path.split("/")
        try:
            return key in observation[group].keys()
        except (KeyError, TypeError, AttributeError):
            return False

    return [path for path in required_keys(task) if not present(path)]


def observation_error(task: TaskSpec, observation: Any, missing: List[str]) -> ObservationError:
    keys = sorted(observation.keys()) if hasattr(observation, "keys") else [type(observation).__name__]
    return ObservationError(
        "The {} policy reads obs_mode {!r} observations with {}; missing: {} (top-level keys: {}).".format(
            task.env_id, task.obs_mode, ", ".join(required_keys(task)), ", ".join(missing), ", ".join(keys)))


def resolve(env_id: str, directory: Optional[Union[str, Path]] = None) -> Tuple[TaskSpec, ManifestEntry]:
    """The task and its manifest entry, consistent with each other; errors name what is missing."""
    directory = weights_dir() if directory is None else Path(directory)
    entry = entry_for(env_id, read_manifest(directory), sorted(TASKS), directory / MANIFEST_NAME)
    task = (TASKS[env_id] if entry.slot_reader is None
            else looking(TASKS[env_id], entry.slot_reader.look_step, entry.held_fit))
    if task.held_fit and env_id not in HELD_BOXES:
        raise WeightsError("{} sets held_fit for {}, whose held object has no known box "
                           "(agent/insertion/held_fit.py)".format(directory / MANIFEST_NAME, env_id))
    declared = (entry.control_mode, entry.obs_mode, entry.spec.n_points, entry.spec.channels, entry.voxel_size)
    expected = (task.control_mode, task.obs_mode, task.total_points, CHANNELS, task.voxel_size)
    if declared != expected:
        raise WeightsError("{} declares {} (control mode, obs mode, points, channels, voxel size) for {}, but the agent "
                           "runs it with {} (agent/registry.py)".format(directory / MANIFEST_NAME, declared,
                                                                        env_id, expected))
    return task, entry


def _finite(value: Any) -> np.ndarray:
    return np.nan_to_num(np.asarray(value), nan=0.0, posinf=0.0, neginf=0.0)


def sanitised(observation: Dict[str, Any]) -> Dict[str, Any]:
    """A copy with non-finite points marked invalid and other non-finite numbers set to 0."""
    xyzw = np.array(observation["pointcloud"]["xyzw"], dtype=np.float32)
    xyzw[~np.isfinite(xyzw).all(axis=1)] = 0.0  # w = 0: filtered out like any invalid point
    clean = dict(observation)
    clean["pointcloud"] = dict(observation["pointcloud"], xyzw=xyzw, rgb=_finite(observation["pointcloud"]["rgb"]))
    for group in SANITISED_GROUPS:
        clean[group] = {key: _finite(value) for key, value in observation[group].items()}
    return clean


class Policy:
    """A task's shipped policy: `act(observation) -> action` (float32, within the action bounds).

    `weights`: directory holding `manifest.json` (default `$MS2AGENT_WEIGHTS_DIR` or `weights/`);
    `threads`: onnxruntime intra-op threads (default `$MS2AGENT_ORT_THREADS` or 1);
    `seed`: preprocessing RNG seed, restored by every `reset()`.
    A looking policy (its manifest entry has a `slot_reader`) runs the insertion add-on (`agent.insertion`,
    `Policy.insertion`): it counts the steps since `reset()`, reads the slot at its look step and remembers it,
    and one with `held_fit` also fits the object in its hand on every observation: call `reset()` at every
    episode start.
    """

    def __init__(self, env_id: str, observation_space: Any, action_space: Any,
                 weights: Optional[Union[str, Path]] = None, threads: Optional[int] = None, seed: int = 0) -> None:
        self.task, self.entry = resolve(env_id, weights)
        self.session = load_session(self.entry, session_threads(threads))
        missing = missing_keys(observation_space, self.task)
        if missing:
            raise observation_error(self.task, observation_space, missing)
        env_sizes = (state_size(observation_space, self.task), tuple(action_space.shape))
        if env_sizes != (self.entry.spec.state_size, (self.entry.spec.action_size,)):
            raise WeightsError("{} takes a state of size {} and gives actions of shape ({},), but the {} env has "
                               "state size {} and action shape {}".format(
                                   self.entry.path, self.entry.spec.state_size, self.entry.spec.action_size,
                                   env_id, *env_sizes))
        self.low = np.asarray(action_space.low, dtype=np.float32)
        self.high = np.asarray(action_space.high, dtype=np.float32)
        self.neutral = np.clip(np.zeros_like(self.low), self.low, self.high)
        self.seed = seed
        self.coped: Counter = Counter()  # bad observations handled, by kind
        self.insertion: Optional[InsertionMemory] = None  # a looking policy's slot memory and held-object fit
        if self.entry.slot_reader is not None:
            _, self.insertion = insertion_memory(self.entry.slot_reader, TASKS[env_id], observation_space,
                                                 lambda: self._rng, self.entry.held_fit, threads)
        self.reset()

    def reset(self, seed: Optional[int] = None) -> None:
        """Start an episode: reseed preprocessing (with `seed`, else the policy's seed), forget the slot."""
        self._rng = np.random.default_rng(self.seed if seed is None else seed)
        if self.insertion is not None:
            self.insertion.reset()

    def act(self, observation: Dict[str, Any]) -> np.ndarray:
        """The policy's deterministic action for one raw observation."""
        network_input = self.network_input(observation)
        if network_input.n_valid == 0:
            return self._fallback("empty", "the point cloud has no valid points above the ground")
        action = self.session.run([OUTPUT_NAME], {INPUT_NAMES[0]: network_input.points[None],
                                                  INPUT_NAMES[1]: network_input.state[None]})[0][0]
        if not np.isfinite(action).all():
            return self._fallback("action", "the network produced a non-finite action")
        return np.clip(action, self.low, self.high).astype(np.float32, copy=False)

    def network_input(self, observation: Dict[str, Any]) -> NetworkInput:
        """Preprocessed inputs (a looking policy's with its remembered slot and held object), made finite
        (with one warning) if the observation was not."""
        try:
            if self.insertion is not None:
                observation = self.insertion.observe(observation)
            network_input = preprocess(observation, self.task, self._rng)
        except (KeyError, TypeError, IndexError) as error:
            missing = missing_keys(observation, self.task)
            if missing:
                raise observation_error(self.task, observation, missing) from error
            raise
        if is_finite(network_input):
            return network_input
        self._cope("non-finite", "the observation has NaN/inf values; non-finite points are dropped and "
                   "other non-finite numbers replaced by 0")
        with np.errstate(all="ignore"):
            clean = preprocess(sanitised(observation), self.task, self._rng)
        return NetworkInput(_finite(clean.points), _finite(clean.state), clean.n_valid)

    def _fallback(self, kind: str, reason: str) -> np.ndarray:
        self._cope(kind, reason + "; returning the neutral action")
        return self.neutral.copy()

    def _cope(self, kind: str, message: str) -> None:
        """Count a handled bad observation; warn about the first one only."""
        if not self.coped:
            warnings.warn("{} policy: {} (warned once per policy; later cases are counted in Policy.coped)".format(
                self.task.env_id, message), ObservationWarning, stacklevel=4)
        self.coped[kind] += 1
