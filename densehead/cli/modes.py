"""`densehead sparse|dense|pose|mesh|depth|pncc -f INPUT [-o OUTPUT] [--json FILE]`: draw one
overlay on an image or a whole video."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from ..core.files import same_file
from ..core.processes import sigterm_as_interrupt
from ..io.export import frames_json
from ..render import draw
from .options import (
    add_pipeline_options,
    add_tracker_options,
    check_output_file,
    check_video,
    make_pipeline,
    pipeline_options,
    tracker_options,
)


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
    from ..core.files import missing_file
    from ..io.image import read_image
    from ..io.video import is_image_file

    source = Path(args.file)
    if source.is_dir():
        raise ValueError(f"{source} is a folder: -f takes one image or video; `densehead batch "
                         f"{source} -o TABLES` turns a folder into per-frame tables")
    if problem := missing_file(source):
        raise ValueError(problem)
    image = is_image_file(source)
    output = Path(args.output) if args.output else default_output(source, args.mode, image)
    check_outputs(source, output, Path(args.json) if args.json else None, image)
    options = tracker_options(args)
    pipeline_options(args)   # option errors, then input errors, before the models load
    picture = read_image(source) if image else check_video(source)
    pipe = make_pipeline(args)
    with sigterm_as_interrupt():   # `kill` as Ctrl-C: no half-written temporary file left
        if picture is not None:
            frames = [(0, 0.0, _image_faces(pipe, picture, source, args.mode, output))]
        else:
            frames = _video_frames(pipe, source, args.mode, options, output)
        if args.json:  # the same layout as the video page's JSON download
            _write_json(Path(args.json), frames_json(frames, source=str(source), mode=args.mode))
    faces = sum(len(f) for _, _, f in frames)
    print(f"wrote {output} ({len(frames)} frame(s), {faces} face(s))"
          + (f" and {args.json}" if args.json else ""))
    return 0


def _write_json(path: Path, text: str) -> None:
    """Renamed into place, so an earlier file stays whole until the new one is; a device or a
    pipe (/dev/stdout) is written as it is."""
    from ..core.files import atomic_write

    try:
        if path.exists() and not path.is_file():
            path.write_text(text)
        else:
            atomic_write(path, text)
    except OSError as error:
        raise OSError(f"--json {path}: {error.strerror or error}") from None


def default_output(source: Path, mode: str, image: bool) -> Path:
    """INPUT_<mode>.<ext>: images keep their format (a photo named otherwise becomes .jpg),
    videos become MP4."""
    from ..io.video import picture_suffix

    suffix = picture_suffix(source) if image else ".mp4"
    return source.with_name(f"{source.stem}_{mode}{suffix}")


def check_outputs(source: Path, output: Path, json_path: Path | None, image: bool) -> None:
    """Refuse, before anything is read or written, outputs that would destroy the input or
    that cannot be written at all (ValueError: one line on stderr, exit 1)."""
    import cv2

    from ..io.video import WRITABLE_VIDEO_SUFFIXES, is_image

    targets = [("-o", output)] + ([("--json", json_path)] if json_path is not None else [])
    for flag, target in targets:
        check_output_file(flag, target, [source])
    if json_path is not None and same_file(json_path, output):
        raise ValueError(f"--json {json_path} and -o {output} are the same file")
    if image and not cv2.haveImageWriter(str(output)):
        raise ValueError(f"-o {output}: cannot write an image with that suffix (use .jpg or .png)")
    if not image and output.suffix.lower() not in WRITABLE_VIDEO_SUFFIXES:
        what = ("the output of a video is a video" if is_image(output)
                else f"densehead does not write {output.suffix or 'suffix-less'} videos")
        raise ValueError(f"-o {output}: {what}; use one of "
                         f"{', '.join(sorted(WRITABLE_VIDEO_SUFFIXES))}")


def _image_faces(pipe: Any, frame: np.ndarray, source: Path, mode: str, output: Path) -> list:
    import cv2

    faces = pipe(frame, dense=draw.needs_dense(mode)).faces
    if not faces:
        print(f"no face found in {source}", file=sys.stderr)
    try:
        written = cv2.imwrite(str(output), draw.overlay(frame, faces, mode, pipe.face_model))
    except cv2.error as error:
        raise OSError(f"cannot write image {output}: {error.msg or error}") from None
    if not written:
        raise OSError(f"cannot write image {output} (is the folder writable?)")
    return faces


def _video_frames(pipe: Any, source: Path, mode: str, options: Any, output: Path) -> list:
    from ..batch.video_runner import analyze_video

    def progress(done: int, total: int | None, elapsed: float) -> None:
        if sys.stderr.isatty() and (done % 10 == 0 or done == total):
            print(f"\rframe {done}" + (f"/{total}" if total else "") + f"  {elapsed:.0f} s",
                  end="", file=sys.stderr)

    result = analyze_video(source, output, pipe, mode=mode, options=options, progress=progress)
    if sys.stderr.isatty():
        print(file=sys.stderr)
    for note in result.notes:
        print(f"densehead: warning: {note}", file=sys.stderr)
    return result.frames
