"""`densehead batch INPUT... -o OUT`: every video and photo into a per-frame table (Parquet),
resumable, on worker processes or Ray; `densehead batch-benchmark FOLDER`: files/s and frames/s
of one worker, two workers, Ray on a local cluster and Ray on a running one, on the same folder."""
from __future__ import annotations

import argparse
import sys
from typing import Any

from ..core.processes import sigterm_as_interrupt
from ..render import draw
from .options import (
    add_pipeline_options,
    add_tracker_options,
    flag_error,
    pipeline_options,
    tracker_options,
)


def add_cli(sub: Any) -> None:
    p = sub.add_parser("batch", help="a folder (or list) of videos and photos into tables",
                       description="Write OUT/<name>.parquet per input file (one row per face per "
                                   "frame) and OUT/batch.json. Run it again to resume.")
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="a video, an image, a folder (walked recursively) or a .txt/.lst file "
                        "listing paths (one per line, relative to the list's folder)")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="output folder")
    p.add_argument("--csv", action="store_true", help="also write OUT/<name>.csv")
    p.add_argument("--overlay", choices=draw.MODES, metavar="MODE",
                   help=f"also write the overlay video/image next to each table "
                        f"({', '.join(draw.MODES)})")
    p.add_argument("--overwrite", action="store_true",
                   help="run every file again, even those an earlier run finished")
    _add_engine_options(p)
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar (default: when stderr is a terminal)")
    _add_work_options(p)
    p.set_defaults(func=run_batch_command)

    b = sub.add_parser("batch-benchmark", help="files/s and frames/s: 1 vs N workers vs Ray",
                       description="Runs `batch` on FOLDER with --workers 1, with --workers N, "
                                   "on Ray with a local cluster and (with --ray-address) on a "
                                   "running Ray cluster, into temporary folders, and prints the "
                                   "speeds, the speed-ups and the time per file Ray adds.")
    b.add_argument("folder", help="a folder of videos (and photos)")
    b.add_argument("--workers", type=int, default=2,
                   help="the parallel runs' worker count (default 2)")
    b.add_argument("--ray", action=argparse.BooleanOptionalAction, default=True,
                   help="include Ray on a local cluster (default: on; needs Ray)")
    b.add_argument("--ray-address", metavar="HOST:PORT",
                   help="also run on this running Ray cluster (its token as for `batch`: "
                        "docs/batch.md)")
    _add_work_options(b)
    b.set_defaults(func=run_benchmark_command)


def _add_work_options(p: argparse.ArgumentParser) -> None:
    """What decides the tables, for `batch` and `batch-benchmark` alike."""
    from ..batch.work import WORKER_THREADS

    p.add_argument("--max-frames", type=int, help="only the first N frames of each video")
    add_pipeline_options(p, threads=WORKER_THREADS)
    add_tracker_options(p)


def _add_engine_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("engine")
    g.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="local: worker processes on this machine (default); ray: Ray workers")
    g.add_argument("--workers", type=int,
                   help="worker processes (default: the core count; on Ray: the cluster's CPUs)")
    g.add_argument("--ray-address", help="Ray cluster address (default: start a local cluster)")


def settings_from(args: argparse.Namespace) -> Any:
    from ..batch import BatchSettings
    from ..core.errors import OptionsError

    try:
        return BatchSettings(pipeline=pipeline_options(args), tracker=tracker_options(args),
                             overlay=getattr(args, "overlay", None), max_frames=args.max_frames)
    except OptionsError as error:
        raise flag_error(error) from None


def run_batch_command(args: argparse.Namespace) -> int:
    from ..batch import BatchInterrupted, run_batch

    settings = settings_from(args)
    _check_workers(args.workers)
    if args.ray_address and args.engine != "ray":   # else the cluster is left out unsaid
        raise ValueError(f"--ray-address {args.ray_address} is for the Ray engine: add "
                         "--engine ray, or leave the address out to run here")
    with sigterm_as_interrupt():   # `kill` stops a batch as Ctrl-C does: finished files kept
        try:
            report = run_batch(args.inputs, args.output, settings, engine=args.engine,
                               workers=args.workers, ray_address=args.ray_address,
                               csv=args.csv, overwrite=args.overwrite, progress=args.progress)
        except BatchInterrupted as stop:
            print(stop.report.summary_line(), file=sys.stderr)
            print("run the same command again to resume", file=sys.stderr)
            return 130
        except ImportError as error:  # --engine ray without Ray installed
            print(f"densehead: error: {error}", file=sys.stderr)
            return 1
    for entry in report.files:
        if entry.status == "failed":
            print(f"failed: {entry.input}: {entry.error}", file=sys.stderr)
    if report.ignored:
        print(f"left out {len(report.ignored)} file(s) that are not videos or images "
              f"(listed in batch.json)", file=sys.stderr)
    print(report.summary_line())
    return 1 if report.count("failed") else 0


def run_benchmark_command(args: argparse.Namespace) -> int:
    from ..tools.batch_bench import print_benchmark, run_benchmark

    _check_workers(args.workers)
    try:
        result = run_benchmark(args.folder, settings_from(args), workers=args.workers,
                               ray=args.ray, ray_address=args.ray_address)
    except ImportError as error:
        print(f"densehead: error: {error} (or leave Ray out: --no-ray)", file=sys.stderr)
        return 1
    print_benchmark(result)
    return 0


def _check_workers(workers: int | None) -> None:
    if workers is not None and workers < 1:
        raise ValueError(f"--workers must be at least 1, got {workers}")
