"""The bounded, lock-protected results buffer and its CSV, on faces from a real video."""
from __future__ import annotations

import threading

import numpy as np
import pytest
from helpers import FakeClock, shared_pipeline
from readers import read_csv

from densehead.dashboard.series import SeriesBuffer
from densehead.io.table import COL, COLUMNS, EXPRESSION, csv_text, split_tracks, summary

CLOCK_START = 100.0   # the fake clock's reading when a test begins


@pytest.fixture(scope="module")
def video_faces(samples):
    from densehead.engine.tracking import FaceTracker
    from densehead.io.video import iter_frames

    tracker = FaceTracker(shared_pipeline())
    return [tracker(f).faces for f in iter_frames(samples / "videos" / "orlando_bloom.avi", max_frames=30)]


def test_rows_hold_pose_and_expression_per_track(video_faces):
    clock = FakeClock(CLOCK_START)
    buf = SeriesBuffer(clock=clock)
    for faces in video_faces:
        buf.add_frame(faces, frame_ms=5.0)
        clock.t += 0.04
    table = buf.snapshot()
    assert table.shape == (sum(len(f) for f in video_faces), len(COLUMNS))
    last = video_faces[-1][0]
    row = split_tracks(table)[last.track_id][-1]
    assert row[COL["yaw"]] == pytest.approx(last.yaw)
    assert np.allclose(row[[COL[c] for c in EXPRESSION]], last.expression_coeffs)
    assert np.all(np.diff(table[:, COL["time_s"]]) >= 0)


def test_ring_is_bounded_and_window_selects_recent_rows(video_faces):
    clock = FakeClock(CLOCK_START)
    buf = SeriesBuffer(max_rows=10, clock=clock)
    face = video_faces[0][0]
    for _ in range(25):
        buf.add_frame([face])
        clock.t += 1.0
    assert len(buf.snapshot()) == 10
    # now = 25 s after the first frame; rows at t = 15..24 are kept, the last 5 s hold 20..24
    assert buf.snapshot(window_s=5.0)[:, COL["time_s"]].tolist() == [20.0, 21.0, 22.0, 23.0, 24.0]


def test_stats_fps_stage_medians_and_lag(video_faces):
    from densehead.core.face import StageTimes

    clock = FakeClock(CLOCK_START)
    buf = SeriesBuffer(clock=clock)
    for i in range(11):
        detect = 3.0 if i % 5 == 0 else 0.0   # a tracked stream detects on some frames only
        buf.add_frame(video_faces[i], StageTimes(inference=2.0, detect=detect), frame_ms=8.0,
                      media_time=i / 30, size=(640, 480))  # the camera runs at 30 fps ...
        clock.t += 0.1                    # ... but we only manage 10: frames wait longer and longer
    stats = buf.stats()
    assert stats.fps == pytest.approx(10.0)
    assert stats.frame_ms == 8.0 and stats.stage_ms["inference"] == 2.0
    # a detection's time where it ran (not the 0 of most frames), and how often it ran
    assert stats.stage_ms["detect"] == 3.0 and stats.stage_share["detect"] == pytest.approx(3 / 11)
    assert stats.faces == len(video_faces[10])
    assert stats.lag_ms == pytest.approx(1000 * (1.0 - 10 / 30))
    assert stats.frames == 11 and stats.size == (640, 480)
    clock.t += 5.0  # the person pressed STOP: the readout must not keep showing 10 fps
    stopped = buf.stats()
    assert stopped.stopped and stopped.fps == 0.0 and stopped.frames == 11
    assert stopped.faces == 0   # no face is in view of a stopped stream
    assert stopped.idle_s == pytest.approx(5.1)
    buf.clear()
    assert buf.stats().size == (0, 0)


def test_concurrent_writer_and_reader_stay_consistent(video_faces):
    buf = SeriesBuffer(max_rows=500)
    faces = video_faces[0]
    stop = threading.Event()

    def write() -> None:
        while not stop.is_set():
            buf.add_frame(faces, frame_ms=1.0)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        for _ in range(200):
            table = buf.snapshot(window_s=10.0)
            assert table.shape[1] == len(COLUMNS) and len(table) <= 500
            buf.stats()
    finally:
        stop.set()
        writer.join()
    assert len(buf.snapshot()) == 500


def test_csv_round_trip_and_summary(video_faces, tmp_path):
    buf = SeriesBuffer()
    for faces in video_faces:
        buf.add_frame(faces)
    path = tmp_path / "series.csv"
    path.write_text(buf.csv())
    header, table = read_csv(path)
    assert tuple(header) == COLUMNS
    assert np.allclose(table[:, 3:], buf.snapshot()[:, 3:], rtol=1e-4, atol=1e-4)
    stats = summary(table)
    assert stats and stats[0]["frames"] == len(split_tracks(table)[stats[0]["track_id"]])
    assert -90 < stats[0]["yaw_mean"] < 90
    assert csv_text(np.zeros((0, len(COLUMNS)))).strip() == ",".join(COLUMNS)


def test_analyze_video_writes_overlay_and_series(samples, tmp_path):
    from densehead.batch.video_runner import analyze_video
    from densehead.core.errors import VideoError
    from densehead.io.video import probe

    seen = []
    result = analyze_video(samples / "videos" / "orlando_bloom.avi", tmp_path / "out.mp4",
                           shared_pipeline(), mode="pose", max_frames=20,
                           progress=lambda d, t, e: seen.append((d, t)))
    assert result.n_frames == 20 and seen[-1] == (20, 20)
    assert len(result.table) >= 18 and np.ptp(result.table[:, COL["yaw"]]) > 0
    assert probe(result.output).width == 320
    with pytest.raises(VideoError):
        bad = tmp_path / "not_a_video.mp4"
        bad.write_text("hello")
        analyze_video(bad, tmp_path / "x.mp4", shared_pipeline())


def test_arrivals_count_received_and_dropped_frames():
    clock = FakeClock(CLOCK_START)
    buf = SeriesBuffer(clock=clock)
    for n in (1, 3, 1, 2, 1):  # bursts arrive while a frame is being processed
        buf.add_arrivals(n)
        clock.t += 0.1
    stats = buf.stats()
    assert stats.dropped == 3
    assert stats.received_fps == pytest.approx((3 + 1 + 2 + 1) / 0.4)
    buf.clear()
    assert buf.stats().dropped == 0


def test_a_stream_the_server_cannot_keep_up_with_reads_busy():
    """The page says the server is busy when it processes clearly fewer frames than arrive, or
    when frames wait; a stream processed in full is not busy, nor a stopped one."""
    from densehead.dashboard.series import BUSY_LAG_MS

    def stream(processed_every: int, lag_s_per_frame: float = 0.0) -> tuple[SeriesBuffer, FakeClock]:
        clock = FakeClock(CLOCK_START)
        buf = SeriesBuffer(clock=clock)
        for i in range(30):   # 25 fps arrive
            buf.add_arrivals(1)
            if i % processed_every == 0:
                buf.add_frame([], media_time=i / 25 - i * lag_s_per_frame)
            clock.t += 1 / 25
        return buf, clock

    full, _ = stream(1)
    assert not full.stats().busy
    half, clock = stream(2)
    assert half.stats().busy and half.stats().fps == pytest.approx(12.5, rel=0.1)
    clock.t += 5.0
    assert not half.stats().busy   # stopped: nothing to say about load
    waiting, _ = stream(1, lag_s_per_frame=0.02)   # each frame waits 20 ms longer than the last
    assert waiting.stats().lag_ms > BUSY_LAG_MS and waiting.stats().busy


def test_rates_wait_for_enough_of_a_stream_to_tell():
    """At a stream's start two frames handed over together once read 301.8 fps: a rate is told
    only over a span a person would call a rate, and until then the server is not called busy."""
    clock = FakeClock(CLOCK_START)
    buf = SeriesBuffer(clock=clock)
    for _ in range(2):
        buf.add_arrivals(1)
        buf.add_frame([], media_time=clock.t - CLOCK_START)
        clock.t += 0.003
    start = buf.stats()
    assert start.fps is None and start.received_fps is None and not start.busy
    for _ in range(10):
        clock.t += 0.04
        buf.add_arrivals(1)
        buf.add_frame([], media_time=clock.t - CLOCK_START)
    assert buf.stats().fps == pytest.approx(11 / (2 * 0.003 + 10 * 0.04))   # 12 frames
