"""The live page's server side without a browser: a LiveSession fed real video frames the way
streamlit-webrtc feeds them (av.VideoFrames with pts, one processing thread per stream), its
recording, and the registry that releases a session whose browser went away."""
from __future__ import annotations

import asyncio
import gc
import threading
import weakref

import av
import cv2
import numpy as np
import pytest
from helpers import FakeClock, run_coroutine, shared_pipeline

from densehead.dashboard import heap
from densehead.dashboard import live as live_module
from densehead.dashboard.live import LiveSession, LiveSettings
from densehead.dashboard.processing_track import RTP_CLOCK
from densehead.dashboard.recording import Recording
from densehead.dashboard.sessions import SessionResources
from densehead.dashboard.status import server_status, write_status
from densehead.io.table import COL, COLUMNS
from densehead.io.video import iter_frames
from densehead.render import draw

CLOCK_START = 1000.0   # the fake wall clock's reading when a test begins


@pytest.fixture(scope="module")
def obama(samples) -> list[np.ndarray]:
    return list(iter_frames(samples / "videos" / "obama.mp4", max_frames=40))


def video_frame(bgr: np.ndarray, media_s: float) -> av.VideoFrame:
    frame = av.VideoFrame.from_ndarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), format="rgb24")
    frame = frame.reformat(format="yuv420p")   # what the VP8 decoder gives
    frame.pts, frame.time_base = round(media_s / RTP_CLOCK), RTP_CLOCK
    return frame


def on_own_thread(fn) -> None:
    """Run fn on a new thread, as each stream gets its own processing thread."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            fn()
        except BaseException as exc:  # re-raised in the test
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]


def stream(session: LiveSession, frames: list[np.ndarray], clock: FakeClock,
           media0: float = 0.0) -> list[av.VideoFrame]:
    out: list[av.VideoFrame] = []

    def feed() -> None:
        for i, bgr in enumerate(frames):
            out.extend(session.process_newest([video_frame(bgr, media0 + i / 25)]))
            clock.t += 1 / 25   # the server keeps up: wall time moves with the media clock

    on_own_thread(feed)
    return out


def test_frames_come_back_drawn_and_the_series_fills(obama):
    clock = FakeClock(CLOCK_START)
    session = LiveSession(shared_pipeline(), clock=clock)
    out = stream(session, obama[:20], clock)
    assert len(out) == 20 and out[0].format.name == "yuv420p"
    assert (out[-1].width, out[-1].height) == (obama[0].shape[1], obama[0].shape[0])
    returned = cv2.cvtColor(out[-1].to_ndarray(format="rgb24"), cv2.COLOR_RGB2BGR)
    green = lambda im: int(np.sum((im[..., 1] > 170) & (im[..., 0] < 140) & (im[..., 2] < 140)))
    assert green(returned) > 5 * green(obama[19]) + 50   # the landmarks are drawn on it
    table = session.buffer.snapshot()
    assert len(table) == 20 and session.processed == session.arrived == 20
    assert session.buffer.stats().size == (obama[0].shape[1], obama[0].shape[0])


def test_a_new_stream_gets_a_fresh_tracker_and_its_own_lag_baseline(obama):
    clock = FakeClock(CLOCK_START)
    session = LiveSession(shared_pipeline(), clock=clock)
    stream(session, obama[:15], clock)
    first = weakref.ref(session._tracker)
    assert session.streams == 1 and session.buffer.stats().lag_ms == pytest.approx(0, abs=1e-6)

    session.stream_ended()           # STOP
    gc.collect()
    assert first() is None            # the old stream's tracker (and its tracks) are gone
    clock.t += 30.0                   # ... START half a minute later: aiortc's media clock
    stream(session, obama[:15], clock)  # of the new stream starts from 0 again
    stats = session.buffer.stats()
    assert session.streams == 2
    assert stats.lag_ms == pytest.approx(0, abs=1e-6), "the old stream's media-time baseline survived"
    assert stats.frames == 30 and len(session.buffer.snapshot()) == 30  # the series goes on
    assert stats.received_fps == pytest.approx(25, rel=0.1)             # rates are the new stream's


def test_a_new_processing_thread_alone_starts_a_new_stream(obama):
    """A reconnect may start a stream before the old one's end is reported."""
    clock = FakeClock(CLOCK_START)
    session = LiveSession(shared_pipeline(), clock=clock)
    stream(session, obama[:5], clock)
    first = weakref.ref(session._tracker)
    stream(session, obama[:5], clock)
    gc.collect()
    assert session.streams == 2 and first() is None


def test_settings_are_read_whole_on_the_next_frame(samples):
    photo = cv2.imread(str(samples / "photos" / "trump_hillary.jpg"))
    photo = photo[: photo.shape[0] // 2 * 2, : photo.shape[1] // 2 * 2]
    clock = FakeClock(CLOCK_START)
    session = LiveSession(shared_pipeline(), clock=clock)
    stream(session, [photo] * 2, clock)
    assert session.buffer.stats().faces == 2
    session.settings = LiveSettings(shared_pipeline().with_options(max_faces=1), mode="pose")
    stream(session, [photo] * 2, clock, media0=1.0)   # a new stream: max_faces applies to it
    assert session.buffer.stats().faces == 1


def test_older_frames_of_a_burst_are_tracked_while_there_is_time(obama, monkeypatch):
    clock = FakeClock(CLOCK_START)
    session = LiveSession(shared_pipeline(), clock=clock)
    stream(session, obama[:3], clock)                    # times one frame
    burst = [video_frame(f, 1.0 + i / 25) for i, f in enumerate(obama[3:6])]
    monkeypatch.setattr(live_module, "CATCH_UP_MS", 10_000.0)
    on_own_thread(lambda: session.process_newest(burst))
    assert session.processed == 6 and session.buffer.stats().dropped == 0

    monkeypatch.setattr(live_module, "CATCH_UP_MS", 0.0)  # no time: only the newest
    burst = [video_frame(f, 2.0 + i / 25) for i, f in enumerate(obama[6:9])]
    on_own_thread(lambda: session.process_newest(burst))
    assert session.processed == 7 and session.buffer.stats().dropped == 2 and session.arrived == 9


# --- recording --------------------------------------------------------------------------------

def decode(path) -> tuple[list[np.ndarray], list[float]]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264" and stream.codec_context.pix_fmt == "yuv420p"
        frames = list(container.decode(stream))
        return ([f.to_ndarray(format="bgr24") for f in frames],
                [float(f.pts * f.time_base) for f in frames])


def red_at_landmarks(image: np.ndarray, row: np.ndarray) -> float:
    """Share of the 68 landmarks of a CSV row that sit on the red dots draw.landmarks paints."""
    xy = np.rint([[row[COL[f"lm{i}_x"]], row[COL[f"lm{i}_y"]]] for i in range(68)]).astype(int)
    h, w = image.shape[:2]
    xy = xy[(xy[:, 0] >= 0) & (xy[:, 0] < w) & (xy[:, 1] >= 0) & (xy[:, 1] < h)]
    b, g, r = (image[xy[:, 1], xy[:, 0], k].astype(int) for k in range(3))
    return float(np.mean((r > 150) & (g < 120) & (b < 120)))


def test_recording_holds_the_processed_frames_and_a_csv_that_matches_them(obama, tmp_path):
    clock = FakeClock(CLOCK_START)
    session = LiveSession(shared_pipeline(), clock=clock)
    session.start_recording(max_seconds=60)
    stream(session, obama[:30], clock)
    session.stop_recording()
    recording = session.recording
    assert recording.wait(timeout=30)
    status = recording.status()
    assert status.state == "finished" and status.frames == 30 and status.dropped == 0

    images, times = decode(recording.path)
    table = recording.table()
    assert len(images) == status.frames == 30
    assert sorted(set(table[:, COL["frame"]].astype(int))) == list(range(30))  # one face each
    assert np.allclose(table[:, COL["time_s"]], times, atol=1e-3)            # its MP4 timestamp
    assert times[-1] == pytest.approx(29 / 25, abs=1e-3)    # plays at the speed it was seen
    # frame k of the MP4 shows the overlay of CSV row k: its landmarks sit on the drawn dots
    on_own = [red_at_landmarks(images[k], table[k]) for k in range(0, 30, 5)]
    assert min(on_own) > 0.6, on_own
    csv_lines = recording.csv().splitlines()
    assert csv_lines[0] == ",".join(COLUMNS) and len(csv_lines) == 31


def test_recording_stops_at_its_length_and_on_a_size_change(obama, tmp_path):
    rec = Recording(tmp_path / "a.mp4", max_seconds=0.5)
    face = shared_pipeline()(obama[0]).faces
    for i in range(25):
        rec.add(obama[i], face, i / 25)
    assert rec.wait(timeout=30)
    status = rec.status()
    assert status.state == "finished" and status.frames == 13 and "0 s" in status.reason  # 0..0.48 s

    rec = Recording(tmp_path / "b.mp4", max_seconds=60)
    rec.add(obama[0], face, 0.0)
    assert not rec.add(cv2.resize(obama[1], (320, 240)), [], 0.04)
    assert rec.wait(timeout=30) and "320x240" in rec.status().reason
    assert len(decode(tmp_path / "b.mp4")[0]) == 1


def test_a_recording_that_gets_no_frame_says_so(tmp_path):
    rec = Recording(tmp_path / "c.mp4")
    rec.stop()
    assert rec.wait(timeout=10)
    assert rec.status().state == "failed" and "no frame" in rec.status().reason


def test_closing_a_session_deletes_its_recording_files(obama):
    clock = FakeClock(CLOCK_START)
    session = LiveSession(shared_pipeline(), clock=clock)
    session.start_recording(max_seconds=60)
    stream(session, obama[:5], clock)
    folder = session.recording.path.parent
    assert folder.is_dir()
    session.close()
    assert not folder.exists()
    # a stream still winding down after the close passes frames through untouched
    frame = video_frame(obama[0], 0.0)
    assert session.process(frame) is frame


# --- the registry -----------------------------------------------------------------------------

class Thing:
    def __init__(self) -> None:
        self.closed = 0

    def close(self) -> None:
        self.closed += 1


def test_resources_of_a_session_whose_browser_left_are_released_after_the_grace(tmp_path):
    connected = {"a": True, "b": True}
    clock = FakeClock(CLOCK_START)
    reg = SessionResources(lambda sid: connected[sid], grace_s=3.0, clock=clock)
    a, b = reg.get("a", "live", Thing), reg.get("b", "live", Thing)
    assert reg.get("a", "live", Thing) is a                     # one per session and name
    watch = weakref.ref(a)
    assert reg.sweep() == []
    connected["a"] = False                                      # tab a closed
    assert reg.sweep() == []                                    # ... a reload would be back now
    clock.t += 3.5
    assert reg.sweep() == ["a"] and a.closed == 1 and b.closed == 0
    assert reg.find("a", "live") is None and reg.find("b", "live") is b
    del a
    gc.collect()
    status = reg.status()
    assert watch() is None and status["released"] == 1 and status["lingering"] == 0
    assert [s["id"] for s in status["sessions"]] == ["b"]
    write_status(reg, tmp_path / "status.json")
    assert '"released": 1' in (tmp_path / "status.json").read_text()


def test_a_session_back_within_the_grace_keeps_its_resources():
    connected = {"a": False}
    clock = FakeClock(CLOCK_START)
    reg = SessionResources(lambda sid: connected[sid], grace_s=3.0, clock=clock)
    a = reg.get("a", "live", Thing)
    reg.sweep()
    clock.t += 2.0
    connected["a"] = True   # the websocket reconnected
    reg.sweep()
    connected["a"] = False
    clock.t += 2.0
    assert reg.sweep() == [] and a.closed == 0   # the grace starts again from the new absence


def test_a_resource_failing_to_close_does_not_stop_the_others():
    class Broken(Thing):
        def close(self) -> None:
            raise OSError("disk gone")

    reg = SessionResources(lambda sid: False, grace_s=0.0)
    good = reg.get("a", "files", Thing)
    reg.get("a", "live", Broken)
    assert reg.sweep() == ["a"] and good.closed == 1 and reg.status()["released"] == 2


PINNED: list[np.ndarray] = []   # small blocks that outlive the session, as a server's do


class FramesOnAThread(Thing):
    """What a stream leaves in the C heap: 80 MB of 100 KB frames made on another thread
    (its own arena; below glibc's mmap threshold), between small blocks that stay."""

    def __init__(self) -> None:
        super().__init__()
        self.frames: list[np.ndarray] = []
        thread = threading.Thread(target=self._fill)
        thread.start()
        thread.join()

    def _fill(self) -> None:
        for _ in range(800):
            self.frames.append(np.ones(100_000, np.uint8))
            PINNED.append(np.ones(2000, np.uint8))

    def close(self) -> None:
        super().close()
        self.frames.clear()


@pytest.mark.skipif(heap.usage() is None, reason="needs glibc's malloc (mallinfo2, malloc_trim)")
def test_a_released_session_gives_its_memory_back_to_the_system():
    """Freed frames stay resident in glibc's arenas (the soak's creeping RSS) unless trimmed:
    the janitor trims after it releases a session."""
    reg = SessionResources(lambda sid: False, grace_s=0.0)
    reg.get("a", "live", FramesOnAThread)
    held = heap.rss_mb()
    assert reg.sweep() == ["a"]
    status = server_status(reg)
    assert held - heap.rss_mb() > 50, (held, heap.rss_mb(), status["heap"])
    assert status["heap"]["last_trim_ms"] is not None and status["heap"]["free_mb"] > 50


def test_live_session_status_counts_frames(obama):
    clock = FakeClock(CLOCK_START)
    session = LiveSession(shared_pipeline(), clock=clock)
    stream(session, obama[:4], clock)
    status = session.status()
    assert status["processed"] == 4 and status["streaming"] and status["size"] == [
        obama[0].shape[1], obama[0].shape[0]] and status["mode"] == "sparse"
    assert draw.needs_dense(session.settings.mode) is False
    # what the page's controls set shows there as soon as it is set (the browser tests wait on it)
    session.settings = session.settings.replace(pipeline=session.settings.pipeline.with_options(
        max_faces=2))
    assert session.status()["max_faces"] == 2


# --- the benchmark command's input checks (the benchmark itself needs minutes: not a test) ------

@pytest.mark.parametrize("argv, message", [
    (["--mode", "sketch"], "unknown mode 'sketch'"),
    (["--seconds", "1"], "--seconds must be at least 2"),
    (["--video", "/nonexistent/clip.mp4", "--warmup", "0"], "clip.mp4"),
])
def test_benchmark_live_says_what_is_wrong_in_one_line(argv, message, capsys):
    from densehead.cli import main

    assert main(["benchmark-live", *argv]) == 1
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_the_processing_track_sends_each_result_once_as_soon_as_it_is_made(samples, tmp_path):
    """What the live page installs (dashboard/processing_track.py), with streamlit-webrtc's and
    aiortc's real parts: streamlit-webrtc builds densehead's track for async video processing,
    the relay in front of a sender keeps only its newest result, and a real video played in
    real time through it and a LiveSession comes out as the callback's results, in order, each
    once (no duplicate for the encoder, none of an older frame sent later), stamped with the
    time they were sent. The end of the video ends the stream (on_video_ended, once)."""
    import time

    from aiortc.contrib.media import MediaPlayer, MediaRelay
    from aiortc.mediastreams import MediaStreamError
    from streamlit_webrtc import webrtc as streamlit_webrtc
    from streamlit_webrtc.models import CallbackAttachableProcessor

    from densehead.dashboard import processing_track
    from densehead.tools.browser import to_y4m

    clip = tmp_path / "obama.y4m"
    to_y4m(samples / "videos" / "obama.mp4", clip, seconds=2, size=(320, 240))
    session = LiveSession(shared_pipeline())
    results: list[av.VideoFrame] = []   # what the callback returned, in order
    ended: list[bool] = []

    async def on_frames(frames: list[av.VideoFrame]) -> list[av.VideoFrame]:
        out = session.process_newest(frames)
        results.append(out[-1])
        return out

    processor = CallbackAttachableProcessor(None, on_frames, lambda: ended.append(True))

    async def play() -> list[tuple[av.VideoFrame, float]]:
        assert processing_track.install() and processing_track.install()
        relay = MediaRelay()
        track = streamlit_webrtc._wrap_with_processor(MediaPlayer(str(clip)).video, processor,
                                                      async_processing=True, relay=relay)
        assert isinstance(track, processing_track.ProcessingTrack)
        to_sender = relay.subscribe(track)
        assert to_sender._buffered is False   # aiortc's RelayStreamTrack: the newest frame only
        sent = []
        while True:
            try:
                sent.append((await asyncio.wait_for(to_sender.recv(), timeout=30), time.monotonic()))
            except MediaStreamError:
                return sent

    sent = run_coroutine(play())
    assert len(results) >= 25 and session.processed >= len(results), (len(results), session.processed)
    order = {id(frame): n for n, frame in enumerate(results)}
    numbers = [order.get(id(frame)) for frame, _ in sent]
    assert None not in numbers, "a frame went out that the callback did not return"
    assert numbers == sorted(set(numbers)), "a result went out twice or out of order"
    assert len(numbers) >= len(results) - 2, (len(numbers), len(results))   # the last may meet the end
    # stamped when sent, on the RTP clock; 0.25 s: from the stamp to this loop on a busy machine
    for frame, received in sent:
        assert frame.time_base == processing_track.RTP_CLOCK
        assert float(frame.pts * frame.time_base) == pytest.approx(received, abs=0.25)
    assert ended == [True]
