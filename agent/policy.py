"""The runtime agent: raw ManiSkill2 observation -> action with a task's shipped ONNX policy.

Everything that can be wrong with the weights or the env fails at construction with a message
naming the file or the fix. Mid-episode, bad observation *values* (NaN/inf, an empty point cloud)
never raise: the agent returns a finite action within the bounds, warns once per policy and
counts the cases in `Policy.coped`.
An observation whose structure is not the env's (not a dict, a missing entry, an entry of another shape) is a
set-up error and raises ObservationError naming the entry, the shape expected and the shape received.
"""
import warnings
from collections import Counter
from pathlib import Path
from typing import Any, Dict, List, NamedTuple, Optional, Tuple, Union

import numpy as np

from agent.insertion.held_fit import HELD_BOXES
from agent.insertion.memory import InsertionMemory, insertion_memory
from agent.manifest import MANIFEST_NAME, ManifestEntry, WeightsError, entry_for, read_manifest, weights_dir
from agent.onnx_model import INPUT_NAMES, OUTPUT_NAME, load_session, session_threads
from agent.preprocessing import CHANNELS, NetworkInput, is_finite, preprocess, state_size
from agent.registry import TASKS, TaskSpec, looking, with_points

SANITISED_GROUPS = ("agent", "extra")
POINT_COLUMNS = {"xyzw": 4, "rgb": 3}
POINT_TEXT = {"xyzw": "x, y, z, w", "rgb": "r, g, b"}
Layout = Tuple[bool, bool]  # a policy's state layout: (slot reader, held-object fit)
LAYOUTS: Dict[Layout, str] = {(False, False): "without a slot reader", (True, False): "with a slot reader",
                              (True, True): "with a slot reader and the held-object fit"}


class ObservationError(ValueError):
    """An observation or observation space lacks entries the task's policy reads, or has them in another shape."""


class ControlModeError(ValueError):
    """The env's action space does not fit the task's policy: the env was made with another control mode."""


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
        except (KeyError, TypeError, IndexError, AttributeError, ValueError):
            return False

    return [path for path in required_keys(task) if not present(path)]


def make_env_hint(task: TaskSpec) -> str:
    """How to make the env the task's policy runs in."""
    return ("make the env with gym.make({!r}, obs_mode={!r}, control_mode={!r}) (the official evaluator takes both "
            "modes from UserPolicy.get_obs_mode / get_control_mode)".format(task.env_id, task.obs_mode,
                                                                             task.control_mode))


def observation_error(task: TaskSpec, observation: Any, missing: List[str]) -> ObservationError:
    """The error for an observation (or observation space) that is not a dict or lacks the `missing` entries."""
    if not hasattr(observation, "keys"):
        shape = getattr(observation, "shape", None)
        return ObservationError("The {} policy reads obs_mode {!r} observations, dicts with {}; got {}.{}{}: {}.".format(
            task.env_id, task.obs_mode, ", ".join(required_keys(task)), type(observation).__module__,
            type(observation).__name__, "" if shape is None else " of shape {}".format(tuple(shape)),
            make_env_hint(task)))
    return ObservationError(
        "The {} policy reads obs_mode {!r} observations with {}; missing: {} (top-level keys: {}): {}.".format(
            task.env_id, task.obs_mode, ", ".join(required_keys(task)), ", ".join(missing) or "none",
            ", ".join(sorted(str(key) for key in observation.keys())), make_env_hint(task)))


class EntryShape(NamedTuple):
    group: str
    key: str
    shape: Tuple[int, ...]  # in the env's observation space
    accepted: Tuple[Optional[int], ...]  # what the agent reads: None for any size (a cloud's number of points)


def shape_text(shape: Tuple[Optional[int], ...]) -> str:
    return "({})".format(", ".join("N" if size is None else str(size) for size in shape) + "," * (len(shape) == 1))


def expected_shapes(observation_space: Any, task: TaskSpec) -> List[EntryShape]:
    """The shapes of the observation entries the task's preprocessing reads, from the env's observation space:
    the agent entries and every extra entry exactly as there; the point-cloud entries (N, columns) with any N."""
    shapes = []
    paths = [path for path in required_keys(task) if not path.startswith("extra/")]
    paths += ["extra/" + key for key in observation_space["extra"].keys()]
    for path in paths:
        group, key = path.split("/")
        shape = getattr(observation_space[group][key], "shape", None)
        if shape is None:
            continue
        shape = tuple(shape)
        accepted = shape if group != "pointcloud" else (None,) + ((POINT_COLUMNS[key],) if key in POINT_COLUMNS
                                                                   else shape[1:])
        shapes.append(EntryShape(group, key, shape, accepted))
    return shapes


def fits(shape: Tuple[int, ...], accepted: Tuple[Optional[int], ...]) -> bool:
    return len(shape) == len(accepted) and all(size is None or size == got for size, got in zip(accepted, shape))


def state_sizes(observation_space: Any, env_id: str) -> Dict[Layout, int]:
    """The state sizes of the task's policies with the env's observation space, by layout (`LAYOUTS`): without a
    slot reader; for a task that hides its goal also with one; for a task whose held object has a known box
    (`HELD_BOXES`) also with the held-object fit."""
    task = TASKS[env_id]
    sizes = {(False, False): state_size(observation_space, task)}
    if not task.n_goal_points:
        for held_fit in (False, True) if env_id in HELD_BOXES else (False,):
            sizes[(True, held_fit)] = state_size(observation_space, looking(task, 1, held_fit))
    return sizes


def state_size_error(entry: ManifestEntry, manifest: Path, sizes: Dict[Layout, int], env_size: int) -> WeightsError:
    """The error for a policy whose state size is not the env's (`env_size`, for the entry's layout): where the
    size is that of another layout (`sizes`), what the manifest entry lacks or has too many of."""
    layout: Layout = (entry.slot_reader is not None, entry.held_fit)
    head = "{} takes a state of size {}".format(entry.path, entry.spec.state_size)
    matching = [other for other in sorted(sizes) if sizes[other] == entry.spec.state_size and other != layout]
    if not matching:
        others = ", ".join("{} {}".format(size, LAYOUTS[other]) for other, size in sorted(sizes.items()))
        return WeightsError("{}, but a {} policy {} has state size {} with this env's observations (state sizes: {}): "
                            "the policy was trained for another task or on other observations".format(
                                head, entry.env_id, LAYOUTS[layout], env_size, others))
    reader, held_fit = matching[0]
    command = "ms2agent export {} CHECKPOINT".format(entry.env_id)
    if reader and not layout[0]:
        flags = " --slot-reader READER" + " --held-fit" * held_fit
        fix = ("its entry in {} has no `slot_reader`{}: the policy needs the slot reader it was trained with; restore "
               "the entry's `slot_reader`{} (`{}{}` writes {})".format(
                   manifest, " and no `held_fit`" * held_fit, " and `\"held_fit\": true`" * held_fit, command, flags,
                   "them" if held_fit else "it"))
    elif layout[0] and not reader:
        fix = ("its entry in {} has a `slot_reader`: remove it{} (or re-export without --slot-reader)".format(
            manifest, " and `held_fit`" * layout[1]))
    elif held_fit:
        fix = "its entry in {} lacks `\"held_fit\": true`: add it (`{} --slot-reader READER --held-fit`)".format(
            manifest, command)
    else:
        fix = "its entry in {} sets `held_fit`, which the policy was not trained with: remove it".format(manifest)
    return WeightsError("{}, the state of a {} policy {}, but {}".format(head, entry.env_id, LAYOUTS[(reader, held_fit)],
                                                                         fix))


def check_action_space(task: TaskSpec, entry: ManifestEntry, action_space: Any) -> None:
    """ControlModeError naming the task's control mode if the env's actions are not the policy's."""
    shape = getattr(action_space, "shape", None)
    if shape is None or tuple(shape) != (entry.spec.action_size,):
        raise ControlModeError(
            "The {} policy acts in control mode {!r}, with actions of shape ({},), but the env's action space is {}: "
            "the env was made with another control mode; {}.".format(
                task.env_id, task.control_mode, entry.spec.action_size,
                "of shape {}".format(tuple(shape)) if shape is not None else type(action_space).__name__,
                make_env_hint(task)))


def resolve(env_id: str, directory: Optional[Union[str, Path]] = None) -> Tuple[TaskSpec, ManifestEntry]:
    """The task (with the policy's point count, `registry.with_points`) and its manifest entry, consistent with each
    other; errors name what is missing."""
    directory = weights_dir() if directory is None else Path(directory)
    algorithms = {task_id: spec.algorithm for task_id, spec in TASKS.items()}
    entry = entry_for(env_id, read_manifest(directory), algorithms, directory / MANIFEST_NAME)
    task = (TASKS[env_id] if entry.slot_reader is None
            else looking(TASKS[env_id], entry.slot_reader.look_step, entry.held_fit))
    if task.held_fit and env_id not in HELD_BOXES:
        raise WeightsError("{} sets held_fit for {}, whose held object has no known box "
                           "(agent/insertion/held_fit.py)".format(directory / MANIFEST_NAME, env_id))
    declared = (entry.control_mode, entry.obs_mode, entry.spec.channels, entry.voxel_size)
    expected = (task.control_mode, task.obs_mode, CHANNELS, task.voxel_size)
    if declared != expected:
        raise WeightsError("{} declares {} (control mode, obs mode, channels, voxel size) for {}, but the agent "
                           "runs it with {} (agent/registry.py)".format(directory / MANIFEST_NAME, declared,
                                                                        env_id, expected))
    try:
        return with_points(task, entry.spec.n_points), entry  # the policy's own point count
    except ValueError as error:
        raise WeightsError("{} declares a {}-point network for {}: {}".format(
            directory / MANIFEST_NAME, entry.spec.n_points, env_id, error)) from None


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
        directory = weights_dir() if weights is None else Path(weights)
        self.task, self.entry = resolve(env_id, directory)
        self.session = load_session(self.entry, session_threads(threads))
        missing = missing_keys(observation_space, self.task)
        if missing:
            raise observation_error(self.task, observation_space, missing)
        check_action_space(self.task, self.entry, action_space)
        env_size = state_size(observation_space, self.task)
        if env_size != self.entry.spec.state_size:
            raise state_size_error(self.entry, directory / MANIFEST_NAME, state_sizes(observation_space, env_id),
                                   env_size)
        self.shapes = expected_shapes(observation_space, self.task)
        self.extra_keys = frozenset(observation_space["extra"].keys())
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

    def check(self, observation: Any) -> None:
        """ObservationError unless `observation` has the structure of the env's observation space: a dict with
        every entry the policy reads, each of the shape there (a point cloud with any number of points), and the
        same extra entries; the error names the entry, the shape expected and the shape received."""
        try:
            for entry in self.shapes:
                value = observation[entry.group][entry.key]
                shape = value.shape if isinstance(value, np.ndarray) else np.shape(value)
                if shape != entry.shape and not fits(shape, entry.accepted):
                    break
            else:
                if observation["extra"].keys() == self.extra_keys:
                    return
                entry, shape = None, ()
        except (KeyError, TypeError, IndexError, AttributeError, ValueError):
            raise observation_error(self.task, observation, missing_keys(observation, self.task)) from None
        if entry is None:
            problem = "extra entries {}, expected {}".format(", ".join(sorted(observation["extra"].keys())),
                                                             ", ".join(sorted(self.extra_keys)))
        elif entry.group == "pointcloud":
            problem = "{}/{} has shape {}, expected {} ({} per point)".format(
                entry.group, entry.key, shape_text(shape), shape_text(entry.accepted), POINT_TEXT.get(entry.key, "-"))
        else:
            problem = "{}/{} has shape {}, expected {}".format(entry.group, entry.key, shape_text(shape),
                                                               shape_text(entry.accepted))
        raise ObservationError("{} observation: {}, as in the observation space the policy was built with; pass the "
                               "observations of that env (obs_mode {!r}): {}.".format(
                                   self.task.env_id, problem, self.task.obs_mode, make_env_hint(self.task)))

    def network_input(self, observation: Dict[str, Any]) -> NetworkInput:
        """Preprocessed inputs (a looking policy's with its remembered slot and held object), made finite
        (with one warning) if the observation was not; ObservationError (`check`) for a malformed observation."""
        self.check(observation)
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
