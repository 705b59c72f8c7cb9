"""The live page on two servers behind one address: `densehead serve --replicas 2` (two
replicas and Debian's nginx on loopback), four people through the proxy's one address, and one
replica stopped while they stream.

Which replica holds which session is read from each replica's own status file; everything else
is what a person sees or downloads."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import pytest
from e2e_setup import CAMERA_SECONDS
from helpers import alive, ctrl_c_as_from_a_terminal
from paths import ROOT, SAMPLES
from test_browser import MESH_SHOWN_JS
from test_live_server import csv_table, rows_per_frame, series_csv, shot

from densehead.dashboard.proxy import REPLICA_COOKIE, nginx_binary
from densehead.io.table import COL
from densehead.tools.browser import (
    PAGE_LOAD_TIMEOUT_MS,
    free_ports,
    go_to_page,
    live_sessions,
    new_page,
    page_session_id,
    read_status,
    set_number,
    start_stream,
    wait_fps,
    wait_until,
    webrtc_frame,
)

MOVED = "The server this page was on"
UPLOAD_LIMIT_MB = 10   # given to the replicas, as an operator would, to be seen through the proxy


@pytest.fixture(scope="module")
def replicas(tmp_path_factory, assets_dir):
    """`densehead serve --replicas 2` as an operator starts it; stopped like Ctrl-C after, and
    every process it started is checked gone."""
    try:
        nginx_binary()
    except OSError as error:
        pytest.skip(str(error))
    run_dir = tmp_path_factory.mktemp("replicas")
    port = free_ports(3)
    log = open(run_dir / "launcher.log", "w")
    with ctrl_c_as_from_a_terminal():
        launcher = subprocess.Popen(
            [sys.executable, "-m", "densehead", "serve", "--replicas", "2", "--proxy-port",
             str(port), "--proxy-address", "127.0.0.1", "--run-dir", str(run_dir),
             "--server.maxUploadSize", str(UPLOAD_LIMIT_MB)],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
            env=dict(os.environ, DENSEHEAD_ASSETS=str(assets_dir), PYTHONUNBUFFERED="1"))
    info: dict = {}
    try:
        deadline = time.monotonic() + 180
        while not (run_dir / "replicas.json").exists():
            assert launcher.poll() is None, (run_dir / "launcher.log").read_text()
            assert time.monotonic() < deadline, "the replicas did not come up"
            time.sleep(0.5)
        info = json.loads((run_dir / "replicas.json").read_text())
        info["launcher_log"] = run_dir / "launcher.log"
        yield info
    finally:
        launcher.send_signal(signal.SIGINT)   # Ctrl-C
        try:
            launcher.wait(timeout=60)
        except subprocess.TimeoutExpired:
            launcher.kill()
            launcher.wait()
        log.close()
    pids = [info["proxy"]["pid"]] + [r["pid"] for r in info["replicas"]] if info else []
    assert not [p for p in pids if alive(p)], "the launcher left processes running"


class Viewer:
    """One person on the live page through the proxy."""

    def __init__(self, name: str, browser, replicas: dict, output_dir: Path) -> None:
        self.name, self.output_dir = name, output_dir
        self.page = new_page(browser)
        go_to_page(self.page, replicas["url"], "/Live_webcam")
        self.frame = webrtc_frame(self.page)
        self.status_file = Path(replica_info(replicas, self.replica)["status"])

    @property
    def replica(self) -> str:
        cookies = {c["name"]: c["value"] for c in self.page.context.cookies()}
        return cookies[REPLICA_COOKIE]

    def allow_one_face(self, known: set[str]) -> None:
        """Max faces 1 (obama.mp4's broadcast logo is sometimes detected as a second, weaker
        face), once the replica holds this page's session, the one not in `known`."""
        sid = page_session_id(self.page, self.status_file, known)
        set_number(self.page, "Max faces", 1,
                   lambda: live_sessions(read_status(self.status_file))[sid]["max_faces"] == 1)

    def start(self) -> None:
        start_stream(self.page, self.frame)
        assert wait_fps(self.page, timeout_s=90) > 0, self.name


def sessions_of(info: dict) -> dict[str, dict[str, dict]]:
    """{replica name: {session id: live counters}} from each replica's own status file."""
    return {r["name"]: live_sessions(read_status(Path(r["status"]))) for r in info["replicas"]}


def replica_info(info: dict, name: str) -> dict:
    return next(r for r in info["replicas"] if r["name"] == name)


def test_replicas_take_uploads_up_to_the_servers_own_limit(replicas, browser, tmp_path,
                                                          output_dir):
    """A photo bigger than nginx's default body limit (1 MB) reaches the 3D viewer through the
    proxy; one over the limit the servers were started with is refused on the page, naming it."""
    photo = cv2.imread(str(SAMPLES / "photos" / "emma.jpg"))
    big, bigger = tmp_path / "emma.png", tmp_path / "emma_large.png"
    cv2.imwrite(str(big), photo)
    cv2.imwrite(str(bigger), cv2.resize(photo, None, fx=1.5, fy=1.5))
    limit = UPLOAD_LIMIT_MB * 2**20
    assert 2**20 < big.stat().st_size < limit < bigger.stat().st_size
    page = new_page(browser)
    try:
        go_to_page(page, replicas["url"], "/3D_viewer")
        uploader = page.locator('[data-testid="stFileUploader"] input[type=file]')
        uploader.set_input_files(str(big))
        page.wait_for_function(MESH_SHOWN_JS, timeout=120_000)
        uploader.set_input_files(str(bigger))
        refusal = page.locator("text=/File must be .* or smaller/").first
        refusal.wait_for(timeout=60_000)
        shot(page, output_dir, "e2e_replicas_upload_limit.png")
        assert f"{UPLOAD_LIMIT_MB}" in refusal.inner_text()
        assert page.locator("text=Traceback").count() == 0
    finally:
        page.context.close()


def test_replicas_four_viewers_spread_over_two_servers_and_one_server_stopped(
        replicas, browser, obama_browser, output_dir):
    viewers: list[Viewer] = []
    try:
        # two people in front of orlando_bloom.avi (several faces), two in front of obama.mp4
        for name, b in (("orlando1", browser), ("orlando2", browser),
                        ("obama1", obama_browser), ("obama2", obama_browser)):
            known = {sid for sessions in sessions_of(replicas).values() for sid in sessions}
            viewer = Viewer(name, b, replicas, output_dir)
            viewers.append(viewer)   # before it starts: a failure shows what this person saw too
            if name.startswith("obama"):
                viewer.allow_one_face(known)
            viewer.start()
        where = {v.name: v.replica for v in viewers}
        assert set(where.values()) == {"r1", "r2"}, where   # a new browser goes to the next one
        # each camera plays its looped video through once, and each session processes 40
        # frames of it, however long a slow machine takes for them
        time.sleep(CAMERA_SECONDS + 1)
        filled = lambda live: all(s["streaming"] and s["processed"] > 40   # noqa: E731
                                  for sessions in live.values() for s in sessions.values())
        wait_until(lambda: filled(sessions_of(replicas)), 180)

        # each replica's status file shows its own viewers, all streaming
        live = sessions_of(replicas)
        counts = {name: len(sessions) for name, sessions in live.items()}
        assert counts == {name: list(where.values()).count(name) for name in live}, (counts, where)
        assert filled(live), live

        # every CSV holds its own camera's faces and only its own frames
        tables = {v.name: csv_table(series_csv(v.page)) for v in viewers}
        for name, table in tables.items():
            keys = {(int(f), int(t)) for f, t in table[:, [COL["frame"], COL["track_id"]]]}
            assert len(table) > 20 and len(keys) == len(table), name
            widths = table[:, COL["box_x2"]] - table[:, COL["box_x1"]]
            if name.startswith("obama"):   # one face of obama's size, never orlando's crowd
                assert rows_per_frame(table).max() == 1, name
                assert 55 < widths.min() and widths.max() < 95, (name, widths.min(), widths.max())
            else:                          # orlando and the small faces behind him
                assert rows_per_frame(table).max() >= 2 and widths.min() < 40, name

        # the operator stops replica r1 while everyone streams
        lost = [v for v in viewers if v.replica == "r1"]
        kept = [v for v in viewers if v.replica == "r2"]
        kept_ids = set(sessions_of(replicas)["r2"])
        before = sessions_of(replicas)["r2"]
        r1 = replica_info(replicas, "r1")
        os.kill(r1["pid"], signal.SIGTERM)
        assert wait_until(lambda: not alive(r1["pid"]), 30), "r1 did not stop"

        # r1's viewers: their page says what happened, and after a reload it streams from r2
        for v in lost:
            v.page.get_by_text(MOVED).first.wait_for(timeout=60_000)
            shot(v.page, output_dir, f"e2e_replicas_moved_{v.name}.png")
            assert "press START to stream again" in v.page.inner_text("body")
        for v in lost:
            v.page.reload(timeout=PAGE_LOAD_TIMEOUT_MS)
            v.frame = webrtc_frame(v.page)
            v.start()
            assert v.replica == "r2", v.name
        new_ids = wait_until(lambda: len(set(sessions_of(replicas)["r2"]) - kept_ids) == len(lost)
                             and set(sessions_of(replicas)["r2"]) - kept_ids, 30)
        assert new_ids, sessions_of(replicas)
        went_on = lambda now: (all(now[sid]["processed"] > before[sid]["processed"] + 25   # noqa: E731
                                   for sid in kept_ids)
                               and all(now[sid]["processed"] > 0 for sid in new_ids))
        wait_until(lambda: went_on(sessions_of(replicas)["r2"]), 90)

        # r2's viewers never noticed: the same sessions, the same stream, frames all along
        after = sessions_of(replicas)["r2"]
        for v in kept:
            assert MOVED not in v.page.inner_text("body"), v.name
            assert v.frame.locator("button", has_text="STOP").count() == 1, v.name
            # a positive rate, waited for: on a slow machine one second can show none
            assert wait_fps(v.page, timeout_s=60) > 0, v.name
        for sid in kept_ids:
            was, now = before[sid], after[sid]
            assert now["streams"] == was["streams"] == 1, (was, now)
            assert now["processed"] > was["processed"] + 25, (was, now)
        for sid in new_ids:
            assert after[sid]["streaming"] and after[sid]["processed"] > 0, after[sid]
        for v in viewers:
            assert v.page.locator("text=Traceback").count() == 0, v.name
        for r in replicas["replicas"]:
            assert "Traceback" not in Path(r["log"]).read_text(), r["log"]
        assert "replica r1 (port" in replicas["launcher_log"].read_text()
    except BaseException:   # keep what each person saw, for whoever reads the failure
        for v in viewers:
            shot(v.page, output_dir, f"e2e_replicas_failed_{v.name}.png")
        raise
    finally:
        for v in viewers:
            v.page.context.close()
