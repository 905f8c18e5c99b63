"""End to end on the real simulator: a tiny two-stage run -> export -> the official evaluator, and resume
after `kill -9`."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "training.cli"]
TINY = ["--samples-per-iteration", "24", "--batch-size", "12", "--eval-episodes", "1", "--workers", "1",
        "--max-episode-steps", "12"]


def ms2agent(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], cwd=ROOT, capture_output=True, text=True, timeout=900, **kwargs)


@pytest.mark.sim
def test_tiny_two_stage_run_exports_a_policy_the_official_evaluator_runs(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    result = ms2agent("two-stage", "PickCube-v0", "--run-dir", str(run_dir), "--stage1-iterations", "2",
                      "--stage2-iterations", "1", *TINY)
    assert result.returncode == 0, result.stderr[-3000:]
    chosen = json.loads((run_dir / "result.json").read_text())
    assert chosen["chosen_from"] in ("stage 1", "stage 2")
    assert sorted(p.name for p in (run_dir / "checkpoints").glob("*.pt")) == [
        "stage1-0001.pt", "stage1-0002.pt", "stage2-0001.pt"]
    metrics = (run_dir / "metrics.csv").read_text().splitlines()
    assert len(metrics) == 4 and metrics[0].startswith("stage,iteration,env_steps,success")
    assert (run_dir / "learning_curve.png").exists()

    weights = tmp_path / "weights"
    exported = ms2agent("export", "PickCube-v0", chosen["checkpoint"], "--weights-dir", str(weights),
                        "--command", "test run")
    assert exported.returncode == 0, exported.stderr[-3000:]
    assert json.loads(exported.stdout)["max_abs_diff"] <= 1e-4
    assert "PickCube-v0" in json.loads((weights / "manifest.json").read_text())["policies"]

    out = tmp_path / "eval"
    evaluation = subprocess.run(
        [sys.executable, "-m", "mani_skill2.evaluation.run_evaluation", "-e", "PickCube-v0", "-o", str(out), "-n", "1"],
        cwd=ROOT, capture_output=True, text=True, timeout=600, env={**os.environ, "MS2AGENT_WEIGHTS_DIR": str(weights)})
    assert evaluation.returncode == 0, evaluation.stderr[-3000:]
    assert "success" in json.loads((out / "average_metrics.json").read_text())


@pytest.mark.sim
def test_killed_run_resumes_without_losing_iterations(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    args = ["train", "PickCube-v0", "--run-dir", str(run_dir), "--iterations", "3", *TINY]
    process = subprocess.Popen([*CLI, *args], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    first = run_dir / "checkpoints" / "stage1-0001.pt"
    deadline = time.time() + 600
    while not first.exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.5)
    os.killpg(process.pid, signal.SIGKILL)  # the trainer and its env workers
    process.wait()
    assert first.exists()
    record_before = json.loads(json.dumps(__import__("torch").load(first, weights_only=False)["record"]))

    refused = ms2agent(*args)
    assert refused.returncode != 0 and "--resume" in refused.stderr

    resumed = ms2agent(*args, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Resuming" in resumed.stdout
    lines = (run_dir / "metrics.csv").read_text().splitlines()
    assert [line.split(",")[1] for line in lines[1:]] == ["1", "2", "3"]
    assert lines[1].split(",")[3] == str(record_before["success"])


@pytest.mark.sim
def test_init_from_a_student_evaluates_it_first_and_sets_its_exploration_noise(tmp_path: Path) -> None:
    import torch

    from training.common.checkpoints import model_checkpoint
    from training.common.networks import ActorCritic

    student = ActorCritic(37, 7, [-1.0] * 7, [1.0] * 7)
    with torch.no_grad():
        student.actor[0].bias.fill_(0.123)  # a marker PPO's small first step leaves close to its value
    torch.save(model_checkpoint(student), tmp_path / "student.pt")
    run_dir = tmp_path / "run"
    result = ms2agent("train", "PickCube-v0", "--run-dir", str(run_dir), "--iterations", "1", *TINY,
                      "--init-from", str(tmp_path / "student.pt"), "--init-log-std", "-2.3", "--freeze-pointnet")
    assert result.returncode == 0, result.stderr[-3000:]
    initial = torch.load(run_dir / "checkpoints" / "stage1-0000.pt", weights_only=False)
    assert initial["record"]["env_steps"] == 0 and initial["record"]["episodes"] == 1  # the student competes too
    assert abs(float(initial["model"]["log_std"].mean()) + 2.3) < 1e-6
    assert [line.split(",")[1] for line in (run_dir / "metrics.csv").read_text().splitlines()[1:]] == ["0", "1"]
    model = torch.load(run_dir / "checkpoints" / "stage1-0001.pt", weights_only=False)["model"]
    assert abs(float(model["log_std"].mean()) + 2.3) < 0.05
    assert abs(float(model["actor.0.bias"].mean()) - 0.123) < 0.01
    fixed = student.state_dict()  # --freeze-pointnet: the student's features are untouched
    assert all(torch.equal(model[key], fixed[key]) for key in fixed if key.startswith("pointnet."))
    assert not torch.equal(model["critic.0.weight"], fixed["critic.0.weight"])  # the critic head learnt


@pytest.mark.sim
def test_a_looking_policy_fine_tunes_with_ppo_and_exports_with_its_reader(tmp_path: Path) -> None:
    reader = ROOT / "weights" / "PegInsertionSide-v0.slot_reader.onnx"
    run_dir = tmp_path / "run"
    past_the_look = ["--samples-per-iteration", "48", "--batch-size", "12", "--eval-episodes", "1", "--workers", "1",
                     "--max-episode-steps", "45"]  # the reader reads at step 40 in collection and evaluation
    result = ms2agent("two-stage", "PegInsertionSide-v0", "--run-dir", str(run_dir), "--stage1-iterations", "1",
                      "--stage2-iterations", "0", *past_the_look, "--slot-reader", str(reader),
                      "--init-from", str(ROOT / "weights" / "PegInsertionSide-v0.onnx"), "--freeze-pointnet")
    assert result.returncode == 0, result.stderr[-3000:]
    chosen = json.loads((run_dir / "result.json").read_text())
    weights = tmp_path / "weights"
    exported = ms2agent("export", "PegInsertionSide-v0", chosen["checkpoint"], "--weights-dir", str(weights),
                        "--command", "test run", "--slot-reader", str(reader))
    assert exported.returncode == 0, exported.stderr[-3000:]
    entry = json.loads((weights / "manifest.json").read_text())["policies"]["PegInsertionSide-v0"]
    assert entry["spec"]["state_size"] == 49 and entry["slot_reader"]["look_step"] == 40  # looks, reads at 40
    assert (weights / entry["slot_reader"]["file"]).exists()
