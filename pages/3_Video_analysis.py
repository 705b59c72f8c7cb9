"""Video analysis: upload a video, watch the progress, get the overlay video, series and files."""
from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import streamlit as st
from streamlit.runtime.uploaded_file_manager import UploadedFile

from densehead.batch.video_runner import analyze_video
from densehead.core.errors import ImageError, VideoError
from densehead.core.options import TrackerOptions
from densehead.dashboard.cached_pipeline import load_pipeline, renderer_status
from densehead.dashboard.device import chart_config
from densehead.dashboard.drawing import draw_with_fallback
from densehead.dashboard.figures import (
    DASHES,
    expression_figure,
    longest_tracks,
    pose_figure,
)
from densehead.dashboard.navigation import open_page
from densehead.dashboard.sessions import server_resources, session_id
from densehead.dashboard.side_by_side import SIDE_PANEL_MIN_PX, side_by_side
from densehead.dashboard.text import plain
from densehead.dashboard.uploads import (
    TempFolder,
    download_stem,
    saved_upload,
    upload_file_name,
    upload_types,
)
from densehead.dashboard.video_progress import progress_line
from densehead.dashboard.widgets import processing_settings
from densehead.io import export, table
from densehead.io.video import SMALL_H264_PRESET, VIDEO_SUFFIXES
from densehead.render import draw

log = logging.getLogger("densehead.pages.video")
open_page(__file__)

CHART_TRACKS = len(DASHES)   # the longest tracks charted: one line style each for expression


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
# The analysis shown: what it was made from (the upload's digest and the settings), its result,
# the overlay video's path and the upload's name; the digest of the upload now in the uploader
JOB, RESULT, PLAYABLE, NAME = "video_job", "video_result", "video_playable", "video_name"
DIGEST = "video_digest"
# Why the last analysis failed, said by the run after it (in which Analyse can be clicked again)
FAILED = "video_failed"
if (stopped := st.session_state.pop(RUNNING, None)) is not None:
    st.info(f"The analysis of “{plain(stopped)}” stopped before its end: the page was left, or "
            "the file or a setting changed while it ran. Analyse it again to get its results.")
if (failure := st.session_state.pop(FAILED, None)) is not None:
    st.error(failure)

upload = st.file_uploader("Video (MP4, MOV, AVI, MKV, WebM, …)",
                          type=upload_types(VIDEO_SUFFIXES), key="video")
# This session's files (the upload while it is analysed, then the overlay video) live in one
# temporary folder that the server deletes seconds after the tab closes.
files = server_resources().get(session_id(), "video_files", lambda: TempFolder("densehead-video-"))
playable_kept = st.session_state.get(PLAYABLE)
if playable_kept is not None and not Path(playable_kept).exists():  # released while away
    for key in (JOB, RESULT, PLAYABLE, NAME):
        st.session_state.pop(key, None)


def digest(upload: UploadedFile) -> str:
    """The upload's content hash, worked out once per upload (not on every rerun): the same
    video uploaded again finds its results."""
    file_id, known = st.session_state.get(DIGEST, (None, ""))
    if file_id != upload.file_id:
        known = hashlib.sha1(upload.getvalue()).hexdigest()
        st.session_state[DIGEST] = (upload.file_id, known)
    return known


def naming_the_upload(text: str, name: str) -> str:
    """A message of the library's, which names the server's copy of the upload (its name may be
    cut or cleaned), naming the person's file instead, in quotes, shown as written."""
    return plain(text.replace(upload_file_name(name), f"“{name}”"))


def say_failed(message: str) -> None:
    """End this run and start the next, which says `message` with Analyse clickable again."""
    st.session_state.pop(RUNNING, None)
    files.clear()
    st.session_state[FAILED] = message
    st.rerun()


def analyse(upload: UploadedFile, job: tuple) -> None:
    """Analyse the upload behind a greyed-out Analyse button, keep the result, and rerun to
    show it; a run without the button's click stops here."""
    requested = st.session_state.pop(CLICKED, False)   # a disabled button reads as not clicked
    st.button("Analyse", type="primary", key="video_analyse", disabled=requested,
              on_click=lambda: st.session_state.update({CLICKED: True}))
    if not requested:
        st.stop()
    files.clear()   # the previous analysis' video goes
    for key in (JOB, RESULT, PLAYABLE, NAME):
        st.session_state.pop(key, None)
    playable = files.path / "overlay.mp4"   # H.264: the browser plays it
    bar = st.progress(0.0, text="Starting…")

    def report(done: int, total: int | None, elapsed: float) -> None:
        fill, text = progress_line(done, total, elapsed)
        bar.progress(fill, text=text)

    view = pipe.with_options(score_threshold=threshold, max_faces=max_faces)
    st.session_state[RUNNING] = upload.name
    try:
        with saved_upload(upload.getvalue(), upload.name, files.path) as source:
            result = analyze_video(source, playable, view, mode=mode,
                                   options=TrackerOptions(smoothing=smoothing),
                                   max_frames=int(limit) or None, progress=report,
                                   overlay=lambda f, fs, m: draw_with_fallback(f, fs, m,
                                                                               view.face_model),
                                   # the page holds the video in memory (player and download)
                                   h264_preset=SMALL_H264_PRESET)
    except (ImageError, VideoError) as exc:   # not a video, unreadable codec: the input's fault
        log.info("video analysis of %s refused: %s", upload.name, exc)
        say_failed(naming_the_upload(str(exc), upload.name))
    except Exception as exc:  # a fault of ours: a message, the trace in the log
        log.exception("video analysis of %s failed", upload.name)
        say_failed(f"“{plain(upload.name)}” could not be analysed: {plain(str(exc))}")
    st.session_state.pop(RUNNING, None)
    st.session_state[JOB], st.session_state[RESULT] = job, result
    st.session_state[PLAYABLE], st.session_state[NAME] = playable, upload.name
    st.rerun()


if upload is not None:
    job = (digest(upload), settings, int(limit))   # another video or setting: another job
    if st.session_state.get(JOB) != job:
        analyse(upload, job)
elif RESULT in st.session_state:   # the uploader forgets its file when another page is shown
    st.info(f"The results of “{plain(st.session_state[NAME])}”, analysed earlier. Upload a "
            "video to analyse another (or this one with other settings).")
else:
    st.info("Upload a short video with faces. Each frame is tracked; you get the overlay video, "
            "pose and expression time series per face, and CSV/JSON files.")
    st.stop()

result = st.session_state[RESULT]
playable: Path = st.session_state[PLAYABLE]
name = st.session_state[NAME]
stem = download_stem(name, "video")
st.success(f"Done: {result.n_frames} frames, {result.ms_per_frame:.1f} ms per frame")
for note in result.notes:   # icon given: a name starting with an emoji would take its place
    st.warning(naming_the_upload(note, name), icon="⚠️")
if not len(result.table):
    st.warning("No face was found in this video.")

# the downloads under the video where beside it, they would be too narrow for their labels
left, right = side_by_side("video_top", (3, 2), SIDE_PANEL_MIN_PX)
with left:
    st.video(str(playable))
    # read when clicked: the player holds the video in the server's memory already
    st.download_button("Download overlay video (.mp4)", data=playable.read_bytes,
                       file_name=f"{stem}_overlay.mp4", mime="video/mp4", on_click="ignore")
    st.caption(f"{result.n_frames} frames at {result.fps:.1f} fps; processing took "
               f"{result.ms_per_frame:.1f} ms per frame "
               f"({1e3 / max(result.ms_per_frame, 1e-3):.1f} fps).")
with right:
    with st.container(horizontal=True):   # each label whole, the row wrapping
        st.download_button("Download series (.csv)", data=table.csv_text(result.table),
                           file_name=f"{stem}_series.csv", mime="text/csv", on_click="ignore")
        st.download_button("Download per-frame results (.json)",
                           data=lambda: export.frames_json(result.frames, source=name,
                                                           fps=result.fps),
                           file_name=f"{stem}_faces.json", mime="application/json",
                           on_click="ignore")
stats = table.summary(result.table)
if stats:   # the page's width: its 16 columns beside the video showed 2 to 5
    st.subheader("Summary per track")
    st.dataframe(stats, hide_index=True, width="stretch")

if len(result.table):
    charted, tracks = longest_tracks(result.table, CHART_TRACKS)
    st.subheader("Head pose")
    st.plotly_chart(pose_figure(charted), key="video_pose", config=chart_config())
    st.subheader("Expression coefficients")
    st.plotly_chart(expression_figure(charted), key="video_expression", config=chart_config())
    if tracks > CHART_TRACKS:
        st.caption(f"The charts show the {CHART_TRACKS} longest of the {tracks} tracks "
                   "(faces in the background, or found again after a miss, make more); the "
                   "summary and the downloads have them all.")
