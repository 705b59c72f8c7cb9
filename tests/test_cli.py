"""The command line as a user runs it: real photo and video in, files out, clear errors."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "densehead", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=600, env=os.environ.copy())


def test_sparse_on_a_photo_writes_image_and_json(samples, tmp_path, output_dir):
    out, js = output_dir / "cli_emma_sparse.jpg", tmp_path / "emma.json"
    result = run("sparse", "-f", str(samples / "photos" / "emma.jpg"), "-o", str(out),
                 "--json", str(js))
    assert result.returncode == 0, result.stderr
    drawn, original = cv2.imread(str(out)), cv2.imread(str(samples / "photos" / "emma.jpg"))
    assert drawn.shape == original.shape
    data = json.loads(js.read_text())
    face = data["frames"][0]["faces"][0]
    assert len(face["landmarks"]) == 68 and len(face["shape"]) == 40
    assert len(face["expression"]) == 10 and {"yaw", "pitch", "roll", "box", "score"} <= set(face)
    # the drawing is on the face: pixels changed around the landmarks, not in a far corner
    diff = np.abs(drawn.astype(int) - original.astype(int)).sum(axis=2) > 60
    x1, y1, x2, y2 = (int(v) for v in face["box"])
    assert diff[y1:y2, x1:x2].mean() > 0.01
    assert diff[:40, :40].mean() < 0.01


def test_pose_on_a_video_keeps_every_frame(samples, tmp_path):
    out, js = tmp_path / "bloom_pose.mp4", tmp_path / "bloom.json"
    result = run("pose", "-f", str(samples / "videos" / "orlando_bloom.avi"), "-o", str(out),
                 "--json", str(js))
    assert result.returncode == 0, result.stderr
    cap = cv2.VideoCapture(str(out))
    frames = 0
    while cap.read()[0]:
        frames += 1
    assert frames == 139
    data = json.loads(js.read_text())
    assert len(data["frames"]) == 139
    main = [max(fr["faces"], key=lambda f: f["box"][2] - f["box"][0]) for fr in data["frames"]
            if fr["faces"]]
    assert len(main) > 130 and len({f["track_id"] for f in main}) == 1


def test_unreadable_input_is_a_clear_error(tmp_path):
    bad = tmp_path / "holiday.jpg"
    bad.write_bytes(b"\x00\x01 definitely not a jpeg")
    result = run("sparse", "-f", str(bad), "-o", str(tmp_path / "x.jpg"))
    assert result.returncode == 1
    assert "not an image" in result.stderr and "Traceback" not in result.stderr
    missing = run("pose", "-f", str(tmp_path / "nothing.mp4"))
    assert missing.returncode == 1 and "no such file" in missing.stderr


def test_benchmark_prints_the_stage_table(samples):
    result = run("benchmark", "-f", str(samples / "videos" / "orlando_bloom.avi"),
                 "--frames", "20", "--warmup", "2")
    assert result.returncode == 0, result.stderr
    for stage in ("detect", "preprocess", "inference", "postprocess", "render", "total"):
        assert any(line.startswith(stage) for line in result.stdout.splitlines()), stage
    assert "frames per second" in result.stdout
