"""The local engine: a pool of worker processes on this machine, each loading the models once
(one TFLite thread each, by default), one file at a time per worker.

Processes are started with "spawn": a fresh interpreter holds no copy of the parent's threads or
locks (the progress bar's thread, TFLite's pools), and it behaves the same on Linux, macOS and
Windows. Stopping: the parent sets an event that every worker checks once per frame (Ctrl-C
reaches only the parent; workers ignore SIGINT), and a worker whose parent has gone (killed)
exits within half a second. A worker process that dies (a crash in a decoder, the OOM killer)
fails the file it was on; the files it had not started run on a new pool.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import signal
import threading
import time
import warnings
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Iterator

from ..core.options import PipelineOptions
from .work import BatchSettings, Cancelled, FrameCount, Outcome, Task, run_task

REPORT_EVERY_S = 0.25            # how often a worker sends its frame count
CRASHED = ("the worker process died while on this file (a crash in the decoder, or out of "
           "memory?)")


def available_cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


class LocalEngine:
    name = "local"

    def __init__(self, workers: int | None = None) -> None:
        self.workers = available_cpus() if workers is None else workers
        if self.workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")

    def run(self, tasks: list[Task], settings: BatchSettings) -> Iterator[Outcome | FrameCount]:
        """Outcomes as files finish, frame counts in between."""
        remaining = list(tasks)
        while remaining:
            remaining = yield from self._run_pool(remaining, settings)

    def _run_pool(self, tasks: list[Task], settings: BatchSettings):
        """Run on one pool; returns the tasks to run again when a worker died."""
        ctx = mp.get_context("spawn")
        messages, stop = ctx.SimpleQueue(), ctx.Event()  # SimpleQueue: no feeder thread to lose
        pool = ProcessPoolExecutor(min(self.workers, len(tasks)), mp_context=ctx,
                                   initializer=_start_worker,
                                   initargs=(settings.pipeline, messages, stop))
        pending = {pool.submit(_work, task, settings): task for task in tasks}
        started: set[int] = set()
        try:
            while pending:
                done, _ = wait(pending, timeout=REPORT_EVERY_S, return_when=FIRST_COMPLETED)
                yield from _drain(messages, started)
                if any(_broken(future) for future in done):
                    yield from _drain(messages, started)
                    return (yield from _after_crash(pending, started))
                for future in done:   # pending until handed over: Ctrl-C hands it over then
                    yield future.result()
                    pending.pop(future)
            return []
        except KeyboardInterrupt:
            # stop the workers at their next frame, then hand over what had already finished
            stop.set()
            pool.shutdown(wait=True, cancel_futures=True)
            yield from (f.result() for f in _finished(pending))
            raise
        finally:
            stop.set()
            pool.shutdown(wait=True, cancel_futures=True)


def _finished(pending: dict[Future, Task]) -> list[Future]:
    """The futures that hold a result, in task order."""
    done = [f for f in pending if f.done() and not f.cancelled() and f.exception() is None]
    return sorted(done, key=lambda f: pending[f].index)


def _broken(future: Future) -> bool:
    return isinstance(future.exception(), BrokenProcessPool)


def _after_crash(pending: dict[Future, Task], started: set[int]):
    """A worker died: files that finished before keep their results, the files it was on
    fail, the files no worker had started are handed back to run on a new pool."""
    if not started:  # no file even started: the workers themselves cannot start
        raise ChildProcessError("the batch worker processes stopped before they could start: "
                                "out of memory, or run_batch called from a script outside "
                                "`if __name__ == \"__main__\":` (each worker imports the script)")
    again: list[Task] = []
    for future, task in sorted(pending.items(), key=lambda item: item[1].index):
        if not _broken(future):
            yield future.result()
        elif task.index in started:
            yield Outcome(task.index, error=CRASHED)
        else:
            again.append(task)
    return again


def _drain(messages: Any, started: set[int]) -> Iterator[FrameCount]:
    while not messages.empty():
        index, done = messages.get()
        started.add(index)
        yield index, done


# -- inside a worker process ---------------------------------------------------------------

_WORKER: dict[str, Any] = {}


def _start_worker(options: PipelineOptions, messages: Any, stop: Any) -> None:
    from ..engine.pipeline import Pipeline

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's: it sets `stop`
    warnings.simplefilter("ignore")  # the parent showed the model files' warnings once
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()
    _WORKER.update(pipeline=Pipeline(options), messages=messages, stop=stop)


def _exit_with_parent(parent: int) -> None:
    """A killed parent cannot stop us, and an idle worker would wait for work forever (it holds
    the task queue's write end itself): leave as soon as the parent is gone. Nothing is lost:
    only the parent writes outputs."""
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)


def _work(task: Task, settings: BatchSettings) -> Outcome:
    messages, stop = _WORKER["messages"], _WORKER["stop"]
    if stop.is_set():  # queued before the stop: do not start it
        raise Cancelled
    messages.put((task.index, 0))
    last = time.monotonic()

    def progress(done: int) -> None:
        nonlocal last
        if stop.is_set():
            raise Cancelled
        now = time.monotonic()
        if now - last >= REPORT_EVERY_S:
            messages.put((task.index, done))
            last = now

    return run_task(task, settings, _WORKER["pipeline"], progress)
