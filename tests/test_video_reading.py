"""Videos as people have them: a damaged stretch in the middle, a phone's variable frame rate,
a portrait video stored sideways. Each is made here from a real sample video."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from helpers import shared_pipeline

from densehead.io.table import COL
from densehead.io.video import VideoWriter, iter_frames, iter_timed_frames, probe


@pytest.fixture(scope="module")
def frames(samples: Path) -> list[np.ndarray]:
    return list(iter_frames(samples / "videos" / "orlando_bloom.avi"))


def write_timed(path: Path, frames: list[np.ndarray], times_ms: list[int],
                rotation: int = 0) -> None:
    """H.264 with these presentation times (a variable frame rate) and display rotation."""
    with av.open(str(path), "w") as container:
        # the encoder counts in milliseconds too (at rate 25 it would round 20 ms steps away)
        stream = container.add_stream("libx264", rate=1000)
        stream.width, stream.height = frames[0].shape[1], frames[0].shape[0]
        stream.pix_fmt, stream.time_base = "yuv420p", Fraction(1, 1000)
        stream.options = {"preset": "ultrafast"}   # no B-frames: packets leave in time order
        if rotation:
            stream.set_display_rotation(rotation)
        for image, t in zip(frames, times_ms):
            frame = av.VideoFrame.from_ndarray(image[:, :, ::-1].copy(), format="rgb24")
            frame.pts, frame.time_base = t, Fraction(1, 1000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


def test_a_damaged_stretch_loses_only_its_own_frames(frames, tmp_path):
    """Bytes overwritten a third of the way in (a bad sector, a broken download): the frames
    after the damage are read on, as players show them; OpenCV's reader stopped at the first bad
    packet (5 of 40 frames in the case that found it)."""
    clip = tmp_path / "clip.mp4"
    with VideoWriter(clip, 25.0) as writer:
        for frame in frames:
            writer.write(frame)
    data = bytearray(clip.read_bytes())
    at = len(data) // 3
    data[at:at + 3000] = np.random.default_rng(7).integers(0, 256, 3000, np.uint8).tobytes()
    damaged = tmp_path / "damaged.mp4"
    damaged.write_bytes(bytes(data))
    assert len(list(iter_frames(damaged))) >= 0.6 * len(frames)
    # the command says so in one line of its own, and FFmpeg's decoder messages stay out
    result = subprocess.run([sys.executable, "-m", "densehead", "sparse", "-f", str(damaged),
                             "-o", str(tmp_path / "out.mp4")], capture_output=True, text=True,
                            timeout=300, env=os.environ.copy())
    assert result.returncode == 0, result.stderr
    lines = [ln for ln in result.stderr.splitlines()
             if ln.strip() and not ln.startswith("INFO: Created TensorFlow Lite")]  # LiteRT's
    assert any("damaged packet" in ln for ln in lines), lines
    assert all(ln.startswith("densehead:") for ln in lines), lines


def test_a_variable_frame_rate_keeps_its_real_times(frames, tmp_path):
    """A phone records faster or slower as the light changes: the series' times must be the
    video's own, not the frame number over the average rate."""
    from densehead.batch.video_runner import analyze_video

    rng = np.random.default_rng(3)
    times_ms = np.cumsum(rng.choice([20, 40, 100], size=60)).tolist()
    times_ms = [t - times_ms[0] for t in times_ms]
    clip = tmp_path / "vfr.mp4"
    write_timed(clip, frames[:60], times_ms)
    assert [round(f.time * 1000) for f in iter_timed_frames(clip)] == times_ms
    result = analyze_video(clip, None, shared_pipeline())
    assert [round(t * 1000) for _, t, _ in result.frames] == times_ms
    # the table's time column is what a study plots against: the same times
    table_times = {round(float(t) * 1000) for t in result.table[:, COL["time_s"]]}
    assert table_times and table_times <= set(times_ms)


@pytest.mark.skipif(not hasattr(av.video.stream.VideoStream, "set_display_rotation"),
                    reason="this PyAV cannot write a display rotation")
@pytest.mark.parametrize("degrees", [90, 180, -90])
def test_a_video_stored_sideways_is_read_upright(frames, tmp_path, degrees):
    """A phone stores a portrait video sideways with a display matrix saying how to turn it."""
    stored = [np.ascontiguousarray(np.rot90(f, -degrees // 90)) for f in frames[:10]]
    clip = tmp_path / f"turned{degrees}.mp4"
    write_timed(clip, stored, [40 * i for i in range(10)], rotation=degrees)
    read = list(iter_frames(clip))
    info = probe(clip)
    assert (info.height, info.width) == read[0].shape[:2] == frames[0].shape[:2]
    # x264 at its default quality: a few grey levels; a wrong turn would not even match in shape
    assert np.abs(read[5].astype(int) - frames[5]).mean() < 6


def test_the_command_keeps_the_videos_times_in_json_and_overlay(frames, tmp_path):
    """The JSON's times and the overlay video's frames both fall when the input's do, so the
    overlay plays at the pace of the original."""
    clip = tmp_path / "vfr.mp4"
    times_ms = [0, 40, 80, 200, 240, 400, 440, 480, 600, 640]
    write_timed(clip, frames[:10], times_ms)
    out = tmp_path / "out.json"
    result = subprocess.run([sys.executable, "-m", "densehead", "pose", "-f", str(clip),
                             "-o", str(tmp_path / "pose.mp4"), "--json", str(out)],
                            capture_output=True, text=True, timeout=300, env=os.environ.copy())
    assert result.returncode == 0, result.stderr
    assert [round(f["t"] * 1000) for f in json.loads(out.read_text())["frames"]] == times_ms
    assert [round(f.time * 1000) for f in iter_timed_frames(tmp_path / "pose.mp4")] == times_ms


def test_an_empty_video_file_is_called_empty(tmp_path):
    from densehead.core.errors import VideoError

    empty = tmp_path / "zero.mp4"
    empty.touch()
    with pytest.raises(VideoError, match=r"^zero\.mp4 is empty$"):
        probe(empty)


def test_a_frame_limit_below_one_is_refused_not_called_an_unreadable_file(samples):
    video = samples / "videos" / "orlando_bloom.avi"
    for limit in (0, -1, 2.5):
        with pytest.raises(ValueError, match="max_frames must be None"):
            next(iter_frames(video, max_frames=limit))
    assert len(list(iter_frames(video, max_frames=3))) == 3
