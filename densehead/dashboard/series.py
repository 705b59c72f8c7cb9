"""The live page's results buffer: per-frame table rows and processing statistics.

`SeriesBuffer` sits between a producer thread (the webcam callback) and a reader (the page, a
few times a second). Everything is bounded: a ring of table rows (densehead.io.table's columns, in
float32) and a ring of per-frame timings, so a long session cannot grow memory; every access
holds one lock for a short copy, and readers copy only the rows and columns they draw.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from ..core.face import STAGES, Face, StageTimes
from ..io.table import COL, COLUMNS, csv_text, face_row

IDLE_AFTER_S = 2.0  # no frame for this long: the stream is stopped or stalled, rates read 0
# The server is busy when it processes less than this share of the arriving frames (the rest
# are dropped to keep the delay one frame deep) or when frames wait longer than BUSY_LAG_MS
BUSY_SHARE = 0.8
BUSY_LAG_MS = 250.0
# Rates are told once their frames span this long: at a stream's start two frames handed over
# together made one readout say 300 fps
RATE_SPAN_S = 0.25
TIME = COL["time_s"]


@dataclass
class LiveStats:
    """What the page shows about the server-side processing."""
    fps: float | None = 0.0          # processed frames per second over the stats window (None:
                                     # too short a span yet to tell)
    frame_ms: float = 0.0            # median wall time of the whole callback
    frame_ms_p90: float = 0.0
    stage_ms: dict[str, float] = field(default_factory=dict)  # median per stage, where it ran
    stage_share: dict[str, float] = field(default_factory=dict)  # share of frames it ran on
    lag_ms: float = 0.0              # how far processing trails the media clock (0 = keeping up)
    frames: int = 0                  # frames processed since the last clear
    faces: int = 0                   # faces in the latest frame
    error: str = ""                  # last error raised in the callback, shown instead of a traceback
    received_fps: float | None = 0.0  # frames arriving from the camera per second (as fps)
    dropped: int = 0                 # frames skipped because processing was busy (never queued)
    size: tuple[int, int] = (0, 0)   # width, height of the latest processed frame
    idle_s: float = 0.0              # seconds since the latest processed frame

    @property
    def stopped(self) -> bool:
        """No frame for IDLE_AFTER_S: the stream is stopped or stalled."""
        return self.idle_s > IDLE_AFTER_S

    @property
    def busy(self) -> bool:
        """The server cannot keep up with this stream: it drops frames or they wait."""
        if self.stopped or not self.received_fps or self.fps is None:
            return False
        return self.fps < BUSY_SHARE * self.received_fps or self.lag_ms > BUSY_LAG_MS


def _rate(times: list[float], events: int) -> float | None:
    """`events` per second over the span of `times` (seconds, oldest first); None for a span
    shorter than RATE_SPAN_S."""
    span = times[-1] - times[0]
    return events / span if span >= RATE_SPAN_S else None


class _Ring:
    """Fixed-size ring of table rows, oldest first; not locked (SeriesBuffer locks)."""

    def __init__(self, capacity: int) -> None:
        self.data = np.empty((capacity, len(COLUMNS)), dtype=np.float32)  # pages touched on use
        self.start = 0
        self.count = 0

    def append(self, row: np.ndarray) -> None:
        capacity = len(self.data)
        self.data[(self.start + self.count) % capacity] = row
        if self.count < capacity:
            self.count += 1
        else:
            self.start = (self.start + 1) % capacity

    def order(self, first: int = 0) -> np.ndarray:
        """Indices of rows first..count-1 in time order."""
        return (self.start + np.arange(first, self.count)) % len(self.data)

    def clear(self) -> None:
        self.start = self.count = 0


class SeriesBuffer:
    """Bounded, lock-protected ring of table rows plus per-frame timings.

    Writers call `add_frame` from any thread; readers call `snapshot`, `stats` or `csv`.
    """

    def __init__(self, max_rows: int = 20_000, stats_frames: int = 60,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._rows = _Ring(max_rows)
        self._frames: deque[tuple[float, float, dict[str, float]]] = deque(maxlen=stats_frames)
        self._arrivals: deque[tuple[float, int]] = deque(maxlen=stats_frames)
        self._version = 0
        self._reset()

    def _reset(self) -> None:
        """Back to no frames seen; callers other than __init__ hold the lock."""
        self._rows.clear()
        self._version += 1
        self._t0: float | None = None
        self._count = 0
        self._dropped = 0
        self._size = (0, 0)
        self._reset_stream()

    def _reset_stream(self) -> None:
        """Forget what belongs to one stream: its rates, its media clock and its last readouts."""
        self._frames.clear()
        self._arrivals.clear()
        self._lag_floor = float("inf")
        self._lag = 0.0
        self._faces = 0
        self._error = ""

    @property
    def max_rows(self) -> int:
        return len(self._rows.data)

    @property
    def rows(self) -> int:
        """Rows held now."""
        with self._lock:
            return self._rows.count

    @property
    def version(self) -> int:
        """Changes whenever the rows change (a frame added, a clear): redraw only then."""
        with self._lock:
            return self._version

    def now(self) -> float:
        """Seconds since the first frame (0 before any frame)."""
        with self._lock:
            return 0.0 if self._t0 is None else self._clock() - self._t0

    def add_frame(self, faces: Sequence[Face], times: StageTimes | None = None,
                  frame_ms: float = 0.0, media_time: float | None = None,
                  size: tuple[int, int] = (0, 0)) -> None:
        """Record one processed frame: a row per face, its timings, and the media clock.

        media_time is the frame's presentation time in seconds (pts * time_base); comparing its
        progress with the wall clock tells whether frames pile up before processing.
        """
        wall = self._clock()
        stages = times.as_dict() if times is not None else {}
        with self._lock:
            if self._t0 is None:
                self._t0 = wall
            t = wall - self._t0
            for face in faces:
                self._rows.append(face_row(self._count, t, face))
            self._frames.append((wall, float(frame_ms), {k: float(stages.get(k, 0.0)) for k in STAGES}))
            self._update_lag(wall, media_time)
            self._count += 1
            self._version += 1
            self._faces = len(faces)
            self._size = (int(size[0]), int(size[1]))
            self._error = ""

    def _update_lag(self, wall: float, media_time: float | None) -> None:
        # Offset between wall clock and media clock; its minimum is the no-queue baseline,
        # anything above it is time a frame waited before reaching the callback.
        if media_time is None:
            return
        offset = wall - float(media_time)
        self._lag_floor = min(self._lag_floor, offset)
        self._lag = offset - self._lag_floor

    def add_arrivals(self, n: int, dropped: int | None = None) -> None:
        """n frames arrived together; `dropped` of them went unprocessed (default: all but
        the newest)."""
        with self._lock:
            self._arrivals.append((self._clock(), int(n)))
            self._dropped += max(0, int(n) - 1 if dropped is None else int(dropped))

    def set_error(self, message: str) -> None:
        with self._lock:
            self._error = message

    def snapshot(self, window_s: float | None = None,
                 columns: Sequence[str] | None = None) -> np.ndarray:
        """float64 copy of the rows (n, len(columns or COLUMNS)) in time order; only the last
        window_s seconds if given."""
        cols = [COL[c] for c in columns] if columns is not None else slice(None)
        with self._lock:
            ring = self._rows
            first = 0
            if window_s is not None and self._t0 is not None and ring.count:
                times = ring.data[ring.order(), TIME]
                cutoff = np.float32(self._clock() - self._t0 - window_s)
                first = int(np.searchsorted(times, cutoff, side="left"))
            table = ring.data[ring.order(first)][:, cols]
        return table.astype(np.float64)

    def stats(self) -> LiveStats:
        with self._lock:
            frames = list(self._frames)
            out = LiveStats(lag_ms=self._lag * 1000.0, frames=self._count,
                            faces=self._faces, error=self._error, dropped=self._dropped,
                            size=self._size)
            arrivals = list(self._arrivals)
        if arrivals:
            out.received_fps = _rate([t for t, _ in arrivals], sum(n for _, n in arrivals[1:]))
        if not frames:
            return out
        walls = np.array([f[0] for f in frames])
        totals = np.array([f[1] for f in frames])
        out.fps = _rate(walls.tolist(), len(frames) - 1)
        out.idle_s = max(0.0, self._clock() - float(walls[-1]))
        if out.stopped:  # the last rates and faces are history, not what happens now
            out.fps = out.received_fps = 0.0
            out.faces = 0
        out.frame_ms = float(np.median(totals))
        out.frame_ms_p90 = float(np.percentile(totals, 90))
        # a tracked stream detects on a few frames only: a median over all frames would read 0
        for stage in STAGES:
            ran = [f[2][stage] for f in frames if f[2][stage] > 0]
            out.stage_ms[stage] = float(np.median(ran)) if ran else 0.0
            out.stage_share[stage] = len(ran) / len(frames)
        return out

    def csv(self) -> str:
        return csv_text(self.snapshot())

    def clear(self) -> None:
        with self._lock:
            self._reset()

    def new_stream(self) -> None:
        """A new stream starts (START after STOP): the rows and frame numbers go on, but rates
        and the queue lag start afresh, since a new stream's media clock has its own origin."""
        with self._lock:
            self._reset_stream()
