"""`densehead batch` as a user runs it: a study folder of real clips (cut short), a photo, a
truncated copy and a text file; tables checked against the single-file CLI's JSON, resume after
a killed run, a worker that dies, Ctrl-C, and 1 worker = 2 workers = Ray (a local cluster)."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from helpers import (
    alive,
    cli_command,
    ctrl_c_as_from_a_terminal,
    one_line_error,
    run_cli,
)
from paths import ROOT

from densehead.batch import (
    BatchInterrupted,
    BatchSettings,
    image_table,
    plan_inputs,
    run_batch,
    video_table,
)
from densehead.batch.progress import BatchProgress
from densehead.io import table

pytestmark = pytest.mark.slow  # worker processes, Ray, the CLI as a subprocess

CLIP1, CLIP2, PHOTO = "a/clip1.mp4", "b/clip2.avi", "photo.jpg"


def cut(src: Path, dst: Path, frames: int, fourcc: str, loop: bool = False) -> None:
    """The first `frames` frames of a real video, re-encoded (mp4v or MJPG); with `loop`, the
    video played again from its start as often as that takes."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    cap = cv2.VideoCapture(str(src))
    fps, writer = cap.get(cv2.CAP_PROP_FPS), None
    for _ in range(frames):
        ok, frame = cap.read()
        if not ok and loop:
            cap.release()
            cap = cv2.VideoCapture(str(src))
            ok, frame = cap.read()
        assert ok, f"{src} has fewer than {frames} frames"
        if writer is None:
            writer = cv2.VideoWriter(str(dst), cv2.VideoWriter_fourcc(*fourcc), fps,
                                     (frame.shape[1], frame.shape[0]))
        writer.write(frame)
    writer.release()
    cap.release()


@pytest.fixture(scope="module")
def study(tmp_path_factory, samples) -> Path:
    """study/a/clip1.mp4 (30 frames of obama), study/b/clip2.avi (40 frames of orlando_bloom,
    several faces), study/photo.jpg (two faces), study/broken.mp4 (clip1 cut in half: no index),
    study/notes.txt (not media)."""
    root = tmp_path_factory.mktemp("batch") / "study"
    cut(samples / "videos" / "obama.mp4", root / CLIP1, 30, "mp4v")
    cut(samples / "videos" / "orlando_bloom.avi", root / CLIP2, 40, "MJPG")
    shutil.copy(samples / "photos" / "trump_hillary.jpg", root / PHOTO)
    data = (root / CLIP1).read_bytes()
    (root / "broken.mp4").write_bytes(data[: len(data) // 2])
    (root / "notes.txt").write_text("participant 7 left early\n")
    return root


@pytest.fixture(scope="module")
def first_run(study, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """The study through the CLI: two workers, CSV too, progress bar forced on."""
    out = tmp_path_factory.mktemp("tables")
    result = run_cli("batch", str(study), "-o", str(out), "--workers", "2", "--csv",
                     "--progress")
    return out, result


def report(out: Path) -> dict:
    return json.loads((out / "batch.json").read_text())


def by_name(data: dict, study: Path) -> dict[str, dict]:
    return {Path(f["input"]).relative_to(study).as_posix() if f["input"].startswith(str(study))
            else f["input"]: f for f in data["files"]}


def part_files(out: Path) -> list[Path]:
    return [p for p in out.rglob("*") if ".part" in p.name]


def test_a_study_folder_gives_one_table_per_file_and_a_report(study, first_run):
    out, result = first_run
    assert result.returncode == 1, result.stderr   # 1: a file failed; the others were done
    assert "4 files: 3 ok, 1 failed, 0 skipped" in result.stdout
    assert "Traceback" not in result.stderr
    files = by_name(report(out), study)
    assert {k: f["status"] for k, f in files.items()} == {
        CLIP1: "ok", CLIP2: "ok", PHOTO: "ok", "broken.mp4": "failed"}
    assert "broken.mp4 is not a video" in files["broken.mp4"]["error"]
    assert f"failed: {study / 'broken.mp4'}: broken.mp4 is not a video" in result.stderr
    assert report(out)["ignored"] == [str(study / "notes.txt")]
    # tables named after the input path, suffix kept; frames and rows as reported
    for name, frames in ((CLIP1, 30), (CLIP2, 40), (PHOTO, 1)):
        assert files[name]["output"] == f"{name}.parquet"
        df = table.read_parquet(out / f"{name}.parquet")
        assert list(df.columns) == list(table.COLUMNS)
        assert df["frame"].nunique() == files[name]["frames"] == frames
        assert len(df) == files[name]["faces"]
        assert np.isfinite(df.to_numpy(float)).all()
    assert files[CLIP2]["faces"] > 40          # the background faces are tracked as well
    totals = report(out)["totals"]
    assert (totals["ok"], totals["failed"], totals["frames"]) == (3, 1, 71)
    assert not part_files(out)
    assert "4/4 files, 1 failed" in result.stderr and "frame/s" in result.stderr  # the bar


def test_csv_holds_the_same_table(first_run):
    out, _ = first_run
    for name in (CLIP1, CLIP2, PHOTO):
        csv = pd.read_csv(out / f"{name}.csv")
        df = table.read_parquet(out / f"{name}.parquet")
        assert list(csv.columns) == list(df.columns)
        assert np.allclose(csv.to_numpy(float), df.to_numpy(float), rtol=1e-5, atol=1e-4)


def test_a_photo_has_one_row_per_face(study, first_run):
    out, _ = first_run
    df = table.read_parquet(out / f"{PHOTO}.parquet")
    assert len(df) == 2 and df["frame"].tolist() == [0, 0] and df["time_s"].tolist() == [0, 0]
    assert df["track_id"].tolist() == [0, 1]
    centres = (df["box_x1"] + df["box_x2"]) / 2
    assert abs(centres[0] - centres[1]) > 100           # two different faces


def test_tables_match_the_single_file_cli(study, first_run, tmp_path):
    out, _ = first_run
    for name in (CLIP2, PHOTO):
        js = tmp_path / "single.json"
        result = run_cli("sparse", "-f", str(study / name), "-o",
                         str(tmp_path / f"single{Path(name).suffix.replace('.avi', '.mp4')}"),
                         "--json", str(js))
        assert result.returncode == 0, result.stderr
        faces = [(fr["frame"], fr["t"], f) for fr in json.loads(js.read_text())["frames"]
                 for f in fr["faces"]]
        df = table.read_parquet(out / f"{name}.parquet")
        assert len(df) == len(faces)
        assert df["frame"].tolist() == [i for i, _, _ in faces]
        assert np.allclose(df["time_s"], [t for _, t, _ in faces], atol=1e-4)
        if name != PHOTO:  # a photo's faces have no track id in the JSON (-1): ranks here
            assert df["track_id"].tolist() == [f["track_id"] for _, _, f in faces]
        lm = np.array([f["landmarks"] for _, _, f in faces]).reshape(len(faces), -1)
        assert np.abs(df[list(table.LANDMARKS)].to_numpy() - lm).max() <= 6e-4  # JSON: 3 dp
        for column, key in (("yaw", "yaw"), ("pitch", "pitch"), ("roll", "roll"),
                            ("scale", "scale"), ("score", "score")):
            assert np.allclose(df[column], [f[key] for _, _, f in faces], atol=1e-6), column
        assert np.allclose(df[list(table.EXPRESSION)], [f["expression"] for _, _, f in faces],
                           atol=1e-6)
        assert np.allclose(df[list(table.SHAPE)], [f["shape"] for _, _, f in faces], atol=1e-6)
        assert np.allclose(df[list(table.BOX)], [f["box"] for _, _, f in faces], atol=1e-6)
        assert np.allclose(df[list(table.TRANSLATION)], [f["translation"] for _, _, f in faces],
                           atol=1e-6)


def test_resume_after_a_killed_run(long_study, tmp_path):
    out = tmp_path / "out"
    proc, worker = start_and_wait_for_second_file(long_study, out)  # 2.avi running
    deadline = time.monotonic() + 10  # the parent writes 1.avi's table while 2.avi runs
    while not (out / "1.avi.parquet").exists() and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.kill()  # SIGKILL: no clean-up of any kind
    proc.communicate(timeout=60)
    assert wait_until_gone(worker), "the orphaned worker is still running"
    finished = sorted(p.name for p in out.rglob("*.parquet") if ".part" not in p.name)
    assert finished == ["1.avi.parquet"], finished
    # a half-written table at the final name (as a copy cut short would leave): not finished
    data = (out / "1.avi.parquet").read_bytes()
    (out / "2.avi.parquet").write_bytes(data[: len(data) // 2])

    result = run_cli("batch", str(long_study), "-o", str(out), "--workers", "1")
    assert result.returncode == 0, result.stderr
    files = by_name(report(out), long_study)
    assert files["1.avi"]["status"] == "skipped" and files["1.avi"]["frames"] == 10
    assert files["2.avi"]["status"] == "ok" and files["3.jpg"]["status"] == "ok"
    assert "2 ok, 0 failed, 1 skipped" in result.stdout, result.stdout
    from densehead import Pipeline

    pipe = Pipeline(num_threads=1)  # complete, and the same as an uninterrupted table
    for name, expected in (("1.avi", video_table(long_study / "1.avi", pipe)),
                           ("2.avi", video_table(long_study / "2.avi", pipe)),
                           ("3.jpg", image_table(long_study / "3.jpg", pipe))):
        got = table.read_parquet(out / f"{name}.parquet")
        assert len(got) == len(expected) > 0, name
        assert np.array_equal(got.to_numpy(float), expected.to_numpy(float)), name
    assert not part_files(out)


def test_a_rerun_skips_only_files_finished_with_this_input_and_settings(study, tmp_path):
    out, inputs = tmp_path / "out", [study / CLIP1, study / CLIP2, study / PHOTO]
    settings = BatchSettings()
    assert run_batch(inputs, out, settings, workers=1).count("ok") == 3
    again = run_batch(inputs, out, settings, workers=1)
    assert [f.status for f in again.files] == ["skipped"] * 3
    assert [f.frames for f in again.files] == [30, 40, 1]   # from the tables' records
    # threads change speed, not tables: nothing runs again
    faster = BatchSettings(pipeline=settings.pipeline.replace(num_threads=2, adapt_threads=False))
    assert [f.status for f in run_batch(inputs, out, faster, workers=1).files] == ["skipped"] * 3
    # the photo was replaced (a new modification time): it alone runs again
    photo = study / PHOTO
    stat = photo.stat()
    try:
        os.utime(photo, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
        changed = run_batch(inputs, out, settings, workers=1)
    finally:
        os.utime(photo, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert [f.status for f in changed.files] == ["skipped", "skipped", "ok"]
    # other tracker settings make other tables: everything runs again
    other = BatchSettings(tracker=settings.tracker.replace(redetect_every=3))
    assert [f.status for f in run_batch(inputs, out, other, workers=1).files] == ["ok"] * 3


def test_a_skipped_file_keeps_what_the_run_that_made_its_table_said(samples, tmp_path):
    """obama.mp4's header promises 158 frames and 55 decode: that note stays with its table."""
    out, video = tmp_path / "out", samples / "videos" / "obama.mp4"
    first = run_batch([video], out, workers=1).files[0]
    assert first.status == "ok" and first.notes and first.host
    again = run_batch([video], out, workers=1).files[0]
    assert again.status == "skipped"
    assert (again.notes, again.host, again.node) == (first.notes, first.host, first.node)


def test_overwrite_from_the_command_line(study, first_run, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(first_run[0], out)
    skipped = run_cli("batch", str(study), "-o", str(out), "--csv")
    assert "0 ok, 1 failed, 3 skipped" in skipped.stdout, skipped.stdout + skipped.stderr
    forced = run_cli("batch", str(study), "-o", str(out), "--csv", "--overwrite")
    assert "3 ok, 1 failed, 0 skipped" in forced.stdout, forced.stdout + forced.stderr


def test_nothing_to_run_is_refused_and_keeps_the_last_record(study, tmp_path):
    """A typo in the input, or a folder with no media, against an output folder of an earlier
    run: one line, and batch.json still describes that run."""
    out = tmp_path / "out"
    assert run_cli("batch", str(study / PHOTO), "-o", str(out)).returncode == 0
    record = (out / "batch.json").read_text()
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("no media here")
    (tmp_path / "notes.txt").write_text("these are notes\n")   # taken for a list of inputs
    for given, words in [(str(tmp_path / "stduy"), ("nothing to run", "no such file or folder")),
                         (str(tmp_path / "notes"), ("no video or image found", "1 file(s)")),
                         (str(tmp_path / "notes.txt"), ("these are notes (line 1 of notes.txt)",
                                                        "no such file or folder"))]:
        one_line_error(run_cli("batch", given, "-o", str(out)), *words)
        assert (out / "batch.json").read_text() == record


def test_ray_address_without_the_ray_engine_is_refused(study, tmp_path):
    """An address given without `--engine ray` would have the study run here, not on the
    cluster the user named: one line, nothing run or written."""
    result = run_cli("batch", str(study / PHOTO), "-o", str(tmp_path / "out"),
                     "--ray-address", "127.0.0.1:6379")
    one_line_error(result, "--ray-address 127.0.0.1:6379", "--engine ray")
    assert not (tmp_path / "out").exists()


def test_a_list_file_and_overlays(study, tmp_path):
    listing = tmp_path / "lists" / "session1.txt"
    listing.parent.mkdir()
    (tmp_path / "lists" / "clips").mkdir()
    shutil.copy(study / CLIP1, tmp_path / "lists" / "clips" / "clip1.mp4")
    listing.write_text(f"# session 1\nclips/clip1.mp4\n\n{study / PHOTO}\nclips/gone.mp4\n")
    out = tmp_path / "out"
    result = run_cli("batch", str(listing), "-o", str(out), "--overlay", "sparse")
    files = {f["input"]: f for f in report(out)["files"]}
    # entries inside the list's folder keep their relative path; others their name
    assert files[str(tmp_path / "lists" / "clips" / "clip1.mp4")]["output"] == \
        "clips/clip1.mp4.parquet"
    assert files[str(study / PHOTO)]["output"] == "photo.jpg.parquet"
    gone = files["clips/gone.mp4 (line 5 of session1.txt)"]
    assert gone["status"] == "failed" and "no such file" in gone["error"]
    assert "2 ok, 1 failed" in result.stdout
    cap = cv2.VideoCapture(str(out / "clips" / "clip1.mp4.sparse.mp4"))
    frames = 0
    while cap.read()[0]:
        frames += 1
    assert frames == 30
    drawn = cv2.imread(str(out / "photo.jpg.sparse.jpg"))
    original = cv2.imread(str(study / PHOTO))
    assert drawn.shape == original.shape
    assert (np.abs(drawn.astype(int) - original.astype(int)).sum(axis=2) > 60).mean() > 0.001
    assert not part_files(out)


def test_names_never_collide_and_the_output_folder_is_not_an_input(study, tmp_path):
    a, b = tmp_path / "x" / "clip.mp4", tmp_path / "y" / "clip.mp4"
    for p in (a, b, a.with_suffix(".avi")):
        p.parent.mkdir(exist_ok=True)
        shutil.copy(study / CLIP1, p)
    plan = plan_inputs([a, b, a.parent, a], tmp_path / "x" / "tables")
    assert [j.name for j in plan.jobs] == ["clip.mp4", "clip.mp4~2", "clip.avi"]
    (tmp_path / "x" / "tables").mkdir()
    shutil.copy(study / CLIP1, tmp_path / "x" / "tables" / "old.mp4")
    assert [j.name for j in plan_inputs([a.parent], tmp_path / "x" / "tables").jobs] == \
        ["clip.avi", "clip.mp4"]
    with pytest.raises(ValueError, match="output folder"):
        plan_inputs([a.parent], a.parent)


@pytest.mark.ray
def test_one_worker_two_workers_and_ray_give_the_same_tables(study, first_run, tmp_path,
                                                             local_ray):
    two, _ = first_run
    one = run_batch([study], tmp_path / "one", workers=1)
    on_ray = run_batch([study], tmp_path / "ray", engine="ray", workers=2)
    # the workers that came up: the second may still be loading its models when the first has
    # run the three files
    assert on_ray.engine == "ray" and on_ray.workers in (1, 2)
    assert [f.status for f in on_ray.files] == [f.status for f in one.files]
    for name in (CLIP1, CLIP2, PHOTO):
        ref = table.read_parquet(two / f"{name}.parquet").to_numpy(float)
        for out in (tmp_path / "one", tmp_path / "ray"):
            got = table.read_parquet(out / f"{name}.parquet").to_numpy(float)
            assert got.shape == ref.shape and np.allclose(got, ref, rtol=0, atol=1e-9), (out, name)
    failed = [f for f in on_ray.files if f.status == "failed"]
    assert len(failed) == 1 and "not a video" in failed[0].error


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray cluster for this module (2 CPUs, no dashboard), shut down after."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


# -- a real Ray cluster that is already running: a head and a second node on loopback ----------

@pytest.fixture(scope="module")
def cluster_study(study, long_study, tmp_path_factory) -> Path:
    """Six files, enough that both nodes of a cluster get work: four 139-frame clips of
    orlando_bloom (several faces), obama's 30-frame clip and the two-face photo."""
    root = tmp_path_factory.mktemp("cluster") / "study"
    root.mkdir()
    for i in range(1, 5):
        shutil.copy(long_study / "2.avi", root / f"{i}.avi")
    shutil.copy(study / CLIP1, root / "5.mp4")
    shutil.copy(study / PHOTO, root / "6.jpg")
    return root


@pytest.fixture(scope="module")
def cluster_study_local(cluster_study, tmp_path_factory) -> Path:
    """The same study on the local engine: the tables every cluster run must equal."""
    out = tmp_path_factory.mktemp("cluster_local")
    assert run_batch([cluster_study], out, workers=2).count("ok") == 6
    return out


@pytest.fixture
def ray_cluster():
    """`ray start --head` (1 CPU) and `ray start --address` (1 CPU) as separate processes with
    a token of their own; every process of both nodes is killed after, pass or fail (never
    `ray stop`, which would stop anyone's Ray on the machine)."""
    pytest.importorskip("ray")
    from densehead.tools.ray_cluster import LoopbackCluster

    with LoopbackCluster([1, 1]) as cluster:
        yield cluster


def on_cluster(cluster, root: Path, out: Path, *more: str) -> list[str]:
    return cli_command("batch", str(root), "-o", str(out), "--engine", "ray", "--ray-address",
                       cluster.address, *more)


def cluster_env(cluster, assets_dir: Path) -> dict[str, str]:
    return cluster.env | {"DENSEHEAD_ASSETS": str(assets_dir)}


def assert_same_tables(out: Path, reference: Path, root: Path) -> None:
    for source in sorted(root.iterdir()):
        got = table.read_parquet(out / f"{source.name}.parquet").to_numpy(float)
        ref = table.read_parquet(reference / f"{source.name}.parquet").to_numpy(float)
        assert len(got) > 0 and np.array_equal(got, ref), source.name   # bit for bit


@pytest.mark.ray
def test_ray_cluster_of_two_nodes_gives_the_local_tables(cluster_study, cluster_study_local,
                                                         ray_cluster, assets_dir, tmp_path):
    # run from a folder of the user's, with an output folder relative to it: the nodes run
    # elsewhere (the cluster's folder), and the overlays must still land in it
    out = tmp_path / "out"
    result = subprocess.run(on_cluster(ray_cluster, cluster_study, Path("out"), "--overlay", "sparse"),
                            cwd=tmp_path, capture_output=True, text=True, timeout=300,
                            env=cluster_env(ray_cluster, assets_dir))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "6 files: 6 ok, 0 failed" in result.stdout and "2 ray workers" in result.stdout
    assert len(list(out.glob("*.sparse.*"))) == 6, sorted(p.name for p in out.iterdir())
    assert not list(ray_cluster.folder.rglob("*.sparse.*"))
    files = report(out)["files"]
    assert len({f["node"] for f in files}) == 2, files      # work ran on both nodes
    assert all(f["host"] for f in files)
    assert_same_tables(out, cluster_study_local, cluster_study)
    assert not part_files(out)
    # the workers load their own model files: what they warn of is said here, once
    from densehead.weights.assets import status

    said = [line for line in result.stderr.splitlines() if "a Ray worker's model files" in line]
    stand_ins = [s.name for s in status() if s.official is False]
    assert [name for name in stand_ins if any(name in line for line in said)] == stand_ins
    assert len(said) == len(stand_ins), said


def node_worker_file(cluster, node, root: Path) -> str | None:
    """The input file a Ray worker of `node` has open, if any."""
    for pid in cluster.node_pids(node):
        for path in open_files(pid):
            if path.startswith(str(root)):
                return path
    return None


@pytest.mark.ray
def test_ray_cluster_losing_a_node_mid_run_runs_its_file_again(cluster_study,
                                                               cluster_study_local,
                                                               ray_cluster, assets_dir,
                                                               tmp_path):
    out = tmp_path / "out"
    proc = subprocess.Popen(on_cluster(ray_cluster, cluster_study, out), cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=cluster_env(ray_cluster, assets_dir))
    try:
        second = ray_cluster.nodes[1]
        deadline = time.monotonic() + 120
        while (busy := node_worker_file(ray_cluster, second, cluster_study)) is None:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the second node never got a file"
            time.sleep(0.005)
        ray_cluster.kill(second)   # the node's machine goes away mid-file
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0 and "Traceback" not in stderr, stdout + stderr
    assert "6 files: 6 ok, 0 failed" in stdout, stdout
    files = {Path(f["input"]).name: f for f in report(out)["files"]}
    again = files[Path(busy).name]
    assert again["notes"] == ["run again after the Ray worker it was on died"], again
    # the file the lost node was on is whole, and the same as everywhere else
    assert_same_tables(out, cluster_study_local, cluster_study)
    assert not part_files(out)


@pytest.mark.ray
def test_ray_address_where_no_ray_head_answers_is_one_line_at_once(study, tmp_path):
    """A port nothing listens on, one where another service answers (a web server, as a
    dashboard's port would), and a URL: one line each, in seconds, where Ray would retry for
    minutes or fail on the name."""
    pytest.importorskip("ray")
    import http.server
    import threading

    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        closed_port = closed.getsockname()[1]   # bound, never listening: refused
        web = http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
        threading.Thread(target=web.serve_forever, daemon=True).start()
        try:
            web_port = web.server_address[1]
            for address, words in [
                    (f"127.0.0.1:{closed_port}", ("cannot reach the Ray cluster",)),
                    (f"127.0.0.1:{web_port}", ("answers, but not as a Ray cluster",)),
                    (f"http://127.0.0.1:{web_port}", ("is a web address", "HOST:PORT"))]:
                result = run_cli("batch", str(study / PHOTO), "-o", str(tmp_path / "out"),
                                 "--engine", "ray", "--ray-address", address)
                one_line_error(result, address, *words)
        finally:
            web.shutdown()
    assert not (tmp_path / "out" / "batch.json").exists()


NO_FREE_CPU_SCRIPT = """
import sys
import ray
from densehead.batch import ray_engine, run_batch
ray_engine.NO_WORKER_NOTICE_S, ray_engine.NO_WORKER_WAIT_S = 1.0, 4.0   # seconds, not minutes
ray.init(num_cpus=0, include_dashboard=False, log_to_driver=False)     # a cluster that is full
report = run_batch([sys.argv[1]], sys.argv[2], engine="ray", progress=False)
print([f.error for f in report.files])
"""


def test_a_ray_cluster_with_no_free_cpu_is_said_while_files_wait(study, tmp_path):
    """Nothing silent for minutes: the wait is said while it lasts, then each file fails."""
    pytest.importorskip("ray")
    result = subprocess.run([sys.executable, "-c", NO_FREE_CPU_SCRIPT, str(study / PHOTO),
                             str(tmp_path / "out")], cwd=ROOT, capture_output=True, text=True,
                            timeout=300, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert result.returncode == 0, result.stderr
    assert "no Ray worker has started after 1 s: does the cluster have a free CPU?" \
        in result.stderr
    assert "no Ray worker started in 4 s" in result.stdout


@pytest.mark.ray
def test_ray_cluster_from_ray_address_stopped_by_kill_keeps_what_finished(cluster_study,
                                                                          ray_cluster,
                                                                          assets_dir, tmp_path):
    """The cluster named by Ray's own RAY_ADDRESS (no --ray-address), and `kill PID` while a
    file runs on a node: the batch stops like Ctrl-C, says so and records the run."""
    out = tmp_path / "out"
    env = cluster_env(ray_cluster, assets_dir) | {"RAY_ADDRESS": ray_cluster.address}
    proc = subprocess.Popen(cli_command("batch", str(cluster_study), "-o", str(out), "--engine",
                                        "ray", "--workers", "2"),
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)
    try:
        deadline = time.monotonic() + 120
        while node_worker_file(ray_cluster, ray_cluster.nodes[1], cluster_study) is None:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the second node never got a file"
            time.sleep(0.005)
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130 and "Traceback" not in stderr, stdout + stderr
    assert "run the same command again to resume" in stderr
    data = report(out)
    assert data["interrupted"] is True and data["engine"] == "ray", data
    assert not part_files(out)


def finished_in_report(out: Path) -> list[str]:
    """The inputs batch.json records as done, [] while there is none (or none yet)."""
    try:
        return [f["input"] for f in report(out)["files"] if f["status"] == "ok"]
    except (OSError, ValueError, KeyError):
        return []


@pytest.mark.ray
def test_ray_cluster_losing_its_head_leaves_a_record_of_what_finished(cluster_study,
                                                                      ray_cluster, assets_dir,
                                                                      tmp_path):
    """The head goes (its machine loses power) mid-batch: Ray ends the command on its own, in
    seconds or in a minute, before it can say anything. batch.json, written as files finish,
    still records those files, marked unfinished, and the next run resumes after them."""
    out = tmp_path / "out"
    proc = subprocess.Popen(on_cluster(ray_cluster, cluster_study, out), cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=cluster_env(ray_cluster, assets_dir))
    try:
        deadline = time.monotonic() + 120
        while not (finished := finished_in_report(out)):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no file was recorded as finished"
            time.sleep(0.05)
        ray_cluster.kill(ray_cluster.nodes[0])
        stdout, stderr = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0, stdout + stderr
    data = report(out)
    assert data["unfinished"] is True and data["pending"] > 0 and data["workers"] >= 1, data
    assert set(finished) <= set(finished_in_report(out))
    resumed = run_batch([cluster_study], out, workers=1)   # on this machine: the cluster is gone
    assert resumed.count("skipped") >= len(finished) and resumed.count("failed") == 0
    assert report(out)["unfinished"] is False and not part_files(out)


@pytest.mark.ray
@pytest.mark.parametrize("token", ["missing", "wrong"])
def test_ray_cluster_without_its_token_says_so_in_one_line(cluster_study, ray_cluster,
                                                           assets_dir, tmp_path, token):
    env = cluster_env(ray_cluster, assets_dir)
    if token == "missing":   # as in a shell where nothing of Ray's token was set
        env = {k: v for k, v in env.items() if not k.startswith("RAY_AUTH")}
    else:
        env["RAY_AUTH_TOKEN"] = "0" * 64
    out = tmp_path / "out"
    result = subprocess.run(on_cluster(ray_cluster, cluster_study, out), cwd=ROOT,
                            capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith(f"densehead: error: the Ray cluster at {ray_cluster.address} "
                               f"refused this process: its authentication token is missing "
                               f"or wrong here"), lines[0]
    assert "RAY_AUTH_MODE=token" in lines[0] and "RAY_AUTH_TOKEN" in lines[0]
    assert not list(out.rglob("*.parquet"))


def test_video_table_and_image_table_from_python(study, first_run):
    out, _ = first_run
    from densehead import Pipeline

    pipe = Pipeline(num_threads=1)
    df = video_table(study / CLIP2, pipe)
    assert list(df.columns) == list(table.COLUMNS) and df["frame"].dtype == np.int64
    assert np.allclose(df.to_numpy(float),
                       table.read_parquet(out / f"{CLIP2}.parquet").to_numpy(float))
    photo = image_table(study / PHOTO, pipe)
    assert np.allclose(photo.to_numpy(float),
                       table.read_parquet(out / f"{PHOTO}.parquet").to_numpy(float))


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(c) for c in path.read_text().split()] if path.exists() else []


def worker_pids(pid: int) -> list[int]:
    """The pool's worker processes (not multiprocessing's resource tracker)."""
    found = []
    for child in children(pid):
        try:
            cmd = Path(f"/proc/{child}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if "spawn_main" in cmd:
            found.append(child)
    return found


@pytest.fixture(scope="module")
def long_study(study, samples, tmp_path_factory) -> Path:
    """1.avi (10 frames), 2.avi (all 139 frames of orlando_bloom), 3.jpg: the middle file runs
    long enough to be stopped in."""
    root = tmp_path_factory.mktemp("long") / "study"
    cut(samples / "videos" / "orlando_bloom.avi", root / "1.avi", 10, "MJPG")
    cut(samples / "videos" / "orlando_bloom.avi", root / "2.avi", 139, "MJPG")
    shutil.copy(study / PHOTO, root / "3.jpg")
    return root


@pytest.fixture(scope="module")
def stoppable_study(long_study, samples, tmp_path_factory) -> Path:
    """long_study with a 2.avi of 1,112 frames (orlando_bloom eight times over). The batch holds
    Ctrl-C while it commits 1.avi; on a busy disk that took longer than the worker needed for
    the 139 frames of long_study's 2.avi and for 3.jpg, and nothing was left to stop."""
    root = tmp_path_factory.mktemp("stoppable") / "study"
    root.mkdir()
    shutil.copy(long_study / "1.avi", root / "1.avi")
    cut(samples / "videos" / "orlando_bloom.avi", root / "2.avi", 8 * 139, "MJPG", loop=True)
    shutil.copy(long_study / "3.jpg", root / "3.jpg")
    return root


def wait_until_gone(pid: int, seconds: float = 30) -> bool:
    """True once the process has exited (a zombie waiting for its reaper counts as exited)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.05)
    return False


def open_files(pid: int) -> set[str]:
    found = set()
    for fd in Path(f"/proc/{pid}/fd").glob("*"):
        try:
            found.add(os.readlink(fd))
        except OSError:
            pass
    return found


def start_and_wait_for_second_file(root: Path, out: Path) -> tuple[subprocess.Popen, int]:
    """The CLI with one worker, once that worker has 2.avi open (1.avi is done); Ctrl-C reaches
    it as from a terminal."""
    with ctrl_c_as_from_a_terminal():
        proc = subprocess.Popen(cli_command("batch", str(root), "-o", str(out), "--workers",
                                            "1"),
                                cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        workers = worker_pids(proc.pid)
        if len(workers) == 1 and str(root / "2.avi") in open_files(workers[0]):
            return proc, workers[0]
        time.sleep(0.005)
    proc.kill()
    raise AssertionError("the worker never opened 2.avi")


def test_a_worker_that_dies_fails_only_its_file(long_study, tmp_path):
    out = tmp_path / "out"
    proc, worker = start_and_wait_for_second_file(long_study, out)
    os.kill(worker, signal.SIGKILL)  # what the OOM killer does
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 1 and "Traceback" not in stderr, stderr
    status = {Path(f["input"]).name: (f["status"], f["error"]) for f in report(out)["files"]}
    assert status["1.avi"] == ("ok", None) and status["3.jpg"] == ("ok", None)
    assert status["2.avi"][0] == "failed" and "worker process died" in status["2.avi"][1]
    assert "2 ok, 1 failed" in stdout


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_or_kill_stops_the_batch_and_keeps_what_finished(stoppable_study, tmp_path,
                                                                sig):
    out = tmp_path / "out"
    proc, worker = start_and_wait_for_second_file(stoppable_study, out)
    signals = [line.strip() for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines()
               if line.startswith(("SigBlk", "SigIgn", "SigCgt"))]
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in stderr, (signals, stdout, stderr)
    assert "run the same command again to resume" in stderr
    data = report(out)
    assert data["interrupted"] is True and data["pending"] == 2   # 3.jpg was not started
    assert [f["status"] for f in data["files"]][:1] == ["ok"]
    assert not (out / "2.avi.parquet").exists() and not part_files(out)
    assert wait_until_gone(worker, seconds=5)  # the worker is gone too


def test_ctrl_c_while_the_next_file_is_shown_starting_keeps_the_finished_one(
        long_study, tmp_path, monkeypatch):
    """Ctrl-C lands wherever the main thread is. On a throttled CI machine it came while the
    batch showed 2.avi starting, and 1.avi, finished, was reported pending and never written.
    Here the Ctrl-C is sent at exactly that point, with real workers."""
    shown = BatchProgress.frames

    def frames(self, index: int, done: int) -> None:
        if index == 1 and done == 0:   # the worker has just started 2.avi: 1.avi is done
            os.kill(os.getpid(), signal.SIGINT)
        shown(self, index, done)

    monkeypatch.setattr(BatchProgress, "frames", frames)
    out = tmp_path / "out"
    with ctrl_c_as_from_a_terminal(), pytest.raises(BatchInterrupted):
        run_batch([long_study], out, workers=1, progress=False)
    data = report(out)
    assert data["interrupted"] is True and data["pending"] == 2, data
    assert [(Path(f["input"]).name, f["status"]) for f in data["files"]] == [("1.avi", "ok")]
    assert (out / "1.avi.parquet").exists() and not (out / "2.avi.parquet").exists()


@pytest.mark.ray
def test_ray_ctrl_c_while_one_file_is_recorded_keeps_the_other_finished_one(
        long_study, local_ray, tmp_path, monkeypatch):
    """Ctrl-C lands wherever the driver is. Here a long clip and a photo have both finished on
    their actors, and the first of them is being recorded when it comes: the other, finished
    too, is kept as well (it was lost unless Ctrl-C came inside ray.wait)."""
    root = tmp_path / "study"
    root.mkdir()
    shutil.copy(long_study / "2.avi", root / "a.avi")
    shutil.copy(long_study / "3.jpg", root / "b.jpg")
    real_wait, waited = local_ray.wait, []

    def wait(refs, *args, **kwargs):   # the engine's own ray.wait, its refs remembered
        waited[:] = list(refs)
        return real_wait(refs, *args, **kwargs)

    shown, recorded = BatchProgress.frames, BatchProgress.file_done
    started: set[int] = set()
    state = {"both_done": False, "sent": False}

    def frames(self, index: int, done: int) -> None:
        started.add(index)
        if started == {0, 1} and not state["both_done"]:   # both given out: wait for both
            real_wait(waited, num_returns=len(waited), timeout=120)
            state["both_done"] = True
        shown(self, index, done)

    def file_done(self, *args) -> None:
        recorded(self, *args)
        if state["both_done"] and not state["sent"]:   # the first file recorded after that
            state["sent"] = True
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(local_ray, "wait", wait)
    monkeypatch.setattr(BatchProgress, "frames", frames)
    monkeypatch.setattr(BatchProgress, "file_done", file_done)
    out = tmp_path / "out"
    with ctrl_c_as_from_a_terminal(), pytest.raises(BatchInterrupted):
        run_batch([root], out, engine="ray", workers=2, progress=False)
    data = report(out)
    assert data["interrupted"] is True and data["pending"] == 0, data
    assert [(Path(f["input"]).name, f["status"]) for f in data["files"]] == \
        [("a.avi", "ok"), ("b.jpg", "ok")], data
    assert (out / "a.avi.parquet").exists() and (out / "b.jpg.parquet").exists()


def test_benchmark_prints_speeds_and_speedups(long_study):
    result = run_cli("batch-benchmark", str(long_study), "--workers", "2", "--no-ray",
                     "--max-frames", "20")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any(line.startswith("local, 1 worker") and "1.00x" in line for line in lines)
    assert any(line.startswith("local, 2 workers") and "over local, 1 worker" in line
               for line in lines)
    assert "where the time goes" in result.stdout and "decoding" in result.stdout
