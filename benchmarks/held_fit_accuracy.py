"""How exactly does `agent.insertion.held_fit` place the charger in the hand, against assuming the expert's grasp?

    .venv/bin/python benchmarks/held_fit_accuracy.py [--episodes 6] [--first-seed 3000]   # ~2 min here

The privileged PlugCharger expert grasps the charger off its own grasp pose (per episode a random yaw
within +-0.2 rad, shift along the charger within +-8 mm, up to 8 mm higher: the spread of the students'
grasps, `ms2agent diagnose ... in_hand`) and carries it; every 3rd step from step 10 on while it holds the charger, the
official renderer's fused camera cloud (every valid point above the ground, robot included, as the agent
gets it) goes to `held_fit`, warm-started from the previous step's fit as the agent would run it.
Printed for the fit and for the baseline (the nominal grasp, what a student blind to the charger in its
hand has to assume): RMS errors of the charger's pose in the TCP frame across the closing axis (charger y),
along the approach (z), along the pins (x) in mm and of its angle (rad), the share of states within the
pins' 0.4 mm / 0.01 rad, the baseline / fit ratio of each RMS, and the fit's time per call.
"""
import argparse
import time
from typing import Dict, List

import numpy as np

FIRST_STEP = 10  # no grasp comes earlier (ManiSkill2's grasp check can be true at the reset)


def errors(true: np.ndarray, estimate: np.ndarray) -> Dict[str, float]:
    """The estimate's error in the charger's frame: y, z, x (mm) and angle (rad)."""
    error = np.linalg.inv(true) @ estimate
    angle = float(np.arccos(np.clip((np.trace(error[:3, :3]) - 1.0) / 2.0, -1.0, 1.0)))
    y, z, x = error[1, 3] * 1000, error[2, 3] * 1000, error[0, 3] * 1000
    return {"y_mm": y, "z_mm": z, "x_mm": x, "angle": angle}


def summary(rows: List[Dict[str, float]]) -> Dict[str, float]:
    result = {key: float(np.sqrt(np.mean([row[key] ** 2 for row in rows]))) for key in rows[0]}
    result["within"] = float(np.mean([max(abs(row["y_mm"]), abs(row["z_mm"])) < 0.4 and row["angle"] < 0.01
                                      for row in rows]))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=6)
    parser.add_argument("--first-seed", type=int, default=3000)
    args = parser.parse_args()

    import sapien.core as sapien
    from transforms3d.axangles import axangle2mat
    from transforms3d.quaternions import mat2quat

    from agent.geometry import to_frame
    from agent.insertion.held_fit import HELD_BOXES, held_fit, nominal_pose
    from agent.preprocessing import kept_points
    from agent.registry import get_task
    from training.common.envs import make_env
    from training.experts import make_expert
    from training.experts.base import tcp_pose

    env_id = "PlugCharger-v0"
    box, spec, expert = HELD_BOXES[env_id], get_task(env_id), make_expert(env_id)
    env = make_env(env_id, obs_mode=spec.obs_mode, control_mode=spec.control_mode, fast_render=None)
    expert_grasp, rng = expert.grasp_pose, np.random.default_rng(0)
    fitted: List[Dict[str, float]] = []
    nominal: List[Dict[str, float]] = []
    seconds, missed = [], 0
    try:
        for seed in range(args.first_seed, args.first_seed + args.episodes):
            obs, _ = env.reset(seed=seed)
            expert.reset(env)
            shift = [rng.uniform(-0.008, 0.008), 0.0, rng.uniform(-0.008, 0.0)]
            offset = sapien.Pose(shift, mat2quat(axangle2mat([0, 0, 1], rng.uniform(-0.2, 0.2))))
            expert.grasp_pose = lambda env, offset=offset: expert_grasp(env) * offset
            previous = None
            for step in range(120):
                if step % 3 == 0 and step >= FIRST_STEP and expert.holds_target(env):
                    tcp = tcp_pose(env).to_transformation_matrix()
                    cloud = obs["pointcloud"]["xyzw"]
                    points = to_frame(cloud[kept_points(cloud), :3], tcp[:3, 3], tcp[:3, :3])
                    start = time.perf_counter()
                    previous = held_fit(points, box, tuple(obs["agent"]["qpos"][-2:]), previous)
                    seconds.append(time.perf_counter() - start)
                    true = (tcp_pose(env).inv() * env.unwrapped.charger.pose).to_transformation_matrix()
                    nominal.append(errors(true, nominal_pose(box)))
                    if previous is None:
                        missed += 1
                    else:
                        fitted.append(errors(true, previous.pose))
                obs, _, terminated, truncated, _ = env.step(expert.act(env))
                if terminated or truncated:
                    break
    finally:
        env.close()
    results = {"nominal grasp": summary(nominal), "held_fit": summary(fitted)}
    print("{} held states, {} without a fit; fit time median {:.0f} ms, 90th percentile {:.0f} ms".format(
        len(nominal), missed, 1000 * np.median(seconds), 1000 * np.percentile(seconds, 90)))
    print("| estimate | y (mm) | z (mm) | x (mm) | angle (rad) | within 0.4 mm / 0.01 rad |")
    print("|---|---|---|---|---|---|")
    for name, row in results.items():
        print("| {} | {:.3f} | {:.3f} | {:.3f} | {:.4f} | {:.2f} |".format(
            name, row["y_mm"], row["z_mm"], row["x_mm"], row["angle"], row["within"]))
    ratios = {key: results["nominal grasp"][key] / max(results["held_fit"][key], 1e-9)
              for key in ("y_mm", "z_mm", "x_mm", "angle")}
    print("baseline / fit RMS ratios: " + ", ".join("{} {:.0f}x".format(key, value) for key, value in ratios.items()))


if __name__ == "__main__":
    main()
