"""A whole video through the tracker: the overlay video written, the pose and expression
series collected. The video page and the command line both run videos through here."""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from ..core.face import Face
from ..io.table import frame_rows, stack
from ..render import draw

if TYPE_CHECKING:
    from ..core.options import TrackerOptions
    from ..engine.pipeline import Pipeline


@dataclass
class VideoAnalysis:
    """What `analyze_video` returns: the series, the per-frame faces (for JSON) and the output."""
    table: np.ndarray                              # densehead.io.table rows (time: the timestamps)
    frames: list[tuple[int, float, list[Face]]]    # (frame index, t, faces)
    fps: float
    n_frames: int
    output: Path | None                            # None: no overlay video was written
    ms_per_frame: float
    notes: list[str] = field(default_factory=list)


Progress = Callable[[int, "int | None", float], None]   # (frames done, total or None, elapsed s)
Overlay = Callable[[np.ndarray, list, str], "tuple[np.ndarray, str]"]


def analyze_video(path: str | Path, output: str | Path | None, pipeline: "Pipeline",
                  mode: str = draw.DEFAULT_MODE, options: "TrackerOptions | None" = None,
                  max_frames: int | None = None, progress: Progress | None = None,
                  overlay: Overlay | None = None, h264_preset: str | None = None) -> VideoAnalysis:
    """Track every frame of a video, write the overlay video to `output` (with the input's
    sound), and collect the series.
    `output=None` draws and writes nothing (the table alone, as `densehead batch` needs it).

    `overlay(frame, faces, mode) -> (frame, note)` draws; the default is
    densehead.render.draw.overlay.
    `h264_preset`: x264's preset for the overlay video (default densehead.io.video.H264_PRESET).
    Raises densehead.core.errors.VideoError for unreadable input.
    """
    from ..engine.tracking import FaceTracker
    from ..io.video import H264_PRESET, VideoWriter, iter_timed_frames, probe

    info = probe(path)
    total = (info.frame_count if max_frames is None
             else min(info.frame_count or max_frames, max_frames))
    tracker = FaceTracker(pipeline, options, fps=info.fps)
    draw_fn = overlay or (lambda f, fs, m: (draw.overlay(f, fs, m, pipeline.face_model), ""))
    rows: list[np.ndarray] = []
    frames: list[tuple[int, float, list[Face]]] = []
    notes: set[str] = set()
    start = time.perf_counter()
    n = 0
    writer_cm = (VideoWriter(output, info.fps, h264_preset or H264_PRESET, sound_from=path)
                 if output is not None else contextlib.nullcontext())
    dense = output is not None and draw.needs_dense(mode)  # the table itself needs no mesh
    with writer_cm as writer:
        for n, (t, frame) in enumerate(iter_timed_frames(path, max_frames=max_frames), start=1):
            faces = tracker(frame, dense=dense, timestamp=t).faces
            if writer is not None:
                out, note = draw_fn(frame, faces, mode)
                if note:
                    notes.add(note)
                writer.write(out, t)
            rows.extend(frame_rows(n - 1, t, faces))
            for f in faces:
                f.vertices = None  # keep memory flat on long videos: the series needs no mesh
            frames.append((n - 1, t, faces))
            if progress is not None:
                progress(n, total, time.perf_counter() - start)
    notes.update(writer.notes if writer is not None else ())
    elapsed = time.perf_counter() - start
    if max_frames is None and info.frame_count and n < info.frame_count:
        notes.add(f"{Path(path).name} ended after {n} of the {info.frame_count} frames its "
                  "header announces: the file may be truncated or damaged")
    return VideoAnalysis(stack(rows), frames, info.fps, n,
                         None if output is None else Path(output), 1e3 * elapsed / max(n, 1),
                         sorted(notes))
