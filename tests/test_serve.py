"""`densehead serve`: the README's way to run the dashboard starts Streamlit on app.py in the
checkout, with two malloc arenas unless the user chose a number."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

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
