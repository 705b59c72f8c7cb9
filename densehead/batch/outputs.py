"""A job's output files, written so that a killed run never leaves one that looks finished.

Every file is written under a temporary name in its own folder (`clip.mp4.part.parquet`), synced
and renamed. The table is renamed last and carries a record of what it was made from (the
input's size and modification time, the settings), so a job is finished exactly when its table
exists, its record matches the input and the settings of this run, and every other output that
was asked for exists. Anything else is run again.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..core.files import atomic_write
from ..io import table as tables
from ..io.video import picture_suffix
from .plan import Job

TABLE_SUFFIX = ".parquet"
RECORD_KEY = "densehead"   # the key of the record in the Parquet file's metadata


@dataclass(frozen=True)
class Outputs:
    table: Path
    csv: Path | None = None
    overlay: Path | None = None     # the overlay video (or image), when one was asked for

    @classmethod
    def of(cls, out_dir: Path, job: Job, csv: bool = False,
           overlay: str | None = None) -> "Outputs":
        base = out_dir / job.name
        picture = picture_suffix(job.source) if job.kind == "image" else ".mp4"
        return cls(table=base.with_name(base.name + TABLE_SUFFIX),
                   csv=base.with_name(base.name + ".csv") if csv else None,
                   overlay=base.with_name(f"{base.name}.{overlay}{picture}") if overlay else None)

    def files(self) -> list[Path]:
        return [p for p in (self.table, self.csv, self.overlay) if p is not None]


def temp_path(path: Path) -> Path:
    """The name a file is written under before it is renamed into place; it keeps the suffix
    (video and image writers choose their format by it)."""
    return path.with_name(f"{path.stem}.part{path.suffix}")


def remove_temps(outputs: Outputs) -> None:
    """Left-overs of an earlier run that was killed while writing these outputs."""
    for path in outputs.files():
        temp_path(path).unlink(missing_ok=True)


def input_stamp(source: Path) -> dict[str, int]:
    st = source.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def finished_record(outputs: Outputs, source: Path, settings: dict[str, Any]) -> dict | None:
    """The record of a finished job with these settings, or None when it must be run."""
    if not all(p.is_file() for p in outputs.files()):
        return None
    try:
        record = json.loads(tables.parquet_metadata(outputs.table)[RECORD_KEY])
        stamp = input_stamp(source)
    except Exception:  # not Parquet, no record, a record from another tool: not finished
        return None
    same_input = {k: record.get(k) for k in stamp} == stamp
    return record if same_input and record.get("settings") == settings else None


def commit(outputs: Outputs, table: np.ndarray, record: dict[str, Any],
           overlay_temp: Path | None = None) -> None:
    """Move the outputs into place: overlay and CSV first, the table (the mark of a finished
    job) last."""
    if outputs.overlay is not None and overlay_temp is not None:
        _sync_file(overlay_temp)
        os.replace(overlay_temp, outputs.overlay)
    if outputs.csv is not None:
        atomic_write(outputs.csv, tables.csv_text(table), temp=temp_path(outputs.csv))
    metadata = {RECORD_KEY: json.dumps(record)}
    atomic_write(outputs.table, lambda f: tables.write_parquet(table, f, metadata),
                 temp=temp_path(outputs.table))
    _sync_folder(outputs.table.parent)


def _sync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _sync_folder(folder: Path) -> None:
    """Make the renames themselves durable (POSIX; elsewhere a folder cannot be opened)."""
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
