"""Video analysis: upload a video, watch the progress, get the overlay video, series and files."""
from __future__ import annotations

import logging
from pathlib import Path

import streamlit as st

from densehead.batch.video_runner import analyze_video
from densehead.core.errors import ImageError, VideoError
from densehead.core.options import TrackerOptions
from densehead.dashboard.cached_pipeline import load_pipeline, renderer_status
from densehead.dashboard.drawing import draw_with_fallback
from densehead.dashboard.figures import expression_figure, pose_figure
from densehead.dashboard.navigation import open_page
from densehead.dashboard.sessions import server_resources, session_id
from densehead.dashboard.uploads import TempFolder, saved_upload, upload_types
from densehead.dashboard.video_progress import progress_line
from densehead.dashboard.widgets import processing_settings
from densehead.io import export, table
from densehead.io.video import SMALL_H264_PRESET, VIDEO_SUFFIXES
from densehead.render import draw

log = logging.getLogger("densehead.pages.video")
open_page("pages/3_Video_analysis.py")


pipe = load_pipeline()
if pipe is None:
    st.stop()

with st.sidebar:
    settings = processing_settings("video")
    mode, threshold = settings.mode, settings.threshold
    smoothing, max_faces = settings.smoothing, settings.max_faces
    limit = st.number_input("Max frames (0 = all)", 0, 100_000, 0, step=100, key="video_limit")
if mode in draw.RENDERED and (problem := renderer_status()):
    st.warning(f"The **{mode}** overlay needs the C++ renderer ({problem}); the video will show "
               "dense points instead, with a note on every frame.")

# Leaving the page, or changing the file or a setting, ends a running analysis (Streamlit stops
# the script): the next run says so, once.
RUNNING = "video_running"
# Set by the Analyse button's click and read once by the run it starts, which shows the button
# greyed out: a second click cannot restart the analysis it is running.
CLICKED = "video_analyse_clicked"
# The analysis shown: what it was made from (the upload and the settings), its result and the
# overlay video's path
JOB, RESULT, PLAYABLE = "video_job", "video_result", "video_playable"
if (stopped := st.session_state.pop(RUNNING, None)) is not None:
    st.info(f"The analysis of “{stopped}” stopped before its end: the page was left, or the file "
            "or a setting changed while it ran. Analyse it again to get its results.")

upload = st.file_uploader("Video (MP4, MOV, AVI, MKV, WebM, …)",
                          type=upload_types(VIDEO_SUFFIXES), key="video")
if upload is None:
    st.info("Upload a short video with faces. Each frame is tracked; you get the overlay video, "
            "pose and expression time series per face, and CSV/JSON files.")
    st.stop()

# This session's files (the upload while it is analysed, then the overlay video) live in one
# temporary folder that the server deletes seconds after the tab closes.
files = server_resources().get(session_id(), "video_files", lambda: TempFolder("densehead-video-"))
playable_kept = st.session_state.get(PLAYABLE)
if playable_kept is not None and not Path(playable_kept).exists():  # released while away
    st.session_state.pop(JOB, None)

job = (upload.file_id, settings, int(limit))   # a new upload, or a setting changed: a new job
if st.session_state.get(JOB) != job:
    requested = st.session_state.pop(CLICKED, False)   # a disabled button reads as not clicked
    st.button("Analyse", type="primary", key="video_analyse", disabled=requested,
              on_click=lambda: st.session_state.update({CLICKED: True}))
    if not requested:
        st.stop()
    files.clear()   # the previous analysis' video goes
    st.session_state.pop(JOB, None)
    playable = files.path / "overlay.mp4"   # H.264: the browser plays it
    bar = st.progress(0.0, text="Starting…")

    def report(done: int, total: int | None, elapsed: float) -> None:
        fill, text = progress_line(done, total, elapsed)
        bar.progress(fill, text=text)

    def failed(message: str) -> None:
        st.session_state.pop(RUNNING, None)
        playable.unlink(missing_ok=True)
        bar.empty()
        st.error(message)
        st.stop()

    view = pipe.with_options(score_threshold=threshold, max_faces=max_faces)
    st.session_state[RUNNING] = upload.name
    try:
        with saved_upload(upload.getvalue(), upload.name, files.path) as source:   # gone when analysed
            result = analyze_video(source, playable, view, mode=mode,
                                   options=TrackerOptions(smoothing=smoothing),
                                   max_frames=int(limit) or None, progress=report,
                                   overlay=lambda f, fs, m: draw_with_fallback(f, fs, m, view.face_model),
                                   # the page holds the video in memory (player and download)
                                   h264_preset=SMALL_H264_PRESET)
    except (ImageError, VideoError) as exc:   # not a video, unreadable codec: the input's fault
        log.info("video analysis of %s refused: %s", upload.name, exc)
        failed(str(exc))
    except Exception as exc:  # a fault of ours: a message, the trace in the log
        log.exception("video analysis of %s failed", upload.name)
        failed(f"“{upload.name}” could not be analysed: {exc}")
    st.session_state.pop(RUNNING, None)
    bar.progress(1.0, text=f"Done: {result.n_frames} frames, {result.ms_per_frame:.1f} ms per frame")
    st.session_state[JOB], st.session_state[RESULT] = job, result
    st.session_state[PLAYABLE] = playable

result = st.session_state[RESULT]
playable: Path = st.session_state[PLAYABLE]
for note in result.notes:
    st.warning(note)
if not len(result.table):
    st.warning("No face was found in this video.")

left, right = st.columns([3, 2])
with left:
    st.video(str(playable))
    # read when clicked: the player holds the video in the server's memory already
    st.download_button("Download overlay video (.mp4)", data=playable.read_bytes,
                       file_name=Path(upload.name).stem + "_overlay.mp4", mime="video/mp4",
                       on_click="ignore")
    st.caption(f"{result.n_frames} frames at {result.fps:.1f} fps; processing took "
               f"{result.ms_per_frame:.1f} ms per frame ({1e3 / max(result.ms_per_frame, 1e-3):.1f} fps).")
with right:
    stats = table.summary(result.table)
    if stats:
        st.subheader("Summary per track")
        st.dataframe(stats, hide_index=True, width="stretch")
    stem = Path(upload.name).stem
    st.download_button("Download series (.csv)", data=table.csv_text(result.table),
                       file_name=f"{stem}_series.csv", mime="text/csv", on_click="ignore")
    st.download_button("Download per-frame results (.json)",
                       data=lambda: export.frames_json(result.frames, source=upload.name,
                                                       fps=result.fps),
                       file_name=f"{stem}_faces.json", mime="application/json", on_click="ignore")

if len(result.table):
    st.subheader("Head pose")
    st.plotly_chart(pose_figure(result.table), key="video_pose")
    st.subheader("Expression coefficients")
    st.plotly_chart(expression_figure(result.table), key="video_expression")
