"""The command line as a user runs it: real photo and video in, files out, clear errors."""
from __future__ import annotations

import json
import os
import re
from functools import partial

import cv2
import numpy as np
from helpers import closed_port_url, one_line_error, run_cli
from paths import ROOT

from densehead.io import export

run = partial(run_cli, timeout=600)   # the CLI on whole videos


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
    # a folder given where one file is asked for: said so, and where folders go
    folder = run("pose", "-f", str(tmp_path))
    assert folder.returncode == 1 and "is a folder" in folder.stderr
    assert "densehead batch" in folder.stderr and "Traceback" not in folder.stderr
    export = run("export", "-f", str(tmp_path))
    assert export.returncode == 1 and "is a folder, not a file" in export.stderr


def test_benchmark_prints_the_stage_table(samples):
    result = run("benchmark", "-f", str(samples / "videos" / "orlando_bloom.avi"),
                 "--frames", "20", "--warmup", "2")
    assert result.returncode == 0, result.stderr
    for stage in ("detect", "preprocess", "inference", "postprocess", "render", "total"):
        assert any(line.startswith(stage) for line in result.stdout.splitlines()), stage
    assert "frames per second" in result.stdout
    # the graph "auto" ran on this CPU, and why
    assert re.search(r"^regressor: mb05(-int8)? \(.+\)$", result.stdout, re.M), result.stdout
    # how the calls were run: 2 threads, or 1 where that has been faster lately
    assert re.search(r"^TFLite threads per call: detector 2 threads \d+%.*; regressor 2 threads",
                     result.stdout, re.M), result.stdout
    fixed = run("benchmark", "-f", str(samples / "videos" / "orlando_bloom.avi"),
                "--frames", "5", "--warmup", "0", "--threads", "2", "--fixed-threads")
    assert fixed.returncode == 0, fixed.stderr
    assert "TFLite threads per call: detector 2 threads 100%; regressor 2 threads 100%" \
        in fixed.stdout


def test_export_writes_textured_obj_per_face(samples, tmp_path):
    result = run("export", "-f", str(samples / "photos" / "emma.jpg"), "-o", str(tmp_path / "face.obj"))
    assert result.returncode == 0, result.stderr
    for i in range(3):  # three faces: face_0 .. face_2, each with its material and texture
        obj = (tmp_path / f"face_{i}.obj").read_text()
        assert obj.count("\nvt ") == 38_365 and "mtllib face_%d.mtl" % i in obj
        assert f"map_Kd face_{i}_texture.png" in (tmp_path / f"face_{i}.mtl").read_text()
        texture = cv2.imread(str(tmp_path / f"face_{i}_texture.png"))
        assert texture.shape == (512, 512, 3) and texture.std() > 10  # a picture, not a fill
    assert not (tmp_path / "face.obj").exists()


def test_export_takes_the_persons_file_name_in_any_script(samples, tmp_path):
    photo = tmp_path / "café 中文.jpg"
    photo.write_bytes((samples / "photos" / "JianzhuGuo.jpg").read_bytes())
    result = run("export", "-f", str(photo))
    assert result.returncode == 0, result.stderr
    # the material library and its texture resolve from the .obj, as a viewer looks them up
    texture = export.obj_texture_path(tmp_path / "café 中文.obj")
    assert texture == tmp_path / "café 中文_texture.png"
    assert cv2.imread(str(tmp_path / "café 中文_texture.png")) is not None


def test_export_one_face_of_a_video_frame(samples, tmp_path):
    out = tmp_path / "obama.obj"
    result = run("export", "-f", str(samples / "videos" / "obama.mp4"), "-o", str(out),
                 "--frame", "20", "--face", "0", "--size", "256")
    assert result.returncode == 0, result.stderr
    assert cv2.imread(str(tmp_path / "obama_texture.png")).shape == (256, 256, 3)
    late = run("export", "-f", str(samples / "videos" / "obama.mp4"), "-o", str(out),
               "--frame", "500")
    assert late.returncode == 1 and "has only 55 frame(s)" in late.stderr
    wrong = run("export", "-f", str(samples / "photos" / "JianzhuGuo.jpg"), "--face", "2",
                "-o", str(out))
    assert wrong.returncode == 1 and "has 1 face(s)" in wrong.stderr
    blank = tmp_path / "wall.png"
    cv2.imwrite(str(blank), np.full((200, 300, 3), 180, np.uint8))
    none = run("export", "-f", str(blank), "-o", str(out))
    assert none.returncode == 1 and "no face found" in none.stderr and "Traceback" not in none.stderr


def test_a_mistyped_input_is_named_before_the_models_are_looked_for(tmp_path, monkeypatch):
    """No model files here and none to download: the typo is still what the person is told."""
    monkeypatch.delenv("DENSEHEAD_ASSETS", raising=False)
    monkeypatch.setenv("DENSEHEAD_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DENSEHEAD_MIRROR", closed_port_url())
    monkeypatch.delenv("DENSEHEAD_REGRESSOR", raising=False)
    for args in (["sparse", "-f", str(tmp_path / "vidoe.mp4")],
                 ["batch", str(tmp_path / "sutdy"), "-o", str(tmp_path / "tables")]):
        result = run(*args)
        one_line_error(result, "no such file")
        assert "model file" not in result.stderr
    notes = tmp_path / "notes.txt"
    notes.write_text("these are notes")
    for command in ("sparse", "export"):   # export said "not a video that can be read"
        one_line_error(run(command, "-f", str(notes)), "notes.txt is neither a picture nor a video")


def test_the_ray_engine_without_ray_is_one_line_and_touches_nothing(samples, tmp_path):
    """As on a machine where densehead[ray] was not installed (an import of ray fails)."""
    no_ray = tmp_path / "no_ray"
    (no_ray / "ray").mkdir(parents=True)
    (no_ray / "ray" / "__init__.py").write_text('raise ImportError("No module named ray")\n')
    study = tmp_path / "study" / "a"
    study.mkdir(parents=True)
    (study / "photo.jpg").write_bytes((samples / "photos" / "JianzhuGuo.jpg").read_bytes())
    out = tmp_path / "tables"
    result = run("batch", str(tmp_path / "study"), "-o", str(out), "--engine", "ray",
                 env=dict(os.environ, PYTHONPATH=os.pathsep.join([str(no_ray), str(ROOT)])))
    one_line_error(result, "the Ray engine needs Ray")
    assert not out.exists()
