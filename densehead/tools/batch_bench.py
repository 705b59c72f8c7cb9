"""`densehead batch-benchmark`: the same folder through one worker, N workers and Ray in one
run (so the ratios compare like with like), and where the time goes.

Each run writes into its own temporary folder with overwrite on; the decode-only pass reads
every video once in this process, so "tracking" is worker time minus decoding.
"""
from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ..batch.plan import plan_inputs
from ..batch.runner import BatchReport, run_batch
from ..batch.work import BatchSettings
from ..core.machine import this_machine


@dataclass
class BenchmarkRun:
    engine: str
    workers: int
    report: BatchReport

    @property
    def label(self) -> str:
        return f"{self.engine}, {self.workers} worker{'s' if self.workers != 1 else ''}"

    @property
    def frames(self) -> int:
        return int(self.report.totals["frames"])

    @property
    def worker_seconds(self) -> float:
        """Time inside the workers, summed over files (decode + tracking)."""
        return sum(f.seconds for f in self.report.files if f.status == "ok")

    @property
    def parallel_seconds(self) -> float:
        """Wall time the files would take spread perfectly over the workers."""
        return self.worker_seconds / max(self.report.workers, 1)


@dataclass
class BenchmarkResult:
    folder: Path
    files: int
    videos: int
    decode_seconds: float      # every video decoded once, alone, in this process
    decoded_frames: int
    runs: list[BenchmarkRun]
    settings: BatchSettings


def run_benchmark(folder: str | Path, settings: BatchSettings | None = None, workers: int = 2,
                  ray: bool = True, ray_address: str | None = None) -> BenchmarkResult:
    settings = settings or BatchSettings()
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"batch-benchmark needs a folder of videos, got {folder}")
    with tempfile.TemporaryDirectory() as scratch:
        jobs = plan_inputs([folder], scratch).jobs
    if not jobs:
        raise ValueError(f"no video or image found in {folder}")
    decode_s, decoded = _decode_all([j.source for j in jobs if j.kind == "video"],
                                    settings.max_frames)
    configs = [("local", 1), ("local", workers)] + ([("ray", workers)] if ray else [])
    runs = []
    for engine, n in configs:
        with tempfile.TemporaryDirectory(prefix="densehead-bench-") as out:
            report = run_batch([folder], out, settings, engine=engine, workers=n,
                               ray_address=ray_address, overwrite=True, progress=False)
        runs.append(BenchmarkRun(engine, n, report))
    return BenchmarkResult(folder, len(jobs), sum(j.kind == "video" for j in jobs), decode_s,
                           decoded, runs, settings)


def _decode_all(videos: list[Path], max_frames: int | None) -> tuple[float, int]:
    from ..core.errors import VideoError
    from ..io.video import iter_frames

    frames, start = 0, time.perf_counter()
    for path in videos:
        try:
            frames += sum(1 for _ in iter_frames(path, max_frames=max_frames))
        except VideoError:
            pass
    return time.perf_counter() - start, frames


def print_benchmark(result: BenchmarkResult) -> None:
    from ..batch.local import available_cpus

    first = result.runs[0]
    o = result.settings.pipeline
    print(f"densehead batch-benchmark: {result.folder}: {result.files} files "
          f"({result.videos} videos), {first.frames} frames; {available_cpus()} cores here; "
          f"regressor {o.regressor}, {o.num_threads} TFLite thread(s) per worker")
    print(f"machine: {this_machine().describe()}")
    print(f"{'run':<18}{'wall s':>8}{'files/s':>9}{'frames/s':>10}{'ms/frame':>10}"
          f"{'start-up s':>12}{'tail s':>8}  speed-up")
    for i, run in enumerate(result.runs):
        t, r = run.report.totals, run.report
        per_frame = 1e3 * run.worker_seconds / max(run.frames, 1)
        tail = max(0.0, r.seconds - r.startup_seconds - run.parallel_seconds)
        print(f"{run.label:<18}{r.seconds:8.2f}{t['files_per_s']:9.2f}{t['frames_per_s']:10.1f}"
              f"{per_frame:10.2f}{r.startup_seconds:12.2f}{tail:8.2f}  "
              f"{_speedup(result.runs, i)}")
    print("ms/frame: time in the workers per frame, decode + tracking (it rises when workers "
          "share cores); start-up: until the first file began (processes or Ray, model "
          "loading); tail: the rest (uneven last files, shutting down)")
    print(_where_the_time_goes(result, first))


def _speedup(runs: list[BenchmarkRun], i: int) -> str:
    run = runs[i]
    if i == 0:
        return "1.00x"
    base = runs[0] if run.engine == "local" else next(
        (r for r in runs if r.engine == "local" and r.workers == run.workers), runs[0])
    return f"{base.report.seconds / max(run.report.seconds, 1e-9):.2f}x over {base.label}"


def _where_the_time_goes(result: BenchmarkResult, run: BenchmarkRun) -> str:
    frames = max(run.frames, 1)
    decode = min(result.decode_seconds, run.worker_seconds)
    tracking = run.worker_seconds - decode
    return (f"where the time goes ({run.label}), per frame: decoding {1e3 * decode / frames:.2f} "
            f"ms + tracking {1e3 * tracking / frames:.2f} ms in the worker; writing the tables "
            f"{1e3 * run.report.write_seconds / frames:.2f} ms in the main process, alongside "
            f"the workers ({run.report.write_seconds:.2f} s, pyarrow's first import included)")
