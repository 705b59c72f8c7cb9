"""`densehead batch` as a function: plan the inputs, skip the files already finished, run the
others on an engine, commit each file's outputs as its result arrives (in this process, so only
one place ever writes under the output folder), and record every file in `batch.json`."""
from __future__ import annotations

import contextlib
import json
import signal
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from ..core.files import atomic_write
from .local import LocalEngine
from .outputs import (
    Outputs,
    commit,
    finished_record,
    input_stamp,
    remove_temps,
    temp_path,
)
from .plan import Job, Plan, plan_inputs
from .progress import BatchProgress
from .work import BatchSettings, Outcome, Task

REPORT_NAME = "batch.json"
CHECKPOINT_S = 10.0   # batch.json is also written while a batch runs, at most this often (s)


@dataclass
class FileEntry:
    """One input file in batch.json."""
    input: str
    output: str | None          # the table, relative to the output folder; None when failed
    status: str                 # "ok", "failed" or "skipped" (finished by an earlier run)
    frames: int = 0
    faces: int = 0              # rows of the table: faces summed over frames
    seconds: float = 0.0        # worker time on this file (decode + tracking)
    error: str | None = None
    notes: list[str] = field(default_factory=list)
    host: str | None = None     # the machine that ran it (for a skipped file: the earlier run's)
    node: str | None = None     # the Ray node that ran it (its id), on Ray


@dataclass
class BatchReport:
    output_dir: Path
    files: list[FileEntry]
    engine: str
    workers: int
    seconds: float              # wall time of the whole run
    ignored: list[str] = field(default_factory=list)   # non-media files found in folders
    interrupted: bool = False
    pending: int = 0            # files not run (yet: see unfinished) or because of Ctrl-C
    unfinished: bool = False    # written while the batch ran: if it stays, the run was cut off
    write_seconds: float = 0.0  # time spent writing tables here, alongside the workers
    startup_seconds: float = 0.0  # until the first worker began its first file
    work_seconds: float = 0.0     # from then until the last file's result came back

    def count(self, status: str) -> int:
        return sum(f.status == status for f in self.files)

    @property
    def totals(self) -> dict[str, Any]:
        """Frames and faces count the files run this time (not the skipped ones)."""
        ran = [f for f in self.files if f.status == "ok"]
        frames = sum(f.frames for f in ran)
        wall = max(self.seconds, 1e-9)
        return {"files": len(self.files), "ok": len(ran), "failed": self.count("failed"),
                "skipped": self.count("skipped"), "frames": frames,
                "faces": sum(f.faces for f in ran), "seconds": round(self.seconds, 3),
                "frames_per_s": round(frames / wall, 2),
                "files_per_s": round(len(ran) / wall, 3)}

    def to_json(self) -> str:
        body = {"files": [asdict(f) for f in self.files], "totals": self.totals,
                "engine": self.engine, "workers": self.workers, "ignored": self.ignored,
                "interrupted": self.interrupted, "pending": self.pending,
                "unfinished": self.unfinished}
        return json.dumps(body, indent=1)

    def summary_line(self) -> str:
        t = self.totals
        head = "interrupted" if self.interrupted else "batch"
        return (f"{head}: {t['files']} files: {t['ok']} ok, {t['failed']} failed, "
                f"{t['skipped']} skipped; {t['frames']} frames, {t['faces']} faces in "
                f"{self.seconds:.1f} s ({t['frames_per_s']:.1f} frames/s, {self.workers} "
                f"{self.engine} worker{'s' if self.workers != 1 else ''}); "
                f"{self.output_dir / REPORT_NAME}")


class BatchInterrupted(KeyboardInterrupt):
    """Ctrl-C during a batch: what had finished is committed and in `report` (and batch.json);
    running the same batch again resumes."""

    def __init__(self, report: BatchReport) -> None:
        super().__init__("batch interrupted")
        self.report = report


def run_batch(inputs: Iterable[str | Path], output_dir: str | Path,
              settings: BatchSettings | None = None, *, engine: str | Any = "local",
              workers: int | None = None, ray_address: str | None = None, csv: bool = False,
              overwrite: bool = False, progress: bool | None = None) -> BatchReport:
    """Every video and image of `inputs` into a table under `output_dir` (see plan.py for the
    names), skipping files an earlier run finished with the same settings unless `overwrite`.
    `engine` is "local" (worker processes), "ray" or an engine object; `progress` shows a bar
    (default: when stderr is a terminal). Raises BatchInterrupted on Ctrl-C, and ValueError,
    before writing anything, when the inputs give nothing to run."""
    settings = settings or BatchSettings()
    out = Path(output_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"the output folder {out} is a file")
    # the inputs and the engine are checked before the models are looked at, and nothing is
    # written before: a mistyped path is named as such, and batch.json keeps the last record
    plan = plan_inputs(inputs, out)
    if not plan.jobs:
        raise ValueError(_nothing_to_run(plan))
    _refuse_outputs_over_inputs(plan.jobs, [Outputs.of(out, job, csv, settings.overlay)
                                            for job in plan.jobs])
    chosen = _engine(engine, workers, ray_address)
    settings = settings.resolved()
    runner = _Runner(out, settings, csv, overwrite)
    start = time.perf_counter()
    tasks = runner.prepare(plan.jobs)
    if tasks:
        _load_models_once(settings, chosen)
    bar = BatchProgress({t.index: t.job for t in tasks}, len(plan.jobs) - len(tasks),
                        len(plan.jobs), settings.max_frames, enabled=progress)

    def report_of(run: _Run, unfinished: bool = False) -> BatchReport:
        first_start, last_result = run.first_start, run.last_result
        return BatchReport(out, runner.entries(plan.missing),
                           getattr(chosen, "name", type(chosen).__name__),
                           _workers_used(chosen, len(tasks)), time.perf_counter() - start,
                           ignored=plan.ignored, interrupted=run.interrupted,
                           pending=len(plan.jobs) - len(runner.done), unfinished=unfinished,
                           write_seconds=runner.write_seconds,
                           startup_seconds=first_start - start if first_start else 0.0,
                           work_seconds=(max(0.0, last_result - first_start) if first_start
                                         else 0.0))

    # not synced: the process's end leaves the page cache, and a sync on a busy disk held up
    # Ctrl-C for as long (the final record is synced)
    checkpoint = _Checkpoint(lambda run: _write_report(report_of(run, unfinished=True),
                                                       sync=False))
    run = _consume(chosen.run(tasks, settings) if tasks else iter(()), runner, bar, checkpoint)
    report = report_of(run)
    _write_report(report)
    if run.interrupted:
        raise BatchInterrupted(report)
    return report


@dataclass
class _Run:
    """How an engine's run went: stopped by Ctrl-C or not, and when its first frame was counted
    and its last file came (time.perf_counter(); 0: never)."""
    interrupted: bool = False
    first_start: float = 0.0
    last_result: float = 0.0


class _Checkpoint:
    """batch.json written while the batch runs, at most every CHECKPOINT_S, so that a process
    ended abruptly (killed, or ended by Ray itself when its cluster's head went) leaves a
    record of the files it had finished, marked unfinished."""

    def __init__(self, write: Callable[[_Run], None]) -> None:
        self.write = write
        self.last: float | None = None   # time.monotonic() of the last write

    def __call__(self, run: _Run) -> None:
        if self.last is None or time.monotonic() - self.last >= CHECKPOINT_S:
            self.last = time.monotonic()
            with contextlib.suppress(OSError):   # the last record says what went wrong
                self.write(run)


def _consume(events: Iterator[object], runner: "_Runner", bar: BatchProgress,
             checkpoint: Callable[[_Run], None]) -> _Run:
    """Record the files an engine finishes as they come and show its frame counts; on Ctrl-C,
    record what it had finished and stop it."""
    run = _Run()
    event: object = None   # the engine's last event, an Outcome or a frame count
    try:
        for event in events:
            if isinstance(event, Outcome):
                run.last_result = time.perf_counter()
                _record(runner, bar, event)
                checkpoint(run)
            else:
                run.first_start = run.first_start or time.perf_counter()
                bar.frames(*event)
    except KeyboardInterrupt:
        run.interrupted = True
        if isinstance(event, Outcome):   # Ctrl-C came between its arrival and its recording
            _record(runner, bar, event)
        for finished in _handed_over(events):
            _record(runner, bar, finished)
    finally:
        close = getattr(events, "close", None)   # a generator's: its workers are stopped
        if close is not None:
            close()
        bar.close()
        runner.clean_unfinished()
    return run


def _nothing_to_run(plan: Plan) -> str:
    if plan.missing:   # a list file's entries are named with their line
        return "nothing to run: " + "; ".join(why if why.endswith(given) else f"{given}: {why}"
                                              for given, why in plan.missing)
    left_out = (f" ({len(plan.ignored)} file(s) there are not videos or images)"
                if plan.ignored else "")
    return f"no video or image found in the inputs{left_out}"


def _handed_over(events: Iterator[object]) -> Iterator[Outcome]:
    """The files an engine had finished when Ctrl-C came. Ctrl-C lands wherever the main thread
    is, often here while a frame count is shown, with the engine paused at a yield: it is sent
    on to the engine, which stops its workers and hands over what had finished."""
    throw = getattr(events, "throw", None)
    if throw is None:   # not a generator: nothing to stop
        return
    try:
        event = throw(KeyboardInterrupt())
        while True:
            if isinstance(event, Outcome):
                yield event
            event = next(events)
    except (KeyboardInterrupt, StopIteration):   # the engine has stopped
        return


def _record(runner: "_Runner", bar: BatchProgress, outcome: Outcome) -> None:
    """Commit a finished file and record it, once and whole: Ctrl-C waits until it is done. An
    engine stopped by Ctrl-C may hand over again a file it had handed over just before."""
    with _signals_held():
        if outcome.index not in runner.done:
            entry = runner.finish(outcome)
            bar.file_done(outcome.index, entry.frames, entry.status == "failed")


class _Runner:
    """The state of one run: which jobs are finished, and their entries."""

    def __init__(self, out: Path, settings: BatchSettings, csv: bool, overwrite: bool) -> None:
        self.out, self.settings, self.csv, self.overwrite = out, settings, csv, overwrite
        self.key = settings.table_key()
        self.jobs: list[Job] = []
        self.outputs: list[Outputs] = []
        self.stamps: list[dict[str, int] | None] = []
        self.done: dict[int, FileEntry] = {}
        self.write_seconds = 0.0

    def prepare(self, jobs: list[Job]) -> list[Task]:
        """Entries for finished jobs, tasks for the others (their folders made, stale
        temporary files of a killed run removed)."""
        self.out.mkdir(parents=True, exist_ok=True)
        tasks = []
        for index, job in enumerate(jobs):
            outputs = Outputs.of(self.out, job, self.csv, self.settings.overlay)
            self.jobs.append(job)
            self.outputs.append(outputs)
            self.stamps.append(_stamp(job.source))
            outputs.table.parent.mkdir(parents=True, exist_ok=True)
            remove_temps(outputs)
            record = None if self.overwrite else finished_record(outputs, job.source, self.key)
            if record is not None:   # described by the run that made its table
                entry = self._entry(index, "skipped", record.get("frames", 0),
                                    record.get("faces", 0), record.get("seconds", 0),
                                    notes=record.get("notes"))
                entry.host, entry.node = record.get("host"), record.get("node")
                self.done[index] = entry
            else:
                # absolute: a worker of a cluster does not run in this process's folder
                overlay = temp_path(outputs.overlay).absolute() if outputs.overlay else None
                tasks.append(Task(index, job, overlay))
        return tasks

    def finish(self, outcome: Outcome) -> FileEntry:
        """Commit a worker's result (or record its failure)."""
        index, outputs = outcome.index, self.outputs[outcome.index]
        if outcome.ok and self.stamps[index] is not None:
            record = {"input": str(self.jobs[index].source), **self.stamps[index],
                      "settings": self.key, "frames": outcome.frames, "faces": outcome.faces,
                      "fps": outcome.fps, "seconds": round(outcome.seconds, 3),
                      "notes": outcome.notes, "host": outcome.host, "node": outcome.node}
            start = time.perf_counter()
            try:
                overlay = temp_path(outputs.overlay) if outputs.overlay else None
                commit(outputs, outcome.table, record, overlay)
            except OSError as error:
                outcome.error = f"cannot write the outputs: {error}"
            self.write_seconds += time.perf_counter() - start
        elif outcome.ok:
            outcome.error = "the input file disappeared while it was processed"
        if outcome.ok:
            entry = self._entry(index, "ok", outcome.frames, outcome.faces, outcome.seconds,
                                notes=outcome.notes)
        else:
            remove_temps(outputs)
            entry = self._entry(index, "failed", outcome.frames, 0, outcome.seconds,
                                error=outcome.error, notes=outcome.notes)
        entry.host, entry.node = outcome.host, outcome.node
        self.done[index] = entry
        return entry

    def clean_unfinished(self) -> None:
        for index, outputs in enumerate(self.outputs):
            if index not in self.done:
                remove_temps(outputs)

    def entries(self, missing: list[tuple[str, str]]) -> list[FileEntry]:
        listed = [self.done[i] for i in sorted(self.done)]
        return listed + [FileEntry(input=given, output=None, status="failed", error=why)
                         for given, why in missing]

    def _entry(self, index: int, status: str, frames: int, faces: int, seconds: float,
               error: str | None = None, notes: list[str] | None = None) -> FileEntry:
        table = self.outputs[index].table.relative_to(self.out).as_posix()
        return FileEntry(input=str(self.jobs[index].source),
                         output=None if status == "failed" else table, status=status,
                         frames=int(frames), faces=int(faces), seconds=round(float(seconds), 3),
                         error=error, notes=list(notes or []))


class _signals_held:
    """Hold Ctrl-C (and a Python SIGTERM handler such as the CLI's) until the block is done,
    then deliver it. Only the main thread receives signals, so elsewhere this does nothing."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __enter__(self) -> None:
        self.held: list[int] = []
        self.saved: dict[int, Any] = {}
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in self.SIGNALS:
            handler = signal.getsignal(sig)
            if callable(handler):  # SIG_DFL / SIG_IGN keep their meaning
                self.saved[sig] = signal.signal(sig, lambda s, f: self.held.append(s))

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.saved.items():
            signal.signal(sig, handler)
        for sig in self.held[:1]:
            self.saved[sig](sig, None)


def _stamp(source: Path) -> dict[str, int] | None:
    try:
        return input_stamp(source)
    except OSError:
        return None


def _refuse_outputs_over_inputs(jobs: list[Job], outputs: list[Outputs]) -> None:
    """ValueError, before anything is written, when a file the batch writes (or its temporary
    name) is one of its inputs: an input kept in the output folder under an output's name."""
    sources = {job.source.resolve() for job in jobs}
    for job, planned in zip(jobs, outputs):
        for path in planned.files():
            for target in (path, temp_path(path)):
                if target.resolve() in sources:
                    raise ValueError(f"the output of {job.source.name} would be written over the "
                                     f"input {target}: write the tables to another folder")


def _engine(engine: str | Any, workers: int | None, ray_address: str | None) -> Any:
    if engine == "local":
        return LocalEngine(workers)
    if engine == "ray":
        from .ray_engine import RayEngine

        return RayEngine(ray_address, workers)
    if isinstance(engine, str):
        raise ValueError(f"unknown engine {engine!r}; choose local or ray")
    return engine


def _workers_used(engine: Any, tasks: int) -> int:
    """Workers that ran (never more than there were files to run)."""
    used = getattr(engine, "workers_used", None)   # Ray's: the actors that came up, maybe none
    if used is None:
        used = getattr(engine, "workers", None) or 1
    return min(int(used), tasks)


def _load_models_once(settings: BatchSettings, engine: Any) -> None:
    """Fetch, verify and compile the model files here, once, before workers start (so N
    workers never race to download or compile, and a missing file is one clear error).
    Skipped for a remote Ray cluster, whose nodes have their own files."""
    if getattr(engine, "address", None):
        return
    from ..engine.pipeline import load_models

    load_models(settings.pipeline)


def _write_report(report: BatchReport, sync: bool = True) -> None:
    path = report.output_dir / REPORT_NAME
    atomic_write(path, report.to_json(), sync=sync, temp=temp_path(path))
