"""The official ManiSkill2 evaluator runs `user_solution.UserPolicy` on the real simulator."""
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict

import pytest

from agent.onnx_model import register
from agent.preprocessing import state_size
from agent.registry import get_task
from test_agent_models import PROVENANCE, export_actor_critic

ROOT = Path(__file__).resolve().parents[1]
ENV_ID = "PickCube-v0"


def ship_untrained(weights: Path, env_id: str = ENV_ID) -> None:
    """An untrained paper network for `env_id` in `weights`, sized from the real env's spaces."""
    from training.common.envs import make_env

    task = get_task(env_id)
    env = make_env(env_id, obs_mode=task.obs_mode, control_mode=task.control_mode)
    sizes = state_size(env.observation_space), env.action_space.shape[0]
    env.close()
    weights.mkdir(parents=True, exist_ok=True)
    path = weights / "{}.onnx".format(env_id)
    export_actor_critic(path, *sizes, n_points=task.total_points)
    register(weights, env_id, path, task.control_mode, task.obs_mode, PROVENANCE)


def run_official_evaluator(python: str, cwd: Path, out: Path, env: Dict[str, str], episodes: int = 1,
                           env_id: str = ENV_ID) -> Dict:
    """`python -m mani_skill2.evaluation.run_evaluation` on `env_id`; its average metrics."""
    command = [python, "-m", "mani_skill2.evaluation.run_evaluation", "-e", env_id, "-o", str(out),
               "-n", str(episodes)]
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert not (out / "error.log").exists(), (out / "error.log").read_text()
    return json.loads((out / "average_metrics.json").read_text())


@pytest.mark.sim
def test_official_evaluator_runs_the_agent_from_another_weights_dir(tmp_path: Path) -> None:
    ship_untrained(tmp_path / "weights")
    env = dict(os.environ, MS2AGENT_WEIGHTS_DIR=str(tmp_path / "weights"))
    metrics = run_official_evaluator(sys.executable, ROOT, tmp_path / "out", env)
    assert 0.0 <= metrics["success"] <= 1.0


@pytest.mark.sim
def test_official_evaluator_runs_a_looking_policy(tmp_path: Path) -> None:
    import torch

    from agent.manifest import read_manifest, write_entry
    from training.slot_reader.train import Regressor, SlotEstimator, export_slot_reader, save_estimator

    env_id, weights = "PegInsertionSide-v0", tmp_path / "weights"
    torch.manual_seed(0)
    save_estimator(SlotEstimator(Regressor(31), [0.0] * 6, [1.0] * 6), get_task(env_id), tmp_path / "uniform.pt")
    reader = export_slot_reader(tmp_path / "uniform.pt", weights / "{}.slot_reader.onnx".format(env_id), look_step=5)
    export_actor_critic(weights / "{}.onnx".format(env_id), 49, 7)  # 31 + the remembered slot's 18
    entry = register(weights, env_id, weights / "{}.onnx".format(env_id), "pd_ee_delta_pose", "pointcloud", PROVENANCE)
    write_entry(weights, entry._replace(slot_reader=reader))
    assert read_manifest(weights)[env_id].slot_reader == reader
    env = dict(os.environ, MS2AGENT_WEIGHTS_DIR=str(weights))
    metrics = run_official_evaluator(sys.executable, ROOT, tmp_path / "out", env, env_id=env_id)
    assert 0.0 <= metrics["success"] <= 1.0


@pytest.mark.sim
def test_evaluate_script_splits_episodes_over_processes_and_merges_them(tmp_path: Path) -> None:
    ship_untrained(tmp_path / "weights")
    env = dict(os.environ, MS2AGENT_WEIGHTS_DIR=str(tmp_path / "weights"), EVAL_WORKERS="2", EVAL_OUT=str(tmp_path))
    result = subprocess.run(["bash", str(ROOT / "scripts" / "evaluate.sh"), ENV_ID, "3", "1000000"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = tmp_path / ENV_ID
    episodes = json.loads((out / "episode_results.json").read_text())
    shards = [json.loads((out / "shard-{}".format(k) / "episode_results.json").read_text()) for k in range(2)]
    assert list(episodes) == ["0", "1", "2"] and sorted(shards[0]) == ["0", "2"] and list(shards[1]) == ["1"]
    assert episodes == dict(shards[0], **shards[1])
    success = json.loads((out / "average_metrics.json").read_text())["success"]
    assert "{}: success rate {:.3f} over 3 episodes".format(ENV_ID, success) in result.stdout
    noise = [line for line in (result.stdout + result.stderr).splitlines()
             if "pkg_resources" in line or "RuntimeWarning" in line or "GLFW" in line or "already exists" in line]
    assert noise == []  # the main job's output: setup, the progress bar, the success line
    assert "GLFW" in (out / "shard-0" / "evaluator.log").read_text() or "DISPLAY" in os.environ  # the log keeps all
