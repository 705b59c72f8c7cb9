"""Starting the dashboard the way it should run for days: `streamlit run app.py` in the
checkout, with two malloc arenas (MALLOC_ARENA_MAX=2).

The live page frees 0.1-1 MB video frames on many threads; with glibc's default of 8 arenas per
core their free space fragments and the server's memory grows a few MB a minute, with 2 it
stays flat (docs/measurements.md, Soak). glibc reads the setting only when a process starts,
before Streamlit's threads exist, so the app cannot set it itself: `exec_streamlit` sets it and
replaces the process with Streamlit.
"""
from __future__ import annotations

import os
import sys
import urllib.request
from pathlib import Path

ARENAS_ENV = "MALLOC_ARENA_MAX"
ARENAS = "2"
CHECKOUT = Path(__file__).resolve().parents[2]   # where app.py, pages/ and .streamlit/ are
# TFLite threads per model, and OpenCV's threads, in the server. One: a second thread saves little
# wall time on these small models and 640x480 conversions but spins on the other core, which a
# server with live streams needs (one thread costs less CPU per frame for both:
# docs/measurements.md, The live page as a server); set 2 for one user.
THREADS_ENV, DEFAULT_THREADS = "DENSEHEAD_THREADS", 1


def app_folder(checkout: Path | None = None) -> Path:
    """The checkout holding app.py: the one this package was installed from (pip install -e),
    else the current directory."""
    for folder in (checkout or CHECKOUT, Path.cwd()):
        if (folder / "app.py").is_file() and (folder / "pages").is_dir():
            return folder
    raise OSError("app.py not found: `densehead serve` runs the dashboard of a densehead checkout; "
                  "run it there (pip install -r requirements.txt installs it in place)")


def answers_health(base_url: str) -> bool:
    """True when the Streamlit server at `base_url` (http://host:port) says it serves: its
    health endpoint answers "ok"."""
    try:
        with urllib.request.urlopen(f"{base_url}/_stcore/health", timeout=2) as response:
            return response.read().strip() == b"ok"
    except OSError:
        return False


def streamlit_command(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "streamlit", "run", "app.py", *args]


def exec_streamlit(args: list[str]) -> None:
    """Replace this process with `streamlit run app.py ARGS` in the app's folder."""
    try:
        import streamlit  # noqa: F401  (only to fail here with a clear message)
    except ImportError:
        raise OSError("the dashboard needs Streamlit: pip install -r requirements.txt") from None
    folder = app_folder()
    if not os.environ.get(ARENAS_ENV):
        os.environ[ARENAS_ENV] = ARENAS
    # Streamlit reads .streamlit/config.toml from the working directory: the app's settings
    # (no post-script GC, no file watcher) hold only when it runs in the app's folder.
    os.chdir(folder)
    print(f"densehead serve: streamlit run app.py in {folder} with "
          f"{ARENAS_ENV}={os.environ[ARENAS_ENV]}", file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, streamlit_command(args))
