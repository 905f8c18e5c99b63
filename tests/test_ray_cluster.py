"""The ray backend on a real two-node Ray cluster on this machine (a head node and a second node joining it over
loopback, `ray.cluster_utils.Cluster`, one CPU each): a short PPO run and a DAgger round through the CLI, with their
env workers spread over both nodes."""
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import List

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="the ray backend needs the cluster extra: pip install -e '.[cluster]'")

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "training.cli"]
TINY = ["--eval-episodes", "1", "--workers", "2"]
NODE_MEMORY = 100 * 2 ** 20  # object store per node: observations are small and travel inline


@pytest.fixture(scope="module")
def cluster():
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "object_store_memory": NODE_MEMORY,
                                                            "include_dashboard": False})
    try:
        cluster.add_node(num_cpus=1, object_store_memory=NODE_MEMORY)
        cluster.wait_for_nodes()
        yield cluster
    finally:
        cluster.shutdown()


def nodes_of_workers(stderr: str) -> List[List[str]]:
    """The sorted nodes of the workers of each group the command started (`EnvWorkers` names them on Ray)."""
    return [sorted(re.findall(r"worker \d+ on node (\w+)", group))
            for group in re.findall(r"\[env workers\] \S+ on Ray: ([^\n]*)", stderr)]


def ms2agent(cluster, *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run([*CLI, *args, "--backend", "ray", "--address", cluster.address], cwd=ROOT,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.mark.sim
def test_a_ppo_run_spreads_its_workers_over_both_nodes(cluster, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    result = ms2agent(cluster, "train", "PickCube-v0", "--run-dir", str(run_dir), "--iterations", "1", *TINY,
                      "--samples-per-iteration", "24", "--batch-size", "12", "--max-episode-steps", "12")
    nodes = sorted(node.node_id for node in cluster.list_all_nodes())
    assert len(nodes) == 2
    assert nodes_of_workers(result.stderr) == [nodes, nodes]  # training and selection workers, one per node each
    record = json.loads(result.stdout)
    assert (record["iteration"], record["env_steps"], record["episodes"]) == (1, 24, 1)
    assert json.loads((run_dir / "config.json").read_text())["backend"]["kind"] == "ray"


@pytest.mark.sim
def test_a_dagger_round_on_the_cluster(cluster, tmp_path: Path) -> None:
    import torch

    from training.common.checkpoints import model_checkpoint
    from training.common.networks import ActorCritic

    torch.save(model_checkpoint(ActorCritic(37, 7, [-1.0] * 7, [1.0] * 7)), tmp_path / "student.pt")
    run_dir = tmp_path / "distill"
    result = ms2agent(cluster, "distill", "PickCube-v0", "--run-dir", str(run_dir), "--rounds", "1",
                      "--samples-per-round", "8", "--updates-per-round", "2", "--batch-size", "4",
                      "--collect-episode-steps", "2", "--init-from", str(tmp_path / "student.pt"), *TINY)
    nodes = sorted(node.node_id for node in cluster.list_all_nodes())
    assert nodes_of_workers(result.stderr) == [nodes, nodes]  # selection and collection workers, one per node each
    data = np.load(run_dir / "data" / "round0.npz")
    assert data["points"].shape == (8, 1200, 6) and data["label"].shape == (8, 7)
    assert data["episode_success"].size == 4  # the student drove 2-step episodes on both workers: DAgger
    record = json.loads((run_dir / "distill_records.json").read_text())[0]
    assert record["samples"] == 8 and record["student_rollout_success"] == 0.0
