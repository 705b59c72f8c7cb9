"""`densehead benchmark`: milliseconds per stage of the pipeline (or the tracker) and the
overlay, frame after frame, with the median, min and max of each."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ..core.face import STAGES, FrameResult
from ..core.options import TrackerOptions
from ..engine.pipeline import Pipeline
from ..render import draw


@dataclass
class StageTimes:
    """Per timed frame: each stage's milliseconds (plus the whole frame's) and the faces."""
    ms: dict[str, list[float]] = field(
        default_factory=lambda: {k: [] for k in STAGES + ("total",)})
    faces: list[int] = field(default_factory=list)


def time_stages(frames: list[np.ndarray], pipeline: Pipeline, mode: str, frames_timed: int,
                warmup: int, tracker: TrackerOptions | None = None) -> StageTimes:
    """Run `warmup` then `frames_timed` frames (the list looped) through the pipeline, or through
    a tracker with these options, and draw `mode` on each."""
    from ..engine.tracking import FaceTracker

    dense = draw.needs_dense(mode)
    step = pipeline if tracker is None else FaceTracker(pipeline, tracker)
    times = StageTimes()
    frame = frames[0].copy()
    for i in range(warmup + frames_timed):
        # written into one buffer first, untimed, as a decoder hands over a frame it has just
        # written (read from the list, each frame would come from main memory)
        frame[...] = frames[i % len(frames)]
        start = time.perf_counter()
        result = step(frame, dense=dense)
        mid = time.perf_counter()
        draw.overlay(frame, result.faces, mode, pipeline.face_model)
        end = time.perf_counter()
        if i >= warmup:
            _add(times, result, (end - mid) * 1e3, (end - start) * 1e3)
    return times


def _add(times: StageTimes, result: FrameResult, render_ms: float, total_ms: float) -> None:
    for k in STAGES:
        if k != "render":
            times.ms[k].append(getattr(result.times, k))
    times.ms["render"].append(render_ms)
    times.ms["total"].append(total_ms)
    times.faces.append(len(result.faces))


def stage_table(times: StageTimes) -> list[str]:
    """The table's lines: median, min and max per stage, and per face where a stage runs once
    per face."""
    n_faces = max(1.0, float(np.median(times.faces)))
    lines = [f"{'stage':<12}{'median ms':>10}{'min':>8}{'max':>8}{'per face':>10}"]
    for k, values in times.ms.items():
        v = np.asarray(values)
        per_face = "" if k in ("detect", "total") else f"{np.median(v) / n_faces:10.3f}"
        lines.append(f"{k:<12}{np.median(v):10.3f}{v.min():8.3f}{v.max():8.3f}{per_face}")
    lines.append("frames per second (median total): "
                 f"{1000 / max(np.median(times.ms['total']), 1e-6):.0f}")
    return lines
