"""Recording the live page's processed stream: a browser-playable MP4 and the table of exactly
the frames in it.

The webcam callback hands each processed frame to `Recording.add`, which only queues it; a
writer thread of its own encodes H.264 (libx264 through PyAV, `ultrafast`, its cheapest preset)
into an MP4. A frame that does not fit in the queue (the server is too busy) is left out of the
MP4 *and* of the table, so the two always match: the table's `frame` column is the frame's index
in the MP4 and `time_s` its timestamp there (the stream's own media clock, so the MP4 plays at
the speed it was seen even though a busy server processes fewer frames).

A recording ends at `max_seconds`, on `stop()`, when the stream ends or changes frame size.
"""
from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from ..core.face import Face
from ..io.table import COLUMNS, csv_text, face_row

log = logging.getLogger(__name__)
TIME_BASE = Fraction(1, 1000)   # MP4 timestamps in milliseconds
QUEUE_FRAMES = 48               # about 2 s of frames may wait for the encoder
RECORDING_S = 60.0              # a recording's length unless the page sets another
_DONE = None


@dataclass(frozen=True)
class RecordingStatus:
    state: str          # "recording", "finishing", "finished" or "failed"
    frames: int         # frames in the MP4 so far
    seconds: float      # its length so far (timestamp of the last frame written)
    max_seconds: float
    dropped: int        # processed frames left out because the encoder was behind
    reason: str = ""    # why it ended, or what went wrong


class Recording:
    """One MP4 being written from another thread's frames."""

    def __init__(self, path: Path, max_seconds: float = RECORDING_S, crf: int = 23) -> None:
        self.path = Path(path)
        self.max_seconds = float(max_seconds)
        self._crf = crf
        self._queue: queue.Queue = queue.Queue(maxsize=QUEUE_FRAMES)
        self._lock = threading.Lock()
        self._rows: list[np.ndarray] = []
        self._frames = 0
        self._seconds = 0.0
        self._dropped = 0
        self._t0: float | None = None      # media time of the first frame
        self._size: tuple[int, int] | None = None
        self._last_pts = -1
        self._accepting = True
        self._state = "recording"
        self._reason = ""
        self._writer = threading.Thread(target=self._write, daemon=True, name="densehead-recorder")
        self._writer.start()

    # -- the producer (the webcam callback's thread) ----------------------------------------
    def add(self, image_bgr: np.ndarray, faces: Sequence[Face], media_time: float) -> bool:
        """Queue one processed frame with its faces; False once the recording takes no more."""
        with self._lock:
            if not self._accepting:
                return False
            h, w = image_bgr.shape[:2]
            if self._t0 is None:
                self._t0, self._size = media_time, (w - w % 2, h - h % 2)
            t = media_time - self._t0
            ended = ""
            if (w - w % 2, h - h % 2) != self._size:
                ended = f"the camera changed to {w}x{h}"
            elif t >= self.max_seconds:
                ended = f"reached {self.max_seconds:.0f} s"
            if ended:
                self._end_locked(ended)
        if ended:
            self._tell_writer_done()
            return False
        sw, sh = self._size
        rows = [face_row(-1, t, f) for f in faces]  # the writer fills in the MP4 frame index
        try:
            self._queue.put_nowait((image_bgr[:sh, :sw], t, rows))
        except queue.Full:
            with self._lock:
                self._dropped += 1
        return True

    def stop(self, reason: str = "stopped") -> None:
        """Take no more frames; the writer finishes the file on its own (see `wait`)."""
        with self._lock:
            ending = self._accepting
            if ending:
                self._end_locked(reason)
        if ending:
            self._tell_writer_done()

    def _end_locked(self, reason: str) -> None:
        self._accepting = False
        self._reason = reason
        self._state = "finishing"

    def _tell_writer_done(self) -> None:
        # called once, by whoever ended the recording, without the lock (the writer needs it to
        # make room in the queue); a writer that died of an error reads nothing more
        while self._writer.is_alive():
            try:
                self._queue.put(_DONE, timeout=0.5)
                return
            except queue.Full:
                continue

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the file is complete; True when it is."""
        self._writer.join(timeout)
        return not self._writer.is_alive()

    # -- what the page shows ---------------------------------------------------------------
    def status(self) -> RecordingStatus:
        with self._lock:
            return RecordingStatus(self._state, self._frames, self._seconds, self.max_seconds,
                                   self._dropped, self._reason)

    def table(self) -> np.ndarray:
        """The rows of the frames in the MP4 (frame = index in the MP4, time_s = its time)."""
        with self._lock:
            rows = list(self._rows)
        return np.vstack(rows) if rows else np.zeros((0, len(COLUMNS)))

    def csv(self) -> str:
        return csv_text(self.table())

    # -- the writer thread -----------------------------------------------------------------
    def _write(self) -> None:
        import av

        container = None
        try:
            while True:
                item = self._queue.get()
                if item is _DONE:
                    break
                image, t, rows = item
                if container is None:
                    container, stream = self._open(av, image.shape[1], image.shape[0])
                frame = av.VideoFrame.from_ndarray(cv2.cvtColor(image, cv2.COLOR_BGR2YUV_I420),
                                                   format="yuv420p")
                frame.pts, frame.time_base = round(t / TIME_BASE), TIME_BASE
                if frame.pts <= self._last_pts:
                    frame.pts = self._last_pts + 1   # timestamps must grow
                self._last_pts = frame.pts
                for packet in stream.encode(frame):
                    container.mux(packet)
                with self._lock:
                    for row in rows:
                        row[0] = self._frames
                        self._rows.append(row)
                    self._frames += 1
                    self._seconds = t
            if container is not None:
                for packet in stream.encode():
                    container.mux(packet)
                container.close()
            with self._lock:
                self._state = "finished" if self._frames else "failed"
                if not self._frames:
                    self._reason = "no frame was recorded: start the camera (START) first"
        except Exception as exc:  # disk full, codec missing…: the page says so, the log has the trace
            log.exception("recording to %s failed", self.path)
            with self._lock:
                self._state, self._reason, self._accepting = "failed", f"{type(exc).__name__}: {exc}", False
            self._drain()
            if container is not None:
                try:
                    container.close()
                except Exception:
                    pass

    def _open(self, av, width: int, height: int):
        container = av.open(str(self.path), "w", options={"movflags": "+faststart"})
        stream = container.add_stream("libx264", options={
            "preset": "ultrafast", "tune": "zerolatency", "crf": str(self._crf)})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.time_base = TIME_BASE
        stream.thread_count = 1   # the cores belong to the live streams
        return container, stream

    def _drain(self) -> None:
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                return
