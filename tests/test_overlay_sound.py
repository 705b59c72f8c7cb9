"""The overlay video carries the input's sound, in step with its picture and cut with it."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from helpers import shared_pipeline

from densehead.batch.video_runner import analyze_video
from densehead.io.video import iter_frames

RATE = 44100   # samples per second of the made sound
FPS = 25


@pytest.fixture(scope="module")
def frames(samples: Path) -> list[np.ndarray]:
    return list(iter_frames(samples / "videos" / "orlando_bloom.avi", max_frames=30))


def chirp(seconds: float) -> np.ndarray:
    """A tone rising in pitch: every stretch of it sounds like no other, so where a piece of
    it came from can be found."""
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.5 * np.sin(2 * np.pi * (200 + 300 * t) * t)).astype(np.float32)


def write_with_sound(path: Path, frames: list[np.ndarray], picture_starts_s: float,
                     codec: str = "aac") -> np.ndarray:
    """A video whose picture starts `picture_starts_s` after its sound (as a camera's file may);
    returns the sound written."""
    sound = chirp(picture_starts_s + len(frames) / FPS + 0.5)
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=FPS)
        video.width, video.height = frames[0].shape[1], frames[0].shape[0]
        video.pix_fmt, video.options = "yuv420p", {"preset": "ultrafast"}
        video.codec_context.time_base = Fraction(1, 1000)
        audio = container.add_stream(codec, rate=RATE, layout="mono")
        for i, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(image, format="bgr24")
            frame.pts = round((picture_starts_s + i / FPS) * 1000)
            frame.time_base = Fraction(1, 1000)
            container.mux(video.encode(frame))
        container.mux(video.encode())
        samples = sound if codec != "pcm_s16le" else (sound * 32767).astype(np.int16)
        for at in range(0, len(sound), 1024):
            frame = av.AudioFrame.from_ndarray(samples[None, at:at + 1024],
                                               format="flt" if codec != "pcm_s16le" else "s16",
                                               layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = RATE, at, Fraction(1, RATE)
            container.mux(audio.encode(frame))
        container.mux(audio.encode())
    return sound


def decoded_sound(path: Path) -> tuple[np.ndarray, float]:
    """(the first channel's samples as float, the time of the first) or an empty array."""
    with av.open(str(path)) as container:
        if not container.streams.audio:
            return np.zeros(0, np.float32), 0.0
        frames = list(container.decode(container.streams.audio[0]))
    samples = [f.to_ndarray()[0] for f in frames]
    scale = 32768.0 if samples[0].dtype == np.int16 else 1.0
    return np.concatenate(samples).astype(np.float32) / scale, float(frames[0].time)


def picture_seconds(path: Path) -> float:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return float(stream.duration * stream.time_base)


def test_the_overlay_has_the_sample_videos_own_sound(samples, tmp_path):
    """obama.mp4's AAC comes through packet for packet: decoded, every sample is the input's."""
    source = samples / "videos" / "obama.mp4"
    result = analyze_video(source, tmp_path / "out.mp4", shared_pipeline())
    ours, theirs = decoded_sound(tmp_path / "out.mp4")[0], decoded_sound(source)[0]
    assert len(ours) > 0.9 * len(theirs) and not any("sound" in n for n in result.notes)
    n = min(len(ours), len(theirs))
    assert np.array_equal(ours[:n], theirs[:n])


def test_the_sound_stays_in_step_when_the_picture_starts_late(frames, tmp_path):
    """The overlay starts at the input's first frame, 1 s into its sound: what plays with the
    overlay's first frame is what played with the input's."""
    source = tmp_path / "late.mkv"
    sound = write_with_sound(source, frames, picture_starts_s=1.0)
    analyze_video(source, tmp_path / "out.mp4", shared_pipeline())
    ours, first = decoded_sound(tmp_path / "out.mp4")
    assert abs(first) < 0.01 and len(ours) > 0
    piece = ours[4096:8192]   # past the first packets, where AAC's encoder eases in
    where = int(np.argmin([np.abs(sound[k:k + len(piece)] - piece).mean()
                           for k in range(0, len(sound) - len(piece))]))
    # Matroska counts in milliseconds and AAC in packets of 1024 samples (23 ms): 5 ms is below
    # a frame's 40 ms and what anyone would hear as out of step
    assert abs((where - 4096) / RATE - 1.0) < 0.005
    # and it ends with the picture, not with the input's half second more of sound
    assert abs(len(ours) / RATE - picture_seconds(tmp_path / "out.mp4")) < 0.05


def test_a_shorter_overlay_has_its_sound_cut_with_it(frames, tmp_path):
    source = tmp_path / "clip.mkv"
    write_with_sound(source, frames, picture_starts_s=0.0)
    analyze_video(source, tmp_path / "out.mp4", shared_pipeline(), max_frames=10)
    seconds = len(decoded_sound(tmp_path / "out.mp4")[0]) / RATE
    assert abs(seconds - 10 / FPS) < 0.05   # within two AAC packets


def test_sound_a_browser_cannot_play_in_mp4_is_left_out_and_said(frames, tmp_path):
    """PCM (cameras write it) in an .mp4 would leave the whole overlay unplayable in a browser:
    the .mp4 overlay is silent and a note says why; an .mkv overlay keeps it."""
    source = tmp_path / "pcm.mkv"
    sound = write_with_sound(source, frames[:10], picture_starts_s=0.0, codec="pcm_s16le")
    silent = analyze_video(source, tmp_path / "out.mp4", shared_pipeline())
    assert len(decoded_sound(tmp_path / "out.mp4")[0]) == 0
    assert any("no sound" in n and "pcm_s16le" in n for n in silent.notes), silent.notes
    kept = analyze_video(source, tmp_path / "out.mkv", shared_pipeline())
    ours = decoded_sound(tmp_path / "out.mkv")[0]
    assert not kept.notes and len(ours) > 0
    assert np.abs(ours[:4000] - sound[:4000]).max() < 1e-4   # PCM: the 16-bit samples as written


def test_a_video_without_sound_gives_an_overlay_without_sound_and_no_note(samples, tmp_path):
    result = analyze_video(samples / "videos" / "orlando_bloom.avi", tmp_path / "out.mp4",
                           shared_pipeline(), max_frames=5)
    assert len(decoded_sound(tmp_path / "out.mp4")[0]) == 0 and not result.notes


def test_a_sound_the_container_refuses_never_costs_the_video(frames, tmp_path):
    """FFmpeg lists FLAC as fit for .mov and then refuses to start such a file: the overlay is
    written all the same, with its sound or with a note saying it has none."""
    source = tmp_path / "flac.mkv"
    write_with_sound(source, frames[:10], picture_starts_s=0.0, codec="flac")
    result = analyze_video(source, tmp_path / "out.mov", shared_pipeline())
    assert len(list(iter_frames(tmp_path / "out.mov"))) == 10
    has_sound = len(decoded_sound(tmp_path / "out.mov")[0]) > 0
    assert has_sound or any("no sound" in n for n in result.notes), result.notes
    assert not list(tmp_path.glob(".*"))   # no hidden half-written file left beside it
