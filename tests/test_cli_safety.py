"""Careless commands lose nothing: outputs that would overwrite the input or cannot be written
are refused before anything is opened, bad option values are one line, short files say so."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

import cv2
import pytest
from helpers import cli_command, one_line_error, run_cli

from densehead.tools.browser import wait_until


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture()
def work(tmp_path: Path, samples: Path) -> Path:
    shutil.copy(samples / "videos" / "orlando_bloom.avi", tmp_path / "clip.avi")
    shutil.copy(samples / "photos" / "JianzhuGuo.jpg", tmp_path / "photo.jpg")
    return tmp_path


@pytest.mark.parametrize("args", [
    ("sparse", "-f", "clip.avi", "-o", "clip.avi"),
    ("pose", "-f", "clip.avi", "-o", "./sub/../clip.avi"),        # the same file by another path
    ("sparse", "-f", "photo.jpg", "-o", "photo.jpg"),
    ("sparse", "-f", "photo.jpg", "-o", "out.jpg", "--json", "photo.jpg"),
    ("sparse", "-f", "clip.avi", "-o", "out.mp4", "--json", "clip.avi"),
])
def test_output_over_the_input_is_refused_and_the_input_kept(work: Path, args: tuple) -> None:
    (work / "sub").mkdir()
    before = {p.name: digest(p) for p in work.glob("*.*")}
    one_line_error(run_cli(*args, cwd=work), "input file itself")
    assert {p.name: digest(p) for p in work.glob("*.*")} == before


@pytest.mark.parametrize("photo, name, output", [
    ("JianzhuGuo.jpg", "face_texture.png", "face.obj"),     # the texture written beside face.obj
    ("trump_hillary.jpg", "pair_1_texture.png", "pair.obj"),  # the second face's texture
])
def test_export_refuses_to_write_over_its_input(work: Path, samples: Path, photo: str, name: str,
                                                output: str) -> None:
    image = cv2.imread(str(samples / "photos" / photo))
    cv2.imwrite(str(work / name), image)
    before = {p.name: digest(p) for p in work.glob("*.*")}
    one_line_error(run_cli("export", "-f", name, "-o", output, cwd=work), "input file itself",
                   name)
    assert {p.name: digest(p) for p in work.glob("*.*")} == before


def test_output_over_the_input_through_a_link_is_refused(work: Path) -> None:
    (work / "link.avi").symlink_to(work / "clip.avi")
    before = digest(work / "clip.avi")
    one_line_error(run_cli("sparse", "-f", "clip.avi", "-o", "link.avi", cwd=work),
                   "input file itself")
    assert digest(work / "clip.avi") == before


@pytest.mark.parametrize("args, words", [
    (("sparse", "-f", "photo.jpg", "-o", "out.txt"), ("out.txt", ".jpg")),
    (("sparse", "-f", "clip.avi", "-o", "out.txt"), ("out.txt", ".mp4")),
    (("sparse", "-f", "clip.avi", "-o", "out.webm"), ("does not write .webm videos", ".mp4")),
    (("sparse", "-f", "photo.jpg", "-o", "."), ("folder",)),
    (("sparse", "-f", "photo.jpg", "-o", "missing/out.jpg"), ("does not exist",)),
    (("sparse", "-f", "photo.jpg", "--json", "."), ("folder",)),
    (("sparse", "-f", "photo.jpg", "-o", "a.jpg", "--json", "a.jpg"), ("same file",)),
    (("sparse", "-f", "photo.jpg", "--max-faces", "-1"), ("--max-faces",)),
    (("sparse", "-f", "photo.jpg", "--max-faces", "0"), ("--max-faces",)),
    (("sparse", "-f", "photo.jpg", "--threshold", "nan"), ("--threshold",)),
    (("sparse", "-f", "photo.jpg", "--threshold", "1.5"), ("--threshold",)),
    (("pose", "-f", "clip.avi", "--redetect-every", "0"), ("--redetect-every",)),
    (("sparse", "-f", "photo.jpg", "--threads", "0"), ("--threads",)),
    (("benchmark", "-f", "photo.jpg", "--resize", "0x0"), ("--resize",)),
    (("benchmark", "-f", "photo.jpg", "--resize", "wide"), ("--resize",)),
    (("export", "-f", "photo.jpg", "--frame", "-1"), ("--frame -1",)),
    (("export", "-f", "photo.jpg", "--size", "0"), ("--size 0",)),
    (("export", "-f", "photo.jpg", "-o", "mesh.obj"), ("mesh.obj is a folder",)),
    (("sparse", "-f", "/dev/zero"), ("/dev/zero", "not a regular file")),
    (("evaluate", "nowhere"), ("no such file or folder: nowhere",)),
    (("evaluate", "photo.jpg"), ("photo.jpg", "neither a folder")),
    (("evaluate-video", "photo.jpg"), ("a face in 1 of 1 frames", "at least")),
])
def test_unwritable_outputs_and_bad_options_are_one_line(work: Path, args: tuple, words: tuple) -> None:
    (work / "mesh.obj").mkdir()
    one_line_error(run_cli(*args, cwd=work), *words)
    assert not (work / "out.txt").exists() and not (work / "a.jpg").exists()


def test_truncated_video_says_where_it_ended(work: Path) -> None:
    data = (work / "clip.avi").read_bytes()
    (work / "short.avi").write_bytes(data[: len(data) // 3])
    result = run_cli("sparse", "-f", "short.avi", "-o", "short_out.mp4", "--json", "short.json",
                     cwd=work)
    assert result.returncode == 0, result.stderr
    frames = len(json.loads((work / "short.json").read_text())["frames"])
    assert 0 < frames < 139
    assert f"ended after {frames} of the 139 frames" in result.stderr
    full = run_cli("sparse", "-f", "clip.avi", "-o", "full.mp4", cwd=work)
    assert full.returncode == 0 and "ended after" not in full.stderr


def test_odd_sized_video_keeps_its_coordinates(work: Path) -> None:
    """641x361 in: the overlay video keeps every input pixel (one black column and row are
    added for the encoder, none cropped), so the JSON coordinates fit the picture."""
    import av

    src = cv2.VideoCapture(str(work / "clip.avi"))
    with av.open(str(work / "odd.mkv"), "w") as out:
        stream = out.add_stream("ffv1", rate=25)
        stream.width, stream.height, stream.pix_fmt = 641, 361, "bgr0"
        for _ in range(10):
            frame = cv2.resize(src.read()[1], (641, 361))
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="bgr24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    result = run_cli("sparse", "-f", "odd.mkv", "-o", "odd_out.mp4", "--json", "odd.json", cwd=work)
    assert result.returncode == 0, result.stderr
    cap = cv2.VideoCapture(str(work / "odd_out.mp4"))
    ok, first = cap.read()
    assert ok and first.shape[:2] == (362, 642)
    assert first[:, 641].mean() < 12 and first[361].mean() < 12     # the added border is black
    face = json.loads((work / "odd.json").read_text())["frames"][0]["faces"][0]
    x1, y1, x2, y2 = face["box"]
    assert 0 <= x1 < x2 <= 641 and 0 <= y1 < y2 <= 361


def test_input_without_suffix_gets_its_output_name_first(work: Path) -> None:
    shutil.copy(work / "clip.avi", work / "recording")
    result = run_cli("pose", "-f", "recording", cwd=work)
    assert result.returncode == 0, result.stderr
    assert (work / "recording_pose.mp4").is_file() and "recording_pose.mp4" in result.stdout


def test_evaluate_manifest_with_missing_keys_is_one_line(work: Path) -> None:
    (work / "gt.json").write_text(json.dumps({"images": [{"image": "photo.jpg"}]}))
    one_line_error(run_cli("evaluate", "gt.json", cwd=work), "gt.json", "entry 0")
    (work / "list.json").write_text("[1, 2, 3]")
    one_line_error(run_cli("evaluate", "list.json", cwd=work), "list.json")


@pytest.mark.parametrize("damage", ["truncated", "no pose"])
def test_evaluate_folder_with_a_broken_annotation_is_one_line(work: Path, samples: Path,
                                                              damage: str) -> None:
    from scipy.io import loadmat, savemat

    real = samples / "aflw2000" / "image00002.mat"
    (work / "set").mkdir()
    for name in ("image00002.mat", "image00002.jpg", "image00055.jpg"):
        shutil.copy(samples / "aflw2000" / name, work / "set" / name)
    broken = work / "set" / "image00055.mat"
    if damage == "truncated":   # an interrupted copy
        broken.write_bytes(real.read_bytes()[:100])
    else:
        savemat(broken, {"pt3d_68": loadmat(real)["pt3d_68"]})
    one_line_error(run_cli("evaluate", "set", cwd=work), "image00055.mat",
                   "not an AFLW2000-3D annotation")


@pytest.fixture()
def small_set(work: Path, samples: Path) -> Path:
    """Two AFLW2000-3D samples and their manifest in a folder of their own."""
    manifest = json.loads((samples / "aflw2000" / "ground_truth.json").read_text())
    manifest["images"] = manifest["images"][:2]
    (work / "set").mkdir()
    for entry in manifest["images"]:
        shutil.copy(samples / entry["image"], work / "set")
    (work / "set" / "ground_truth.json").write_text(json.dumps(manifest))
    return work / "set"


@pytest.mark.parametrize("args", [
    ("evaluate-video", "clip.avi", "--max-frames", "20", "--json", "clip.avi"),
    ("evaluate", "set", "--protocol", "gt-box", "--json", "set/ground_truth.json"),
    ("evaluate", "set/ground_truth.json", "--json", "./set/ground_truth.json"),
    ("evaluate", "set", "--protocol", "gt-box", "--json", "set/image00002.jpg"),
])
def test_evaluate_json_over_its_input_is_refused_and_the_input_kept(work: Path, small_set: Path,
                                                                     args: tuple) -> None:
    before = {p.name: digest(p) for p in [*work.glob("*.*"), *small_set.iterdir()]}
    one_line_error(run_cli(*args, cwd=work), "input file itself")
    assert {p.name: digest(p) for p in [*work.glob("*.*"), *small_set.iterdir()]} == before


@pytest.mark.parametrize("args, words", [
    (("evaluate", "set", "--limit", "-1"), ("--limit", "-1")),
    (("evaluate", "set", "--protocol", "wild", "--gt-offset", "nan"), ("--gt-offset", "nan")),
    (("evaluate-video", "clip.avi", "--max-frames", "-1"), ("--max-frames", "-1")),
    (("evaluate", "set", "--json", "missing/out.json"), ("--json", "does not exist")),
    (("evaluate-video", "clip.avi", "--json", "missing/out.json"), ("--json", "does not exist")),
])
def test_evaluate_option_errors_come_before_the_work(work: Path, small_set: Path, args: tuple,
                                                     words: tuple) -> None:
    result = run_cli(*args, cwd=work)
    one_line_error(result, *words)
    assert "regressor:" not in result.stdout   # refused before the models load and run


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")
def test_json_that_cannot_be_written_names_its_flag(work: Path) -> None:
    one_line_error(run_cli("sparse", "-f", "photo.jpg", "-o", "out.jpg", "--json", "/dev/full",
                           cwd=work), "--json /dev/full", "No space left")


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "kill"])
def test_ctrl_c_during_a_video_keeps_the_earlier_outputs(work: Path, stop: int) -> None:
    """A second run over the same outputs, stopped with Ctrl-C (or `kill`) once it has begun
    writing: the first run's video and JSON are kept as they were, no temporary file is left,
    and the command says it was interrupted."""
    from densehead.io.video import VideoWriter, iter_frames

    frames = list(iter_frames(work / "clip.avi"))
    with VideoWriter(work / "long.mp4", 25.0) as writer:   # several seconds of tracking
        for frame in frames * 4:
            writer.write(frame)
    args = ("-f", "long.mp4", "-o", "out.mp4", "--json", "out.json")
    assert run_cli("sparse", *args, cwd=work).returncode == 0
    before = {name: digest(work / name) for name in ("out.mp4", "out.json")}
    second = subprocess.Popen(cli_command("pose", *args), cwd=work, stderr=subprocess.PIPE,
                              text=True)
    partial = VideoWriter(work / "out.mp4", 25.0).partial
    assert wait_until(partial.exists, 120, every_s=0.01), "the second run never began writing"
    second.send_signal(stop)
    _, stderr = second.communicate(timeout=120)
    assert second.returncode == 130 and stderr.strip().endswith("densehead: interrupted"), stderr
    assert "Traceback" not in stderr, stderr
    assert {name: digest(work / name) for name in before} == before
    assert not partial.exists()


def test_outputs_get_the_permissions_of_any_new_file(work: Path) -> None:
    """The JSON is renamed into place from a temporary file: it must not keep a temporary
    file's owner-only permissions, or the people sharing a study folder cannot read it."""
    assert run_cli("sparse", "-f", "photo.jpg", "-o", "out.jpg", "--json", "out.json",
                   cwd=work).returncode == 0
    (work / "plain.txt").write_text("")
    mode = lambda name: (work / name).stat().st_mode & 0o777   # noqa: E731
    assert mode("out.json") == mode("plain.txt") == mode("out.jpg")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_a_named_pipe_among_the_inputs_fails_in_one_line_not_a_hang(work: Path) -> None:
    """A FIFO named like a video (a capture tool's pipe left in a study folder): opening it to
    look at its first bytes would wait for a writer forever."""
    (work / "study").mkdir()
    shutil.copy(work / "photo.jpg", work / "study" / "photo.jpg")
    os.mkfifo(work / "study" / "pipe.mp4")
    result = run_cli("batch", "study", "-o", "tables", cwd=work, timeout=120)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "pipe.mp4 is not a regular file" in result.stderr
    assert "1 ok, 1 failed" in result.stdout
    one_line_error(run_cli("export", "-f", "study/pipe.mp4", "-o", "pipe.obj", cwd=work,
                           timeout=120), "pipe.mp4 is not a regular file")


def test_batch_refuses_to_write_over_an_input_kept_in_its_output_folder(work: Path) -> None:
    """x.jpg's overlay would be tables/x.jpg.pose.jpg, the name of another input there."""
    (work / "tables").mkdir()
    (work / "photos").mkdir()
    shutil.copy(work / "photo.jpg", work / "tables" / "x.jpg.pose.jpg")
    shutil.copy(work / "photo.jpg", work / "photos" / "x.jpg")
    before = digest(work / "tables" / "x.jpg.pose.jpg")
    one_line_error(run_cli("batch", "tables/x.jpg.pose.jpg", "photos/x.jpg", "-o", "tables",
                           "--overlay", "pose", cwd=work), "x.jpg.pose.jpg", "another folder")
    assert digest(work / "tables" / "x.jpg.pose.jpg") == before
    assert sorted(p.name for p in (work / "tables").iterdir()) == ["x.jpg.pose.jpg"]


def test_verbose_after_the_command_too(work: Path) -> None:
    result = run_cli("sparse", "-f", "photo.jpg", "-o", "out.jpg", "-v", cwd=work)
    assert result.returncode == 0 and "densehead: info:" in result.stderr, result.stderr


@pytest.mark.parametrize("name", ["IMG_0042", "sent.mp4"])
def test_a_photo_without_a_photos_name_is_read_as_a_photo(work: Path, name: str) -> None:
    """A photo saved from a messenger has no suffix, or a wrong one: its first bytes say what
    it is, and its drawing comes out as a picture (.jpg), not a one-frame video."""
    shutil.copy(work / "photo.jpg", work / name)
    result = run_cli("sparse", "-f", name, cwd=work)
    assert result.returncode == 0, result.stderr
    out = work / f"{Path(name).stem}_sparse.jpg"
    assert out.is_file() and "1 face(s)" in result.stdout, result.stdout
    assert cv2.imread(str(out)).shape == cv2.imread(str(work / "photo.jpg")).shape


def test_batch_reads_a_named_photo_without_a_suffix_as_a_photo(work: Path) -> None:
    shutil.copy(work / "photo.jpg", work / "IMG_0042")
    result = run_cli("batch", "IMG_0042", "-o", "tables", "--overlay", "pose", cwd=work)
    assert result.returncode == 0, result.stderr
    report = json.loads((work / "tables" / "batch.json").read_text())
    assert [(f["status"], f["frames"], f["faces"]) for f in report["files"]] == [("ok", 1, 1)]
    assert cv2.imread(str(work / "tables" / "IMG_0042.pose.jpg")) is not None


def test_an_unknown_option_is_named_with_its_commands_usage(work: Path) -> None:
    result = run_cli("sparse", "-f", "photo.jpg", "--bogus", cwd=work)
    assert result.returncode == 2
    assert "usage: densehead sparse" in result.stderr, result.stderr
    assert result.stderr.strip().endswith("densehead sparse: error: unrecognized arguments: --bogus")
