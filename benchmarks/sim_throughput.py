"""Point-cloud simulation throughput, default rendering against `training.common.fast_render`, in one run.

    .venv/bin/python benchmarks/sim_throughput.py [--env PickCube-v0] [--steps 60] [--processes 1 2]
                                                   [--setups fast meshes shader] [--max-error 1e-3]
                                                   [--check-steps 30]

Setups: `default` (ManiSkill2's `ibl` shader pack and original meshes: the reference, always run),
`meshes` (light robot meshes only), `shader` (forward shader only), `fast` (both: `fast_rendering`).
Each of max(--processes) simulator processes holds one env per setup (`LP_NUM_THREADS=1` unless set).
1. throughput: per process count and setup, that many processes step random `pd_ee_delta_pose`
   actions together -> env steps/s summed over processes (wall clock), and CPU ms per step
   (process CPU time, all threads: what an otherwise idle machine's steps/s follows);
2. observation check: both envs reset with seeds 0-2 (same scene), the default env steps random
   actions and the other is put in each state with `set_state`; per-pixel differences of the fused
   point clouds (pixel k of one against pixel k of the other).
"""
import argparse
import multiprocessing as mp
import os
import time
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from training.common.fast_render import MAX_ERROR

OBS = dict(obs_mode="pointcloud", control_mode="pd_ee_delta_pose")
SETUPS = ("default", "meshes", "shader", "fast")


def make(env_id: str, setup: str, max_error: float) -> Any:
    """A point-cloud env with the given rendering setup."""
    from agent.vulkan_fallback import activate
    from training.common.envs import make_env
    from training.common.fast_render import fast_rendering, fast_robot_meshes, forward_shader_dir

    if setup == "default":
        return make_env(env_id, **OBS)
    activate()
    if setup == "meshes":
        with fast_robot_meshes(env_id, max_error):
            return make_env(env_id, **OBS)
    if setup == "shader":
        return make_env(env_id, **OBS, shader_dir=str(forward_shader_dir()))
    with fast_rendering(env_id, {}, max_error) as kwargs:
        return make_env(env_id, **OBS, **kwargs)


def select_shader(setup: str) -> None:
    """Make `setup`'s shader pack the process-wide choice, which ManiSkill2 sets when an env is built
    and every reconfiguration (e.g. PegInsertionSide's reset) reads again for its new cameras."""
    import sapien.core as sapien

    from training.common.fast_render import forward_shader_dir

    sapien.render_config.camera_shader_dir = str(forward_shader_dir()) if setup in ("shader", "fast") else "ibl"


def reset(envs: Dict[str, Any], setup: str, seed: Optional[int] = None) -> None:
    select_shader(setup)
    envs[setup].reset(seed=seed)


def _worker(connection, env_id: str, setups: List[str], max_error: float, seed: int) -> None:
    """Holds one env per setup (non-default ones built first: the default env's construction sets
    the process-wide shader choice back to `ibl`) and runs the parent's commands."""
    os.environ.setdefault("LP_NUM_THREADS", "1")
    envs = {setup: make(env_id, setup, max_error) for setup in sorted(setups, key=lambda name: name == "default")}
    rng = np.random.default_rng(seed)

    def run(setup: str, steps: int) -> None:
        select_shader(setup)
        env = envs[setup]
        for _ in range(steps):
            _, _, terminated, truncated, _ = env.step(rng.uniform(-1, 1, env.action_space.shape))
            if terminated or truncated:
                env.reset()

    for setup in envs:
        reset(envs, setup, seed)
        run(setup, 5)  # warm-up: the first frames build pipelines and caches
    connection.send("ready")
    while True:
        command, setup, steps = connection.recv()
        if command == "close":
            break
        if command == "run":
            wall, cpu = time.perf_counter(), time.process_time()
            run(setup, steps)
            connection.send((time.perf_counter() - wall, time.process_time() - cpu))
        else:  # "check"
            connection.send(observation_difference(envs, setup, [0, 1, 2], steps))
    for env in envs.values():
        env.close()


class Workers:
    """Simulator processes that each hold an env per setup."""

    def __init__(self, env_id: str, setups: List[str], max_error: float, processes: int) -> None:
        context = mp.get_context("spawn")
        self.connections, self.processes = [], []
        for k in range(processes):
            parent, child = context.Pipe()
            process = context.Process(target=_worker, args=(child, env_id, setups, max_error, 1000 + k), daemon=True)
            process.start()
            self.connections.append(parent)
            self.processes.append(process)
        for connection in self.connections:
            connection.recv()

    def throughput(self, setup: str, processes: int, steps: int) -> Tuple[float, float]:
        """(env steps/s summed over the first `processes` workers stepping together, mean CPU ms/step)."""
        active = self.connections[:processes]
        for connection in active:
            connection.send(("run", setup, steps))
        walls, cpus = zip(*[connection.recv() for connection in active])
        return processes * steps / max(walls), 1000 * float(np.mean(cpus)) / steps

    def observation_difference(self, setup: str, steps: int) -> Dict[str, float]:
        self.connections[0].send(("check", setup, steps))
        return self.connections[0].recv()

    def close(self) -> None:
        for connection in self.connections:
            connection.send(("close", None, 0))
        for process in self.processes:
            process.join(timeout=30)


def _pointcloud(env: Any, state: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """The fused point cloud (xyzw, rgb) the env renders in `state`."""
    wrapper = env
    while type(wrapper).__name__ != "PointCloudObservationWrapper":
        wrapper = wrapper.env
    env.unwrapped.set_state(state)
    cloud = wrapper.observation(env.unwrapped.get_obs())["pointcloud"]
    return cloud["xyzw"].copy(), cloud["rgb"].astype(np.int16)


def observation_difference(envs: Dict[str, Any], setup: str, seeds: List[int], steps: int) -> Dict[str, float]:
    """Per-pixel point-cloud differences between the default env and `setup`'s in the same states:
    both reset with the same seed (same scene), then the default env steps random actions and the
    other gets each state with `set_state`."""
    rng = np.random.default_rng(0)
    reference, other = envs["default"], envs[setup]
    distances, colours, disagree = [], [], []
    for seed in seeds:
        reset(envs, setup, seed)
        reset(envs, "default", seed)
        for _ in range(steps):
            reference.step(rng.uniform(-1, 1, reference.action_space.shape))
            state = reference.unwrapped.get_state()
            (xyzw_a, rgb_a), (xyzw_b, rgb_b) = _pointcloud(reference, state), _pointcloud(other, state)
            valid_a, valid_b = xyzw_a[:, 3] > 0.5, xyzw_b[:, 3] > 0.5
            both = valid_a & valid_b
            distances.append(np.linalg.norm(xyzw_a[both, :3] - xyzw_b[both, :3], axis=1))
            colours.append(np.abs(rgb_a[both] - rgb_b[both]).max(axis=1))
            disagree.append(np.mean(valid_a != valid_b))
    mm, rgb = 1000 * np.concatenate(distances), np.concatenate(colours)
    return {"points": float(mm.size), "xyz median mm": np.median(mm), "xyz p99 mm": np.percentile(mm, 99),
            "xyz p99.9 mm": np.percentile(mm, 99.9), "xyz max mm": mm.max(), "share xyz > 1 mm": np.mean(mm > 1),
            "share xyz > 2 mm": np.mean(mm > 2), "rgb mean abs": rgb.mean(), "rgb p99": np.percentile(rgb, 99),
            "share rgb > 5": np.mean(rgb > 5), "share rgb > 20": np.mean(rgb > 20),
            "validity mismatch": float(np.mean(disagree))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="PickCube-v0")
    parser.add_argument("--steps", type=int, default=60, help="timed steps per process")
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--setups", nargs="+", choices=SETUPS, default=["fast"], help="compared with default")
    parser.add_argument("--max-error", type=float, default=MAX_ERROR, help="decimation error bound (m)")
    parser.add_argument("--check-steps", type=int, default=30, help="states per seed (3 seeds); 0 skips the check")
    args = parser.parse_args()

    setups = ["default"] + [name for name in args.setups if name != "default"]  # default: the reference
    workers = Workers(args.env, setups, args.max_error, max(args.processes))
    try:
        print("## {}: throughput ({} timed steps per process, LP_NUM_THREADS={}, max error {:g} m)".format(
            args.env, args.steps, os.environ.get("LP_NUM_THREADS", "1"), args.max_error))
        print("| setup | processes | env steps/s (sum) | CPU ms/step | vs default |")
        print("|---|---|---|---|---|")
        for processes in args.processes:
            first = None
            for setup in setups:
                rate, cpu_ms = workers.throughput(setup, processes, args.steps)
                first = first or rate
                print("| {} | {} | {:.1f} | {:.1f} | {:.2f}x |".format(setup, processes, rate, cpu_ms, rate / first),
                      flush=True)
        for setup in [name for name in setups if name != "default" and args.check_steps > 0]:
            stats = workers.observation_difference(setup, args.check_steps)
            print("\n## observation difference, {} vs default ({} states, {:.0f} points valid in both)".format(
                setup, 3 * args.check_steps, stats.pop("points")))
            print("| measure | value |")
            print("|---|---|")
            for name, value in stats.items():
                print("| {} | {:.4g} |".format(name, value))
    finally:
        workers.close()

if __name__ == "__main__":
    main()
