"""Landmark stability on video (`densehead evaluate-video`): the same video tracked with
smoothing off and on, jitter of both and the lag smoothing adds."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from ..core.layout import N_LANDMARKS
from . import metrics as M

# frames with a face the lag estimate needs (it fits the smoothed track against shifts of the raw)
MIN_FACE_FRAMES = 13


@dataclass
class VideoTrack:
    landmarks: np.ndarray    # (T, 68, 2); NaN where the face is missing
    present: np.ndarray      # (T,) bool
    sizes: np.ndarray        # (T,) sqrt(w*h) of the landmark box, px
    ms: np.ndarray           # (T,) wall time per frame
    fps: float


@dataclass
class VideoReport:
    video: str
    frames: int
    fps: float
    settings: dict[str, Any]
    raw: M.Stability
    smoothed: M.Stability
    lag_frames: float         # how far the smoothed track trails the raw one
    lag_ms: float
    ms_raw: float             # median per-frame time, smoothing off
    ms_smoothed: float        # median per-frame time, smoothing on


def main_face(faces: Sequence[Any], prev_id: int | None) -> Any | None:
    """Follow one face: the previous track if still there, else the largest."""
    if not faces:
        return None
    for f in faces:
        if prev_id is not None and getattr(f, "track_id", -1) == prev_id:
            return f
    return max(faces, key=lambda f: float(np.prod(np.ptp(np.asarray(f.landmarks)[:, :2], axis=0))))


def track_video(tracker: Any, frames: Iterable[np.ndarray], fps: float) -> VideoTrack:
    pts, present, sizes, ms = [], [], [], []
    prev: int | None = None
    for frame in frames:
        t0 = time.perf_counter()
        faces = tracker(frame).faces
        ms.append((time.perf_counter() - t0) * 1000)
        f = main_face(faces, prev)
        if f is None:
            pts.append(np.full((N_LANDMARKS, 2), np.nan)); present.append(False); sizes.append(np.nan)
            prev = None
            continue
        lm = np.asarray(f.landmarks, float)[:, :2]
        pts.append(lm); present.append(True); sizes.append(M.nme_norm(lm))
        prev = getattr(f, "track_id", None)
    return VideoTrack(np.array(pts).reshape(-1, N_LANDMARKS, 2), np.array(present, bool),
                      np.array(sizes, float), np.array(ms, float), fps)


def compare_tracks(raw: VideoTrack, smooth: VideoTrack) -> tuple[M.Stability, M.Stability, float]:
    """Jitter of both tracks (face size from the raw track, so both share one yardstick) and
    the lag of the smoothed one in frames, over the frames where both see the face."""
    both = raw.present & smooth.present
    size = np.where(both, raw.sizes, 1.0)
    s_raw = M.stability(raw.landmarks, size, both)
    s_smooth = M.stability(smooth.landmarks, size, both)
    lag = float("nan")
    if both.sum() >= MIN_FACE_FRAMES:
        idx = np.flatnonzero(both)
        scale = float(np.median(size[idx]))   # one yardstick: per-frame sizes would add noise
        lag = M.lag_frames(raw.landmarks[idx] / scale, smooth.landmarks[idx] / scale)
    return s_raw, s_smooth, lag


def evaluate_video(path: str | Path, make_tracker: Any, settings: dict[str, Any],
                   max_frames: int | None = None) -> VideoReport:
    """make_tracker(smoothing: bool) -> a fresh tracker; the video is run twice."""
    from ..io.video import iter_frames, probe

    fps = probe(path).fps

    def run(smoothing: bool) -> VideoTrack:
        frames = iter_frames(str(path))
        if max_frames:
            frames = (f for i, f in zip(range(max_frames), frames))
        return track_video(make_tracker(smoothing), frames, fps)

    raw = run(False)
    if raw.present.sum() < MIN_FACE_FRAMES:
        raise ValueError(f"{Path(path).name}: a face in {int(raw.present.sum())} of "
                         f"{len(raw.present)} frames; the stability measures need one in at "
                         f"least {MIN_FACE_FRAMES}")
    smooth = run(True)
    s_raw, s_smooth, lag = compare_tracks(raw, smooth)
    return VideoReport(str(path), len(raw.present), fps, settings, s_raw, s_smooth, lag,
                       lag * 1000 / fps, float(np.median(raw.ms)), float(np.median(smooth.ms)))


def format_video(r: VideoReport) -> str:
    lines = [f"{r.video}: {r.frames} frames at {r.fps:.1f} fps, face in {r.raw.frames}",
             f"{'':<10} {'disp %':>8} {'acc var %^2':>12} {'ms/frame':>9}",
             f"{'raw':<10} {r.raw.displacement:>8.3f} {r.raw.accel_var:>12.4f} {r.ms_raw:>9.2f}",
             f"{'smoothed':<10} {r.smoothed.displacement:>8.3f} {r.smoothed.accel_var:>12.4f} "
             f"{r.ms_smoothed:>9.2f}",
             f"smoothing lag: {r.lag_frames:.2f} frames = {r.lag_ms:.1f} ms; "
             f"added compute {r.ms_smoothed - r.ms_raw:+.2f} ms/frame",
             "disp = mean frame-to-frame landmark displacement, acc var = variance of the "
             "second difference, both in % of face size (sqrt(w*h) of the landmark box)."]
    return "\n".join(lines)
