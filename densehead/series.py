"""Per-face time series (pose + expression) and live processing statistics.

`SeriesBuffer` sits between a producer thread (the webcam callback) and a reader (the dashboard
page, a few times a second). Everything is bounded: a ring of rows and a ring of per-frame
timings, so a long session cannot grow memory, and every access holds one lock for a short copy.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

import numpy as np

from .face import Face, StageTimes

N_EXPRESSION = 10
POSE = ("yaw", "pitch", "roll")
EXPRESSION = tuple(f"exp{i}" for i in range(N_EXPRESSION))
COLUMNS = ("t", "frame", "track_id", *POSE, *EXPRESSION)
COL = {name: i for i, name in enumerate(COLUMNS)}
STAGES = ("detect", "preprocess", "inference", "postprocess", "render")
IDLE_AFTER_S = 2.0  # no frame for this long: the stream is stopped or stalled, rates read 0


def face_row(t: float, frame: int, face: Face) -> tuple[float, ...]:
    """One row of COLUMNS for a face seen at time t (seconds) in frame number `frame`."""
    exp = [float(v) for v in np.asarray(face.expression).ravel()[:N_EXPRESSION]]
    return (float(t), float(frame), float(face.track_id),
            float(face.yaw), float(face.pitch), float(face.roll), *exp)


def rows_to_array(rows: Iterable[Sequence[float]]) -> np.ndarray:
    """Rows -> float64 (n, len(COLUMNS)); empty input gives shape (0, len(COLUMNS))."""
    arr = np.asarray(list(rows), dtype=np.float64)
    return arr.reshape(-1, len(COLUMNS))


def split_tracks(table: np.ndarray) -> dict[int, np.ndarray]:
    """{track_id: rows of that track in time order}, tracks sorted by id."""
    if len(table) == 0:
        return {}
    ids = table[:, COL["track_id"]].astype(int)
    return {int(k): table[ids == k] for k in np.unique(ids)}


def series_csv(table: np.ndarray) -> str:
    """CSV text with a header row; time in seconds, angles in degrees."""
    lines = [",".join(COLUMNS)]
    for row in table:
        head = [f"{row[0]:.4f}", str(int(row[1])), str(int(row[2]))]
        lines.append(",".join(head + [f"{v:.5g}" for v in row[3:]]))
    return "\n".join(lines) + "\n"


@dataclass
class LiveStats:
    """What the page shows about the server-side processing."""
    fps: float = 0.0                 # processed frames per second over the stats window
    frame_ms: float = 0.0            # median wall time of the whole callback
    frame_ms_p90: float = 0.0
    stage_ms: dict[str, float] = field(default_factory=dict)  # median per stage
    lag_ms: float = 0.0              # how far processing trails the media clock (0 = keeping up)
    frames: int = 0                  # frames processed since the last clear
    faces: int = 0                   # faces in the latest frame
    error: str = ""                  # last error raised in the callback, shown instead of a traceback
    received_fps: float = 0.0        # frames arriving from the camera per second
    dropped: int = 0                 # frames skipped because processing was busy (never queued)
    size: tuple[int, int] = (0, 0)   # width, height of the latest processed frame
    idle_s: float = 0.0              # seconds since the latest processed frame

    @property
    def stopped(self) -> bool:
        """No frame for IDLE_AFTER_S: the stream is stopped or stalled."""
        return self.idle_s > IDLE_AFTER_S


class SeriesBuffer:
    """Bounded, lock-protected ring of face rows plus per-frame timings.

    Writers call `add_frame` from any thread; readers call `snapshot`, `stats` or `csv`.
    """

    def __init__(self, max_rows: int = 20_000, stats_frames: int = 60,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._rows: deque[tuple[float, ...]] = deque(maxlen=max_rows)
        self._frames: deque[tuple[float, float, dict[str, float]]] = deque(maxlen=stats_frames)
        self._arrivals: deque[tuple[float, int]] = deque(maxlen=stats_frames)
        self._reset()

    def _reset(self) -> None:
        """Back to no frames seen; callers other than __init__ hold the lock."""
        self._rows.clear()
        self._frames.clear()
        self._arrivals.clear()
        self._t0: float | None = None
        self._lag_floor = float("inf")
        self._lag = 0.0
        self._count = 0
        self._faces = 0
        self._error = ""
        self._dropped = 0
        self._size = (0, 0)

    @property
    def max_rows(self) -> int:
        return self._rows.maxlen or 0

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
                self._rows.append(face_row(t, self._count, face))
            self._frames.append((wall, float(frame_ms), {k: float(stages.get(k, 0.0)) for k in STAGES}))
            self._update_lag(wall, media_time)
            self._count += 1
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

    def add_arrivals(self, n: int) -> None:
        """n frames arrived together; all but the newest are dropped unprocessed."""
        with self._lock:
            self._arrivals.append((self._clock(), int(n)))
            self._dropped += max(0, int(n) - 1)

    def set_error(self, message: str) -> None:
        with self._lock:
            self._error = message

    def snapshot(self, window_s: float | None = None) -> np.ndarray:
        """Copy of the rows (n, len(COLUMNS)), only the last window_s seconds if given."""
        with self._lock:
            rows = list(self._rows)
            now = None if self._t0 is None else self._clock() - self._t0
        table = rows_to_array(rows)
        if window_s is not None and now is not None and len(table):
            table = table[table[:, 0] >= now - window_s]
        return table

    def stats(self) -> LiveStats:
        with self._lock:
            frames = list(self._frames)
            out = LiveStats(lag_ms=self._lag * 1000.0, frames=self._count,
                            faces=self._faces, error=self._error, dropped=self._dropped,
                            size=self._size)
            arrivals = list(self._arrivals)
        if len(arrivals) > 1 and arrivals[-1][0] > arrivals[0][0]:
            out.received_fps = sum(n for _, n in arrivals[1:]) / (arrivals[-1][0] - arrivals[0][0])
        if not frames:
            return out
        walls = np.array([f[0] for f in frames])
        totals = np.array([f[1] for f in frames])
        if len(frames) > 1 and walls[-1] > walls[0]:
            out.fps = (len(frames) - 1) / (walls[-1] - walls[0])
        out.idle_s = max(0.0, self._clock() - float(walls[-1]))
        if out.stopped:  # the last rates are history, not what happens now
            out.fps = out.received_fps = 0.0
        out.frame_ms = float(np.median(totals))
        out.frame_ms_p90 = float(np.percentile(totals, 90))
        out.stage_ms = {k: float(np.median([f[2][k] for f in frames])) for k in STAGES}
        return out

    def csv(self) -> str:
        return series_csv(self.snapshot())

    def clear(self) -> None:
        with self._lock:
            self._reset()


def summary(table: np.ndarray) -> list[dict[str, float]]:
    """Per track: frame count, time span and mean/std/min/max of yaw, pitch, roll."""
    out: list[dict[str, float]] = []
    for tid, rows in split_tracks(table).items():
        item: dict[str, float] = {"track_id": tid, "frames": len(rows),
                                  "start_s": float(rows[0, 0]), "end_s": float(rows[-1, 0])}
        for name in POSE:
            col = rows[:, COL[name]]
            item.update({f"{name}_mean": float(col.mean()), f"{name}_std": float(col.std()),
                         f"{name}_min": float(col.min()), f"{name}_max": float(col.max())})
        out.append(item)
    return out


__all__ = ["COLUMNS", "COL", "EXPRESSION", "IDLE_AFTER_S", "LiveStats", "POSE", "STAGES", "SeriesBuffer",
           "face_row", "rows_to_array", "series_csv",
           "split_tracks", "summary"]
