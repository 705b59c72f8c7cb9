"""`densehead evaluate DIR` (accuracy on AFLW2000-3D style annotations) and
`densehead evaluate-video VIDEO...` (landmark stability with smoothing off and on)."""
from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..core.machine import this_machine
from ..tools import evaluate as E
from .options import (
    add_pipeline_options,
    add_tracker_options,
    check_count,
    check_output_file,
    make_pipeline,
    pipeline_options,
    regressor_line,
    tracker_options,
)


def add_cli(sub: Any) -> None:
    p = sub.add_parser("evaluate", help="accuracy on AFLW2000-3D style annotations",
                       description=E.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dir", help="folder of images with .mat annotations, or a JSON manifest")
    p.add_argument("--protocol", action="append", choices=E.PROTOCOLS,
                   help="repeatable; default: all (3ddfa only when every image has its crop)")
    p.add_argument("--annotations", choices=("auto", "mat", "manifest"), default="auto",
                   help="auto: .mat landmarks, plus the manifest's 3DDFA crops when present")
    p.add_argument("--gt-offset", type=float, default=E.DEFAULT_GT_OFFSET,
                   help="subtracted from GT landmarks in gt-box and wild (1 = MATLAB 1-based "
                        "to 0-based); 3ddfa always compares the stored points, like upstream")
    p.add_argument("--limit", type=int, default=0, help="only the first N images (default 0: all)")
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    add_pipeline_options(p)
    p.set_defaults(func=cmd_evaluate)

    v = sub.add_parser("evaluate-video", help="landmark stability with smoothing off and on")
    v.add_argument("video", nargs="+", help="video file(s)")
    v.add_argument("--max-frames", type=int, default=0, help="stop after N frames (default 0: all)")
    v.add_argument("--json", default=None, help="also write the results to this JSON file")
    add_pipeline_options(v)
    add_tracker_options(v, smoothing_switch=False)
    v.set_defaults(func=cmd_evaluate_video)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from ..tools.datasets import load_dataset

    options = pipeline_options(args)
    check_count("--limit", args.limit)
    if not math.isfinite(args.gt_offset):   # NaN would match no face: all "not found"
        raise ValueError(f"--gt-offset must be a finite number, got {args.gt_offset}")
    samples = load_dataset(args.dir, args.annotations)
    _check_json(args, _dataset_files(Path(args.dir), samples))
    if args.limit:
        samples = samples[: args.limit]
    pipe = make_pipeline(args)
    protocols = args.protocol or [p for p in E.PROTOCOLS
                                  if p != "3ddfa" or all(s.roi_3ddfa is not None for s in samples)]
    reports = [E.run_protocol(pipe, samples, p, args.gt_offset) for p in protocols]
    print(f"machine: {this_machine().describe()} (for the ms columns)")
    print(regressor_line(pipe))
    print(E.format_reports(reports))
    for r in reports:
        signs = ", ".join(f"{k} {v:.2f}" for k, v in r.sign_agreement.items())
        print(f"{r.protocol}: sign agreement with GT ({signs}); stage ms {_fmt(r.stage_ms)}")
    if args.json:
        settings = {**asdict(options), "gt_offset": args.gt_offset, "dataset": str(args.dir)}
        Path(args.json).write_text(json.dumps(E.reports_to_json(reports, settings), indent=1))
        print(f"wrote {args.json}")
    return 0


def _check_json(args: argparse.Namespace, inputs: list[Path]) -> None:
    """--json errors before anything runs: a whole evaluation is not lost to them, and the
    results never overwrite what they were measured on."""
    if args.json:
        check_output_file("--json", Path(args.json), inputs)


def _dataset_files(path: Path, samples: list[Any]) -> list[Path]:
    """The files `evaluate` reads: the manifest or the .mat files, and the images."""
    read = [path] if path.is_file() else [path / "ground_truth.json", *path.glob("*.mat")]
    return read + [s.image for s in samples]


def _fmt(d: dict[str, float]) -> str:
    return " ".join(f"{k}={v:.2f}" for k, v in d.items() if v)


def cmd_evaluate_video(args: argparse.Namespace) -> int:
    from ..engine.tracking import FaceTracker
    from ..io.video import probe
    from ..tools.stability import evaluate_video, format_video

    options = tracker_options(args)
    check_count("--max-frames", args.max_frames)
    _check_json(args, [Path(video) for video in args.video])
    pipe = make_pipeline(args)   # holds nothing per call, so both runs and all videos share it
    settings = {**asdict(pipe.options), **asdict(options)}
    print(regressor_line(pipe))
    out = []
    for video in args.video:
        fps = probe(video).fps

        def make_tracker(smoothing: bool) -> FaceTracker:
            return FaceTracker(pipe, options.replace(smoothing=smoothing), fps=fps)

        rep = evaluate_video(video, make_tracker, settings, args.max_frames)
        print(format_video(rep))
        out.append(E.jsonable(asdict(rep)))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
        print(f"wrote {args.json}")
    return 0
