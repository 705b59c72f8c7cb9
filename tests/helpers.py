"""Small shared pieces for the tests: ground truth of the AFLW2000-3D samples, pipeline cache."""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from functools import lru_cache
from pathlib import Path
from typing import Iterator

from paths import ROOT, SAMPLES


@lru_cache(maxsize=None)
def aflw_ground_truth() -> dict:
    return json.loads((SAMPLES / "aflw2000" / "ground_truth.json").read_text())


def aflw_items() -> list[dict]:
    """The 61 annotated images; `image` is a path relative to the samples directory."""
    return aflw_ground_truth()["images"]


@lru_cache(maxsize=None)
def shared_pipeline():
    """The float mb05 whatever the CPU: "auto" takes the int8 graph on CPUs with VNNI, whose
    fits differ a little, and the tests' tolerances must hold on every machine alike (the int8
    graph's own accuracy is tested in test_compile.py, the choice in test_regressor_choice.py)."""
    from densehead import Pipeline

    return Pipeline(regressor="mb05")


def image_path(item: dict) -> Path:
    return SAMPLES / item["image"]


def turned_aflw(k: int) -> list[tuple]:
    """The 61 samples as np.rot90(image, k) and their ground-truth landmarks in its pixels:
    (name, turned image, landmarks, pose in degrees)."""
    import numpy as np

    from densehead.engine.turns import turn_frame, unturn_points
    from densehead.io.image import read_image

    out = []
    for item in aflw_items():
        turned = turn_frame(read_image(image_path(item)), k)
        # the frame's points are where np.rot90(turned, -k) puts them: undo that turn
        gt = unturn_points(np.array(item["landmarks68"]) - 1.0, -k, turned.shape)
        out.append((item["image"], turned, gt, item["pose_deg"]))
    return out


def turned_distance(face, candidates: list, k: int, shape: tuple[int, ...]) -> float:
    """Mean landmark distance, in face sizes (sqrt of its landmark box's area), from `face` to
    the nearest of `candidates`, faces found in np.rot90 of its picture by k, put back."""
    import numpy as np

    from densehead.core.boxes import landmark_box
    from densehead.engine.turns import unturn_points

    box = landmark_box(face.landmarks)
    size = np.sqrt((box[2] - box[0]) * (box[3] - box[1]))
    return min(float(np.linalg.norm(unturn_points(c.landmarks, k, shape)[:, :2]
                                    - face.landmarks[:, :2], axis=1).mean() / size)
               for c in candidates)


def two_people_lying(pipe, found: int = 5, missed: int = 2) -> list:
    """Pictures of two AFLW2000 samples side by side, to be turned a quarter (np.rot90, k=1) as
    a picture taken sideways: the first of each pair a face the detector finds as it lies there,
    the second one it does not. `found` x `missed` pairs."""
    import numpy as np

    from densehead.engine.turns import turn_frame
    from densehead.io.image import read_image

    upright_only = pipe.with_options(mirror_fallback=False, rotated_fallback=False)
    images = [read_image(image_path(item)) for item in aflw_items()]
    seen = [bool(upright_only(turn_frame(image, 1)).faces) for image in images]
    firsts = [image for image, s in zip(images, seen) if s][:found]
    seconds = [image for image, s in zip(images, seen) if not s][:missed]
    return [np.concatenate([a, b], axis=1) for a in firsts for b in seconds]


class FakeClock:
    """A settable clock reading `t` seconds from `start`, moved by the test, so that rates, lags
    and time windows are checked exactly (not a stand-in for a model)."""

    def __init__(self, start: float) -> None:
        self.t = start

    def __call__(self) -> float:
        return self.t


def run_coroutine(coroutine):
    """`asyncio.run(coroutine)` on a thread of its own: in a whole run, the browser tests'
    Playwright (a session fixture) keeps an event loop running on the main thread, where
    asyncio.run refuses to start another."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


@contextlib.contextmanager
def ctrl_c_as_from_a_terminal() -> Iterator[None]:
    """This process, and processes started inside, get Ctrl-C (SIGINT) at its default, as from a
    terminal, also when the suite itself runs in the background (`pytest &` ignores SIGINT, an
    ignored signal is inherited through exec, and Python then installs no KeyboardInterrupt
    handler): a Ctrl-C sent to this process then raises KeyboardInterrupt."""
    ignored = signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    if ignored:
        signal.signal(signal.SIGINT, signal.default_int_handler)  # a handler is reset on exec
    try:
        yield
    finally:
        if ignored:
            signal.signal(signal.SIGINT, signal.SIG_IGN)


def alive(pid: int) -> bool:
    """Whether process `pid` is running (a zombie waiting for its reaper counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def cli_command(*args: str) -> list[str]:
    """The command line of `python -m densehead ARGS`, with this interpreter."""
    return [sys.executable, "-m", "densehead", *args]


def run_cli(*args: str, cwd: Path = ROOT, timeout: float = 300,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`python -m densehead ARGS` run in `cwd` as a user runs it, its output captured as text;
    `env` is this process's environment unless given."""
    return subprocess.run(cli_command(*args), cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=os.environ.copy() if env is None else env)


PRINT_PEAK_RSS = """
# VmHWM: this process's own peak; ru_maxrss would report the parent's (kept across exec)
with open("/proc/self/status") as status:
    print("peak_mb", next(int(l.split()[1]) for l in status if l.startswith("VmHWM")) // 1024)
"""


def run_with_peak_rss(code: str, *args: str, timeout: float = 120) -> tuple[str, int]:
    """`code` run by a fresh Python in the checkout with `args` as sys.argv[1:], so that a
    crash fails the test instead of killing the test run: what it printed (stripped) and its
    peak resident memory in MB."""
    result = subprocess.run([sys.executable, "-c", code + PRINT_PEAK_RSS, *args], cwd=ROOT,
                            capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"the child crashed ({result.returncode}): {result.stderr}"
    printed, peak = result.stdout.strip().rsplit("\n", 1)
    return printed, int(peak.split()[1])


def one_line_error(result: subprocess.CompletedProcess, *words: str) -> None:
    """The command failed (exit 1) with one `densehead: error:` line holding `words`."""
    assert result.returncode == 1, result.stdout + result.stderr
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("densehead: error:")]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for word in words:
        assert word in lines[0], lines[0]


def closed_port_url() -> str:
    """An http URL on loopback where nothing listens: a download from it fails at once."""
    from densehead.tools.browser import free_port

    return f"http://127.0.0.1:{free_port()}"
