"""The batch's progress bar: frames over all files (the ETA comes from the frame rate), the file
count in its description. Frame totals come from the video headers, which may be wrong: each
file's real count replaces its estimate when it finishes."""
from __future__ import annotations

import sys
from typing import Mapping

from .plan import Job


class BatchProgress:
    def __init__(self, todo: Mapping[int, Job], done: int, files: int, max_frames: int | None,
                 enabled: bool | None = None) -> None:
        """`todo`: the jobs to run by task index; `done`: files already finished."""
        from tqdm import tqdm

        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.files, self.done, self.failed = files, done, 0
        self.estimate = ({i: _estimate(job, max_frames) for i, job in todo.items()}
                         if self.enabled else {})
        self.seen: dict[int, int] = {}
        self.started = False
        self.bar = tqdm(total=sum(self.estimate.values()), unit="frame", desc=self._describe(),
                        file=sys.stderr, disable=not self.enabled, dynamic_ncols=True,
                        smoothing=0.05)

    def frames(self, index: int, done: int) -> None:
        if not self.started and self.enabled:  # the first file began: the rate starts now,
            self.started = True                   # not with the workers' start-up
            self.bar.reset(total=self.bar.total)
        step = done - self.seen.get(index, 0)
        if step > 0:
            self.seen[index] = done
            self.bar.update(step)

    def file_done(self, index: int, frames: int, failed: bool) -> None:
        self.done += 1
        self.failed += failed
        if self.enabled:  # a failed file's frames so far stay counted
            frames = max(frames, self.seen.get(index, 0))
            self.bar.total += frames - self.estimate.get(index, 0)
            self.frames(index, frames)
            self.bar.set_description(self._describe(), refresh=True)

    def close(self) -> None:
        self.bar.close()

    def _describe(self) -> str:
        failed = f", {self.failed} failed" if self.failed else ""
        return f"{self.done}/{self.files} files{failed}"


def _estimate(job: Job, max_frames: int | None) -> int:
    frames = 1 if job.kind == "image" else _header_frames(job)
    return frames if max_frames is None else min(frames, max_frames)


def _header_frames(job: Job) -> int:
    """The frame count a video's header claims (0 when it cannot be opened here)."""
    from ..core.errors import VideoError
    from ..io.video import header_frames

    try:
        return header_frames(job.source)[1] or 0
    except VideoError:
        return 0
