"""The live stream's processing track, used by streamlit-webrtc in place of its own.

streamlit-webrtc's `AsyncVideoProcessTrack` (0.79, `streamlit_webrtc/process.py`) hands each
arriving frame to a worker thread and returns at once whatever result is ready then: the result
of an earlier frame, which puts about one frame period (40 ms at 25 fps) between the camera and
the screen, and the same result again when there is no new one, which the sender encodes again.
The relay in front of the sender (`pc.addTrack(relay.subscribe(output_track))`) queues every
frame without bound, so a sender that falls behind (VP8 encode on a busy CPU) lets frames wait
there for seconds.

`ProcessingTrack` keeps the worker thread and the processor's contract (`recv_queued` gets every
frame that arrived since its last call; the page's callback processes the newest and drops the
rest) and changes what goes out: each result is sent as soon as it is ready, once, stamped
with the time it is sent (`_now_pts` says why). `install()` makes streamlit-webrtc build it for
async video processing and subscribes it to the sender's relay unbuffered (aiortc's
`buffered=False`: only the newest result waits). `DENSEHEAD_WEBRTC_TRACK=streamlit-webrtc`
keeps streamlit-webrtc's own track (to measure one against the other).
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time
from fractions import Fraction
from typing import Any

import av
from aiortc import MediaStreamTrack
from aiortc.contrib.media import MediaRelay
from aiortc.mediastreams import MediaStreamError

from .cpu import PROCESSING_THREAD
from .library_parts import library_kept, replace

log = logging.getLogger(__name__)
ENV = "DENSEHEAD_WEBRTC_TRACK"
RTP_CLOCK = Fraction(1, 90_000)   # video timestamps in RTP (aiortc's VIDEO_TIME_BASE)


class ProcessingTrack(MediaStreamTrack):
    """Frames of `track` through `processor` on a thread of its own; each result once, as soon
    as it is ready. Threads: `recv` and the reader task run on the event loop that serves
    WebRTC; the worker thread runs the processor; they share `_arrived` and `_result` under
    `_lock`."""

    kind = "video"

    def __init__(self, track: MediaStreamTrack, processor: Any,
                 stop_timeout: float | None = None) -> None:
        super().__init__()
        self.track = track
        self.processor = processor
        self._stop_timeout = stop_timeout
        self._lock = threading.Condition()
        self._arrived: list[av.VideoFrame] = []   # not yet handed to the processor
        self._result: av.VideoFrame | None = None  # the newest result not yet sent
        self._failed = False
        self._stopped = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready: asyncio.Event | None = None   # a result (or the end) is there for recv
        self._reader: asyncio.Task | None = None
        self._thread: threading.Thread | None = None
        track.on("ended", self.stop)

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        self._start()
        while True:
            await self._ready.wait()
            self._ready.clear()
            with self._lock:
                result, self._result = self._result, None
                failed = self._failed
            if result is not None:
                return result
            if failed or self.readyState != "live":
                raise MediaStreamError

    def _start(self) -> None:
        if self._thread is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._ready = asyncio.Event()
        self._reader = self._loop.create_task(self._read())
        self._thread = threading.Thread(target=self._work, name=PROCESSING_THREAD, daemon=True)
        self._thread.start()

    async def _read(self) -> None:
        """Every arriving frame goes to the worker at once, whatever the sender does."""
        try:
            while True:
                frame = await self.track.recv()
                with self._lock:
                    self._arrived.append(frame)
                    self._lock.notify()
        except MediaStreamError:   # the browser's track ended
            self.stop()

    def _work(self) -> None:
        loop = asyncio.new_event_loop()   # the processor's recv_queued is a coroutine
        try:
            while True:
                with self._lock:
                    while not self._arrived and not self._stopped:
                        self._lock.wait()
                    if self._stopped:
                        return
                    frames, self._arrived = self._arrived, []
                out = loop.run_until_complete(self.processor.recv_queued(frames))
                if out:
                    result = out[-1]
                    result.pts, result.time_base = _now_pts(), RTP_CLOCK
                    with self._lock:
                        self._result = result
                    self._wake()
        except Exception:  # the page's callback catches its own errors: this is a bug
            log.exception("the live processing thread failed; the stream ends")
            with self._lock:
                self._failed = True
            self._wake()
        finally:
            loop.close()

    def _wake(self) -> None:
        """Tell `recv` (on the event loop) that something is there, from any thread."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._ready.set)

    def stop(self) -> None:
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            self._lock.notify()
        super().stop()
        self.track.stop()
        if self._reader is not None:
            self._loop.call_soon_threadsafe(self._reader.cancel)
        self._wake()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(self._stop_timeout)
        on_ended = getattr(self.processor, "on_ended", None)
        if callable(on_ended):
            on_ended()


def _now_pts() -> int:
    """The time a result is sent, on the RTP video clock. The browser plays a frame by its RTP
    timestamp and sizes its jitter buffer from how irregularly frames arrive against it; stamped
    with the camera's capture time, every variation of our processing time (a detector frame, a
    busy core, other people's frames) counts as network jitter and the browser holds every frame
    longer to smooth it out."""
    return round(time.monotonic() / RTP_CLOCK)


_aiortc_subscribe = MediaRelay.subscribe


def _subscribe(relay: MediaRelay, track: MediaStreamTrack, buffered: bool = True) -> MediaStreamTrack:
    """aiortc's MediaRelay.subscribe; a ProcessingTrack's consumers get its newest result only."""
    return _aiortc_subscribe(relay, track, buffered=buffered and not isinstance(track, ProcessingTrack))


def install() -> bool:
    """Make streamlit-webrtc use ProcessingTrack for async video processing (idempotent).
    False when DENSEHEAD_WEBRTC_TRACK=streamlit-webrtc, or when streamlit-webrtc does not look
    the way this module expects."""
    from streamlit_webrtc import (
        webrtc as streamlit_webrtc,  # warns when imported outside a server
    )

    if library_kept(ENV, "streamlit-webrtc"):
        return False
    if not (isinstance(getattr(streamlit_webrtc, "AsyncVideoProcessTrack", None), type)
            and callable(getattr(streamlit_webrtc, "_wrap_with_processor", None))):
        log.warning("this streamlit-webrtc has no webrtc.AsyncVideoProcessTrack: its own track is used")
        return False
    replace(MediaRelay, "subscribe", _subscribe)
    replace(streamlit_webrtc, "AsyncVideoProcessTrack", ProcessingTrack,
            "live video: each result sent as soon as it is ready, once, newest first")
    return True
