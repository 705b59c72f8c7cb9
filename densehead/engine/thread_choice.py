"""Each call of a model on one TFLite thread or on several, whichever has been faster lately.

XNNPACK's threads wait for each other after every operator. On a quiet machine a second thread
makes a call faster; while another program runs, the waiting can cost more than the second
thread gives (docs/measurements.md, "One thread or two, per call"). Which holds changes while a
process runs, so a model with several threads keeps a one-thread interpreter beside it, now and
then runs a few calls on the one it is not using and as many on the one in use, and moves when
that one is clearly faster. Both run the same graph, and XNNPACK splits a call's work
by output tiles, so the answers are the same whichever runs.
"""
from __future__ import annotations

import logging
import statistics
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..core.face import ms_since
from .runtime import TFLiteRunner

log = logging.getLogger(__name__)

LOOK_CALLS = 6         # a look: this many calls on the other choice, then as many on the one in
WARM_CALLS = 2         # use, each run's first WARM_CALLS left out (the weights out of the cache,
                       # the threads asleep), compared by their medians: calls close in time, so
                       # a busy spell slows both alike. Not alternating call by call: a thread
                       # pool that has just slept makes its next few calls slow.
FIRST_LOOK = 25        # calls between looks at the other choice (two looks in a row must find it
                       # faster to move), after a start or a move ...
LAST_LOOK = 400        # ... doubling after each look that does not move, up to this
MOVE_MARGIN = 0.9      # the other must take under 90% of the time: noise does not move it


@dataclass
class ThreadPolicy:
    """Which of two thread counts runs the next call, from the times of the calls so far.
    `use` is an index into `threads`; the policy starts on the larger count."""

    threads: tuple[int, int]
    use: int = 1
    look_every: int = FIRST_LOOK
    since_look: int = 0
    look: list[float] = field(default_factory=list)   # ms of a look's calls so far, in order
    looking: bool = False
    confirming: bool = False       # the last look found the other faster; this one must too

    def next(self) -> int:
        """The index of the thread count to run the next call on."""
        if not self.looking and self.since_look >= self.look_every:
            self.looking, self.look = True, []
        if self.looking and len(self.look) < LOOK_CALLS:
            return 1 - self.use        # a look runs the other choice first, then this one
        return self.use

    def record(self, ms: float) -> Move | None:
        """Take the time of the call `next` chose; the move it led to, if any."""
        if not self.looking:
            self.since_look += 1
            return None
        self.look.append(ms)
        if len(self.look) < 2 * LOOK_CALLS:
            return None
        self.looking, self.since_look = False, 0
        other = statistics.median(self.look[WARM_CALLS:LOOK_CALLS])
        now = statistics.median(self.look[LOOK_CALLS + WARM_CALLS:])
        if other >= MOVE_MARGIN * now:
            self.confirming = False
            self.look_every = min(2 * self.look_every, LAST_LOOK)
            return None
        if not self.confirming:      # a spell that ended mid-look can mislead one look: ask again
            self.confirming, self.since_look = True, self.look_every
            return None
        move = Move(self.threads[self.use], self.threads[1 - self.use], now, other)
        self.use, self.look_every, self.confirming = 1 - self.use, FIRST_LOOK, False
        return move


@dataclass(frozen=True)
class Move:
    """The policy moved from one thread count to the other: the look's median ms per call on
    each."""
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

    def __call__(self, x: np.ndarray) -> list[np.ndarray]:
        with self._lock:
            index = self._policy.next()
            start = time.perf_counter()
            outputs = self._runners[index](x)
            ms = ms_since(start)
            move = self._policy.record(ms)
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
