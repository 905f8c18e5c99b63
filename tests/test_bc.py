"""Behaviour cloning: stage settings, checkpoint selection, clear CLI errors, training from a converted
cache without a simulator (the soft-body path on a CPU machine), resume, and a real PickCube run."""
import csv
import json
import subprocess
from pathlib import Path
from typing import List, Tuple

import h5py
import numpy as np
import pytest
import torch
import typer
from typer.testing import CliRunner

from agent.registry import get_task
from test_demos import write_official_demo
from training.algorithms.bc import BCConfig, split_episodes
from training.common.envs import has_cuda
from training.common.selection import final_choice, select_best
from training.common.checkpoints import load_checkpoint, model_from_checkpoint
from training.algorithms.demos import read_demo, save_episode, write_source
from training.cli import bc
from training.experts import record_demos
from training.common.networks import ActorCritic
from training.common.run_dir import RunDirectory

APP = typer.Typer()
APP.command()(bc)
TINY = ["--updates", "4", "--batch-size", "4", "--eval-every", "2", "--workers", "1"]
no_cuda = pytest.mark.skipif(has_cuda(), reason="checks the behaviour on machines without CUDA")


def ms2agent_bc(*args: object) -> Tuple[int, str]:
    """Exit code and output (rich's error box flattened to one line) of `ms2agent bc ARGS`."""
    result = CliRunner().invoke(APP, [str(arg) for arg in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, " ".join(result.output.replace("│", " ").split())


def record(stage: int, iteration: int, success, val_mse: float, mean_return=0.0) -> dict:
    return {"stage": stage, "iteration": iteration, "success": success, "mean_return": mean_return,
            "val_mse": val_mse, "episodes": 0 if success is None else 10}


def test_stage_two_uses_the_paper_factors() -> None:
    config = BCConfig("Excavate-v0", "demo.h5")
    assert (config.stage_batch_size(1), config.stage_updates(1)) == (256, 50_000)
    assert (config.stage_batch_size(2), config.stage_updates(2)) == (230, 43_750)


def test_selection_by_validation_mse_without_evaluation() -> None:
    records = [record(1, 1, None, 0.5), record(1, 2, None, 0.2), record(2, 1, None, 0.3)]
    assert select_best(records, 1)["iteration"] == 2
    assert final_choice(records) is records[1]  # stage 2's best (0.3) does not beat stage 1's (0.2)
    records.append(record(2, 2, None, 0.1))
    assert final_choice(records) is records[3]


def test_selection_by_success_when_evaluating() -> None:
    records = [record(1, 1, 0.4, 0.1), record(1, 2, 0.6, 0.9), record(2, 1, 0.6, 0.5, mean_return=2.0)]
    assert select_best(records, 1)["iteration"] == 2  # higher success wins over lower MSE
    assert final_choice(records) is records[2]  # equal success, higher return


def test_validation_split_holds_out_a_tenth_of_the_trajectories(tmp_path: Path) -> None:
    demo = read_demo(write_official_demo(tmp_path, lengths=[2] * 20), get_task("PickCube-v0"))
    train, validation = split_episodes(demo.episodes, 0.1, seed=0)
    assert len(validation) == 2 and sorted(train + validation, key=lambda e: e.episode_id) == list(demo.episodes)
    assert split_episodes(demo.episodes, 0.1, seed=0) == (train, validation)
    assert [len(part) for part in split_episodes(demo.episodes[:2], 0.1, 0)] == [1, 1]
    assert split_episodes(demo.episodes[:1], 0.1, 0) == ([demo.episodes[0]], [])


def test_unknown_env_id_is_a_clear_error(tmp_path: Path) -> None:
    code, output = ms2agent_bc("NoSuchTask-v0", write_official_demo(tmp_path))
    assert code == 2 and "Unknown env id 'NoSuchTask-v0'" in output and "Traceback" not in output


def test_demo_errors_reach_the_command_line(tmp_path: Path) -> None:
    code, output = ms2agent_bc("StackCube-v0", write_official_demo(tmp_path), "--run-dir", tmp_path / "run")
    assert code == 2 and "holds demos of PickCube-v0, not StackCube-v0" in output
    code, output = ms2agent_bc("PickCube-v0", write_official_demo(tmp_path / "joint", control_mode="pd_joint_pos"),
                               "--run-dir", tmp_path / "run")
    assert code == 2 and "--target-control-mode pd_ee_delta_pose --obs-mode none --save-traj" in output
    assert not (tmp_path / "run").exists()  # rejected before any work


@no_cuda
def test_soft_body_task_without_cuda_stops_at_once(tmp_path: Path) -> None:
    demo = write_official_demo(tmp_path, env_id="Excavate-v0", soft=True)
    code, output = ms2agent_bc("Excavate-v0", demo, "--run-dir", tmp_path / "run")
    assert code == 2 and "Excavate-v0 is a soft-body task" in output and "needs a CUDA GPU" in output
    assert not (tmp_path / "run").exists()


def converted_soft_demo(tmp_path: Path) -> Tuple[Path, Path]:
    """A soft-body demo and a cache as if converted on a GPU machine (random inputs, labels from the demo)."""
    path = write_official_demo(tmp_path / "demo", env_id="Excavate-v0", lengths=[6] * 4, soft=True)
    demo = read_demo(path, get_task("Excavate-v0"))
    run_dir = tmp_path / "run"
    (run_dir / "demos").mkdir(parents=True)
    write_source(run_dir / "demos", demo, 9, [-1.0] * 7, [1.0] * 7)
    rng = np.random.default_rng(0)
    for episode in demo.episodes:
        save_episode(run_dir / "demos", episode, {
            "points": rng.normal(size=(episode.length, 1200, 6)).astype(np.float16),
            "state": rng.normal(size=(episode.length, 9)).astype(np.float32),
            "label": rng.uniform(-1, 1, (episode.length, 7)).astype(np.float32)})
    return path, run_dir


def checkpoint_names(run_dir: Path) -> List[str]:
    return sorted(path.name for path in (run_dir / "checkpoints").glob("*.pt"))


@no_cuda
def test_converted_soft_body_demo_trains_without_simulator_and_resumes_exactly(tmp_path: Path) -> None:
    demo, run_dir = converted_soft_demo(tmp_path)
    code, output = ms2agent_bc("Excavate-v0", demo, "--run-dir", run_dir, "--eval-episodes", "1", *TINY)
    assert code == 2 and "evaluating policies needs a CUDA GPU" in output and "--eval-episodes 0" in output

    code, output = ms2agent_bc("Excavate-v0", demo, "--run-dir", run_dir, "--eval-episodes", "0", *TINY)
    assert code == 0, output
    assert checkpoint_names(run_dir) == ["stage1-0001.pt", "stage1-0002.pt", "stage2-0001.pt", "stage2-0002.pt"]
    result = load_checkpoint(run_dir / "checkpoints" / "stage2-0002.pt")["progress"]["records"]
    assert [(r["stage"], r["updates"], r["batch_size"]) for r in result] == [(1, 2, 4), (1, 4, 4), (2, 2, 4), (2, 4, 4)]
    chosen = json.loads((run_dir / "result.json").read_text())
    assert chosen["selected_by"] == "validation MSE on 1 held-out trajectories"
    assert chosen["val_mse"] == min(r["val_mse"] for r in result if r["stage"] == int(chosen["chosen_from"][-1]))

    torch.manual_seed(0)
    initial = ActorCritic(9, 7, [-1.0] * 7, [1.0] * 7)
    trained = model_from_checkpoint(Path(chosen["checkpoint"]))
    points, state = torch.zeros(2, 1200, 6), torch.ones(2, 9)
    with torch.no_grad():
        assert not torch.allclose(initial(points, state), trained(points, state))

    code, output = ms2agent_bc("Excavate-v0", demo, "--run-dir", run_dir, "--eval-episodes", "0", *TINY)
    assert code == 2 and "--resume" in output
    for stage2 in (run_dir / "checkpoints").glob("stage2-*.pt"):
        stage2.unlink()
    code, output = ms2agent_bc("Excavate-v0", demo, "--run-dir", run_dir, "--eval-episodes", "0", "--resume", *TINY)
    assert code == 0 and "Resuming" in output and "Stage 2 starts from" in output
    resumed = load_checkpoint(run_dir / "checkpoints" / "stage2-0002.pt")["progress"]["records"]
    assert [r["train_loss"] for r in resumed] == [r["train_loss"] for r in result]
    with (run_dir / "metrics.csv").open() as file:
        assert len(list(csv.DictReader(file))) == 4


class Stopped(Exception):
    """Stands for a session's end in the middle of a run."""


@no_cuda
def test_a_stopped_bc_run_leaves_result_json_naming_its_best_evaluation_so_far(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As PPO and teacher runs do: a BC run killed between evaluations has a result.json with its choice so
    far, not none (or an earlier finish's)."""
    import training.algorithms.bc as bc_module

    demo, run_dir = converted_soft_demo(tmp_path)
    errors = iter([0.5, 0.2, 0.3])

    def validation_mse(*args: object) -> float:
        for error in errors:
            return error
        raise Stopped

    monkeypatch.setattr(bc_module, "validation_mse", validation_mse)
    chosen, write_result = [], RunDirectory.write_result
    monkeypatch.setattr(RunDirectory, "write_result", lambda self, best, **extra: chosen.append(
        write_result(self, best, **extra)))
    with pytest.raises(Stopped):
        ms2agent_bc("Excavate-v0", demo, "--run-dir", run_dir, "--eval-episodes", "0", *TINY)
    assert [(result["stage"], result["iteration"]) for result in chosen] == [(1, 1), (1, 2), (1, 2)]
    result = json.loads((run_dir / "result.json").read_text())
    assert (result["stage"], result["iteration"], result["val_mse"]) == (1, 2, 0.2)
    assert result["selected_by"] == "validation MSE on 1 held-out trajectories"
    assert result["checkpoint"] == str(run_dir / "checkpoints" / "stage1-0002.pt")


@pytest.mark.sim
def test_bc_on_recorded_pick_cube_demos(tmp_path: Path) -> None:
    assert record_demos("PickCube-v0", tmp_path / "demo", n_episodes=2, first_seed=0) == {"episodes": 2, "kept": 2}
    demo, run_dir = tmp_path / "demo" / "trajectory.h5", tmp_path / "run"
    args = ["PickCube-v0", demo, "--run-dir", run_dir, "--eval-episodes", "1", "--max-episode-steps", "4", *TINY]
    code, output = ms2agent_bc(*args)
    assert code == 0, output
    assert checkpoint_names(run_dir) == ["stage1-0001.pt", "stage1-0002.pt", "stage2-0001.pt", "stage2-0002.pt"]
    assert "success on 1 selection episodes" in output

    # the cache: one observation per recorded action; the observed qpos/qvel are the recorded ones
    with h5py.File(demo, "r") as file:
        for key in ("traj_0", "traj_1"):
            cached = np.load(run_dir / "demos" / "{}.npz".format(key))
            actions, recorded = file[key]["actions"][:], file[key]["obs"][:-1]
            assert cached["points"].shape == (len(actions), 1200, 6) and cached["points"].dtype == np.float16
            assert np.array_equal(cached["label"], np.clip(actions, -1, 1))
            np.testing.assert_allclose(cached["state"][:, :18], recorded[:, :18], atol=1e-5)

    first = load_checkpoint(run_dir / "checkpoints" / "stage1-0001.pt")["record"]
    assert first["episodes"] == 1 and first["mean_length"] == 4
    trained = model_from_checkpoint(run_dir / "checkpoints" / "stage2-0002.pt")
    torch.manual_seed(0)
    initial = ActorCritic(trained.critic[0].in_features - 512, 7, [-1.0] * 7, [1.0] * 7)
    cached = np.load(run_dir / "demos" / "traj_0.npz")
    points, state = torch.from_numpy(cached["points"][:3].astype(np.float32)), torch.from_numpy(cached["state"][:3])
    with torch.no_grad():
        assert not torch.allclose(initial(points, state), trained(points, state))

    (run_dir / "demos" / "traj_1.npz").unlink()  # conversion resumes per trajectory
    code, output = ms2agent_bc(*args, "--resume")
    assert code == 0 and "converted traj_1" in output and "converted traj_0" not in output


@no_cuda
def test_soft_body_script_stops_at_once_without_cuda(tmp_path: Path) -> None:
    script = Path(__file__).resolve().parents[1] / "scripts" / "train_soft_body.sh"
    result = subprocess.run(["bash", str(script), "Fill-v0"], cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert result.returncode == 1 and "need a CUDA GPU" in result.stderr and "Nothing was done" in result.stderr
    assert list(tmp_path.iterdir()) == []
