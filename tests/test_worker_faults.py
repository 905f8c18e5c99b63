"""Env workers that die or hang, on both backends: the collection replaces them, plays the interrupted episode again
from its seed, and loses nothing else (`training.common.vec_env`)."""
import os
import signal
import time
from typing import Dict, List, Tuple

import numpy as np
import pytest
import torch

from training.algorithms.ppo import PPO, PPOConfig
from training.common.evaluation import evaluate, torch_actor
from training.common.networks import ActorCritic
from training.common.seeds import SELECTION_START, TRAIN_START
from training.common.vec_env import Backend, EnvWorkers, Step, backend_from

HANG_TIMEOUT = 30.0  # seconds; also bounds a replacement's start (a few seconds on an idle machine)

try:
    import ray
except ImportError:
    ray = None
needs_ray = pytest.mark.skipif(ray is None, reason="the ray backend needs the cluster extra: pip install -e '.[cluster]'")
BACKENDS = ["local", pytest.param("ray", marks=needs_ray)]


def test_a_backend_is_checked_and_restored_from_a_stored_config() -> None:
    with pytest.raises(ValueError, match="unknown worker backend"):
        Backend("slurm")
    with pytest.raises(ValueError, match="ray backend only"):
        Backend("local", address="10.0.0.1:6379")
    with pytest.raises(ValueError, match="timeout"):
        Backend(timeout=0)
    assert backend_from(None) == Backend() and backend_from({"kind": "ray", "timeout": 5}) == Backend("ray", timeout=5)


class Faulty:
    """`EnvWorkers` with a fault sent to one worker before chosen steps: {step index: (worker, signal)}. Records every
    step it returns and the pids it signalled."""

    def __init__(self, workers: EnvWorkers, faults: Dict[int, Tuple[int, int]]) -> None:
        self.workers, self.faults = workers, faults
        self.steps: List[Step] = []
        self.signalled: List[int] = []

    def __getattr__(self, name: str):
        return getattr(self.workers, name)

    def step(self, actions: np.ndarray) -> Step:
        if len(self.steps) in self.faults:
            worker, sent = self.faults[len(self.steps)]
            pid = self.workers.locations()[worker]["pid"]
            self.signalled.append(pid)
            os.kill(pid, sent)
        self.steps.append(self.workers.step(actions))
        return self.steps[-1]


@pytest.fixture
def backend(request: pytest.FixtureRequest):
    """The backend under test; Ray runs in a Ray instance of its own on this machine, ended after the test."""
    if request.param == "ray":
        ray.shutdown()
        yield Backend("ray", address="local", timeout=HANG_TIMEOUT)
        ray.shutdown()
    else:
        yield Backend("local", timeout=HANG_TIMEOUT)


def gone(pid: int, within: float = 30.0) -> bool:
    """Whether process `pid` has ended (or is a zombie) within `within` seconds."""
    deadline = time.time() + within
    while True:
        try:
            with open("/proc/{}/stat".format(pid)) as stat:
                if stat.read().split()[2] == "Z":
                    return True
        except FileNotFoundError:
            return True
        if time.time() >= deadline:
            return False
        time.sleep(0.5)


@pytest.mark.sim
@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
def test_a_killed_and_a_hung_worker_are_replaced_mid_collection(backend: Backend,
                                                               capfd: pytest.CaptureFixture) -> None:
    """Worker 0 is killed (`kill -9`) before step 3, in its first episode; worker 1 is stopped (SIGSTOP) before step
    9, in its second. Each is replaced, its episode starts again from its seed, and the PPO rollout masks the two
    transitions that have no outcome, and nothing else."""
    torch.manual_seed(0)
    ppo = PPO(ActorCritic(37, 7, [-1.0] * 7, [1.0] * 7), PPOConfig(samples_per_iteration=24, batch_size=12))
    with EnvWorkers("PickCube-v0", 2, first_seed=TRAIN_START, backend=backend, max_episode_steps=6) as workers:
        faulty = Faulty(workers, {3: (0, signal.SIGKILL), 9: (1, signal.SIGSTOP)})
        try:
            rollout = ppo.collect(faulty)
        finally:
            for pid in faulty.signalled:  # nothing stays stopped, even if the test fails
                if not gone(pid, 0):
                    os.kill(pid, signal.SIGKILL)
        steps = faulty.steps
        assert [pid in {where["pid"] for where in workers.locations()} for pid in faulty.signalled] == [False, False]
    assert all(gone(pid) for pid in faulty.signalled)  # the killed worker and the hung one have ended
    err = capfd.readouterr().err
    assert "env worker 0 of PickCube-v0 (episode seed {}; pid {}".format(TRAIN_START, faulty.signalled[0]) in err
    assert "env worker 1 of PickCube-v0 (episode seed {}; pid {}".format(TRAIN_START + 3, faulty.signalled[1]) in err
    assert "did not answer within {:g} s".format(HANG_TIMEOUT) in err
    assert [step.restarted.tolist() for step in steps].count([False, False]) == 10
    assert steps[3].restarted.tolist() == [True, False] and steps[9].restarted.tolist() == [False, True]
    # The replacement starts the interrupted episode again and plays it to its end (6 steps) before the next one.
    seeds_0 = [int(step.seed[0]) for step in steps]
    assert seeds_0 == [TRAIN_START] * 9 + [TRAIN_START + 2] * 3 and steps[9].truncated[0]
    seeds_1 = [int(step.seed[1]) for step in steps]
    assert seeds_1 == [TRAIN_START + 1] * 5 + [TRAIN_START + 3] * 7
    assert steps[9].reward[1] == 0 and not steps[9].truncated[1] and not steps[9].terminated[1]
    # The rollout: the two lost transitions masked, the interrupted episodes cut at their last step.
    assert np.flatnonzero(~rollout["valid"].reshape(-1)).tolist() == [3 * 2 + 0, 9 * 2 + 1]
    assert rollout["ended"][2, 0] and rollout["ended"][8, 1]
    assert rollout["reward"].shape == (12, 2) and len(rollout["episode_returns"]) == 2  # worker 1's first, 0's replay
    ppo.learn(rollout)


@pytest.mark.sim
def test_an_evaluation_with_a_killed_worker_scores_exactly_as_without() -> None:
    """An episode replays identically from its seed (the point sampling too), so a deterministic policy's evaluation
    is the same whether or not a worker was killed in the middle of it."""
    torch.manual_seed(0)
    actor = torch_actor(ActorCritic(37, 7, [-1.0] * 7, [1.0] * 7))
    with EnvWorkers("PickCube-v0", 2, first_seed=SELECTION_START, purpose="selection", max_episode_steps=5,
                    backend=Backend(timeout=HANG_TIMEOUT)) as workers:
        undisturbed = evaluate(actor, workers, 3)
        faulty = Faulty(workers, {7: (0, signal.SIGKILL)})  # worker 0, two steps into its second episode
        disturbed = evaluate(actor, faulty, 3)
    assert faulty.steps[7].restarted.tolist() == [True, False]
    assert disturbed == undisturbed and disturbed["episodes"] == 3
