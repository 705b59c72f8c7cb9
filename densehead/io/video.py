"""Reading and writing video files with PyAV (PyAV is imported where it is first needed)."""
from __future__ import annotations

import itertools
import logging
import os
import queue
import threading
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Iterator, NamedTuple

import cv2
import numpy as np

from ..core.errors import VideoError
from ..core.files import missing_file
from .sound import SoundCopy, start_copy

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"})
# what a folder walk or an upload takes as a video (a file named explicitly is tried whatever
# its suffix)
VIDEO_SUFFIXES = frozenset({".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".wmv", ".flv",
                            ".mpg", ".mpeg", ".ts", ".mts", ".m2ts", ".3gp", ".ogv", ".mxf",
                            ".y4m", ".mjpeg", ".dv"})
# what VideoWriter can write: Motion JPEG in .avi, H.264 in the others
WRITABLE_VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".m4v"}
# x264's speed against file size: "ultrafast" costs about what OpenCV's mp4v did and writes
# files of its size; slower presets write smaller files but slow batch runs with overlays
# (docs/measurements.md). SMALL_H264_PRESET: a third of the bytes, for videos kept in memory
H264_PRESET = "ultrafast"
SMALL_H264_PRESET = "veryfast"
H264_CRF = 23              # x264's default quality
QUEUED_FRAMES = 2          # frames waiting for the encoder: enough to overlap, little memory
START_WAIT_TRIES, START_WAIT_S = 200, 0.005   # an encoder thread whose start Ctrl-C cut short
TIME_BASE = Fraction(1, 90000)   # H.264 frame times in the MPEG clock's units (11 µs)


@dataclass
class VideoInfo:
    fps: float
    frame_count: int | None  # from the header; may be wrong (some files lie)
    width: int
    height: int


def is_image(path: str | Path) -> bool:
    """Whether the name is a picture's (by its suffix)."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def picture_suffix(path: str | Path) -> str:
    """The suffix a picture made from this image is written with: its own, or .jpg where its
    name has none of a picture's."""
    suffix = Path(path).suffix
    return suffix if suffix.lower() in IMAGE_SUFFIXES else ".jpg"


def is_image_file(path: str | Path) -> bool:
    """Whether the file holds a picture: a photo saved without a suffix, or under a video's, is
    known by its first bytes; a file that starts like no picture goes by its name, as does
    what is not a regular file (opening a FIFO would wait for a writer forever)."""
    from .image import file_reader, header_size

    if not os.path.isfile(path):
        return is_image(path)
    try:
        with open(path, "rb") as f:
            if header_size(file_reader(f)) is not None:
                return True
    except OSError:
        pass
    return is_image(path)


class TimedFrame(NamedTuple):
    """A decoded picture, upright, and its time in seconds from the video's first frame."""

    time: float
    image: np.ndarray


def _open(path: str | Path) -> tuple[Any, Any]:
    """The opened container and its first video stream, or VideoError saying why not."""
    import av

    if not isinstance(path, (str, os.PathLike)):
        raise VideoError(f"expected the path of a video, got {type(path).__name__}")
    path = Path(path)
    problem = missing_file(path)
    if problem:
        raise VideoError(problem)
    if path.stat().st_size == 0:   # as a photo's message says it (FFmpeg: "Invalid data")
        raise VideoError(f"{path.name} is empty")
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError, UnicodeDecodeError) as error:
        raise VideoError(f"{path.name} is not a video that can be read (try MP4/H.264, AVI, "
                         f"MOV): {getattr(error, 'strerror', None) or error}") from None
    if not container.streams.video:
        container.close()
        raise VideoError(f"{path.name} has no video stream")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"   # FFmpeg decodes on several threads, as it did under OpenCV
    return container, stream


def _frame_rate(stream: Any) -> float:
    """Frames per second from the header; 25 where it says nothing believable."""
    for rate in (stream.average_rate, stream.guessed_rate):
        if rate is not None and 0 < float(rate) < 1000:
            return float(rate)
    return 25.0


def _frame_count(stream: Any, fps: float) -> int | None:
    """The header's frame count, or its duration times the rate (Matroska and WebM state no
    count); None where it says neither."""
    if stream.frames > 0:
        return int(stream.frames)
    if stream.duration and stream.time_base:
        return max(1, round(float(stream.duration * stream.time_base) * fps))
    return None


def header_frames(path: str | Path) -> tuple[float, int | None]:
    """The frame rate and frame count the header states (see VideoInfo), nothing decoded."""
    container, stream = _open(path)
    try:
        fps = _frame_rate(stream)
        return fps, _frame_count(stream, fps)
    finally:
        container.close()


def probe(path: str | Path) -> VideoInfo:
    """The header's rate and frame count and the first frame's size, from one opening (the
    first frame is decoded quietly: reading the video says what was damaged)."""
    container, stream = _open(path)
    try:
        fps = _frame_rate(stream)
        count = _frame_count(stream, fps)
        first = next(_decoded(container, stream, damaged=[0]), None)
    except _av_error() as error:
        raise VideoError(f"{Path(path).name} cannot be read: {error}") from None
    finally:
        container.close()
    if first is None:
        raise VideoError(f"{Path(path).name} has no frame that can be decoded")
    return VideoInfo(fps=fps, frame_count=count, width=first.image.shape[1],
                     height=first.image.shape[0])


def iter_frames(path: str | Path, max_frames: int | None = None) -> Iterator[np.ndarray]:
    """BGR frames of a video until the stream ends (the header's count is not trusted)."""
    for frame in iter_timed_frames(path, max_frames):
        yield frame.image


def iter_timed_frames(path: str | Path, max_frames: int | None = None) -> Iterator[TimedFrame]:
    """The frames of a video, upright (as its display matrix says: a phone's portrait video is
    stored sideways), with their times from its timestamps, so that a variable frame rate keeps
    its real times. A frame without a usable timestamp (none, or not after the one before) is
    put one frame period after the one before. A damaged stretch is skipped, as players do: the
    frames after it are still read, and a warning says how many packets were lost."""
    if max_frames is not None and (isinstance(max_frames, bool) or not isinstance(max_frames, int)
                                   or max_frames < 1):
        raise ValueError(f"max_frames must be None (every frame) or at least 1, got {max_frames!r}")
    container, stream = _open(path)
    damaged, n = [0], 0
    try:
        for frame in itertools.islice(_decoded(container, stream, damaged), max_frames):
            n += 1
            yield frame
    except _av_error() as error:   # the container itself is damaged from here on
        log.warning("%s: reading stopped at a damaged part (%s)", Path(path).name, error)
    finally:
        container.close()
        if damaged[0]:
            log.warning("%s: %d damaged packet(s) skipped", Path(path).name, damaged[0])
    if n == 0:
        raise VideoError(f"{Path(path).name} has no frame that can be decoded")


def _av_error() -> type[Exception]:
    """PyAV's error class."""
    import av

    return av.FFmpegError


def _decoded(container: Any, stream: Any, damaged: list[int]) -> Iterator[TimedFrame]:
    """The frames of `stream`, upright and timed (see iter_timed_frames); packets that do not
    decode are skipped and counted in damaged[0]."""
    from av.video.reformatter import VideoReformatter

    # one converter for the whole video: frame.to_ndarray would set up swscale for every frame
    to_bgr = VideoReformatter()
    period, first, last = 1.0 / _frame_rate(stream), None, None
    for packet in container.demux(stream):
        try:
            decoded = packet.decode()
        except _av_error():
            damaged[0] += 1
            continue
        for frame in decoded:
            stamp = frame.time
            first = stamp if first is None and stamp is not None else first
            t = stamp - first if stamp is not None and first is not None else None
            t = t if t is not None and (last is None or t > last) else (
                0.0 if last is None else last + period)
            last = t
            image = to_bgr.reformat(frame, format="bgr24").to_ndarray()
            yield TimedFrame(t, _upright(image, frame.rotation))


def _upright(image: np.ndarray, rotation: int) -> np.ndarray:
    """The picture turned as its display matrix says (`rotation` degrees counterclockwise)."""
    turns = round(rotation / 90) % 4
    return np.ascontiguousarray(np.rot90(image, turns)) if turns else image


class VideoWriter:
    """H.264 in .mp4/.m4v/.mov/.mkv (what browsers and players play), Motion JPEG in .avi, through
    PyAV; opened on the first frame, so the size is known, and a path that cannot be written is
    reported there. `preset` is x264's (speed against file size).

    Frames are encoded on a thread of the writer's own, while the caller works on the next one
    (the encoder runs without the GIL): a frame handed to `write` must not be changed after. An
    encoder failure is raised by the next `write` or by `close`.

    The encoders need even sizes, so odd frames get one black column or row on the right or
    bottom: pixel coordinates in the video stay those of the input, which is what per-frame
    results refer to.

    The video is written under a hidden name beside `path` and renamed to it by `close`: an
    earlier file of that name stays whole until the new one is, and a run interrupted inside
    the writer's `with` block (Ctrl-C) or failing leaves it as it was.

    `sound_from`: the video the frames come from, whose sound is copied in on the frames'
    clock (densehead.io.sound); frames are then given their times from that video's first
    frame, as iter_timed_frames gives them. `notes` says when its sound could not be copied."""

    def __init__(self, path: str | Path, fps: float, preset: str = H264_PRESET,
                 sound_from: str | Path | None = None) -> None:
        self.path = Path(path)
        if self.path.suffix.lower() not in WRITABLE_VIDEO_SUFFIXES:
            raise VideoError(f"cannot write a video named {self.path.name}: use one of "
                             f"{', '.join(sorted(WRITABLE_VIDEO_SUFFIXES))}")
        self.fps, self.preset, self.sound_from = fps, preset, sound_from
        self.notes: list[str] = []
        self.partial = self.path.with_name(f".{self.path.stem}.part{self.path.suffix}")
        self.frames = 0
        self._queue: queue.Queue[tuple[np.ndarray, float | None] | None] = queue.Queue(
            maxsize=QUEUED_FRAMES)
        self._thread: threading.Thread | None = None
        self._container: Any = None
        self._failure: BaseException | None = None
        self._closed = False   # a write after close would start the file again, empty

    def write(self, frame: np.ndarray, time: float | None = None) -> None:
        """Queue a frame; `time` (seconds, increasing) is when it shows, for a video whose
        frames are not evenly spaced (a phone's variable rate); by default frames come 1/fps
        apart. Motion JPEG in .avi has no times of its own: there they are always evenly spaced."""
        if self._closed:
            raise VideoError(f"{self.path.name} is finished: it was closed before this frame")
        h, w = frame.shape[:2]
        if h % 2 or w % 2:
            frame = cv2.copyMakeBorder(frame, 0, h % 2, 0, w % 2, cv2.BORDER_CONSTANT, value=0)
        if self._thread is None:
            self._start(frame.shape[1], frame.shape[0])
        self._raise_failure()
        self._queue.put((frame, time))
        self.frames += 1

    def close(self) -> None:
        """Encode what is queued, finish the file and give it its name; raises VideoError if
        encoding failed."""
        self._closed = True
        try:
            started = self._stop()
            self._raise_failure()
        except BaseException:   # a failure, or Ctrl-C while the last frames were encoded
            self.partial.unlink(missing_ok=True)
            raise
        if started:
            os.replace(self.partial, self.path)

    def abort(self) -> None:
        """Stop without giving the file its name: what was written goes."""
        self._closed = True
        try:
            self._stop()
        finally:
            self.partial.unlink(missing_ok=True)

    def _stop(self) -> bool:
        """Let the encoder finish; whether it had started (a file was made)."""
        thread, self._thread = self._thread, None
        if thread is None:
            return False
        self._queue.put(None)
        for _ in range(START_WAIT_TRIES):
            try:
                thread.join()
                return True
            except RuntimeError:   # Ctrl-C came while it was being started: it starts soon
                time.sleep(START_WAIT_S)
        _close_quietly(self._container)   # it never started: nobody else will close the file
        return True

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is None:
            self.close()
        else:   # the caller's own error (or Ctrl-C) is the one to see
            self.abort()

    def _start(self, width: int, height: int) -> None:
        import av

        try:   # the file is opened and its header written here, so a bad path fails at once
            try:
                container, stream, sound = self._open(width, height, with_sound=True)
            except av.FFmpegError:   # the muxer would not take the sound's codec after all
                if self.sound_from is None:
                    raise
                self.notes = [f"the overlay video has no sound: {Path(self.sound_from).name}'s "
                              f"sound cannot go into a {self.path.suffix.lower()} file"]
                container, stream, sound = self._open(width, height, with_sound=False)
        except (OSError, av.FFmpegError) as exc:   # a bad path, a codec missing
            raise VideoError(f"cannot write video {self.path}: {exc}") from None
        self._container = container
        self._thread = threading.Thread(target=self._encode, args=(av, container, stream, sound),
                                        name=f"densehead-video-writer {self.path.name}",
                                        daemon=True)
        self._thread.start()

    def _open(self, width: int, height: int, with_sound: bool
              ) -> tuple[Any, Any, SoundCopy | None]:
        """The started container at the hidden name, its video stream and the sound's copy; on
        any failure (or Ctrl-C) nothing is left open or on disk."""
        import av

        suffix = self.path.suffix.lower()
        avi = suffix == ".avi"
        container = sound = None
        try:
            container = av.open(str(self.partial), "w", options=(
                {"movflags": "+faststart"} if suffix in {".mp4", ".m4v", ".mov"} else {}))
            stream = container.add_stream("mjpeg" if avi else "libx264",
                                          rate=Fraction(self.fps).limit_denominator(1001))
            stream.width, stream.height = width, height
            stream.pix_fmt = "yuvj420p" if avi else "yuv420p"
            if not avi:
                stream.options = {"preset": self.preset, "crf": str(H264_CRF)}
                stream.codec_context.time_base = TIME_BASE   # `rate` stays, for rate control
            sound = self._add_sound(container, suffix) if with_sound else None
            container.start_encoding()
        except BaseException:
            if sound is not None:
                sound.close()
            if container is not None:   # it made the file: nothing usable is in it
                _close_quietly(container)
                self.partial.unlink(missing_ok=True)
            raise
        return container, stream, sound

    def _add_sound(self, container: Any, suffix: str) -> SoundCopy | None:
        """The sound stream copied from `sound_from`, added to the container before it starts."""
        if self.sound_from is None:
            return None
        sound, note = start_copy(self.sound_from, container, suffix)
        self.notes = [note] if note else []
        return sound

    def _encode(self, av: Any, container: Any, stream: Any, sound: SoundCopy | None) -> None:
        index, pts, at = 0, -1, 0.0
        timed = stream.codec_context.time_base == TIME_BASE
        try:
            while (item := self._queue.get()) is not None:
                if self._failure is not None:
                    continue   # keep taking frames, so that `write` never waits on a dead encoder
                image, time_s = item
                try:
                    frame = av.VideoFrame.from_ndarray(cv2.cvtColor(image, cv2.COLOR_BGR2YUV_I420),
                                                       format="yuv420p")
                    at = time_s if timed and time_s is not None else index / self.fps
                    # the MPEG clock; never a time at or before the last one's
                    pts = max(round(at / TIME_BASE), pts + 1) if timed else index
                    frame.pts, index = pts, index + 1
                    if sound is not None:   # the sound up to this frame, so the two interleave
                        sound.mux_until(container, at)
                    for packet in stream.encode(frame):
                        container.mux(packet)
                except Exception as exc:   # disk full, encoder error: raised to the caller
                    self._failure = exc
            if self._failure is None:
                if sound is not None:   # the sound to the end of the last frame
                    sound.mux_until(container, at + 1 / self.fps)
                for packet in stream.encode():
                    container.mux(packet)
        except Exception as exc:
            self._failure = self._failure or exc
        finally:
            if sound is not None:
                sound.close()
                self.notes += [sound.note] if sound.note else []
            try:
                container.close()
            except Exception as exc:
                self._failure = self._failure or exc
            if self._failure is not None:   # a video cut short where it failed plays nowhere
                self.partial.unlink(missing_ok=True)

    def _raise_failure(self) -> None:
        failure = self._failure   # set once by the encoder thread, never cleared
        if failure is not None:
            raise VideoError(f"writing video {self.path} failed: {failure}") from failure


def _close_quietly(container: Any) -> None:
    try:
        container.close()
    except Exception:   # it failed before anything was written
        pass
