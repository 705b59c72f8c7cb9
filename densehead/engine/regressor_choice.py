"""Which regressor "auto" means on this machine: the int8 graph only where it is faster.

int8 convolutions need int8 dot-product instructions (VNNI, AMX, Arm's dot product) to beat
float ones; without them XNNPACK's int8 kernels are no faster than its float kernels, and the
int8 graph is a little less accurate. So a CPU without them gets the float mb05 at once; on one
with them both graphs are timed alternately for a fraction of a second and int8 is taken only
when it is clearly faster. The verdict is cached beside the compiled graphs (per CPU, runtime
version, thread count and graph), so later processes decide at once; DENSEHEAD_REGRESSOR forces a name.
"""
from __future__ import annotations

import json
import logging
import os
import statistics
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..core.errors import OptionsError
from ..core.face import ms_since
from ..core.files import atomic_write
from ..core.layout import INPUT_SIZE
from ..core.machine import Machine, this_machine
from ..core.options import (
    AUTO,
    DEFAULT_FLOAT_REGRESSOR,
    INT8,
    REGRESSOR_ENV,
    REGRESSOR_NAMES,
)
from ..weights import assets
from ..weights.compile import regressor_tflite
from .runtime import TFLiteRunner, runtime_version

log = logging.getLogger(__name__)
FLOAT, QUANTIZED = DEFAULT_FLOAT_REGRESSOR, DEFAULT_FLOAT_REGRESSOR + INT8
CHOICES_FILE = "regressor-choice.json"
TIMING_S = 0.3          # time both graphs for about this long, alternating
MIN_CALLS = 10          # ... but at least this many calls of each
INT8_MARGIN = 0.9       # int8 must take under 90% of the float time: noise never flips to int8
_lock = threading.Lock()


@dataclass(frozen=True)
class RegressorChoice:
    name: str                      # the regressor to load: "mb05" or "mb05-int8" (or forced)
    reason: str                    # why, in a sentence for the log and the home page
    float_ms: float | None = None  # median per call when both were timed
    int8_ms: float | None = None


def resolve_regressor(name: str, threads: int, machine: Machine | None = None) -> RegressorChoice:
    """The regressor `name` stands for: itself, or for "auto" the fastest mb05 graph here."""
    if name != AUTO:
        return RegressorChoice(name, "asked for by name")
    forced = os.environ.get(REGRESSOR_ENV, "").strip()
    if forced and forced != AUTO:
        if forced not in REGRESSOR_NAMES:
            raise OptionsError("regressor", f"{forced!r} (from {REGRESSOR_ENV}) is not known; "
                               f"choose one of {', '.join(sorted(REGRESSOR_NAMES))}")
        return RegressorChoice(forced, f"forced by {REGRESSOR_ENV}")
    machine = machine or this_machine()
    if not machine.int8_dot_product:
        return RegressorChoice(FLOAT, "this CPU has no int8 dot-product instructions (VNNI, "
                                      "AMX): int8 would be no faster than float")
    with _lock:
        return _timed_choice(threads, machine)


def _timed_choice(threads: int, machine: Machine) -> RegressorChoice:
    try:
        graphs = {name: _compiled(name) for name in (FLOAT, QUANTIZED)}
    except assets.MissingAssetsError:
        # one error for every file the pipeline needs, not only the regressor's
        assets.resolve_many(assets.default_names(FLOAT))
        raise
    # a new CPU, runtime (its kernels), thread count or graph is timed again
    key = (f"{machine.describe()} | {runtime_version()} | {threads} threads | "
           f"{graphs[FLOAT].name} | {graphs[QUANTIZED].name}")
    cache = assets.compiled_dir() / CHOICES_FILE
    stored = _read(cache).get(key)
    if stored is not None:
        return RegressorChoice(**stored)
    float_ms, int8_ms = time_graphs(graphs[FLOAT], graphs[QUANTIZED], threads)
    faster = int8_ms < INT8_MARGIN * float_ms
    choice = RegressorChoice(
        QUANTIZED if faster else FLOAT,
        f"timed here: int8 {int8_ms:.2f} ms against float {float_ms:.2f} ms per call "
        f"({threads} thread{'s' if threads > 1 else ''})", round(float_ms, 3), round(int8_ms, 3))
    log.info("regressor for auto: %s (%s)", choice.name, choice.reason)
    _write(cache, {**_read(cache), key: asdict(choice)})
    return choice


def time_graphs(float_graph: Path, int8_graph: Path, threads: int) -> tuple[float, float]:
    """Median ms per call of each graph on the same crop, calls alternating between them so a
    busy spell of the machine slows both alike."""
    runners = [TFLiteRunner(float_graph, threads), TFLiteRunner(int8_graph, threads)]
    crop = np.random.default_rng(0).integers(0, 256, (1, INPUT_SIZE, INPUT_SIZE, 3), np.uint8)
    for runner in runners:   # warm up: first calls allocate and pack weights
        for _ in range(3):
            runner(crop)
    times: list[list[float]] = [[], []]
    deadline = time.perf_counter() + TIMING_S
    while time.perf_counter() < deadline or len(times[0]) < MIN_CALLS:
        for runner, spent in zip(runners, times):
            start = time.perf_counter()
            runner(crop)
            spent.append(ms_since(start))
    return statistics.median(times[0]), statistics.median(times[1])


def _compiled(name: str) -> Path:
    paths = assets.resolve_many([assets.REGRESSORS[name], assets.STATS_FILE])
    return regressor_tflite(paths[assets.REGRESSORS[name]], paths[assets.STATS_FILE],
                            assets.compiled_dir(), int8=name.endswith(INT8))


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):   # none yet, or damaged: time again
        return {}


def _write(path: Path, choices: dict) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, json.dumps(choices, indent=1), sync=False)
    except OSError as error:   # a read-only cache: decide again next time
        log.warning("could not cache the regressor choice in %s: %s", path, error)
