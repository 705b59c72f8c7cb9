"""The Ray engine: the same files and the same per-file work as the local engine, on a Ray
cluster. Each worker is an actor that loads the models once; one file at a time per actor.

`ray.init(address=...)` connects to a running cluster; without an address Ray starts a local
one (with `workers` CPUs), and an already initialised Ray (from the caller) is used as it is.
On a cluster every node needs densehead installed and must see the input and output folders
under the same paths (a shared file system), as with any file-based Ray job. Ray is an optional
dependency: `pip install "densehead[ray]"`.
"""
from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from typing import Any, Iterator

from ..core.options import PipelineOptions
from ..weights.assets import ASSETS_ENV, HOME_ENV, MIRROR_ENV
from .work import BatchSettings, Outcome, Task, run_task

FrameCount = tuple[int, int]
POLL_S = 0.25
# passed to the workers: where the model files are, and no FFmpeg messages (errors are
# reported per file)
FORWARDED_ENV = (ASSETS_ENV, HOME_ENV, MIRROR_ENV)
QUIET_ENV = {"OPENCV_FFMPEG_LOGLEVEL": "-8"}


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
        self.address = address
        self.workers = workers
        self.workers_used = 0
        self._actor_class: Any = None
        if workers is not None and workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")

    def run(self, tasks: list[Task], settings: BatchSettings) -> Iterator[Outcome | FrameCount]:
        ray = import_ray()
        started_here = self._connect(ray)
        actors: list[Any] = []
        queue = None
        try:
            from ray.util.queue import Queue

            n = min(self.workers or int(ray.cluster_resources().get("CPU", 1)), len(tasks))
            self.workers_used = n = max(n, 1)
            queue = Queue(actor_options={"num_cpus": 0})
            actors = [self._new_actor(ray, settings.pipeline, queue) for _ in range(n)]
            yield from self._schedule(ray, tasks, settings, actors, queue)
        finally:
            for actor in actors:
                ray.kill(actor)
            if queue is not None:
                queue.shutdown()
            if started_here:
                ray.shutdown()

    def _connect(self, ray: Any) -> bool:
        """Start or join a cluster unless Ray is already initialised; True if we did."""
        if ray.is_initialized():
            return False
        if self.address:
            check_reachable(self.address)
        env = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ} | QUIET_ENV
        ray.init(address=self.address, num_cpus=self.workers if self.address is None else None,
                 include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING,
                 runtime_env={"env_vars": env})
        return True

    def _new_actor(self, ray: Any, options: PipelineOptions, queue: Any) -> Any:
        if self._actor_class is None:
            self._actor_class = ray.remote(num_cpus=1)(RayWorker)
        return self._actor_class.remote(options, queue)

    def _schedule(self, ray: Any, tasks: list[Task], settings: BatchSettings,
                  actors: list[Any], queue: Any) -> Iterator[Outcome | FrameCount]:
        """One task per idle actor; an actor that dies fails its file and is replaced."""
        todo = list(reversed(tasks))
        idle = list(actors)
        running: dict[Any, tuple[Any, Task]] = {}
        while todo or running:
            while idle and todo:
                actor, task = idle.pop(), todo.pop()
                running[actor.run.remote(task, settings)] = (actor, task)
            try:
                ready, _ = ray.wait(list(running), num_returns=1, timeout=POLL_S)
            except KeyboardInterrupt:  # hand over what had already finished, then stop
                ready, _ = ray.wait(list(running), num_returns=len(running), timeout=0)
                for ref in ready:
                    with contextlib.suppress(ray.exceptions.RayError):
                        yield ray.get(ref)
                raise
            yield from _drain(queue)
            for ref in ready:
                actor, task = running.pop(ref)
                try:
                    yield ray.get(ref)
                except ray.exceptions.RayActorError as error:
                    yield Outcome(task.index, error=f"the Ray worker died while on this file: "
                                                    f"{_first_line(error)}")
                    actors.remove(actor)
                    actor = self._new_actor(ray, settings.pipeline, queue)
                    actors.append(actor)
                except ray.exceptions.RayError as error:
                    yield Outcome(task.index, error=f"Ray: {_first_line(error)}")
                idle.append(actor)


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail fast, in one line, on a cluster address nothing answers at (Ray itself retries
    for minutes). Addresses that are not host:port ("auto", "local") are left to Ray."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not host or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as error:
        raise ConnectionError(f"cannot reach the Ray cluster at {address}: {error}") from None


def _drain(queue: Any) -> Iterator[FrameCount]:
    from ray.util.queue import Empty

    try:
        yield from queue.get_nowait_batch(queue.qsize())
    except Empty:
        return


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


class RayWorker:
    """An actor's state: one pipeline, loaded once. Made remote by RayEngine (so importing this
    module does not need Ray)."""

    def __init__(self, options: PipelineOptions, queue: Any) -> None:
        import warnings

        from ..engine.pipeline import Pipeline

        warnings.simplefilter("ignore")  # the driver showed the model files' warnings once
        self.pipeline = Pipeline(options)
        self.queue = queue

    def run(self, task: Task, settings: BatchSettings) -> Outcome:
        self.queue.put_nowait((task.index, 0))
        last = time.monotonic()

        def progress(done: int) -> None:
            nonlocal last
            now = time.monotonic()
            if now - last >= POLL_S:
                self.queue.put_nowait((task.index, done))
                last = now

        return run_task(task, settings, self.pipeline, progress)
