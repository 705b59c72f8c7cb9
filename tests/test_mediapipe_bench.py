"""`densehead benchmark-mediapipe`: densehead's side answers the rounds on real video frames, and
a Python without MediaPipe is named as such in one line. (MediaPipe itself needs numpy < 2 and a
virtualenv of its own, which the suite does not install; docs/measurements.md has its figures.)"""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from paths import SAMPLES

from densehead.io.video import iter_frames

pytestmark = pytest.mark.slow
VIDEO = SAMPLES / "videos" / "obama.mp4"


def test_densehead_side_answers_each_round_with_a_time_per_frame(tmp_path: Path):
    frames = tmp_path / "frames.npy"
    np.save(frames, np.stack(list(iter_frames(VIDEO, 4))))
    side = subprocess.run([sys.executable, "-m", "densehead.tools.mediapipe_bench", "--serve",
                           str(frames)], input="static 2\ntracked 5\n", capture_output=True,
                          text=True, timeout=300)
    assert side.returncode == 0, side.stderr
    ready, static, tracked = (json.loads(line) for line in side.stdout.splitlines())
    assert ready["ready"].startswith("densehead, regressor mb05")
    # obama.mp4 shows one face throughout: every frame has it, in both modes (the tracked
    # round wraps around the 4 frames)
    assert len(static["ms"]) == 2 and static["found"] == 2
    assert len(tracked["ms"]) == 5 and tracked["found"] == 5
    assert all(ms > 0 for ms in static["ms"] + tracked["ms"])


@pytest.mark.skipif(importlib.util.find_spec("mediapipe") is not None,
                    reason="this Python has MediaPipe")
def test_a_python_without_mediapipe_is_named_in_one_line():
    run = subprocess.run([sys.executable, "-m", "densehead", "benchmark-mediapipe", "--python",
                          sys.executable, "-f", str(VIDEO), "--frames", "3", "--rounds", "1",
                          "--per-round", "1"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 1
    assert run.stderr.strip().splitlines() == [
        "densehead: error: MediaPipe stopped: this Python cannot run MediaPipe (No module named "
        "'mediapipe'): give the Python of a virtualenv with `pip install mediapipe==0.10.21`"]
    assert "Traceback" not in run.stderr + run.stdout
