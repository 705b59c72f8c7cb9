"""`densehead benchmark-mediapipe`: the whole frame against MediaPipe Face Mesh, side by side."""
from __future__ import annotations

import argparse
import platform
from pathlib import Path
from typing import Any

from ..core.machine import this_machine
from .options import parse_size

DESCRIPTION = """The whole frame, densehead (Pipeline with a detection on every frame, and
FaceTracker) against MediaPipe Face Mesh (static_image_mode, and its video mode; one face), on the
same frames, in two processes answering alternating rounds; median ms per frame, the ratio
densehead / MediaPipe, faces found, and the machine line. MediaPipe's time includes the BGR to
RGB conversion it needs. MediaPipe needs numpy < 2, so it runs in a Python of its own:

    python -m venv mpvenv && mpvenv/bin/pip install mediapipe==0.10.21
    densehead benchmark-mediapipe --python mpvenv/bin/python -f video.mp4 --resize 640x480

--kernels avx2 makes both compute with XNNPACK's AVX2 kernels (on an x86-64 CPU with more: the
side by side of an AVX2-only CPU, with this CPU's clocks and caches)."""


def add_cli(sub: Any) -> None:
    p = sub.add_parser("benchmark-mediapipe", help="the whole frame against MediaPipe Face Mesh "
                       "(needs a Python with mediapipe)", description=DESCRIPTION,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--python", type=Path, required=True,
                   help="the Python of a virtualenv with mediapipe installed")
    p.add_argument("-f", "--file", type=Path, required=True, help="video to run on")
    p.add_argument("--resize", help="resize frames to WxH first, e.g. 640x480")
    p.add_argument("--frames", type=int, default=100,
                   help="frames of the video to use, from its start (default 100)")
    p.add_argument("--rounds", type=int, default=8, help="alternating rounds (default 8)")
    p.add_argument("--per-round", type=int, default=30, help="frames per round (default 30)")
    p.add_argument("--kernels", choices=("native", "avx2"), default="native",
                   help="the XNNPACK kernels both use (default: what this CPU offers)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import cv2

    from ..io.video import iter_frames
    from ..tools import mediapipe_bench

    if min(args.frames, args.rounds, args.per_round) < 1:
        raise ValueError("--frames, --rounds and --per-round must be at least 1")
    if args.kernels == "avx2" and platform.machine().lower() not in ("x86_64", "amd64"):
        raise ValueError(f"--kernels avx2 needs an x86-64 CPU (this is {platform.machine()})")
    size = parse_size(args.resize) if args.resize else None
    frames = [f if size is None else cv2.resize(f, size, interpolation=cv2.INTER_AREA)
              for f in iter_frames(args.file, args.frames)]
    if not frames:
        raise ValueError(f"{args.file}: no frames")
    rows, ours, theirs = mediapipe_bench.run(args.python, frames, args.rounds, args.per_round,
                                             args.kernels)
    height, width = frames[0].shape[:2]
    print(f"{args.file.name} {width}x{height}, {len(frames)} frames, {args.rounds} alternating "
          f"rounds of {args.per_round} frames, XNNPACK kernels on both sides: {args.kernels}")
    print(f"machine: {this_machine().describe()}")
    print(f"sides: {ours}; {theirs}")
    print(mediapipe_bench.format_table(rows))
    return 0
