"""`densehead batch-benchmark`: the same folder through one worker, N workers, Ray on a local
cluster and Ray on a running cluster in one run (so the ratios compare like with like), where
the time goes, and the time per file Ray adds over local workers.

Each run writes into its own temporary folder with overwrite on; the decode-only pass reads
every video once in this process, so "tracking" is worker time minus decoding. The time per
file is the span from the first file's start to the last result, times the workers, over the
files: start-up and shut-down are left out, waiting on a busy core is in.
"""
from __future__ import annotations

import socket
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
    address: str | None = None   # the running Ray cluster it used

    @property
    def label(self) -> str:
        where = f", {len(self.nodes)} nodes" if self.address else ""
        return f"{self.engine}, {self.workers} worker{'s' if self.workers != 1 else ''}{where}"

    @property
    def nodes(self) -> set[str]:
        """The Ray nodes that ran files (empty for local runs)."""
        return {f.node for f in self.report.files if f.node}

    @property
    def hosts(self) -> set[str]:
        return {f.host for f in self.report.files if f.host}

    @property
    def seconds_per_file(self) -> float:
        """Worker-slot seconds per file while files ran (no start-up or shut-down)."""
        return self.report.work_seconds * max(self.report.workers, 1) / self._ran

    @property
    def worker_seconds_per_file(self) -> float:
        """Of that, the time inside the worker on the file (decode + tracking)."""
        return self.worker_seconds / self._ran

    @property
    def _ran(self) -> int:
        return max(int(self.report.totals["ok"]), 1)

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
    """Local with 1 and `workers` workers, Ray on a local cluster (`ray`), and Ray on the
    running cluster at `ray_address`, all with `workers` workers but the first."""
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
    configs = ([("local", 1, None), ("local", workers, None)]
               + ([("ray", workers, None)] if ray else [])
               + ([("ray", workers, ray_address)] if ray_address else []))
    runs = []
    for engine, n, address in configs:
        with tempfile.TemporaryDirectory(prefix="densehead-bench-") as out:
            report = run_batch([folder], out, settings, engine=engine, workers=n,
                               ray_address=address, overwrite=True, progress=False)
        runs.append(BenchmarkRun(engine, n, report, address))
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
    print(f"{'run':<27}{'wall s':>8}{'files/s':>9}{'frames/s':>10}{'ms/frame':>10}"
          f"{'start-up s':>12}{'tail s':>8}{'s/file':>8}  speed-up")
    for i, run in enumerate(result.runs):
        t, r = run.report.totals, run.report
        per_frame = 1e3 * run.worker_seconds / max(run.frames, 1)
        tail = max(0.0, r.seconds - r.startup_seconds - run.parallel_seconds)
        print(f"{run.label:<27}{r.seconds:8.2f}{t['files_per_s']:9.2f}{t['frames_per_s']:10.1f}"
              f"{per_frame:10.2f}{r.startup_seconds:12.2f}{tail:8.2f}"
              f"{run.seconds_per_file:8.2f}  {_speedup(result.runs, i)}")
    print("ms/frame: time in the workers per frame, decode + tracking (it rises when workers "
          "share cores); start-up: until the first file began (processes or Ray, model "
          "loading); tail: the rest (uneven last files, shutting down); s/file: worker-slot "
          "seconds per file from the first file's start to the last result")
    for line in _ray_overheads(result.runs):
        print(line)
    print(_where_the_time_goes(result, first))


def _ray_overheads(runs: list[BenchmarkRun]) -> list[str]:
    """Per file, what each Ray run takes over local workers of the same count."""
    lines = []
    for run in (r for r in runs if r.engine == "ray"):
        local = next((r for r in runs if r.engine == "local" and r.workers == run.workers), None)
        if local is None:
            continue
        where = f"the cluster at {run.address}" if run.address else "a local cluster"
        shared = (f"; its {len(run.nodes)} nodes run on this machine and share its cores"
                  if run.address and run.hosts == {socket.gethostname()} else "")
        slower = run.worker_seconds_per_file - local.worker_seconds_per_file
        total = run.seconds_per_file - local.seconds_per_file
        lines.append(f"ray overhead per file ({where}): {total:+.3f} s over {local.label}: "
                     f"{total - slower:+.3f} s between files (handing out, results back) and "
                     f"{slower:+.3f} s in the worker{shared}")
    return lines


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
