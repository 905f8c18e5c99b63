"""How exactly does `agent.insertion.held_fit` place the charger in the hand, against assuming the expert's grasp?

    .venv/bin/python benchmarks/held_fit_accuracy.py [--driver expert|policy] [--episodes 6] [--first-seed N]

`--driver expert` (default; ~3 min here): the privileged PlugCharger expert grasps the charger off its own grasp
pose (per episode a random yaw within +-0.2 rad, shift along the charger within +-8 mm, up to 8 mm higher: the
spread of the students' grasps, `ms2agent diagnose ... in_hand`) and carries it. `--driver policy` (~1 min per
episode): the shipped PlugCharger policy plays, as the evaluator runs it. Either way the official renderer's fused
camera cloud of every observation goes to `HeldTracker`, exactly as the agent runs it (warm-started from the
previous observation's fit), and every state from step 10 on in which ManiSkill2's grasp check says the charger is
held is scored against the simulator's true pose.

Printed for the fit and for the baseline (the nominal grasp, what a student blind to the charger in its
hand has to assume): RMS errors of the charger's pose in the TCP frame across the closing axis (charger y),
along the approach (z), along the pins (x) in mm and of its angle (rad), the share of held states within the
pins' 0.4 mm / 0.01 rad and the share more than 0.1 rad off, the held states without a fit, the baseline / fit ratio
of each RMS, and the tracker's CPU time per observation (every observation, held or not).
"""
import argparse
import time
from typing import Dict, List

import numpy as np

FIRST_STEP = 10  # no grasp comes earlier (ManiSkill2's grasp check can be true at the reset)
MAX_STEPS = 200  # the evaluator's episode length
FIRST_SEEDS = {"expert": 3000, "policy": 2_900_100}  # training seeds for the expert; selection seeds for the policy


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
    result["off"] = float(np.mean([row["angle"] > 0.1 for row in rows]))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--driver", choices=sorted(FIRST_SEEDS), default="expert",
                        help="who plays: the expert off its own grasp, or the shipped policy")
    parser.add_argument("--episodes", type=int, default=6)
    parser.add_argument("--first-seed", type=int, help="default: {}".format(FIRST_SEEDS))
    args = parser.parse_args()

    import sapien.core as sapien
    from transforms3d.axangles import axangle2mat
    from transforms3d.quaternions import mat2quat

    from agent.blas_threads import limit_openblas_threads
    from agent.insertion.held_fit import HELD_BOXES, HeldTracker, nominal_pose
    from agent.policy import Policy
    from agent.registry import get_task
    from training.common.envs import make_env
    from training.common.seeds import check
    from training.experts import make_expert
    from training.experts.base import tcp_pose

    env_id = "PlugCharger-v0"
    box, spec, expert = HELD_BOXES[env_id], get_task(env_id), make_expert(env_id)
    env = make_env(env_id, obs_mode=spec.obs_mode, control_mode=spec.control_mode, fast_render=False)
    policy = Policy(env_id, env.observation_space, env.action_space) if args.driver == "policy" else None
    expert_grasp, rng, tracker = expert.grasp_pose, np.random.default_rng(0), HeldTracker(box)
    limit_openblas_threads(1)  # as the agent runs the fit (`agent.insertion.memory`), with either driver
    first_seed = FIRST_SEEDS[args.driver] if args.first_seed is None else args.first_seed
    fitted: List[Dict[str, float]] = []
    nominal: List[Dict[str, float]] = []
    seconds, missed = [], 0
    try:
        for seed in range(first_seed, first_seed + args.episodes):
            if policy:
                check("selection", seed)  # the policy is scored on selection seeds only
            obs, _ = env.reset(seed=seed)
            tracker.reset()
            if policy:
                policy.reset()
            else:
                expert.reset(env)
                shift = [rng.uniform(-0.008, 0.008), 0.0, rng.uniform(-0.008, 0.0)]
                offset = sapien.Pose(shift, mat2quat(axangle2mat([0, 0, 1], rng.uniform(-0.2, 0.2))))
                expert.grasp_pose = lambda env, offset=offset: expert_grasp(env) * offset
            for step in range(MAX_STEPS):
                start = time.process_time()
                tracker.track(obs)
                seconds.append(time.process_time() - start)
                unwrapped = env.unwrapped
                if step >= FIRST_STEP and unwrapped.agent.check_grasp(unwrapped.charger):
                    true = (tcp_pose(env).inv() * unwrapped.charger.pose).to_transformation_matrix()
                    nominal.append(errors(true, nominal_pose(box)))
                    if tracker.pose is None:
                        missed += 1
                    else:
                        fitted.append(errors(true, tracker.pose))
                obs, _, terminated, truncated, info = env.step(policy.act(obs) if policy else expert.act(env))
                if terminated or truncated or (policy and info.get("success")):
                    break
    finally:
        env.close()
    if not fitted:
        raise SystemExit("no held state was fitted ({} held states): nothing to score".format(len(nominal)))
    results = {"nominal grasp": summary(nominal), "held_fit": summary(fitted)}
    print("{}: {} held states, {} without a fit; tracker CPU time per observation: median {:.2f} ms, 99th "
          "percentile {:.2f} ms".format(args.driver, len(nominal), missed, 1000 * np.median(seconds),
                                        1000 * np.percentile(seconds, 99)))
    print("| estimate | y (mm) | z (mm) | x (mm) | angle (rad) | within 0.4 mm / 0.01 rad | > 0.1 rad off |")
    print("|---|---|---|---|---|---|---|")
    for name, row in results.items():
        print("| {} | {:.3f} | {:.3f} | {:.3f} | {:.4f} | {:.2f} | {:.2f} |".format(
            name, row["y_mm"], row["z_mm"], row["x_mm"], row["angle"], row["within"], row["off"]))
    ratios = {key: results["nominal grasp"][key] / max(results["held_fit"][key], 1e-9)
              for key in ("y_mm", "z_mm", "x_mm", "angle")}
    print("baseline / fit RMS ratios: " + ", ".join("{} {:.0f}x".format(key, value) for key, value in ratios.items()))


if __name__ == "__main__":
    main()
