"""`python -m densehead MODE -f INPUT -o OUTPUT`, plus fetch, benchmark and evaluate commands."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from . import draw
from .export import frames_json
from .image import ImageError
from .video import VideoError


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (ImageError, VideoError, ValueError, OSError) as error:
        print(f"densehead: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="densehead", description=__doc__)
    sub = parser.add_subparsers(metavar="command")
    for mode in draw.MODES:
        p = sub.add_parser(mode, help=f"draw {mode} on an image or a video")
        p.add_argument("-f", "--file", required=True, help="input image or video")
        p.add_argument("-o", "--output", help="output file (default: INPUT_<mode>.<ext>)")
        p.add_argument("--json", help="also write per-frame, per-face results as JSON")
        add_pipeline_options(p)
        p.set_defaults(func=run_mode, mode=mode)
    add_benchmark(sub)
    for module in ("assets", "render_bench", "evaluate"):
        _optional_cli(module)(sub)
    return parser


def _optional_cli(module: str) -> Callable[[Any], None]:
    """Commands that live beside the module they drive (fetch, benchmark-render, evaluate)."""
    import importlib

    return importlib.import_module(f"densehead.{module}").add_cli


def add_pipeline_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--regressor", default="mb05", choices=["mb05", "mb1"])
    p.add_argument("--threads", type=int, default=2, help="TFLite threads (default 2)")
    p.add_argument("--threshold", type=float, default=0.7, help="face detection score threshold")
    p.add_argument("--max-faces", type=int, default=8)
    p.add_argument("--redetect-every", type=int, default=10,
                   help="video: run the detector every N frames (and when a track is lost)")
    p.add_argument("--no-smooth", action="store_true", help="video: no temporal smoothing")


def make_pipeline(args: argparse.Namespace):
    from .pipeline import Pipeline

    return Pipeline(regressor=args.regressor, num_threads=args.threads,
                    score_threshold=args.threshold, max_faces=args.max_faces)


# -- drawing modes -----------------------------------------------------------------------------
def run_mode(args: argparse.Namespace) -> int:
    from .video import is_image

    source = Path(args.file)
    output = Path(args.output) if args.output else default_output(source, args.mode)
    pipe = make_pipeline(args)
    if is_image(source):
        frames = [(0, 0.0, _image_faces(pipe, source, args.mode, output))]
    else:
        frames = _video_frames(pipe, source, args, output)
    if args.json:  # the same layout as the video page's JSON download
        Path(args.json).write_text(frames_json(frames, source=str(source), mode=args.mode))
    faces = sum(len(f) for _, _, f in frames)
    print(f"wrote {output} ({len(frames)} frame(s), {faces} face(s))"
          + (f" and {args.json}" if args.json else ""))
    return 0


def default_output(source: Path, mode: str) -> Path:
    suffix = source.suffix if source.suffix.lower() != ".avi" else ".mp4"
    return source.with_name(f"{source.stem}_{mode}{suffix}")


def _image_faces(pipe, source: Path, mode: str, output: Path) -> list:
    import cv2

    from .image import read_image

    frame = read_image(source)
    faces = pipe(frame, dense=draw.needs_dense(mode))
    if not faces:
        print(f"no face found in {source}", file=sys.stderr)
    if not cv2.imwrite(str(output), draw.overlay(frame, faces, mode, pipe.model)):
        raise OSError(f"cannot write image {output} (is the suffix an image format?)")
    return faces


def _video_frames(pipe, source: Path, args: argparse.Namespace, output: Path) -> list:
    from .analysis import analyze_video

    def progress(done: int, total: int | None, elapsed: float) -> None:
        if sys.stderr.isatty() and (done % 10 == 0 or done == total):
            print(f"\rframe {done}" + (f"/{total}" if total else "") + f"  {elapsed:.0f} s",
                  end="", file=sys.stderr)

    result = analyze_video(source, output, pipe, mode=args.mode, smoothing=not args.no_smooth,
                           redetect_every=args.redetect_every, progress=progress)
    if sys.stderr.isatty():
        print(file=sys.stderr)
    return result.frames


# -- benchmark ---------------------------------------------------------------------------------
STAGES = ("detect", "preprocess", "inference", "postprocess", "render")


def add_benchmark(sub: Any) -> None:
    p = sub.add_parser("benchmark", help="per-stage timing table on a video (medians)")
    p.add_argument("-f", "--file", required=True, help="video (or image) to run on")
    p.add_argument("--mode", default="sparse", choices=draw.MODES, help="overlay to draw and time")
    p.add_argument("--frames", type=int, default=200, help="frames to time (the video loops)")
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--resize", help="resize frames to WxH first, e.g. 640x480")
    p.add_argument("--track", action="store_true",
                   help="use the tracker (detector every --redetect-every frames) "
                        "instead of detecting on every frame")
    add_pipeline_options(p)
    p.set_defaults(func=run_benchmark)


def _benchmark_frames(args: argparse.Namespace) -> list[np.ndarray]:
    import cv2

    from .image import read_image
    from .video import is_image, iter_frames

    source = Path(args.file)
    frames = [read_image(source)] if is_image(source) else list(iter_frames(source, 300))
    if args.resize:
        w, h = (int(v) for v in args.resize.lower().split("x"))
        frames = [cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA) for f in frames]
    return frames


def run_benchmark(args: argparse.Namespace) -> int:
    from .tracking import FaceTracker

    frames = _benchmark_frames(args)
    pipe = make_pipeline(args)
    dense = draw.needs_dense(args.mode)
    tracker = FaceTracker(pipe, redetect_every=args.redetect_every, smoothing=not args.no_smooth)
    step = (lambda f: tracker(f, dense=dense)) if args.track else (lambda f: pipe(f, dense=dense))
    rows: dict[str, list[float]] = {k: [] for k in STAGES + ("total",)}
    faces_seen: list[int] = []
    for i in range(args.warmup + args.frames):
        frame = frames[i % len(frames)]
        start = time.perf_counter()
        faces = step(frame)
        mid = time.perf_counter()
        draw.overlay(frame, faces, args.mode, pipe.model)
        end = time.perf_counter()
        if i < args.warmup:
            continue
        times = pipe.last_times
        for k in STAGES[:-1]:
            rows[k].append(getattr(times, k))
        rows["render"].append((end - mid) * 1e3)
        rows["total"].append((end - start) * 1e3)
        faces_seen.append(len(faces))
    print_benchmark(args, frames[0].shape, rows, faces_seen)
    return 0


def print_benchmark(args, shape, rows: dict[str, list[float]], faces: list[int]) -> None:
    n_faces = max(1.0, float(np.median(faces)))
    print(f"densehead benchmark: {args.file}  {shape[1]}x{shape[0]}  mode={args.mode}  "
          f"regressor={args.regressor}  threads={args.threads}  frames={len(faces)}  "
          f"faces/frame median={np.median(faces):.0f}  "
          f"detector={'tracked, every %d frames' % args.redetect_every if args.track else 'every frame'}")
    print(f"{'stage':<12}{'median ms':>10}{'min':>8}{'max':>8}{'per face':>10}")
    for k, values in rows.items():
        v = np.asarray(values)
        per_face = "" if k in ("detect", "total") else f"{np.median(v) / n_faces:10.3f}"
        print(f"{k:<12}{np.median(v):10.3f}{v.min():8.3f}{v.max():8.3f}{per_face}")
    print(f"frames per second (median total): {1000 / max(np.median(rows['total']), 1e-6):.0f}")
