"""Batch analysis: a study's folder of videos and photos into one per-frame table per file,
on this machine (worker processes) or a Ray cluster, resumable.

    from densehead.batch import run_batch, video_table
    df = video_table("clip.mp4")                       # pandas DataFrame, densehead.io.table.COLUMNS
    report = run_batch(["study/"], "tables/", workers=2)   # what `densehead batch` does

Modules: plan (inputs -> jobs and output names), video_runner (a whole video through the
tracker), work (one file -> its table, in a worker), outputs (what counts as finished),
local / ray_engine (where the work runs), progress (the bar), runner (all of it, and batch.json).

May import: core, weights, engine, render, io.
"""
from __future__ import annotations

from .plan import Job, Plan, plan_inputs
from .runner import REPORT_NAME, BatchInterrupted, BatchReport, FileEntry, run_batch
from .work import BatchSettings, image_table, video_table

__all__ = ["REPORT_NAME", "BatchInterrupted", "BatchReport", "BatchSettings", "FileEntry", "Job",
           "Plan", "image_table", "plan_inputs", "run_batch", "video_table"]
