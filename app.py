"""densehead dashboard: the entry point. It names the pages (the navigation shows "Home", not
the file's name) and runs the one the browser asked for; the home page is below: what this is,
how to use each page, which model files were found."""
from __future__ import annotations

import pandas  # noqa: F401  (see below)
import streamlit as st

from densehead.core.machine import this_machine
from densehead.core.options import REGRESSOR_ENV
from densehead.dashboard.cached_pipeline import load_pipeline, renderer_status
from densehead.dashboard.moved import show_moved_notice
from densehead.dashboard.navigation import PAGES
from densehead.dashboard.page_runs import count_finished_run
from densehead.weights import assets

# pandas is imported here, whole, before any page runs. Streamlit imports it when a page first
# shows a table, and Plotly takes it from sys.modules when it draws: a page drawn on one thread
# while another session's page was still importing pandas failed on a half-imported module.


def home() -> None:
    st.set_page_config(page_title="densehead", page_icon="🙂", layout="wide")
    st.title("densehead — real-time 3D dense face alignment on the CPU")
    show_moved_notice()   # behind the replicas' proxy, after this browser's server stopped
    st.markdown(INTRO)
    st.header("Pages")
    st.markdown(PAGES_TEXT)
    st.header("Model status")
    missing = model_status()
    if not missing:
        regressor_line()
    renderer_line()


INTRO = (
    "3DDFA_V2 re-implemented on TensorFlow Lite: every face gets a 3D morphable-model fit — "
    "head pose (yaw, pitch, roll), 68 landmarks, 10 expression and 40 shape coefficients, and "
    "a dense mesh of 38,365 vertices — fast enough for a live webcam on two CPU cores. "
    "Everything runs on this server; nothing is sent elsewhere.")
PAGES_TEXT = (
    "- **Live webcam** — press *START* and allow the camera. Your video goes to this server, "
    "is processed frame by frame, and comes back with the overlay you pick (sparse landmarks, "
    "dense points, pose cube, lit mesh, depth, PNCC). Beside it: server FPS, time per stage, "
    "and charts of yaw/pitch/roll and the expression coefficients; download the series as "
    "CSV. When the server cannot keep up it drops frames rather than queueing them, so the "
    "delay stays small.\n"
    "- **3D viewer** — upload a photo (or take one with the camera), pick a face, and turn its "
    "mesh around in 3D, coloured from the photo. Toggle the wireframe, landmarks and pose "
    "axes; download the mesh as .obj (with vertex colours) or .ply and the numbers as .json.\n"
    "- **Video analysis** — upload a video; a progress bar shows the ETA; you get the overlay "
    "video, pose and expression time series per tracked face, summary statistics, and "
    "CSV/JSON exports.")
KIND = {True: "official", False: "stand-in (not the official file)", None: "—"}


def model_status() -> list[str]:
    """The model files' table, the compiled graphs' cache and what is wrong; the files missing."""
    found = assets.status(assets.default_names())
    st.dataframe([{"file": s.name, "found": "yes" if s.path else "MISSING", "source": s.source,
                   "kind": KIND[s.official], "path": str(s.path or "")} for s in found],
                 hide_index=True, width="stretch")
    missing = [s.name for s in found if s.path is None]
    standins = [s.name for s in found if s.official is False]
    compiled = assets.compiled_dir()
    cached = sorted(p.name for p in compiled.glob("*.tflite")) if compiled.is_dir() else []
    if cached:
        # a count, not the names: hashes that made a tall box on a phone and mean nothing here
        st.success(f"{len(cached)} compiled TFLite graph(s) of the detector and the regressor "
                   f"cached in `{compiled}`.")
    else:
        st.info(f"No compiled TFLite graph cached yet in `{compiled}`: the first page that needs "
                "the models compiles the detector and the regressor (from its PyTorch "
                "checkpoint), a few seconds, once.")
    if standins:
        st.warning(f"Using stand-in data for {', '.join(standins)}: results are approximate "
                   "away from the mean face. Put the official file in the assets folder to fix "
                   "this.")
    if missing:
        where = assets.assets_dir() or assets.cache_dir()
        st.error(
            f"Missing model files: {', '.join(missing)}.\n\n"
            f"Either run `python -m densehead fetch` once while online (files go to "
            f"`{assets.cache_dir()}`), or copy them into a folder and start the app with "
            f"`{assets.ASSETS_ENV}=/that/folder`. Currently looking in `{where}`.")
    return missing


def regressor_line() -> None:
    pipe = load_pipeline()
    if pipe is not None:
        choice = pipe.regressor_choice
        st.info(f"Regressor **{choice.name}** on this server's CPU ({this_machine().describe()}): "
                f"{choice.reason}. `{REGRESSOR_ENV}=mb05` or `mb05-int8` forces one.")


def renderer_line() -> None:
    problem = renderer_status()
    if problem:
        st.warning(f"The C++ mesh renderer is not available ({problem}). The mesh, depth and PNCC "
                   "overlays fall back to dense points and say so on the video. Reinstall with "
                   "`pip install -e .` to build it.")
    else:
        st.success("C++ mesh renderer: built and loaded.")


st.navigation([st.Page(home, title="Home", icon="🙂", default=True)]
              + [st.Page(p.script, title=p.title, icon=p.icon, url_path=p.url_path)
                 for p in PAGES]).run()
count_finished_run()   # reached only by a run that was not interrupted
