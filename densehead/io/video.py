"""Reading and writing video files (and single images through the same door) with OpenCV."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from ..core.errors import VideoError
from ..core.files import missing_file

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
# what a folder walk or an upload takes as a video (a file named explicitly is tried whatever
# its suffix)
VIDEO_SUFFIXES = frozenset({".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".wmv", ".flv",
                            ".mpg", ".mpeg", ".ts", ".mts", ".m2ts", ".3gp", ".ogv", ".mxf",
                            ".y4m", ".mjpeg", ".dv"})
# what VideoWriter can write: MJPG in .avi, mp4v in the others
WRITABLE_VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".m4v"}


@dataclass
class VideoInfo:
    fps: float
    frame_count: int | None  # from the header; may be wrong (some files lie)
    width: int
    height: int


def is_image(path: str | Path) -> bool:
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def _open(path: str | Path) -> cv2.VideoCapture:
    path = Path(path)
    problem = missing_file(path)
    if problem:
        raise VideoError(problem)
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise VideoError(f"{path.name} is not a video OpenCV can read (try MP4/H.264, AVI, MOV)")
    return cap


def probe(path: str | Path) -> VideoInfo:
    cap = _open(path)
    try:
        fps = cap.get(cv2.CAP_PROP_FPS)
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        ok, frame = cap.read()
        if not ok or frame is None:
            raise VideoError(f"{Path(path).name} has no frame that can be decoded")
        return VideoInfo(fps=fps if 0 < fps < 1000 else 25.0, frame_count=count if count > 0 else None,
                         width=frame.shape[1], height=frame.shape[0])
    finally:
        cap.release()


def iter_frames(path: str | Path, max_frames: int | None = None) -> Iterator[np.ndarray]:
    """BGR frames of a video until the stream ends (the header's count is not trusted)."""
    cap = _open(path)
    try:
        n = 0
        while max_frames is None or n < max_frames:
            ok, frame = cap.read()
            if not ok or frame is None:
                break
            n += 1
            yield frame
        if n == 0:
            raise VideoError(f"{Path(path).name} has no frame that can be decoded")
    finally:
        cap.release()


class VideoWriter:
    """MP4 (mp4v) or AVI (MJPG) by suffix; opened on the first frame so the size is known.

    The encoders need even sizes and would silently crop an odd one (641x361 -> 640x360), so odd
    frames get one black column or row on the right or bottom instead: pixel coordinates in
    the video stay those of the input, which is what per-frame results refer to."""

    def __init__(self, path: str | Path, fps: float) -> None:
        self.path = Path(path)
        if self.path.suffix.lower() not in WRITABLE_VIDEO_SUFFIXES:
            raise VideoError(f"cannot write a video named {self.path.name}: use one of "
                             f"{', '.join(sorted(WRITABLE_VIDEO_SUFFIXES))}")
        self.fps = fps
        self._writer: cv2.VideoWriter | None = None
        self.frames = 0

    def write(self, frame: np.ndarray) -> None:
        h, w = frame.shape[:2]
        if h % 2 or w % 2:
            frame = cv2.copyMakeBorder(frame, 0, h % 2, 0, w % 2, cv2.BORDER_CONSTANT, value=0)
        if self._writer is None:
            fourcc = "MJPG" if self.path.suffix.lower() == ".avi" else "mp4v"
            self._writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*fourcc),
                                           self.fps, (frame.shape[1], frame.shape[0]))
            if not self._writer.isOpened():
                raise VideoError(f"cannot write video {self.path} (codec {fourcc})")
        self._writer.write(frame)
        self.frames += 1

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
