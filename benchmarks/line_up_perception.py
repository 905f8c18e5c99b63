"""How precisely can the paper's PointNet read an insertion line-up from each point-cloud preprocessing?

    .venv/bin/python benchmarks/line_up_perception.py PegInsertionSide-v0 [--episodes 60] [--updates 3000]
        [--variants "uniform,voxel"] [--lean 0.5] [--fourier-octaves 7]
        # ~20 min per variant on 2 cores, after ~5 min of collection
    .venv/bin/python benchmarks/line_up_perception.py PegInsertionSide-v0 --first-frame --episodes 3000
        [--updates 4000]    # ~3 min of collection, ~25 min per variant
    .venv/bin/python benchmarks/line_up_perception.py PegInsertionSide-v0 --close-look 0.1 --episodes 3000
        [--look-pitch 0.6] [--look-jitter 0.02] [--updates 4000] [--save DIR]    # from the hand camera 10 cm from the slot
    .venv/bin/python benchmarks/line_up_perception.py PegInsertionSide-v0 --grasp --variants uniform
        # how the peg is held, read in the line-up states

The insertion students stall a few cm in front of the hole / receptacle, where the expert's labels
depend on where the slot is relative to the held object. This measures the perception half of that
alone, as supervised regression: states where the expert (with action noise) holds the object within
`LINE_UP_RANGE` in front of the slot's entrance are rendered with ManiSkill2's `pointcloud+robot_seg`
(training's fast renderer), and the network (PointNet + state MLP, as in the policy) learns the held
object's pose in the slot frame (`InsertionExpert.slot_offset`: position and rotation vector). Each
preprocessing variant trains for the same updates on the same states (earlier episodes) and is scored
on the states of the last `--test-share` of the episodes, which it never saw:
- `uniform` (what ships today): points sampled uniformly from the filtered camera cloud;
- `no robot`: the robot's points dropped first (`robot_seg`, which the challenge allows);
- `voxel`: one point per occupied `--voxel` cube first (uniform in space rather than per pixel);
- `no robot + voxel`: both.
Two more knobs apply to every variant: `--lean` sets how far the expert's gripper leans towards the
held object's head (PegInsertionSide ships 0.3 rad; leaning more points the hand camera at the box
face), and `--fourier-octaves K` feeds the PointNet sin/cos of each coordinate at K octaves (wavelengths
50 cm down to 50 cm / 2^(K-1)) besides xyz and rgb, so its first layer can resolve mm-scale geometry.
`--first-frame` asks instead how well the hole can be located before anything hides it: the states
are the episodes' first observations (arm up, nothing between the box and the base camera; one per
episode, so thousands of episodes), and the target is the TCP's position in the slot frame (where the
slot is relative to the hand, which a policy remembering that view would need) and the slot's yaw.
`--close-look DISTANCE` does the same for a closer view: the arm is put (by inverse kinematics, no
simulation steps) where the hand camera looks at the slot's entrance face from DISTANCE m, tilted
`--look-pitch` rad downwards (default: the task expert's look phase's: 0.6 for PegInsertionSide, which
keeps the wrist off the table, 0.9 for PlugCharger, whose receptacle faces the robot), give or take `--look-jitter` m along each axis and 0.1 rad, as a policy would get there on its
own. With `--save DIR`, `ms2agent export-slot-reader DIR/uniform.pt OUT.onnx` makes it a looking policy's
reader; `ms2agent train-slot-reader ENV` does the `uniform` variant's collection and training in one
command (`training.slot_reader.train.train_slot_reader`, on the views of `training.slot_reader.views`).
`--grasp` keeps the line-up states but regresses the other half of the line-up, how the object is
held: the TCP's position in the object's frame (lateral: off the object's axis) and the object's axis
in the TCP frame. With the slot placed by a close look, this is what a policy must still read.
Printed: held-out RMS error of the lateral offset (mm, the y/z the expert lines up; the insertion
needs ~1.5 mm for the peg, 0.4 mm for the charger), of the distance along the axis (mm) and of the
angle (rad), the same for predicting the training mean (what no perception gives), and each variant's
lateral error as a ratio to `uniform`'s in this run (to the mean's when `uniform` is not run), and the
lateral error on the training states themselves (far below the held-out one: memorised; near it and
near the mean's: not learned at all).
"""
import argparse
import sys
import time
from pathlib import Path
from typing import Callable, List, Optional

import gymnasium as gym
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.registry import get_task  # noqa: E402
from training.experts import make_expert  # noqa: E402
from training.experts.assembly import InsertionExpert  # noqa: E402
from training.analysis.point_shares import phase  # noqa: E402
from training.slot_reader.train import fit_reader, save_estimator  # noqa: E402
from training.slot_reader.views import (SEG_MODE, View, collect_views, compact, errors, rotation_vector,  # noqa: E402
                                 split_by_seed, view_env)

LINE_UP_RANGE = 0.08  # m in front of the entrance where a held object counts as lining up
VARIANTS = {  # name -> TaskSpec fields for a voxel side
    "uniform": lambda voxel: {},
    "no robot": lambda voxel: {"obs_mode": SEG_MODE},
    "voxel": lambda voxel: {"voxel_size": voxel},
    "no robot + voxel": lambda voxel: {"obs_mode": SEG_MODE, "voxel_size": voxel},
}


def slot_target(env: gym.Env, expert: InsertionExpert) -> np.ndarray:
    """The held object's pose in the slot frame: position, rotation vector."""
    offset = expert.slot_offset(env)
    return np.concatenate([offset.p, rotation_vector(offset.q)])


def grasp_target(env: gym.Env, expert: InsertionExpert) -> np.ndarray:
    """How the object is held: the TCP's position in the object's frame (x along its axis, y/z off
    it) and the object's axis in the TCP frame (a unit vector: differences are angles, no flips)."""
    held, tcp = expert.target(env).pose, env.unwrapped.tcp.pose
    return np.concatenate([(held.inv() * tcp).p, (tcp.inv() * held).to_transformation_matrix()[:3, 0]])


def collect(env_id: str, seeds: List[int], noise: float, every: int, lean: Optional[float] = None,
            target: Callable[[gym.Env, InsertionExpert], np.ndarray] = slot_target) -> List[View]:
    """(seed, compact observation, `target`) for every `every`-th step of noisy expert episodes that
    is a line-up state (`lean`: the expert's grasp lean, rad; None: its own)."""
    expert = make_expert(env_id, None if lean is None else {"lean": lean})
    env, rng, samples = view_env(env_id), np.random.default_rng(0), []
    try:
        for seed in seeds:
            obs, _ = env.reset(seed=seed)
            expert.reset(env)
            for step in range(200):
                action = expert.act(env)
                if step % every == 0 and phase(env, expert, LINE_UP_RANGE) == "line-up":
                    samples.append((seed, compact(obs), target(env, expert).astype(np.float32)))
                action = np.clip(action + rng.normal(0, noise, action.shape), -1, 1)
                obs, _, terminated, truncated, _ = env.step(action)
                if terminated or truncated:
                    break
            print("seed {}: {} line-up states so far".format(seed, len(samples)), flush=True)
    finally:
        env.close()
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("env_id", nargs="?", default="PegInsertionSide-v0")
    parser.add_argument("--episodes", type=int, default=60)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--noise", type=float, default=0.1, help="std of the noise on the expert's actions")
    parser.add_argument("--every", type=int, default=4, help="keep every this many steps")
    parser.add_argument("--test-share", type=float, default=0.25)
    parser.add_argument("--updates", type=int, default=3000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--draws", type=int, default=3, help="preprocessings per training state (fresh samples)")
    parser.add_argument("--voxel", type=float, default=0.005, help="voxel side (m) of the voxel variants")
    parser.add_argument("--lean", type=float, help="the expert's grasp lean (rad; default: its own)")
    parser.add_argument("--fourier-octaves", type=int, default=0, help="sin/cos point features at this many octaves")
    parser.add_argument("--first-frame", action="store_true",
                        help="regress the slot's pose from each episode's first observation instead")
    parser.add_argument("--close-look", type=float, metavar="DISTANCE",
                        help="like --first-frame, but the view of the hand camera from DISTANCE m in front of the slot")
    parser.add_argument("--look-pitch", type=float,
                        help="rad the --close-look view is tilted downwards (default: the task expert's look phase's)")
    parser.add_argument("--look-jitter", type=float, default=0.02,
                        help="m, largest shift of the --close-look camera along each slot axis")
    parser.add_argument("--grasp", action="store_true",
                        help="regress how the object is held (TCP in the object frame, object axis) instead of the slot")
    parser.add_argument("--save", type=Path, metavar="DIR", help="save each variant's regressor as DIR/<variant>.pt")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset of " + ", ".join(VARIANTS))
    args = parser.parse_args()
    if (args.first_frame or args.close_look) and args.lean is not None:
        parser.error("--lean sets the expert's grasp in the line-up states; --first-frame and --close-look run no expert")
    if args.grasp and (args.first_frame or args.close_look):
        parser.error("--grasp reads the line-up states; --first-frame and --close-look hold nothing")
    if args.first_frame and args.close_look:
        parser.error("--first-frame and --close-look are two different views: choose one")
    unknown = set(args.variants.split(",")) - set(VARIANTS)
    if unknown:
        parser.error("unknown variants {} (choose from {})".format(", ".join(sorted(unknown)), ", ".join(VARIANTS)))
    torch.set_num_threads(2)

    started = time.time()
    seeds = list(range(args.first_seed, args.first_seed + args.episodes))
    expert = make_expert(args.env_id)
    if not isinstance(expert, InsertionExpert):
        raise SystemExit("{} is not an insertion task".format(args.env_id))
    pitch = expert.look_pitch if args.look_pitch is None else args.look_pitch
    if args.first_frame or args.close_look:
        samples = collect_views(args.env_id, seeds, (args.close_look, pitch, args.look_jitter) if args.close_look else None)
    else:
        samples = collect(args.env_id, seeds, args.noise, args.every, args.lean, grasp_target if args.grasp else slot_target)
    if args.close_look:
        print("the arm reached the look pose in {} of {} episodes".format(len(samples), len(seeds)))
    split = split_by_seed(samples, seeds, args.test_share)
    if not all(split.values()):
        raise SystemExit("no line-up states in the {} episodes: raise --episodes or change --test-share".format(
            " or ".join(name for name, rows in split.items() if not rows)))
    targets = {name: np.stack([s[2] for s in rows]) for name, rows in split.items()}
    print("{} training / {} held-out states from {} episodes, collected in {:.0f} s".format(
        len(targets["train"]), len(targets["test"]), len(seeds), time.time() - started))

    spec = get_task(args.env_id)
    variants = {name: spec._replace(**VARIANTS[name](args.voxel)) for name in args.variants.split(",")}
    mean = {name: errors(np.broadcast_to(targets["train"].mean(axis=0), values.shape), values)
            for name, values in targets.items()}
    results = {"predict the mean": mean["test"]}
    fit = {"predict the mean": mean["train"]["lateral_mm"]}
    for name, variant in variants.items():
        clock = time.time()
        trained = fit_reader(split, variant, args.updates, args.batch_size, args.draws, args.fourier_octaves)
        if args.save:
            save_estimator(trained.estimator, variant, args.save / "{}.pt".format(name.replace(" ", "_")))
        results[name] = trained.held_out
        fit[name] = trained.training["lateral_mm"]
        print("{}: held-out {}, training-state lateral {:.1f} mm ({:.0f} s)".format(
            name, results[name], fit[name], time.time() - clock), flush=True)

    baseline = results.get("uniform", results["predict the mean"])["lateral_mm"]
    print("\n| preprocessing | lateral RMS (mm) | along RMS (mm) | angle RMS (rad) | lateral vs {} "
          "| lateral RMS on the training states (mm) |".format("uniform" if "uniform" in results else "predict the mean"))
    print("|---|---|---|---|---|---|")
    for name, row in results.items():
        print("| {} | {:.1f} | {:.1f} | {:.3f} | {:.2f}x | {:.1f} |".format(
            name, row["lateral_mm"], row["along_mm"], row["angle_rad"], row["lateral_mm"] / baseline, fit[name]))


if __name__ == "__main__":
    main()
