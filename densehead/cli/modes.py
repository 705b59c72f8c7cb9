"""`densehead sparse|dense|pose|mesh|depth|pncc -f INPUT [-o OUTPUT] [--json FILE]`: draw one
overlay on an image or a whole video."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .. import draw
from ..export import frames_json
from .options import add_pipeline_options, add_tracker_options, make_pipeline, tracker_options


def add_cli(sub: Any) -> None:
    for mode in draw.MODES:
        p = sub.add_parser(mode, help=f"draw {mode} on an image or a video")
        p.add_argument("-f", "--file", required=True, help="input image or video")
        p.add_argument("-o", "--output", help="output file (default: INPUT_<mode>.<ext>)")
        p.add_argument("--json", help="also write per-frame, per-face results as JSON")
        add_pipeline_options(p)
        add_tracker_options(p)
        p.set_defaults(func=run_mode, mode=mode)


def run_mode(args: argparse.Namespace) -> int:
    from ..video import is_image

    source = Path(args.file)
    output = Path(args.output) if args.output else default_output(source, args.mode)
    options = tracker_options(args)
    pipe = make_pipeline(args)
    if is_image(source):
        frames = [(0, 0.0, _image_faces(pipe, source, args.mode, output))]
    else:
        frames = _video_frames(pipe, source, args.mode, options, output)
    if args.json:  # the same layout as the video page's JSON download
        Path(args.json).write_text(frames_json(frames, source=str(source), mode=args.mode))
    faces = sum(len(f) for _, _, f in frames)
    print(f"wrote {output} ({len(frames)} frame(s), {faces} face(s))"
          + (f" and {args.json}" if args.json else ""))
    return 0


def default_output(source: Path, mode: str) -> Path:
    suffix = source.suffix if source.suffix.lower() != ".avi" else ".mp4"
    return source.with_name(f"{source.stem}_{mode}{suffix}")


def _image_faces(pipe: Any, source: Path, mode: str, output: Path) -> list:
    import cv2

    from ..image import read_image

    frame = read_image(source)
    faces = pipe(frame, dense=draw.needs_dense(mode)).faces
    if not faces:
        print(f"no face found in {source}", file=sys.stderr)
    if not cv2.imwrite(str(output), draw.overlay(frame, faces, mode, pipe.model)):
        raise OSError(f"cannot write image {output} (is the suffix an image format?)")
    return faces


def _video_frames(pipe: Any, source: Path, mode: str, options: Any, output: Path) -> list:
    from ..analysis import analyze_video

    def progress(done: int, total: int | None, elapsed: float) -> None:
        if sys.stderr.isatty() and (done % 10 == 0 or done == total):
            print(f"\rframe {done}" + (f"/{total}" if total else "") + f"  {elapsed:.0f} s",
                  end="", file=sys.stderr)

    result = analyze_video(source, output, pipe, mode=mode, options=options, progress=progress)
    if sys.stderr.isatty():
        print(file=sys.stderr)
    return result.frames
