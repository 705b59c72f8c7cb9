"""`densehead benchmark`: median / min / max milliseconds per stage on a video or an image."""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..core.face import STAGES
from ..core.machine import this_machine
from ..engine.thread_choice import thread_use
from ..render import draw
from .options import (
    add_pipeline_options,
    add_tracker_options,
    make_pipeline,
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


def parse_size(text: str) -> tuple[int, int]:
    """'640x480' -> (640, 480); anything else is a ValueError the CLI prints as one line."""
    parts = text.lower().split("x")
    if len(parts) == 2 and all(p.strip().isdigit() for p in parts):
        w, h = (int(p) for p in parts)
        if w > 0 and h > 0:
            return w, h
    raise ValueError(f"--resize needs WIDTHxHEIGHT in whole pixels above 0, e.g. 640x480 "
                     f"(got {text!r})")


def run_benchmark(args: argparse.Namespace) -> int:
    from ..engine.tracking import FaceTracker

    options = tracker_options(args)
    if args.frames < 1 or args.warmup < 0:
        raise ValueError("--frames must be at least 1 and --warmup at least 0")
    frames = _benchmark_frames(args)
    pipe = make_pipeline(args)
    dense = draw.needs_dense(args.mode)
    tracker = FaceTracker(pipe, options)
    step = (lambda f: tracker(f, dense=dense)) if args.track else (lambda f: pipe(f, dense=dense))
    rows: dict[str, list[float]] = {k: [] for k in STAGES + ("total",)}
    faces_seen: list[int] = []
    frame = frames[0].copy()
    for i in range(args.warmup + args.frames):
        # written into one buffer first, untimed, as a decoder hands over a frame it has just
        # written (read from the list, each frame would come from main memory)
        frame[...] = frames[i % len(frames)]
        start = time.perf_counter()
        result = step(frame)
        mid = time.perf_counter()
        draw.overlay(frame, result.faces, args.mode, pipe.face_model)
        end = time.perf_counter()
        if i < args.warmup:
            continue
        for k in STAGES:
            if k != "render":
                rows[k].append(getattr(result.times, k))
        rows["render"].append((end - mid) * 1e3)
        rows["total"].append((end - start) * 1e3)
        faces_seen.append(len(result.faces))
    print_benchmark(args, frames[0].shape, rows, faces_seen)
    print(regressor_line(pipe))
    print(f"TFLite threads per call: detector {thread_use(pipe.detector.network)}; "
          f"regressor {thread_use(pipe.loaded.regressor)}")
    return 0


def print_benchmark(args: argparse.Namespace, shape: tuple[int, ...],
                    rows: dict[str, list[float]], faces: list[int]) -> None:
    n_faces = max(1.0, float(np.median(faces)))
    print(f"densehead benchmark: {args.file}  {shape[1]}x{shape[0]}  mode={args.mode}  "
          f"regressor={args.regressor}  threads={args.threads}  frames={len(faces)}  "
          f"faces/frame median={np.median(faces):.0f}  "
          f"detector={'tracked, every %d frames' % args.redetect_every if args.track else 'every frame'}")
    print(f"machine: {this_machine().describe()}")
    print(f"{'stage':<12}{'median ms':>10}{'min':>8}{'max':>8}{'per face':>10}")
    for k, values in rows.items():
        v = np.asarray(values)
        per_face = "" if k in ("detect", "total") else f"{np.median(v) / n_faces:10.3f}"
        print(f"{k:<12}{np.median(v):10.3f}{v.min():8.3f}{v.max():8.3f}{per_face}")
    print(f"frames per second (median total): {1000 / max(np.median(rows['total']), 1e-6):.0f}")
