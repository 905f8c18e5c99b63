"""Does a slot reader, trained on `training.common.fast_render` views, read the official renderer's views as well?

    .venv/bin/python benchmarks/reader_renderers.py [PegInsertionSide-v0] [--reader weights/ENV.slot_reader.onnx]
        [--views 200] [--first-seed 5000000]    # ~3 min here for the defaults

The same look views (`training.slot_reader.views.collect_views`: the expert's look pose by inverse kinematics,
the same jitter, seeds the reader never saw) are rendered once with the fast renderer (what training
uses on software Vulkan) and once with the official one (what the official evaluator uses), each in its
own process (SAPIEN shares one renderer per process). Printed per renderer: the reader's RMS errors
(lateral and along the slot axis in mm, angle in rad), and the official / fast ratio of each. Where the
task's slot has a known face (`agent.insertion.slot_fit`, PlugCharger), each view is read twice: by the network
alone and refined by the face fit (the agent's reading), with the ratio of the two on the official views:

    .venv/bin/python benchmarks/reader_renderers.py PlugCharger-v0 --reader runs/PlugCharger-v0/slot_reader_1000.onnx
"""
import argparse
import multiprocessing as mp
from pathlib import Path
from typing import Dict, Optional

import numpy as np


def reading_errors(env_id: str, reader_path: str, seeds: range, fast_render: Optional[bool]
                   ) -> Dict[str, Dict[str, float]]:
    """The reader's RMS errors on the look views of `seeds`, rendered with `fast_render`, per reading:
    "network" (the network alone) and, where the task's slot has a known face, "network + face fit"."""
    from agent.insertion.slot_fit import SLOT_FACES
    from agent.insertion.slot_reader import reader, reader_entry
    from agent.registry import get_task, reader_spec
    from training.experts import make_expert
    from training.slot_reader.views import collect_views, errors, view_env

    expert = make_expert(env_id)
    look = (expert.look_distance, expert.look_pitch, expert.look_jitter)
    views = collect_views(env_id, list(seeds), look, fast_render)
    env = view_env(env_id, fast_render)
    entry, spec = reader_entry(Path(reader_path), env_id), reader_spec(get_task(env_id))
    variants = {"network": False, "network + face fit": True} if env_id in SLOT_FACES else {"network": False}
    readings = {name: reader(entry, spec, env.observation_space, face_fit=face_fit) for name, face_fit in variants.items()}
    env.close()
    targets = np.stack([target for _, _, target in views])
    results = {}
    for name, read in readings.items():
        rng = np.random.default_rng(0)
        results[name] = {"views": len(views), **errors(np.stack([read(obs, rng) for _, obs, _ in views]), targets)}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("env_id", nargs="?", default="PegInsertionSide-v0")
    parser.add_argument("--reader", help="exported slot reader (default: weights/ENV.slot_reader.onnx)")
    parser.add_argument("--views", type=int, default=200)
    parser.add_argument("--first-seed", type=int, default=5_000_000)
    args = parser.parse_args()
    reader_path = args.reader or "weights/{}.slot_reader.onnx".format(args.env_id)
    seeds = range(args.first_seed, args.first_seed + args.views)
    results = {}
    with mp.get_context("spawn").Pool(1, maxtasksperchild=1) as pool:
        for name, fast in (("fast", True), ("official", False)):
            results[name] = pool.apply(reading_errors, (args.env_id, reader_path, seeds, fast))
    print("| renderer | reading | views | lateral RMS (mm) | along RMS (mm) | angle RMS (rad) |\n|---|---|---|---|---|---|")
    for renderer, rows in results.items():
        for reading, row in rows.items():
            print("| {} | {} | {} | {:.3f} | {:.3f} | {:.5f} |".format(
                renderer, reading, row["views"], row["lateral_mm"], row["along_mm"], row["angle_rad"]))
    keys = ("lateral_mm", "along_mm", "angle_rad")
    for reading in results["fast"]:
        print("{}, official / fast: ".format(reading) + ", ".join(
            "{} {:.2f}".format(key, results["official"][reading][key] / results["fast"][reading][key]) for key in keys))
    if len(results["official"]) > 1:
        fitted, network = results["official"]["network + face fit"], results["official"]["network"]
        print("official, face fit / network: " + ", ".join("{} {:.3f}".format(key, fitted[key] / network[key])
                                                             for key in keys))


if __name__ == "__main__":
    main()
