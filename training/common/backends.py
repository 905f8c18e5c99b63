"""Where `EnvWorker`s run: a local process each, or a Ray actor each (`pip install -e .[cluster]`).

A handle runs one `training.common.vec_env.EnvWorker`: `call(method, *arguments)` sends a call without waiting,
`result(deadline)` returns its answer, or raises `WorkerLost` (the worker died, or did not answer by `deadline`,
a `time.monotonic()` time) or `WorkerRaised` (the worker's code raised; its traceback). `kill()` ends the worker
at once, `close()` ends it cleanly. Both handles drive the same `EnvWorker` methods, so the backend changes where
a worker runs, not what it computes.

Ray: the workers of a group are spread over the cluster's alive nodes in proportion to their CPUs (`place`; an
actor needs a node with at least one CPU to be placed and holds none while it runs, Ray's default for actors), and
never restarted by Ray: a lost actor is replaced by `EnvWorkers`, on the node `place` then chooses. The process
joins the cluster at `Backend.address` with its first Ray worker and stays in it (None: `RAY_ADDRESS`, else the
newest cluster started on this machine, else a new Ray instance here). Actors
import this project from the driver's project directory where that path exists on their node (`PYTHONPATH`), else
from the project installed there: every node needs the same version of the project, and the same files for paths
given as options (`--slot-reader`). They run at the normal priority of a process, as local workers do.
"""
import multiprocessing as mp
import os
import re
import signal
import socket
import time
import traceback
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Sequence

PROJECT_ROOT = Path(__file__).resolve().parents[2]


class WorkerLost(Exception):
    """The worker died or did not answer in time; `cause` says which."""

    def __init__(self, cause: str) -> None:
        super().__init__(cause)
        self.cause = cause


class WorkerRaised(Exception):
    """The worker's own code raised; `traceback` is its text."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.traceback = text


def launcher(backend) -> Callable[[Any, Sequence[Any]], Any]:
    """A function starting one worker (an unstarted `EnvWorker`) on `backend` (`vec_env.Backend`) next to the other
    workers of its group (their handles); returns its handle."""
    if backend.kind == "ray":
        connect(backend.address)
        return lambda worker, others: RayHandle(worker, backend.timeout, others)
    return lambda worker, others: LocalHandle(worker, backend.timeout)


# -- local processes -------------------------------------------------------------------------------------------
def _serve(connection, worker) -> None:
    """A worker process: answer the parent's calls until it says `close` or goes away."""
    try:
        while True:
            try:
                method, arguments = connection.recv()
            except (EOFError, OSError):
                break
            if method == "close":
                break
            try:
                answer = ("ok", getattr(worker, method)(*arguments))
            except Exception:
                answer = ("error", traceback.format_exc())
            connection.send(answer)
    finally:
        try:
            worker.close()
        finally:
            connection.close()


class LocalHandle:
    """A worker in a process of its own on this machine (spawned), talking over a pipe."""

    context = mp.get_context("spawn")

    def __init__(self, worker, timeout: float) -> None:
        self.timeout = timeout
        parent, child = self.context.Pipe()
        self.process = self.context.Process(target=_serve, args=(child, worker), daemon=True)
        self.process.start()
        child.close()
        self.connection = parent
        self._broken: Optional[BaseException] = None

    def call(self, method: str, *arguments: Any) -> None:
        if self._broken is not None:
            return
        try:
            self.connection.send((method, arguments))
        except (BrokenPipeError, ConnectionResetError, EOFError, OSError) as error:
            self._broken = error  # reported by result()

    def result(self, deadline: float) -> Any:
        if self._broken is None:
            try:
                if not self.connection.poll(max(0.0, deadline - time.monotonic())):
                    raise WorkerLost("did not answer within {:g} s".format(self.timeout))
                status, value = self.connection.recv()
            except (EOFError, ConnectionResetError, BrokenPipeError, OSError) as error:
                self._broken = error
        if self._broken is not None:
            raise WorkerLost(self._death())
        if status == "error":
            raise WorkerRaised(value)
        return value

    def _death(self) -> str:
        self.process.join(timeout=5)
        code = self.process.exitcode
        if code is None:
            how = "its process is still running"
        elif code < 0:
            how = "its process was killed by {}".format(signal.Signals(-code).name)
        else:
            how = "its process exited with code {}".format(code)
        return "died ({}: {})".format(type(self._broken).__name__, how)

    def location(self) -> Dict[str, Any]:
        return {"pid": self.process.pid, "node": socket.gethostname()}

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()  # SIGKILL: also ends a stopped (SIGSTOP) process
        self.process.join(timeout=10)
        self.connection.close()

    def close(self) -> None:
        if self._broken is None:
            try:
                self.connection.send(("close", ()))
            except (BrokenPipeError, ConnectionResetError, EOFError, OSError):
                pass
        self.process.join(timeout=10)
        self.kill()


# -- Ray actors ------------------------------------------------------------------------------------------------
def connect(address: Optional[str]) -> None:
    """Join the Ray cluster at `address` unless this process already did (see the module docstring)."""
    try:
        import ray
    except ImportError:
        raise RuntimeError("the ray backend needs Ray: pip install -e '.[cluster]'") from None
    if ray.is_initialized():
        return
    path = os.pathsep.join([str(PROJECT_ROOT)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else []))
    # RAY_worker_niceness 0: the actors run at the priority a local worker process has (Ray starts its workers at
    # niceness 15 unless told otherwise, which loses the CPU to any other job on the node).
    try:
        ray.init(address=address, include_dashboard=False, logging_level="WARNING",
                 runtime_env={"env_vars": {"PYTHONPATH": path, "RAY_worker_niceness": "0"}})
    except ConnectionError as error:
        raise ConnectionError("{} (a cluster with token authentication needs RAY_AUTH_MODE=token here and its token: "
                              "~/.ray/auth_token or RAY_AUTH_TOKEN; docs/cluster.md)".format(error)) from error


class _Host:
    """The Ray actor: hosts one `EnvWorker` and forwards the calls to it."""

    def __init__(self, worker) -> None:
        self.worker = worker

    def call(self, method: str, *arguments: Any) -> Any:
        return getattr(self.worker, method)(*arguments)

    def where(self) -> Dict[str, Any]:
        import ray

        return {"pid": os.getpid(), "node": ray.get_runtime_context().get_node_id()}


_actor_class = None


def _host_actor():
    global _actor_class
    if _actor_class is None:
        import ray

        _actor_class = ray.remote(max_restarts=0, max_task_retries=0)(_Host)
    return _actor_class


def place(others: Sequence["RayHandle"]) -> Optional[str]:
    """The node for one more worker of a group whose other workers are `others`: among the alive nodes with a CPU,
    the one whose workers per CPU would stay lowest (ties: fewer workers, then Ray's node order); None when Ray
    lists no such node."""
    import ray

    cpus = {node["NodeID"]: node["Resources"].get("CPU", 0) for node in ray.nodes() if node["Alive"]}
    cpus = {node: count for node, count in cpus.items() if count >= 1}
    if not cpus:
        return None
    placed = Counter(handle.node for handle in others)
    return min(cpus, key=lambda node: ((placed[node] + 1) / cpus[node], placed[node]))


class RayHandle:
    """A worker in a Ray actor, on the node `place` chooses (a soft choice: Ray places it elsewhere when that node
    cannot take it)."""

    def __init__(self, worker, timeout: float, others: Sequence["RayHandle"] = ()) -> None:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        self.timeout = timeout
        self.node = place(others)
        strategy = "DEFAULT" if self.node is None else NodeAffinitySchedulingStrategy(self.node, soft=True)
        self.actor = _host_actor().options(scheduling_strategy=strategy).remote(worker)
        self._where = self.actor.where.remote()
        self._location: Optional[Dict[str, Any]] = None
        self._answer = None

    def call(self, method: str, *arguments: Any) -> None:
        self._answer = self.actor.call.remote(method, *arguments)

    def result(self, deadline: float) -> Any:
        import ray
        from ray.exceptions import GetTimeoutError, RayError, RayTaskError

        try:
            return ray.get(self._answer, timeout=max(0.0, deadline - time.monotonic()))
        except GetTimeoutError:
            raise WorkerLost("did not answer within {:g} s".format(self.timeout)) from None
        except RayTaskError as error:
            raise WorkerRaised(str(error)) from None
        except RayError as error:  # the actor died (ActorDiedError), its node went away, ...
            text = " ".join(str(error).split())
            reason = re.search(r"The actor is dead because ([^.]*)", text)
            raise WorkerLost("died ({}: {})".format(type(error).__name__, reason.group(1) if reason else text[:200])) \
                from None

    def location(self) -> Dict[str, Any]:
        if self._location is None:
            import ray

            try:
                self._location = ray.get(self._where, timeout=0)
            except Exception:  # not placed yet, or lost before it said
                return {"pid": None, "node": None}
        return self._location

    def kill(self) -> None:
        import ray

        try:
            ray.kill(self.actor, no_restart=True)
        except Exception:
            pass

    close = kill
