"""One browser session of the live page: its settings, the tracker of its current stream, its
series and its recording. `process_newest` is the webcam callback's body.

Threads: the page (Streamlit's script thread) replaces `settings` whole and reads the buffer and
the recording (which lock themselves). Each stream gets its own processing thread from
streamlit-webrtc (never the event loop that serves WebRTC and the websockets); that thread owns the
tracker and reads `settings` once per frame. A new stream (START after STOP, a reconnect) gets a
fresh tracker and a fresh rate/lag baseline; the series goes on until the user clears it.
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
import time
import weakref
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import av
import cv2
import numpy as np

from ..core.face import ms_since
from ..core.options import TrackerOptions
from ..engine.pipeline import Pipeline
from ..engine.tracking import FaceTracker
from ..render import draw
from .drawing import draw_with_fallback
from .recording import Recording, RecordingStatus
from .series import SeriesBuffer

log = logging.getLogger(__name__)
# DENSEHEAD_LIVE_ECHO=1: every stream's frames go back untouched (no tracking, no drawing), the
# same server and browser otherwise: the transport's own latency and CPU, which benchmark-live
# prints as the floor beside the page's
ECHO_ENV = "DENSEHEAD_LIVE_ECHO"
LIVE_RESOURCE = "live"   # a session's LiveSession among its server resources
# Older frames of a burst are still tracked while the callback has spent less than this; a
# burst of two (a frame that came a little late) then costs no data, a real overload still drops.
CATCH_UP_MS = 8.0


@dataclass(frozen=True)
class LiveSettings:
    """What the page's controls set; one value, replaced whole, read once per frame."""
    pipeline: Pipeline
    tracker: TrackerOptions = field(default_factory=TrackerOptions)
    mode: str = draw.DEFAULT_MODE

    def replace(self, **changes: Any) -> "LiveSettings":
        return replace(self, **changes)

    def chosen(self, base: Pipeline, mode: str, score_threshold: float, max_faces: int,
               smoothing: bool) -> "LiveSettings":
        """These settings with the page's controls applied. A new pipeline (sharing `base`'s
        models) is made only when a detection setting changed: equal settings stay equal, so
        the stream's tracker is not started again."""
        pipeline = self.pipeline
        detection = {"score_threshold": score_threshold, "max_faces": max_faces}
        if any(getattr(pipeline.options, k) != v for k, v in detection.items()):
            pipeline = base.with_options(**detection)
        tracker = (self.tracker if self.tracker.smoothing == smoothing
                   else self.tracker.replace(smoothing=smoothing))
        return LiveSettings(pipeline, tracker, mode)


class LiveSession:
    """Everything one browser session of the live page holds on the server."""

    def __init__(self, pipeline: Pipeline, clock: Callable[[], float] = time.monotonic,
                 echo: bool = False) -> None:
        self.settings = LiveSettings(pipeline)
        self.echo = echo                  # frames go back untouched (ECHO_ENV)
        self.buffer = SeriesBuffer(clock=clock)
        self.note = ""                    # e.g. the renderer fallback, shown by the page
        self.streams = 0                  # streams started in this session
        self.processed = 0                # frames processed / arrived since the session began
        self.arrived = 0
        self._tracker: FaceTracker | None = None
        self._stream_thread: weakref.ref | None = None  # the processing thread of this stream
        self._lock = threading.Lock()     # stream start/end and the recording slot
        self._recording: Recording | None = None
        self.recording_collected = False
        self._folder: Path | None = None  # temporary files (the recording), made when needed
        self._closed = False
        self._last_frame_ms = float("inf")  # no catching up before one frame was timed

    # -- the processing thread -------------------------------------------------------------
    def process_newest(self, frames: list[av.VideoFrame]) -> list[av.VideoFrame]:
        """Everything that arrived while the last frame was being processed. The newest is
        processed and sent back; older ones are tracked too (for the series, the tracker and a
        recording, not drawn for the browser) while that fits in CATCH_UP_MS, else dropped, so
        latency stays about one frame deep."""
        start = time.perf_counter()
        self.arrived += len(frames)
        caught_up = 0
        for frame in frames[:-1]:
            spent = ms_since(start)
            if spent + self._last_frame_ms > CATCH_UP_MS:
                break
            self.process(frame, send_back=False)
            caught_up += 1
        self.buffer.add_arrivals(len(frames), dropped=len(frames) - 1 - caught_up)
        return [self.process(frames[-1])]

    def process(self, frame: av.VideoFrame, send_back: bool = True) -> av.VideoFrame:
        """Track, draw, record; errors go to the page and the raw frame goes back, so the
        stream never stops. `send_back=False`: a frame only the series and the recording see."""
        start = time.perf_counter()
        tracker = self._stream_tracker()
        if tracker is None:  # the session was closed under a stream still running
            return frame
        media_time = float(frame.pts * frame.time_base) if frame.pts is not None else None
        if self.echo:
            self.buffer.add_frame([], None, 0.0, media_time, size=(frame.width, frame.height))
            self.processed += 1
            return frame
        settings = self.settings
        tracker.pipeline, tracker.options = settings.pipeline, settings.tracker
        image = _bgr_image(frame)
        recording = self._recording
        try:
            result = tracker(image, dense=draw.needs_dense(settings.mode), timestamp=media_time)
            out = image
            if send_back or recording is not None:
                drawn = time.perf_counter()
                out, self.note = draw_with_fallback(image, result.faces, settings.mode,
                                                    settings.pipeline.face_model, in_place=True)
                result.times.render = ms_since(drawn)
        except Exception as exc:  # shown on the page by the stats panel, logged with its traceback
            log.exception("live frame processing failed")
            self.buffer.set_error(f"{type(exc).__name__}: {exc}")
            return frame
        if recording is not None and media_time is not None:
            recording.add(out, result.faces, media_time)
        self._last_frame_ms = ms_since(start)
        self.buffer.add_frame(result.faces, result.times, self._last_frame_ms, media_time,
                              size=(image.shape[1], image.shape[0]))
        self.processed += 1
        return _video_frame(out) if send_back else frame

    def _stream_tracker(self) -> FaceTracker | None:
        """This stream's tracker; the first frame from a new processing thread starts a stream."""
        current = threading.current_thread()
        with self._lock:
            if self._closed:
                return None
            if self._tracker is None or self._stream_thread is None or self._stream_thread() is not current:
                self._begin_stream(current)
            return self._tracker

    def _begin_stream(self, thread: threading.Thread) -> None:
        s = self.settings
        self._tracker = FaceTracker(s.pipeline, s.tracker)   # no track of another stream survives
        self._stream_thread = weakref.ref(thread)
        self.buffer.new_stream()
        self.streams += 1
        log.info("live stream %d started", self.streams)

    def stream_ended(self) -> None:
        """streamlit-webrtc's on_video_ended (STOP, tab closed, connection lost): the tracker
        goes, a recording in progress is finished."""
        with self._lock:
            self._tracker, self._stream_thread = None, None
            recording = self._recording
        if recording is not None:
            recording.stop("the stream ended")
        log.info("live stream %d ended", self.streams)

    # -- the page's buttons ------------------------------------------------------------------
    def clear_series(self) -> None:
        self.buffer.clear()

    def series_csv(self) -> str:
        return self.buffer.csv()

    def recording_mp4(self) -> bytes:
        recording = self._recording
        return recording.path.read_bytes() if recording is not None and recording.path.exists() else b""

    def recording_csv(self) -> str:
        recording = self._recording
        return recording.csv() if recording is not None else ""

    # -- recording ---------------------------------------------------------------------------
    def start_recording(self, max_seconds: float) -> None:
        """A new recording replaces the previous one (its file is deleted)."""
        with self._lock:
            if self._closed:
                return
            old = self._recording
            if self._folder is None:
                self._folder = Path(tempfile.mkdtemp(prefix="densehead-live-"))
                weakref.finalize(self, shutil.rmtree, self._folder, True)  # also at server exit
            self._recording = Recording(self._folder / f"recording-{time.time_ns()}.mp4", max_seconds)
            self.recording_collected = False   # the page has not offered its files yet
        if old is not None:
            _discard(old)

    def stop_recording(self, wait_s: float = 10.0) -> None:
        """Stop (if it has not ended by itself) and wait for the file to be complete."""
        recording = self._recording
        if recording is not None:
            recording.stop()
            recording.wait(timeout=wait_s)
            self.recording_collected = True

    @property
    def recording(self) -> Recording | None:
        return self._recording

    def recording_status(self) -> RecordingStatus | None:
        recording = self._recording
        return recording.status() if recording is not None else None

    # -- the session's end -----------------------------------------------------------------
    def close(self) -> None:
        """The browser went away: drop the tracker, the series and the recording files."""
        with self._lock:
            self._closed = True
            self._tracker, self._stream_thread = None, None
            recording, self._recording = self._recording, None
            folder, self._folder = self._folder, None
        if recording is not None:
            _discard(recording)
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)

    def status(self) -> dict[str, Any]:
        """Counters for the status file (tests, `densehead benchmark-live`)."""
        stats = self.buffer.stats()
        rec = self.recording_status()
        return {"streams": self.streams, "processed": self.processed, "arrived": self.arrived,
                "streaming": self._tracker is not None, "size": list(stats.size),
                "mode": self.settings.mode, "rows": self.buffer.rows,
                "max_faces": self.settings.pipeline.options.max_faces,
                "frame_ms": round(stats.frame_ms, 2), "lag_ms": round(stats.lag_ms, 1),
                "recording": rec.state if rec else "", "temp_dir": str(self._folder or "")}


def echo_from_environment() -> bool:
    return os.environ.get(ECHO_ENV, "").strip() == "1"


def _bgr_image(frame: av.VideoFrame) -> np.ndarray:
    """The frame as BGR. Decoded WebRTC video is yuv420p: its planes are copied out as they are
    and OpenCV converts them; PyAV's own conversion sets up a new swscale context (and its slice
    threads) for every frame."""
    if frame.format.name == "yuv420p" and frame.width % 2 == 0 and frame.height % 2 == 0:
        return cv2.cvtColor(frame.to_ndarray(format="yuv420p"), cv2.COLOR_YUV2BGR_I420)
    return frame.to_ndarray(format="bgr24")


def _video_frame(image_bgr: np.ndarray) -> av.VideoFrame:
    """The frame to send back. yuv420p is what the VP8 encoder takes, and OpenCV converts to it
    more cheaply than the encoder's own conversion does (odd sizes cannot be yuv420p); the
    frame wraps the converted array instead of copying it (a fresh array per frame)."""
    h, w = image_bgr.shape[:2]
    if h % 2 or w % 2:
        return av.VideoFrame.from_ndarray(image_bgr, format="bgr24")
    return av.VideoFrame.from_numpy_buffer(cv2.cvtColor(image_bgr, cv2.COLOR_BGR2YUV_I420),
                                           format="yuv420p")


def _discard(recording: Recording) -> None:
    recording.stop("replaced")
    recording.wait(timeout=5.0)
    recording.path.unlink(missing_ok=True)
