"""`densehead serve`: the README's way to run the dashboard starts Streamlit on app.py in the
checkout, with two malloc arenas unless the user chose a number."""
from __future__ import annotations

import http.client
import os
import time
from pathlib import Path

import pytest

from densehead.dashboard.proxy import UPSTREAM_IDLE_S
from densehead.tools.browser import ROOT, AppServer

pytestmark = pytest.mark.slow  # starts the dashboard server


def _environ(pid: int) -> dict[str, str]:
    pairs = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(p.decode().split("=", 1) for p in pairs if b"=" in p)


def _cmdline(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")


@pytest.mark.parametrize("given, expected", [("", "2"), ("4", "4")])
def test_serve_runs_the_app_with_few_malloc_arenas(tmp_path, given, expected):
    with AppServer(tmp_path / "server.log", env={"MALLOC_ARENA_MAX": given}) as server:
        pid = server.proc.pid  # serve replaced itself with Streamlit: the same process answers
        assert _environ(pid)["MALLOC_ARENA_MAX"] == expected
        assert _cmdline(pid)[1:5] == ["-m", "streamlit", "run", "app.py"]
        # Streamlit reads .streamlit/config.toml from its working directory
        assert Path(os.readlink(f"/proc/{pid}/cwd")) == ROOT


def test_serve_outside_a_checkout_says_what_is_missing(tmp_path, monkeypatch):
    from densehead.dashboard import serve

    monkeypatch.chdir(tmp_path)                       # run in an empty folder ...
    with pytest.raises(OSError, match="app.py not found"):
        serve.app_folder(checkout=tmp_path)           # ... as if installed from a wheel


def test_a_replica_keeps_an_idle_connection_longer_than_the_proxy_does(tmp_path):
    """The replicas' proxy reuses an idle connection to a replica for UPSTREAM_IDLE_S at most;
    the replica must not close it sooner, or the proxy sends a browser's request down a
    connection being closed, counts the replica as down and moves the browser's cookie to
    another one while its session stays behind (seen on a busy machine, when the proxy kept
    connections for 60 s and Streamlit's server closed them after 5)."""
    with AppServer(tmp_path / "server.log") as server:
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        connection.request("GET", "/_stcore/health")
        assert connection.getresponse().read() == b"ok"
        time.sleep(UPSTREAM_IDLE_S + 1)   # idle a second longer than the proxy would keep it
        connection.request("GET", "/_stcore/health")   # on the same connection
        assert connection.getresponse().read() == b"ok"
        connection.close()
