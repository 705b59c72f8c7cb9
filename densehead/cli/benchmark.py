"""`densehead benchmark`: median / min / max milliseconds per stage on a video or an image
(the timing itself: densehead.tools.stage_bench)."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from ..core.machine import this_machine
from ..engine.thread_choice import thread_use
from ..render import draw
from .options import (
    add_pipeline_options,
    add_tracker_options,
    make_pipeline,
    parse_size,
    regressor_line,
    tracker_options,
)


def add_cli(sub: Any) -> None:
    p = sub.add_parser("benchmark", help="per-stage timing table on a video (medians)")
    p.add_argument("-f", "--file", required=True, help="video (or image) to run on")
    p.add_argument("--mode", default=draw.DEFAULT_MODE, choices=draw.MODES,
                   help=f"overlay to draw and time (default {draw.DEFAULT_MODE})")
    p.add_argument("--frames", type=int, default=200,
                   help="frames to time (the video loops; default 200)")
    p.add_argument("--warmup", type=int, default=10,
                   help="frames run before the timing starts (default 10)")
    p.add_argument("--resize", help="resize frames to WxH first, e.g. 640x480")
    p.add_argument("--track", action="store_true",
                   help="use the tracker (detector every --redetect-every frames) "
                        "instead of detecting on every frame")
    add_pipeline_options(p)
    add_tracker_options(p)
    p.set_defaults(func=run_benchmark)


def _benchmark_frames(args: argparse.Namespace) -> list[np.ndarray]:
    import cv2

    from ..io.image import read_image
    from ..io.video import is_image_file, iter_frames

    source = Path(args.file)
    frames = [read_image(source)] if is_image_file(source) else list(iter_frames(source, 300))
    if args.resize:
        w, h = parse_size(args.resize)
        frames = [cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA) for f in frames]
    return frames


def run_benchmark(args: argparse.Namespace) -> int:
    from ..tools.stage_bench import stage_table, time_stages

    options = tracker_options(args)
    if args.frames < 1 or args.warmup < 0:
        raise ValueError("--frames must be at least 1 and --warmup at least 0")
    frames = _benchmark_frames(args)
    pipe = make_pipeline(args)
    times = time_stages(frames, pipe, args.mode, args.frames, args.warmup,
                        tracker=options if args.track else None)
    shape = frames[0].shape
    detector = f"tracked, every {args.redetect_every} frames" if args.track else "every frame"
    print(f"densehead benchmark: {args.file}  {shape[1]}x{shape[0]}  mode={args.mode}  "
          f"regressor={args.regressor}  threads={args.threads}  frames={len(times.faces)}  "
          f"faces/frame median={np.median(times.faces):.0f}  detector={detector}")
    print(f"machine: {this_machine().describe()}")
    print("\n".join(stage_table(times)))
    print(regressor_line(pipe))
    print(f"TFLite threads per call: detector {thread_use(pipe.detector.network)}; "
          f"regressor {thread_use(pipe.loaded.regressor)}")
    return 0
