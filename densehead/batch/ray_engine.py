"""The Ray engine: the same files and the same per-file work as the local engine, on a Ray
cluster. Each worker is an actor that loads the models once; one file at a time per actor.

`ray.init(address=...)` connects to a running cluster; without an address Ray starts a local
one (with `workers` CPUs), and an already initialised Ray (from the caller) is used as it is.
On a cluster every node needs densehead installed and must see the input and output folders
under the same paths (a shared file system), as with any file-based Ray job. Ray is an optional
dependency: `pip install "densehead[ray]"`.

A cluster with token authentication (Ray's default since 2.61, and for clusters started on a
machine that has a token) refuses a driver without its token: that is said in one line with
the fix (docs/batch.md). Files are given only to actors that are up: an actor that dies (its
node stopped) has its file run again once on another actor, and a replacement joins when the
cluster has room for it, so a lost node never leaves the batch waiting for an actor that
cannot start.
"""
from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Iterator

from ..core.errors import error_line
from ..core.options import PipelineOptions
from ..weights.assets import ASSETS_ENV, HOME_ENV, MIRROR_ENV
from .work import BatchSettings, FrameCount, Outcome, Task, run_task

log = logging.getLogger(__name__)

POLL_S = 0.25
# passed to the workers: where the model files are
FORWARDED_ENV = (ASSETS_ENV, HOME_ENV, MIRROR_ENV)
FORWARDED_PATHS = (ASSETS_ENV, HOME_ENV)   # made absolute: workers run in another folder
# Ray's own name for how many one-second tries a driver makes to reach the cluster's GCS
# (default 20); a refused token is then said in seconds, not after twenty
GCS_TRIES_ENV, GCS_TRIES = "RAY_gcs_server_port_wait_time_s", "5"
ADDRESS_ENV = "RAY_ADDRESS"   # Ray's own variable for the cluster to join
TLS_ENV = "RAY_USE_TLS"       # Ray's switch for TLS between its processes
HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"   # what an HTTP/2 client sends first
HTTP2_SETTINGS = 0x4          # the frame type a server answers it with (RFC 9113)
NO_WORKER_WAIT_S = 120.0   # with no actor up, how long files wait for one before they fail
NO_WORKER_NOTICE_S = 15.0  # ... and after how long the wait is said, once
MAX_START_ERRORS = 8       # actors that may die while starting before no more are started
AUTH_HELP = ("give it the cluster's token: RAY_AUTH_MODE=token with RAY_AUTH_TOKEN=<what "
             "`ray get-auth-token` prints on the head>, or with RAY_AUTH_TOKEN_PATH=<a file "
             "holding it> (default ~/.ray/auth_token); see docs/batch.md")


class RayAuthError(ConnectionError):
    """The cluster refused this driver's (missing or wrong) authentication token."""


def import_ray() -> Any:
    try:
        import ray
    except ImportError as error:
        raise ImportError('the Ray engine needs Ray: pip install "densehead[ray]" '
                          '(or pip install ray)') from error
    return ray


class RayEngine:
    name = "ray"

    def __init__(self, address: str | None = None, workers: int | None = None) -> None:
        self.address = address or os.environ.get(ADDRESS_ENV) or None   # as ray.init reads it
        self.workers = workers
        self._pool: _Pool | None = None   # the run's actors, while it runs and after
        self._actor_class: Any = None
        if workers is not None and workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        import_ray()   # without Ray, one line before any file or folder is touched

    @property
    def workers_used(self) -> int:
        """The actors that came up so far, not the ones asked for (batch.json's "workers")."""
        return self._pool.up if self._pool is not None else 0

    def run(self, tasks: list[Task], settings: BatchSettings) -> Iterator[Outcome | FrameCount]:
        ray = import_ray()
        started_here = self._connect(ray)
        pool: _Pool | None = None
        queue = None
        try:
            from ray.util.queue import Queue

            n = min(self.workers or int(ray.cluster_resources().get("CPU", 1)), len(tasks))
            n = max(n, 1)
            queue = Queue(actor_options={"num_cpus": 0, "scheduling_strategy": _here(ray)})

            def new_actor() -> Any:
                return self._new_actor(ray, settings.pipeline, queue)

            # a running cluster's workers load their own model files; a local one's are these
            pool = self._pool = _Pool(ray, new_actor, tell_warnings=bool(self.address))
            for _ in range(n):
                pool.add()
            yield from _schedule(ray, tasks, settings, pool, queue)
        finally:
            if pool is not None:
                pool.kill_all()
            if queue is not None:
                with contextlib.suppress(Exception):   # its node may be gone
                    queue.shutdown()
            if started_here:
                ray.shutdown()

    def _connect(self, ray: Any) -> bool:
        """Start or join a cluster unless Ray is already initialised; True if we did."""
        if ray.is_initialized():
            return False
        if self.address:
            check_reachable(self.address)
        env = {k: _forwarded(k) for k in FORWARDED_ENV if k in os.environ}
        options = dict(address=self.address, include_dashboard=False, log_to_driver=False,
                       logging_level=logging.WARNING, runtime_env={"env_vars": env},
                       num_cpus=self.workers if self.address is None else None)
        with _caller_sigterm_kept():
            self._init(ray, options)
        return True

    def _init(self, ray: Any, options: dict[str, Any]) -> None:
        if not self.address:
            ray.init(**options)
            return
        with _fewer_gcs_tries(), _stderr_kept() as said:
            try:
                ray.init(**options)
            except Exception as error:
                said.keep = not _refused_token(ray, error)
                if not said.keep:
                    mode = os.environ.get("RAY_AUTH_MODE")
                    why = "" if mode == "token" else f" (RAY_AUTH_MODE is {mode or 'not set'})"
                    raise RayAuthError(f"the Ray cluster at {self.address} refused this "
                                       f"process: its authentication token is missing or "
                                       f"wrong here{why}; {AUTH_HELP}") from None
                raise

    def _new_actor(self, ray: Any, options: PipelineOptions, queue: Any) -> Any:
        if self._actor_class is None:
            self._actor_class = ray.remote(num_cpus=1)(RayWorker)
        return self._actor_class.remote(options, queue)


@dataclass
class _Actor:
    handle: Any
    ready: Any                 # the ref of its ready() call: set until it has answered
    node: str | None = None


class _Pool:
    """The actors: starting (not yet given work) and idle; busy ones are in _schedule."""

    def __init__(self, ray: Any, make: Any, tell_warnings: bool) -> None:
        self.ray, self.make = ray, make
        self.tell_warnings = tell_warnings        # the workers' own model files: say their warnings
        self.told: set[str] = set()
        self.starting: dict[Any, _Actor] = {}     # ready ref -> actor
        self.idle: list[_Actor] = []
        self.start_errors: list[str] = []         # actors that died before they were up
        self.up = 0                               # actors that ever came up

    def add(self) -> None:
        handle = self.make()
        actor = _Actor(handle, handle.ready.remote())
        self.starting[actor.ready] = actor

    def started(self, ref: Any) -> None:
        actor = self.starting.pop(ref)
        try:
            actor.node, said = self.ray.get(ref)
        except self.ray.exceptions.RayError as error:   # its node went, or the models failed
            self.kill(actor)
            self.start_errors.append(error_line(error))
            if len(self.start_errors) <= MAX_START_ERRORS:
                self.add()
            return
        self.up += 1
        self.idle.append(actor)
        if self.tell_warnings:
            for warning in set(said) - self.told:
                self.told.add(warning)
                log.warning("a Ray worker's model files: %s", warning)

    def kill(self, actor: _Actor) -> None:
        with contextlib.suppress(Exception):
            self.ray.kill(actor.handle)

    def kill_all(self) -> None:
        for actor in [*self.starting.values(), *self.idle]:
            self.kill(actor)


def _schedule(ray: Any, tasks: list[Task], settings: BatchSettings, pool: _Pool,
              queue: Any) -> Iterator[Outcome | FrameCount]:
    """The tasks run on the pool's actors (_dispatch). Ctrl-C lands wherever the driver is: in
    ray.wait, or at a yield while the caller shows progress or records a file. Wherever it
    lands, the files that had finished are handed over before the batch stops."""
    running: dict[Any, tuple[_Actor, Task]] = {}   # a file stays here until handed over
    try:
        yield from _dispatch(ray, tasks, settings, pool, queue, running)
    except KeyboardInterrupt:
        if running:
            done, _ = ray.wait(list(running), num_returns=len(running), timeout=0)
            for ref in done:
                with contextlib.suppress(ray.exceptions.RayError):
                    yield ray.get(ref)
        raise


def _dispatch(ray: Any, tasks: list[Task], settings: BatchSettings, pool: _Pool, queue: Any,
              running: dict[Any, tuple[_Actor, Task]]) -> Iterator[Outcome | FrameCount]:
    """One task per idle actor. An actor that dies is replaced; its file runs once more on
    another actor, then fails. Without any actor up for NO_WORKER_WAIT_S the rest fail."""
    files = _Files(list(reversed(tasks)), running)
    wait = _NoWorkerWait()
    while files.todo or files.running:
        files.give_out(pool, settings)
        if files.stalled(pool):
            if error := (_start_failure(pool) or wait.expired()):
                yield from files.fail_rest(error)
                return
        else:
            wait.reset()
        ready, _ = ray.wait([*files.running, *pool.starting], num_returns=1, timeout=POLL_S)
        yield from _drain(ray, queue)
        for ref in ready:
            yield from _collect(ray, ref, pool, files)


@dataclass
class _Files:
    """The files of a batch as _dispatch gives them to actors."""
    todo: list[Task]                          # a stack: the next file to give is last
    running: dict[Any, tuple[_Actor, Task]]   # _schedule's: a file stays until handed over
    tries: dict[int, int] = field(default_factory=dict)   # task index -> times given

    def give_out(self, pool: _Pool, settings: BatchSettings) -> None:
        """One file to each idle actor."""
        while pool.idle and self.todo:
            actor, task = pool.idle.pop(), self.todo.pop()
            self.tries[task.index] = self.tries.get(task.index, 0) + 1
            self.running[actor.handle.run.remote(task, settings)] = (actor, task)

    def stalled(self, pool: _Pool) -> bool:
        """Files wait, and no actor is up to give one to."""
        return bool(self.todo) and not self.running and not pool.idle

    def fail_rest(self, error: str) -> Iterator[Outcome]:
        """Every file not given out fails with `error`."""
        for task in reversed(self.todo):
            yield Outcome(task.index, error=error)


def _start_failure(pool: _Pool) -> str | None:
    """With no actor starting either, every start failed: the same error for every file."""
    if pool.starting:
        return None
    why = pool.start_errors[-1] if pool.start_errors else "no worker"
    return f"no Ray worker could start: {why}"


@dataclass
class _NoWorkerWait:
    """How long files have waited with no actor up: said once, failed after a while."""
    since: float = 0.0   # since when no actor was up to give a file to (0.0: none waits)
    told: bool = False   # whether that wait has been said

    def reset(self) -> None:
        self.since = 0.0

    def expired(self) -> str | None:
        """The error of the waiting files once they waited NO_WORKER_WAIT_S, else None."""
        self.since = self.since or time.monotonic()
        waited = time.monotonic() - self.since
        if waited > NO_WORKER_NOTICE_S and not self.told:   # not minutes of silence
            self.told = True
            log.warning("no Ray worker has started after %.0f s: does the cluster have a free "
                        "CPU? Files still waiting fail after %.0f s", waited, NO_WORKER_WAIT_S)
        if waited > NO_WORKER_WAIT_S:
            return (f"no Ray worker started in {NO_WORKER_WAIT_S:.0f} s (does the cluster "
                    f"have a free CPU?)")
        return None


def _collect(ray: Any, ref: Any, pool: _Pool, files: _Files) -> Iterator[Outcome]:
    """What a ready ref brings: an actor that is up, or a file's outcome, handed over before
    the file leaves `running`."""
    if ref in pool.starting:
        pool.started(ref)
        return
    actor, task = files.running[ref]
    try:
        outcome = ray.get(ref)
    except ray.exceptions.RayActorError as error:
        yield from _actor_died(ref, error, pool, files)
        return
    except ray.exceptions.RayError as error:
        outcome = Outcome(task.index, error=f"Ray: {error_line(error)}")
    if files.tries[task.index] > 1:
        outcome.notes.append("run again after the Ray worker it was on died")
    yield outcome
    files.running.pop(ref)
    pool.idle.append(actor)


def _actor_died(ref: Any, error: Exception, pool: _Pool, files: _Files) -> Iterator[Outcome]:
    """A replacement for the actor, and its file once more; the file fails on a second death."""
    actor, task = files.running.pop(ref)
    pool.kill(actor)
    pool.add()
    if files.tries[task.index] < 2:   # its node stopped, most likely: once more
        files.todo.append(task)
    else:
        yield Outcome(task.index, error=f"the Ray worker died while on this file "
                                        f"(twice): {error_line(error)}")


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail fast, in one line, on a cluster address nothing answers at, or where something
    other than a Ray head answers (Ray itself retries for minutes). Addresses that are not
    host:port ("auto", "local") are left to Ray."""
    scheme, is_url, _ = address.partition("://")
    if is_url and scheme != "ray":   # an address copied from a browser, say the dashboard's
        raise ConnectionError(f"{address} is a web address: give the head's HOST:PORT, as "
                              "`ray start --head` printed it (or ray://HOST:PORT for Ray Client)")
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not host or not port.isdigit():
        return
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout) as conn:
            grpc = _speaks_grpc(conn)
    except OSError as error:
        raise ConnectionError(f"cannot reach the Ray cluster at {address}: {error}") from None
    if grpc is False:   # Ray would try it for minutes
        raise ConnectionError(f"{address} answers, but not as a Ray cluster: give the head's "
                              "address with the port `ray start --head --port` chose (6379 "
                              "unless set), not another service's, such as the dashboard's")


def _speaks_grpc(conn: socket.socket) -> bool | None:
    """Whether the server at the other end speaks HTTP/2, as a Ray head's GCS (gRPC) does: it
    answers a client's preface with a SETTINGS frame. None when that cannot be told (no answer
    in time, or TLS, which Ray can be set to use)."""
    if os.environ.get(TLS_ENV, "").lower() in ("1", "true"):
        return None
    try:
        conn.sendall(HTTP2_PREFACE)
        head = conn.recv(9)
    except socket.timeout:
        return None
    return len(head) >= 4 and head[3] == HTTP2_SETTINGS


def _refused_token(ray: Any, error: BaseException | None) -> bool:
    """Ray says a refused token in an AuthenticationError (Ray >= 2.59), sometimes only as
    the text of the error its ConnectionError was raised from."""
    kind = getattr(ray.exceptions, "AuthenticationError", ())
    while error is not None:
        if (kind and isinstance(error, kind)) or "InvalidAuthToken" in str(error):
            return True
        error = error.__cause__ or error.__context__
    return False


@contextlib.contextmanager
def _caller_sigterm_kept() -> Iterator[None]:
    """ray.init puts its own SIGTERM handler (exit at once) in place of one the caller set, such
    as the CLI's, which stops a batch like Ctrl-C: that one is put back."""
    main = threading.current_thread() is threading.main_thread()
    before = signal.getsignal(signal.SIGTERM) if main else None
    try:
        yield
    finally:
        if main and callable(before):
            signal.signal(signal.SIGTERM, before)


@contextlib.contextmanager
def _fewer_gcs_tries() -> Iterator[None]:
    """Fewer tries to reach the cluster, only around ray.init (the same setting bounds how
    long a local cluster may take to start). The user's own setting wins."""
    given = os.environ.get(GCS_TRIES_ENV)
    if given is None:
        os.environ[GCS_TRIES_ENV] = GCS_TRIES
    try:
        yield
    finally:
        if given is None:
            os.environ.pop(GCS_TRIES_ENV, None)


class _Said:
    keep = True


@contextlib.contextmanager
def _stderr_kept() -> Iterator[_Said]:
    """Ray's C++ client writes a line per refused try straight to file descriptor 2; hold
    them, and show them only when they are not what the one-line error already says."""
    said = _Said()
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield said
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            if said.keep:
                held.seek(0)
                sys.stderr.write(held.read().decode(errors="replace"))


def _here(ray: Any) -> Any:
    """The driver's node: the progress queue lives there, so losing another node never
    takes it with it."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    return NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)


def _forwarded(name: str) -> str:
    value = os.environ[name]
    return os.path.abspath(value) if name in FORWARDED_PATHS and value else value


def _drain(ray: Any, queue: Any) -> Iterator[FrameCount]:
    from ray.util.queue import Empty

    try:
        yield from queue.get_nowait_batch(queue.qsize())
    except (Empty, ray.exceptions.RayError):   # progress only: the outcomes still come
        return


class RayWorker:
    """An actor's state: one pipeline, loaded once. Made remote by RayEngine (so importing this
    module does not need Ray)."""

    def __init__(self, options: PipelineOptions, queue: Any) -> None:
        import warnings

        from ..engine.pipeline import Pipeline

        # kept for the driver, which says them (a worker's stderr is in Ray's logs only)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            self.pipeline = Pipeline(options)
        self.model_warnings = list(dict.fromkeys(str(w.message) for w in caught))
        self.queue = queue

    def ready(self) -> tuple[str, list[str]]:
        """Answers once the models are loaded: the id of the node this actor runs on, and what
        loading its model files warned of (a stand-in model, say)."""
        import ray

        return ray.get_runtime_context().get_node_id(), self.model_warnings

    def run(self, task: Task, settings: BatchSettings) -> Outcome:
        import ray

        self.queue.put_nowait((task.index, 0))
        last = time.monotonic()

        def progress(done: int) -> None:
            nonlocal last
            now = time.monotonic()
            if now - last >= POLL_S:
                self.queue.put_nowait((task.index, done))
                last = now

        outcome = run_task(task, settings, self.pipeline, progress)
        outcome.node = ray.get_runtime_context().get_node_id()
        return outcome
