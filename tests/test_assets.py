"""Model-file resolution against a real HTTP server on 127.0.0.1 (never the internet)."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from helpers import closed_port_url

from densehead.weights import assets, download, hashing

SMALL = "param_mean_std_62d_120x120.pkl"  # 713 bytes
MEDIUM = "RFB-320.tflite"  # 1.1 MB: several chunks, so a transfer can be cut in the middle
TRICKLE_INTERVAL_S = 2.0  # a trickling server sends 1 KB this often...
TRICKLE_CHUNKS = 10  # ...this many times, then hangs up (so that no test can hang on it)
FLOOD_BYTES = 300 << 20  # what a flooding server sends instead of a 713-byte file


@dataclass
class Behaviour:
    """What the server does per file: serve it, alter it, or drop the connection halfway."""

    corrupt: set[str] = field(default_factory=set)
    truncate: set[str] = field(default_factory=set)
    requests: list[str] = field(default_factory=list)
    trickle: set[str] = field(default_factory=set)  # 1 KB per TRICKLE_INTERVAL_S
    flood: dict[str, bool] = field(default_factory=dict)  # name -> announce the length?
    failures: dict[str, int] = field(default_factory=dict)  # name -> 503s before serving
    sent: dict[str, int] = field(default_factory=dict)  # body bytes written, per name


class FileServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, root: Path, behaviour: Behaviour) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.root = root
        self.behaviour = behaviour


class Handler(BaseHTTPRequestHandler):
    server: FileServer

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        name = self.path.lstrip("/")
        b = self.server.behaviour
        b.requests.append(name)
        path = self.server.root / name
        if "/" in name or not path.is_file():
            self.send_error(404)
            return
        if b.failures.get(name, 0) > 0:
            b.failures[name] -= 1
            self.send_error(503)
            return
        if name in b.flood:
            self.flood(name, announce=b.flood[name])
            return
        data = path.read_bytes()
        if name in b.corrupt:
            data = data[:-1] + bytes([data[-1] ^ 0xFF])
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if name in b.trickle:
            self.trickle(name, data)
            return
        if name in b.truncate:
            # announce the full length, send half, hang up: a server dying mid-transfer
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return
        self.wfile.write(data)

    def count(self, name: str, n: int) -> None:
        sent = self.server.behaviour.sent
        sent[name] = sent.get(name, 0) + n

    def trickle(self, name: str, data: bytes) -> None:
        """The right file, so slowly that it would take the better part of an hour."""
        try:
            for i in range(TRICKLE_CHUNKS):
                self.wfile.write(data[i * 1024:(i + 1) * 1024])
                self.wfile.flush()
                self.count(name, 1024)
                time.sleep(TRICKLE_INTERVAL_S)
        except OSError:
            pass  # the client gave up
        self.close_connection = True

    def flood(self, name: str, announce: bool) -> None:
        """300 MB of zeros for a small file, with or without saying so up front."""
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        if announce:
            self.send_header("Content-Length", str(FLOOD_BYTES))
        self.end_headers()
        block = bytes(64 << 10)
        try:
            for _ in range(FLOOD_BYTES // len(block)):
                self.wfile.write(block)
                self.count(name, len(block))
        except OSError:
            pass  # the client hung up
        self.close_connection = True

    def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
        pass


@dataclass
class Mirror:
    url: str
    behaviour: Behaviour


@pytest.fixture
def served(tmp_path: Path, assets_dir: Path) -> Path:
    root = tmp_path / "served"
    root.mkdir()
    for name in (SMALL, MEDIUM):
        shutil.copy(assets_dir / name, root / name)
    return root


@pytest.fixture
def mirror(served: Path) -> Iterator[Mirror]:
    behaviour = Behaviour()
    server = FileServer(served, behaviour)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield Mirror(f"http://127.0.0.1:{server.server_address[1]}", behaviour)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty cache, no explicit directory, and no proxy between us and 127.0.0.1."""
    monkeypatch.setenv("DENSEHEAD_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DENSEHEAD_ASSETS", raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("DENSEHEAD_MIRROR", closed_port_url())
    monkeypatch.setattr(download, "RETRY_BACKOFF_S", 0.05)  # retries, without the wait
    return tmp_path / "home"


def use_mirror(monkeypatch: pytest.MonkeyPatch, mirror: Mirror) -> None:
    monkeypatch.setenv("DENSEHEAD_MIRROR", mirror.url)


def trusted_files(cache: Path) -> list[str]:
    """Names a later run would pick up (temporary .part files are never looked at)."""
    return sorted(p.name for p in cache.glob("*")) if cache.exists() else []


def test_registry_hashes_match_offline_copies(assets_dir: Path) -> None:
    for name in ("RFB-320.tflite", "mb05_120x120.pth", SMALL, "tri.pkl"):
        spec = assets.REGISTRY[name]
        assert (assets_dir / name).stat().st_size == spec.size
        assert assets.git_blob_sha1(assets_dir / name) == spec.sha1
    assert assets.REGISTRY[SMALL].url == (
        "https://raw.githubusercontent.com/cleardusk/3DDFA_V2/"
        "1b6c67601abffc1e9f248b291708aef0e43b55ae/configs/param_mean_std_62d_120x120.pkl")


def test_good_download_is_cached_and_reused(home: Path, mirror: Mirror, assets_dir: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    use_mirror(monkeypatch, mirror)
    path = assets.resolve(SMALL)
    assert path == home / SMALL
    assert path.read_bytes() == (assets_dir / SMALL).read_bytes()
    assert assets.resolve(SMALL) == path
    assert mirror.behaviour.requests == [SMALL], "second resolve must come from the cache"
    assert trusted_files(home) == [SMALL]


def test_corrupted_download_is_rejected(home: Path, mirror: Mirror,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    use_mirror(monkeypatch, mirror)
    mirror.behaviour.corrupt.add(SMALL)
    with pytest.raises(assets.AssetVerificationError) as info:
        assets.resolve(SMALL)
    message = str(info.value)
    assert SMALL in message and "not the official" in message
    assert assets.REGISTRY[SMALL].sha1 in message
    assert trusted_files(home) == [] and not list(home.glob(".*.part"))
    mirror.behaviour.corrupt.clear()
    assert assets.git_blob_sha1(assets.resolve(SMALL)) == assets.REGISTRY[SMALL].sha1


def test_dropped_connection_then_recovery(home: Path, mirror: Mirror,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    use_mirror(monkeypatch, mirror)
    mirror.behaviour.truncate.add(MEDIUM)
    with pytest.raises(assets.MissingAssetsError, match="dropped during the transfer") as info:
        assets.resolve(MEDIUM)
    assert MEDIUM in str(info.value)
    assert trusted_files(home) == [] and not list(home.glob(".*.part"))
    mirror.behaviour.truncate.clear()
    path = assets.resolve(MEDIUM)
    assert assets.git_blob_sha1(path) == assets.REGISTRY[MEDIUM].sha1


def test_server_gone_then_back(home: Path, served: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    behaviour = Behaviour()
    server = FileServer(served, behaviour)
    url = f"http://127.0.0.1:{server.server_address[1]}"
    server.server_close()  # the port is known, nothing listens on it
    monkeypatch.setenv("DENSEHEAD_MIRROR", url)
    with pytest.raises(assets.MissingAssetsError, match="connection refused"):
        assets.resolve(SMALL)
    assert trusted_files(home) == []


def test_bad_cache_entry_is_replaced(home: Path, mirror: Mirror,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    use_mirror(monkeypatch, mirror)
    home.mkdir(parents=True)
    (home / SMALL).write_bytes(b"half a file")
    with pytest.warns(RuntimeWarning, match="failed verification"):
        path = assets.resolve(SMALL)
    assert assets.git_blob_sha1(path) == assets.REGISTRY[SMALL].sha1
    assert mirror.behaviour.requests == [SMALL]


def test_no_download_when_not_allowed(home: Path) -> None:
    with pytest.raises(assets.MissingAssetsError, match="not allowed"):
        assets.resolve(SMALL, download=False)


def test_assets_dir_wins_over_cache(home: Path, tmp_path: Path, assets_dir: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    explicit = tmp_path / "explicit"
    explicit.mkdir()
    home.mkdir(parents=True)
    for d in (explicit, home):
        shutil.copy(assets_dir / SMALL, d / SMALL)
    monkeypatch.setenv("DENSEHEAD_ASSETS", str(explicit))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an official file must load silently
        assert assets.resolve(SMALL) == explicit / SMALL
    # a file missing from the explicit directory still comes from the cache
    (explicit / SMALL).unlink()
    assert assets.resolve(SMALL) == home / SMALL


def test_standin_bfm_warns(home: Path, assets_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DENSEHEAD_ASSETS", str(assets_dir))
    with pytest.warns(assets.UnofficialAssetWarning, match="not the official") as record:
        path = assets.resolve("bfm_noneck_v3.pkl")
    assert path == assets_dir / "bfm_noneck_v3.pkl"
    assert "bfm_noneck_v3.pkl" in str(record[0].message)
    # the 24 MB hash is computed once per process, not on every call
    key_count = len(hashing._hash_cache)
    with pytest.warns(assets.UnofficialAssetWarning):
        assets.resolve("bfm_noneck_v3.pkl")
    assert len(hashing._hash_cache) == key_count


def test_offline_names_every_missing_file(home: Path) -> None:
    names = assets.default_names("mb05")
    with pytest.raises(assets.MissingAssetsError) as info:
        assets.resolve_many(names)
    message = str(info.value)
    assert [m.name for m in info.value.missing] == list(names)
    for name in names:
        assert name in message
        assert assets.REGISTRY[name].url in message
    assert str(home) in message and "DENSEHEAD_ASSETS" in message
    assert "Traceback" not in message and trusted_files(home) == []


def test_offline_auto_names_every_missing_file_at_once(home: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """On a CPU where "auto" times both regressor graphs, an offline user learns of every
    missing file in one message, not of the regressor's first and the rest on the next run."""
    from densehead.core.machine import Machine
    from densehead.engine.regressor_choice import REGRESSOR_ENV, resolve_regressor

    monkeypatch.delenv(REGRESSOR_ENV, raising=False)
    vnni = Machine("a CPU with VNNI", 2, ("avx2", "avx512f", "avx512_vnni"))
    with pytest.raises(assets.MissingAssetsError) as info:
        resolve_regressor("auto", 2, machine=vnni)
    assert sorted(m.name for m in info.value.missing) == sorted(assets.default_names("mb05"))


def test_a_mistyped_assets_folder_is_called_so(home: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DENSEHEAD_ASSETS", str(tmp_path / "asset"))   # "assets" mistyped
    with pytest.raises(assets.MissingAssetsError) as info:
        assets.resolve_many(assets.default_names("mb05"))
    assert str(info.value).splitlines()[0] == (
        f"DENSEHEAD_ASSETS names {tmp_path / 'asset'}, which is not a folder: is it mistyped?")


def test_status_does_not_download(home: Path, tmp_path: Path, assets_dir: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    explicit = tmp_path / "explicit"
    explicit.mkdir()
    shutil.copy(assets_dir / "bfm_noneck_v3.pkl", explicit / "bfm_noneck_v3.pkl")
    home.mkdir(parents=True)
    shutil.copy(assets_dir / SMALL, home / SMALL)
    monkeypatch.setenv("DENSEHEAD_ASSETS", str(explicit))
    rows = {s.name: s for s in assets.status()}
    assert set(rows) == set(assets.REGISTRY)
    assert rows["bfm_noneck_v3.pkl"].source == "assets-dir"
    assert rows["bfm_noneck_v3.pkl"].official is False
    assert rows[SMALL].source == "cache" and rows[SMALL].official is True
    assert rows["tri.pkl"].source == "missing" and rows["tri.pkl"].path is None
    assert rows["tri.pkl"].official is None


def test_fetch_command(home: Path, mirror: Mirror, monkeypatch: pytest.MonkeyPatch,
                       capsys: pytest.CaptureFixture[str]) -> None:
    use_mirror(monkeypatch, mirror)
    from densehead.cli import main

    assert main(["fetch", SMALL, MEDIUM]) == 0
    out = capsys.readouterr().out
    assert SMALL in out and MEDIUM in out and "official" in out and str(home) in out
    assert main(["fetch", "tri.pkl"]) == 1  # not on the mirror
    assert "tri.pkl" in capsys.readouterr().out


TEXTURE_FILES = ("BFM_UV.mat", "indices.npy")  # only the textured export needs them


def test_texture_files_are_pinned_like_the_other_upstream_files(assets_dir: Path) -> None:
    for name in TEXTURE_FILES:
        spec = assets.REGISTRY[name]
        assert (spec.repo, spec.commit) == (assets.REGISTRY["tri.pkl"].repo,
                                            assets.REGISTRY["tri.pkl"].commit)
        assert spec.url.endswith(f"/configs/{name}")
        assert (assets_dir / name).stat().st_size == spec.size
        assert assets.git_blob_sha1(assets_dir / name) == spec.sha1


def test_texture_files_download_on_demand_and_with_fetch_all(
        home: Path, served: Path, mirror: Mirror, assets_dir: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from densehead.io import texture

    for regressor in assets.REGRESSORS:
        assert not set(TEXTURE_FILES) & set(assets.default_names(regressor))
    for name in TEXTURE_FILES:
        shutil.copy(assets_dir / name, served / name)
    use_mirror(monkeypatch, mirror)
    uv = texture.load_uv()  # the first textured export resolves (downloads, verifies) both
    assert uv.shape == (38365, 2) and trusted_files(home) == sorted(TEXTURE_FILES)
    from densehead.cli import main

    assert main(["fetch", "--all"]) == 1  # the other files are not on this mirror
    lines = capsys.readouterr().out.splitlines()
    for name in TEXTURE_FILES:
        row = next(line for line in lines if line.startswith(name + " "))
        assert "official" in row and "cache" in row


def test_texture_files_missing_offline_are_named(home: Path) -> None:
    from densehead.io import texture

    with pytest.raises(assets.MissingAssetsError) as info:
        texture.load_uv()
    message = str(info.value)
    for name in TEXTURE_FILES:
        assert name in message and assets.REGISTRY[name].url in message
    assert "Traceback" not in message and trusted_files(home) == []


# --- hostile servers and killed downloads -----------------------------------------------------

def test_trickling_server_meets_the_deadline(home: Path, mirror: Mirror,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    use_mirror(monkeypatch, mirror)
    monkeypatch.setenv("DENSEHEAD_DOWNLOAD_DEADLINE", "1")
    mirror.behaviour.trickle.add(MEDIUM)
    with pytest.raises(assets.MissingAssetsError, match="longer than its 1 s deadline") as info:
        assets.resolve(MEDIUM)
    assert "DENSEHEAD_DOWNLOAD_DEADLINE" in str(info.value)
    # given up after the first slow chunk or two, not after the whole file (or the server)
    assert mirror.behaviour.sent[MEDIUM] <= 3 * 1024
    assert mirror.behaviour.requests == [MEDIUM], "a deadline is final: no retry"
    assert trusted_files(home) == [] and not list(home.glob(".*.part"))


@pytest.mark.parametrize("announce", [True, False], ids=["length-announced", "no-length"])
def test_oversized_response_is_cut_at_the_known_size(home: Path, mirror: Mirror, announce: bool,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    use_mirror(monkeypatch, mirror)
    mirror.behaviour.flood[SMALL] = announce
    with pytest.raises(assets.MissingAssetsError, match="713 bytes") as info:
        assets.resolve(SMALL)
    assert "nothing was kept" in str(info.value)
    assert trusted_files(home) == [] and not list(home.glob(".*.part"))
    # the client hung up at once: the server got rid of no more than its socket buffers hold
    assert mirror.behaviour.sent.get(SMALL, 0) < FLOOD_BYTES // 10
    assert mirror.behaviour.requests == [SMALL], "an oversized file is not asked for again"


def test_unknown_sizes_have_a_cap() -> None:
    for spec in assets.REGISTRY.values():
        assert spec.byte_cap >= (spec.size or 1)
    assert assets.REGISTRY["bfm_noneck_v3.pkl"].byte_cap == 128 << 20
    assert assets.REGISTRY["mb1_120x120.pth"].byte_cap == 64 << 20


def test_failing_server_is_retried_with_backoff(home: Path, mirror: Mirror, assets_dir: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    use_mirror(monkeypatch, mirror)
    mirror.behaviour.failures[SMALL] = 2  # 503, 503, then the file
    started = time.monotonic()
    path = assets.resolve(SMALL)
    assert time.monotonic() - started >= 0.05 + 0.1  # it waited, doubling, between attempts
    assert path.read_bytes() == (assets_dir / SMALL).read_bytes()
    assert mirror.behaviour.requests == [SMALL] * 3
    # a server that keeps failing is given up after the last attempt, with the reason
    mirror.behaviour.failures[MEDIUM] = 10
    with pytest.raises(assets.MissingAssetsError, match=r"HTTP 503.*\(after 3 attempts\)"):
        assets.resolve(MEDIUM)
    assert mirror.behaviour.requests.count(MEDIUM) == download.DOWNLOAD_ATTEMPTS == 3
    assert trusted_files(home) == [SMALL] and not list(home.glob(".*.part"))


def _child_env(home: Path, mirror_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "DENSEHEAD_ASSETS"}
    env.update(DENSEHEAD_HOME=str(home), DENSEHEAD_MIRROR=mirror_url,
               NO_PROXY="127.0.0.1,localhost")
    return env


def _wait_for(condition, what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_killed_download_leaves_nothing_for_the_next_run(home: Path, mirror: Mirror,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    use_mirror(monkeypatch, mirror)
    mirror.behaviour.trickle.add(MEDIUM)
    child = subprocess.Popen(
        [sys.executable, "-c", f"from densehead.weights import assets; assets.resolve({MEDIUM!r})"],
        env=_child_env(home, mirror.url), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for(lambda: mirror.behaviour.sent.get(MEDIUM, 0) > 0, "the download to start")
        parts = list(home.glob(f".{MEDIUM}.*.part"))
        assert len(parts) == 1
        # while its owner lives, a second download leaves the partial file alone
        mirror.behaviour.trickle.clear()
        download._remove_stale_parts(home, MEDIUM)
        assert parts[0].exists()
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
    assert parts[0].exists(), "the killed download left its partial file behind"
    path = assets.resolve(MEDIUM)  # the next run, a minute or a month later
    assert assets.git_blob_sha1(path) == assets.REGISTRY[MEDIUM].sha1
    assert not list(home.glob(".*.part"))
