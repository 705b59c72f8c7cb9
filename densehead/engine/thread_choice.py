"""Each call of a model on one TFLite thread or on several, whichever has been faster lately.

XNNPACK's threads wait for each other after every operator. On a quiet machine a second thread
makes a call faster; while another program runs, the waiting can cost more than the second
thread gives (docs/measurements.md, "One thread or two, per call"). Which holds changes while a
process runs, so a model with several threads keeps a one-thread interpreter beside it, now and
then runs a few calls on the one it is not using, and moves when that one is clearly faster.
Both run the same graph, and XNNPACK splits a call's work by output tiles, so the answers are
the same whichever runs.
"""
from __future__ import annotations

import logging
import statistics
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .runtime import TFLiteRunner

log = logging.getLogger(__name__)

WINDOW = 16            # recent calls of the choice in use whose median stands for it
PROBE_CALLS = 3        # calls on the other choice per look; their median stands for it, so the
                       # first (its weights out of the cache, its threads asleep) is outvoted
FIRST_LOOK = 25        # calls between looks at the other choice, after a start or a move ...
LAST_LOOK = 400        # ... doubling after each look that does not move, up to this
MOVE_MARGIN = 0.9      # the other must take under 90% of the time: noise does not move it


@dataclass
class ThreadPolicy:
    """Which of two thread counts runs the next call, from the times of the calls so far.
    `use` is an index into `threads`; the policy starts on the larger count."""

    threads: tuple[int, int]
    use: int = 1
    recent: deque[float] = field(default_factory=lambda: deque(maxlen=WINDOW))
    look_every: int = FIRST_LOOK
    since_look: int = 0
    probing: int = 0                              # probe calls still to run
    probe_times: list[float] = field(default_factory=list)

    def next(self) -> int:
        """The index of the thread count to run the next call on."""
        due = self.since_look >= self.look_every and len(self.recent) >= WINDOW // 2
        if due and not self.probing:
            self.probing, self.probe_times = PROBE_CALLS, []
        return 1 - self.use if self.probing else self.use

    def record(self, index: int, ms: float) -> Move | None:
        """Take the time of a call run on `index`; the move it led to, if any."""
        if index == self.use:
            self.recent.append(ms)
            self.since_look += 1
            return None
        self.probing -= 1
        self.probe_times.append(ms)
        if self.probing:
            return None
        self.since_look = 0
        other, now = statistics.median(self.probe_times), statistics.median(self.recent)
        if other < MOVE_MARGIN * now:
            move = Move(self.threads[self.use], self.threads[index], now, other)
            self.use = index
            self.recent = deque(self.probe_times, maxlen=WINDOW)
            self.look_every = FIRST_LOOK
            return move
        self.look_every = min(2 * self.look_every, LAST_LOOK)
        return None


@dataclass(frozen=True)
class Move:
    """The policy moved from one thread count to the other: median ms per call on each."""
    before: int
    after: int
    before_ms: float
    after_ms: float


class AdaptiveRunner:
    """A TFLite graph run on 1 or `num_threads` threads per call, as ThreadPolicy says; the same
    calls and answers as TFLiteRunner's. Calls are serialised, as one interpreter's are."""

    def __init__(self, path: str | Path, num_threads: int) -> None:
        if num_threads < 2:
            raise ValueError("an adaptive runner needs 2 or more threads to choose from")
        self.path = Path(path)
        self.num_threads = num_threads
        self._runners = (TFLiteRunner(path, 1), TFLiteRunner(path, num_threads))
        self._policy = ThreadPolicy((1, num_threads))
        self._lock = threading.Lock()
        self.calls = {1: 0, num_threads: 0}       # calls run per thread count, for reports

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self._runners[0].input_shape

    @property
    def input_dtype(self) -> np.dtype:
        return self._runners[0].input_dtype

    @property
    def threads_in_use(self) -> int:
        return self._policy.threads[self._policy.use]

    def __call__(self, x: np.ndarray) -> list[np.ndarray]:
        with self._lock:
            index = self._policy.next()
            start = time.perf_counter()
            outputs = self._runners[index](x)
            ms = (time.perf_counter() - start) * 1e3
            move = self._policy.record(index, ms)
            if move is not None:
                log.info("%s: now %d TFLite thread(s) per call, not %d (median %.2f ms per "
                         "call against %.2f)", self.path.name, move.after, move.before,
                         move.after_ms, move.before_ms)
            self.calls[self._policy.threads[index]] += 1
            return outputs


Runner = TFLiteRunner | AdaptiveRunner


def make_runner(path: str | Path, num_threads: int, adapt: bool) -> Runner:
    """The runner for a model: with several threads and `adapt`, one that also keeps a
    one-thread interpreter and takes whichever has been faster lately."""
    return AdaptiveRunner(path, num_threads) if adapt and num_threads > 1 \
        else TFLiteRunner(path, num_threads)


def thread_use(runner: Runner) -> str:
    """How the calls so far were run, e.g. "2 threads 97%, 1 thread 3%" (for reports)."""
    counts = runner.calls if isinstance(runner, AdaptiveRunner) else {runner.num_threads: 1}
    total = max(sum(counts.values()), 1)
    return ", ".join(f"{n} thread{'s' if n > 1 else ''} {100 * c / total:.0f}%"
                     for n, c in sorted(counts.items(), reverse=True) if c)
