"""One input file -> its per-frame table: what a batch worker does, and the Python calls that do
the same for one file (`video_table`, `image_table`).

A video runs through its own FaceTracker from frame 0, so its table does not depend on which
worker, engine or process ran it. A photo is one pipeline call: one row per face, frame 0.
"""
from __future__ import annotations

import socket
import time
import traceback
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from ..core.errors import OptionsError, error_line
from ..core.options import SPEED_ONLY, PipelineOptions, TrackerOptions
from ..io import table as tables
from .plan import Job

if TYPE_CHECKING:
    import pandas as pd

    from ..engine.pipeline import Pipeline

Progress = Callable[[int], None]          # frames done in the current file
FrameCount = tuple[int, int]              # (task index, frames done): an engine's progress event
# TFLite threads per worker: the workers, one per core, are the parallelism
WORKER_THREADS = 1


@dataclass(frozen=True)
class BatchSettings:
    """Everything that decides a batch's tables, the same for every file and every worker."""
    pipeline: PipelineOptions = field(
        default_factory=lambda: PipelineOptions(num_threads=WORKER_THREADS))
    tracker: TrackerOptions = field(default_factory=TrackerOptions)
    overlay: str | None = None        # also draw this mode (densehead.render.draw.MODES) per file
    max_frames: int | None = None     # only the first N frames of each video

    def __post_init__(self) -> None:
        from ..render.draw import MODES

        if self.overlay is not None and self.overlay not in MODES:
            raise OptionsError("overlay", f"{self.overlay!r} is not a mode; "
                                          f"choose one of {', '.join(MODES)}")
        if self.max_frames is not None and (isinstance(self.max_frames, bool)
                                            or not isinstance(self.max_frames, int)
                                            or self.max_frames < 1):
            raise OptionsError("max_frames", f"must be a whole number >= 1, got {self.max_frames!r}")

    def resolved(self) -> "BatchSettings":
        """These settings with "auto" replaced by the regressor it means here, so that every
        worker (and every node of a cluster) runs the same network."""
        from ..engine.regressor_choice import resolve_regressor

        options = self.pipeline
        name = resolve_regressor(options.regressor, options.num_threads).name
        return replace(self, pipeline=options.replace(regressor=name))

    def table_key(self) -> dict[str, Any]:
        """What a table depends on (stored with it; a table made otherwise is made again).
        The threads are left out: they change speed, not results."""
        pipeline = {k: v for k, v in asdict(self.pipeline).items() if k not in SPEED_ONLY}
        return {"pipeline": pipeline, "tracker": asdict(self.tracker),
                "max_frames": self.max_frames}


@dataclass(frozen=True)
class Task:
    """A job as a worker gets it: where to draw the overlay, if anywhere."""
    index: int
    job: Job
    overlay_temp: Path | None = None


@dataclass
class Outcome:
    """What a worker sends back for one task (the table travels back; the caller writes it)."""
    index: int
    table: np.ndarray | None = None    # None when the file failed
    frames: int = 0
    fps: float = 0.0
    seconds: float = 0.0
    error: str | None = None
    notes: list[str] = field(default_factory=list)
    host: str | None = None            # the machine that ran it
    node: str | None = None            # the Ray node that ran it (its id), on Ray

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def faces(self) -> int:
        return 0 if self.table is None else len(self.table)


class Cancelled(Exception):
    """Raised from a worker's progress callback when the batch is being stopped."""


def run_task(task: Task, settings: BatchSettings, pipeline: "Pipeline",
             progress: Progress | None = None) -> Outcome:
    """Run one file; every failure of the file itself becomes `Outcome.error`, one line."""
    start = time.perf_counter()
    try:
        if task.job.kind == "image":
            outcome = _image(task, settings, pipeline)
        else:
            outcome = _video(task, settings, pipeline, progress)
    except Cancelled:
        raise
    except (ValueError, OSError) as error:  # VideoError, ImageError: the file's own fault
        outcome = Outcome(task.index, error=error_line(error))
    except Exception as error:  # a bug must not stop the other files; say what it was
        detail = traceback.format_exception_only(type(error), error)[-1].strip()
        outcome = Outcome(task.index, error=f"internal error: {detail}")
    outcome.seconds = time.perf_counter() - start
    outcome.host = socket.gethostname()
    return outcome


def _video(task: Task, settings: BatchSettings, pipeline: "Pipeline",
           progress: Progress | None) -> Outcome:
    from ..render import draw
    from .video_runner import analyze_video

    report = None if progress is None else (lambda done, total, elapsed: progress(done))
    result = analyze_video(task.job.source, task.overlay_temp, pipeline,
                           mode=settings.overlay or draw.DEFAULT_MODE, options=settings.tracker,
                           max_frames=settings.max_frames, progress=report)
    return Outcome(task.index, table=result.table, frames=result.n_frames, fps=result.fps,
                   notes=list(result.notes))


def _image(task: Task, settings: BatchSettings, pipeline: "Pipeline") -> Outcome:
    import cv2

    from ..io.image import read_image
    from ..render import draw

    frame = read_image(task.job.source)
    dense = settings.overlay is not None and draw.needs_dense(settings.overlay)
    faces = pipeline(frame, dense=dense).faces
    if task.overlay_temp is not None and settings.overlay is not None:
        picture = draw.overlay(frame, faces, settings.overlay, pipeline.face_model)
        if not cv2.imwrite(str(task.overlay_temp), picture):
            raise OSError(f"cannot write the overlay image {task.overlay_temp}")
    return Outcome(task.index, table=tables.photo_rows(faces), frames=1)


# -- the same for one file, from Python ------------------------------------------------------

def video_table(path: str | Path, pipeline: "Pipeline | None" = None,
                options: TrackerOptions | None = None,
                max_frames: int | None = None) -> "pd.DataFrame":
    """The per-frame table of one video (densehead.io.table.COLUMNS): one row per face per frame.
    Raises densehead.VideoError for a file that cannot be read."""
    from ..engine.pipeline import Pipeline
    from .video_runner import analyze_video

    result = analyze_video(path, None, pipeline or Pipeline(), options=options,
                           max_frames=max_frames)
    return tables.to_frame(result.table)


def image_table(path: str | Path, pipeline: "Pipeline | None" = None) -> "pd.DataFrame":
    """The table of one photo: one row per face, frame 0, track_id the face's rank.
    Raises densehead.ImageError for a file that is not an image."""
    from ..engine.pipeline import Pipeline
    from ..io.image import read_image

    faces = (pipeline or Pipeline())(read_image(path)).faces
    return tables.to_frame(tables.photo_rows(faces))
