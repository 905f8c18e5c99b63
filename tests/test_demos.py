"""Demo validation on hand-made files of ManiSkill2's exact RecordEpisode layout, and the conversion cache."""
import json
import os
from pathlib import Path
from typing import Any, Callable, Dict, Sequence

import h5py
import numpy as np
import pytest

from agent.registry import get_task
from training.algorithms.demos import (DemoError, converted_source, load_converted, read_demo, save_episode,
                            write_source)

RIGID, SOFT = get_task("PickCube-v0"), get_task("Excavate-v0")


def write_official_demo(directory: Path, env_id: str = "PickCube-v0", control_mode: str = "pd_ee_delta_pose",
                        lengths: Sequence[int] = (3, 2), soft: bool = False, state_size: int = 73) -> Path:
    """trajectory.h5 + trajectory.json as RecordEpisode writes them (obs recorded in `state` mode)."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    path = directory / "trajectory.h5"
    with h5py.File(path, "w") as file:
        for episode, steps in enumerate(lengths):
            group = file.create_group("traj_{}".format(episode), track_order=True)
            group.create_dataset("obs", data=np.zeros((steps + 1, 51), np.float32))
            group.create_dataset("actions", data=rng.uniform(-1, 1, (steps, 7)).astype(np.float32))
            group.create_dataset("success", data=np.arange(steps) == steps - 1)
            if soft:
                group.create_dataset("env_init_state", data=np.zeros(state_size, np.float32))
            else:
                group.create_dataset("env_states", data=np.zeros((steps + 1, state_size), np.float32))
    episodes = [{"episode_id": episode, "episode_seed": episode, "reset_kwargs": {"seed": episode},
                 "control_mode": control_mode, "elapsed_steps": steps,
                 "info": {"elapsed_steps": steps, "success": True}} for episode, steps in enumerate(lengths)]
    meta = {"env_info": {"env_id": env_id, "max_episode_steps": 200,
                         "env_kwargs": {"obs_mode": "state", "control_mode": control_mode}},
            "commit_info": None, "episodes": episodes}
    path.with_suffix(".json").write_text(json.dumps(meta, indent=2))
    return path


def edit_json(path: Path, edit: Callable[[Dict[str, Any]], None]) -> None:
    meta = json.loads(path.with_suffix(".json").read_text())
    edit(meta)
    path.with_suffix(".json").write_text(json.dumps(meta))


def delete_h5(path: Path, name: str) -> None:
    with h5py.File(path, "a") as file:
        del file[name]


def replace_h5(path: Path, name: str, data: np.ndarray) -> None:
    delete_h5(path, name)
    with h5py.File(path, "a") as file:
        file.create_dataset(name, data=data)


def drop_seed(meta: Dict[str, Any]) -> None:
    meta["episodes"][0].pop("episode_seed")
    meta["episodes"][0]["reset_kwargs"] = {}


def drop_control_modes(meta: Dict[str, Any]) -> None:
    meta["env_info"].pop("env_kwargs")
    for episode in meta["episodes"]:
        episode.pop("control_mode")


def test_reads_the_official_rigid_body_layout(tmp_path: Path) -> None:
    path = write_official_demo(tmp_path, lengths=(3, 0, 2))
    edit_json(path, lambda meta: meta["episodes"][2].update(
        reset_kwargs={"seed": 7, "options": {"reconfigure": True}}))
    demo = read_demo(path, RIGID)
    assert [(e.key, e.seed, e.length) for e in demo.episodes] == [("traj_0", 0, 3), ("traj_2", 7, 2)]
    assert demo.episodes[1].options == {"reconfigure": True}
    assert demo.action_size == 7 and not demo.soft


def test_reads_the_official_soft_body_layout(tmp_path: Path) -> None:
    demo = read_demo(write_official_demo(tmp_path, env_id="Excavate-v0", soft=True), SOFT)
    assert demo.soft and [e.length for e in demo.episodes] == [3, 2]


def test_control_mode_may_come_from_env_kwargs(tmp_path: Path) -> None:
    path = write_official_demo(tmp_path)
    edit_json(path, lambda meta: [episode.pop("control_mode") for episode in meta["episodes"]])
    assert len(read_demo(path, RIGID).episodes) == 2


BROKEN = {  # how to break a valid demo -> what the error says
    "no .json": (lambda p: p.with_suffix(".json").unlink(), "needs its .json"),
    "bad .json": (lambda p: p.with_suffix(".json").write_text("{"), "not valid JSON"),
    "no env_info": (lambda p: edit_json(p, lambda m: m.pop("env_info")), "lacks 'env_info'"),
    "no env_id": (lambda p: edit_json(p, lambda m: m["env_info"].pop("env_id")), "lacks 'env_id'"),
    "no episodes": (lambda p: edit_json(p, lambda m: m.pop("episodes")), "lacks 'episodes'"),
    "no reset_kwargs": (lambda p: edit_json(p, lambda m: m["episodes"][1].pop("reset_kwargs")),
                        "episode 1 lacks 'reset_kwargs'"),
    "no seed": (lambda p: edit_json(p, drop_seed), "episode 0 has no seed"),
    "no control mode": (lambda p: edit_json(p, drop_control_modes), "names no control_mode"),
    "not HDF5": (lambda p: p.write_bytes(b"not hdf5"), "not a readable HDF5 file"),
    "no group": (lambda p: delete_h5(p, "traj_1"), "has no group traj_1"),
    "no actions": (lambda p: delete_h5(p, "traj_0/actions"), "traj_0 lacks 'actions'"),
    "no success": (lambda p: delete_h5(p, "traj_1/success"), "traj_1 lacks 'success'"),
    "no env_states": (lambda p: delete_h5(p, "traj_0/env_states"), "lacks 'env_states' (rigid-body demos"),
    "short success": (lambda p: replace_h5(p, "traj_0/success", np.zeros(2, bool)), "inconsistent shapes"),
    "short env_states": (lambda p: replace_h5(p, "traj_1/env_states", np.zeros((2, 73))), "inconsistent shapes"),
    "only empty trajectories": (lambda p: write_official_demo(p.parent, lengths=(0,)), "no trajectory with actions"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_demo_is_rejected_with_a_clear_error(tmp_path: Path, case: str) -> None:
    path = write_official_demo(tmp_path)
    breaking, message = BROKEN[case]
    breaking(path)
    with pytest.raises(DemoError) as error:
        read_demo(path, RIGID)
    assert message in str(error.value)


def test_missing_demo_names_the_download_command(tmp_path: Path) -> None:
    with pytest.raises(DemoError) as error:
        read_demo(tmp_path / "trajectory.h5", RIGID)
    assert "does not exist" in str(error.value)
    assert "python -m mani_skill2.utils.download_demo PickCube-v0" in str(error.value)


def test_demo_of_another_task_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(DemoError) as error:
        read_demo(write_official_demo(tmp_path, env_id="StackCube-v0"), RIGID)
    assert "holds demos of StackCube-v0, not PickCube-v0" in str(error.value)


def test_other_control_mode_names_the_conversion_command(tmp_path: Path) -> None:
    path = write_official_demo(tmp_path, control_mode="pd_joint_pos")
    with pytest.raises(DemoError) as error:
        read_demo(path, RIGID)
    message = str(error.value)
    assert "recorded in control mode pd_joint_pos" in message
    assert ("python -m mani_skill2.trajectory.replay_trajectory --traj-path {} --target-control-mode "
            "pd_ee_delta_pose --obs-mode none --save-traj".format(path)) in message
    assert str(tmp_path / "trajectory.none.pd_ee_delta_pose.h5") in message


def test_soft_body_demo_without_initial_state_is_rejected(tmp_path: Path) -> None:
    path = write_official_demo(tmp_path, env_id="Excavate-v0")  # rigid layout: env_states, no env_init_state
    with pytest.raises(DemoError) as error:
        read_demo(path, SOFT)
    assert "traj_0 lacks 'env_init_state' (soft-body demos" in str(error.value)


def test_cache_is_complete_only_for_the_unchanged_demo(tmp_path: Path) -> None:
    demo = read_demo(write_official_demo(tmp_path / "demo"), RIGID)
    cache = tmp_path / "cache"
    cache.mkdir()
    assert converted_source(demo, cache) is None
    write_source(cache, demo, 5, [-1.0] * 7, [1.0] * 7)
    for episode in demo.episodes:
        save_episode(cache, episode, {"points": np.zeros((episode.length, 4, 6), np.float16),
                                      "state": np.full((episode.length, 5), episode.episode_id, np.float32),
                                      "label": np.zeros((episode.length, 7), np.float32)})
        assert (converted_source(demo, cache) is None) == (episode is demo.episodes[0])
    assert converted_source(demo, cache)["state_size"] == 5
    data = load_converted(cache, demo.episodes[::-1])
    assert data["points"].shape == (5, 4, 6) and data["points"].dtype == np.float16
    assert data["state"][:, 0].tolist() == [1, 1, 0, 0, 0]
    os.utime(demo.path, ns=(0, 0))  # the demo file changed: the cache no longer counts
    assert converted_source(demo, cache) is None
