"""`densehead benchmark-mediapipe`: the whole frame against MediaPipe Face Mesh, side by side.

MediaPipe runs in a Python of its own (it needs numpy < 2), started on
densehead/tools/mediapipe_worker.py; densehead runs in a second process started on this module
(`--serve`), with its defaults (regressor auto, 2 threads, every face). Both get the same
decoded frames (BGR) and answer rounds of N frames with the milliseconds of each; the rounds
alternate which goes first, so a busy spell of the machine slows both alike. With `--kernels
avx2` both compute with an AVX2-only CPU's kernels: ours through densehead.tools.avx2_numerics,
MediaPipe's through the same CPUID mask where it can be built (any MediaPipe version), else
through the hardware config of MediaPipe's own XNNPACK (0.10.21 only). That is the side by side
of an AVX2-only CPU, with this CPU's clocks and caches. The product never imports this module.
"""
from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np

from ..core.processes import stop_process
from .mediapipe_worker import answer_rounds

WORKER = Path(__file__).with_name("mediapipe_worker.py")
KINDS = {"static": "a detection on every frame (MediaPipe static_image_mode)",
         "tracked": "tracked (MediaPipe's video mode)"}
WARMUP_FRAMES = 20


class BenchmarkError(ValueError):
    """A side could not be started or answered nonsense: one line for the user."""


@dataclass
class Side:
    name: str
    process: subprocess.Popen
    log: Path                 # its stderr (a file: a pipe nobody reads could fill and block it)
    version: str = ""

    def ask(self, kind: str, frames: int) -> dict:
        assert self.process.stdin is not None and self.process.stdout is not None
        try:
            self.process.stdin.write(f"{kind} {frames}\n")
            self.process.stdin.flush()
        except BrokenPipeError:
            raise BenchmarkError(f"{self.name} stopped: {_last_words(self)}") from None
        return self._answer()

    def _answer(self) -> dict:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise BenchmarkError(f"{self.name} stopped: {_last_words(self)}")
        return json.loads(line)


@dataclass
class Row:
    kind: str
    ours_ms: float
    theirs_ms: float
    ours_found: int
    theirs_found: int
    frames: int

    @property
    def ratio(self) -> float:
        return self.ours_ms / self.theirs_ms


def run(python: Path, frames: list[np.ndarray], rounds: int, per_round: int,
        kernels: str) -> tuple[list[Row], str, str]:
    """Time both sides; the rows and each side's version line."""
    with tempfile.TemporaryDirectory(prefix="densehead-mediapipe-") as work:
        path = Path(work) / "frames.npy"
        np.save(path, np.stack(frames))
        starts = [("densehead", _ours(path, kernels, Path(work))),
                  ("MediaPipe", _theirs(python, path, kernels, Path(work)))]
        sides: list[Side] = []
        try:
            for name, (command, env) in starts:
                sides.append(_start(name, command, env, Path(work) / f"{name}.log"))
            return _rounds(sides, rounds, per_round), sides[0].version, sides[1].version
        finally:
            for side in sides:
                _stop(side.process)


def _ours(frames: Path, kernels: str, work: Path) -> tuple[list[str], dict[str, str] | None]:
    command = [sys.executable, "-m", __name__, "--serve", str(frames)]
    if kernels == "native":
        return command, None
    from .avx2_numerics import environment

    site = work / "site"
    site.mkdir()
    return command, environment(kernels, site)


def _theirs(python: Path, frames: Path, kernels: str,
            work: Path) -> tuple[list[str], dict[str, str] | None]:
    command = [str(python), str(WORKER), str(frames)]
    if kernels == "native":
        return command, None
    from .avx2_numerics import build_cpuid_mask

    mask, _ = build_cpuid_mask(work)
    if mask is None:   # MediaPipe's XNNPACK config rewritten instead: one version known
        return command + ["--kernels", "avx2"], None
    return command + ["--kernels", "cpuid"], dict(os.environ, LD_PRELOAD=str(mask))


def _start(name: str, command: list[str], env: dict[str, str] | None, log: Path) -> Side:
    try:
        with log.open("w") as errors:
            process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                       stderr=errors, text=True, env=env)
    except OSError as e:
        raise BenchmarkError(f"could not start {name} with {command[0]}: {e}") from None
    side = Side(name, process, log)
    ready = side._answer()
    side.version = ready.get("ready", "")
    return side


def _rounds(sides: list[Side], rounds: int, per_round: int) -> list[Row]:
    rows = []
    for kind in KINDS:
        times: dict[str, list[float]] = {s.name: [] for s in sides}
        found = dict.fromkeys(times, 0)
        for side in sides:
            side.ask(kind, WARMUP_FRAMES)
        for index in range(rounds):
            for side in sides if index % 2 == 0 else sides[::-1]:
                answer = side.ask(kind, per_round)
                times[side.name] += answer["ms"]
                found[side.name] += answer["found"]
        ours, theirs = (s.name for s in sides)
        rows.append(Row(kind, statistics.median(times[ours]), statistics.median(times[theirs]),
                        found[ours], found[theirs], rounds * per_round))
    return rows


def _stop(process: subprocess.Popen) -> None:
    if process.stdin is not None:
        with contextlib.suppress(BrokenPipeError):   # it stopped already
            process.stdin.close()
    stop_process(process, 30, terminate=False)   # a closed stdin is its sign to end


def _last_words(side: Side) -> str:
    """The last line a side that stopped wrote on stderr (its error), or its exit code."""
    _stop(side.process)
    lines = side.log.read_text(errors="replace").strip().splitlines()
    return lines[-1] if lines else f"exit code {side.process.returncode}"


def format_table(rows: list[Row]) -> str:
    lines = [f"{'':58s} {'densehead':>10s} {'MediaPipe':>10s} {'ratio':>6s}  faces found"]
    for row in rows:
        lines.append(f"{KINDS[row.kind]:58s} {row.ours_ms:7.2f} ms {row.theirs_ms:7.2f} ms "
                     f"{row.ratio:6.2f}  {row.ours_found} / {row.theirs_found} of {row.frames}")
    return "\n".join(lines)


# -- densehead's side -----------------------------------------------------------------------

def serve(frames_path: Path, stdin: IO[str], stdout: IO[str]) -> int:
    """Answer "static N" / "tracked N" lines for densehead, as the MediaPipe worker does."""
    from ..engine.pipeline import Pipeline
    from ..engine.runtime import runtime_version
    from ..engine.tracking import FaceTracker

    pipeline = Pipeline()
    tracker = FaceTracker(pipeline)
    calls = {"static": lambda frame: bool(pipeline(frame).faces),
             "tracked": lambda frame: bool(tracker(frame).faces)}
    o = pipeline.options
    threads = f"{o.num_threads} TFLite threads" + (" or 1, whichever is faster lately"
                                                   if o.adapt_threads else "")
    answer_rounds(np.load(frames_path), calls,
                  f"densehead, regressor {o.regressor}, {threads}, {runtime_version()}",
                  stdin, stdout)
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--serve":
        sys.exit(serve(Path(sys.argv[2]), sys.stdin, sys.stdout))
    sys.exit("run `densehead benchmark-mediapipe`")
