"""The models every page shares: loaded once per server process, read-only afterwards."""
from __future__ import annotations

import logging
import os

import cv2
import streamlit as st

from ..core.options import AUTO
from ..engine.pipeline import Pipeline
from ..weights.assets import ASSETS_ENV, MissingAssetsError
from .serve import DEFAULT_THREADS, THREADS_ENV

log = logging.getLogger(__name__)
THREADS = int(os.environ.get(THREADS_ENV, DEFAULT_THREADS))   # see dashboard/serve.py


@st.cache_resource(show_spinner="Loading the face models (first start compiles the regressor)…")
def shared_pipeline(regressor: str = AUTO, threads: int = THREADS) -> Pipeline:
    """One Pipeline per process: it holds nothing per call and its TFLite models serialise
    their own calls, so sessions and webcam callback threads may share it (each session
    takes its own `with_options` view for its settings)."""
    cv2.setNumThreads(threads)   # process-wide: colour conversions, resizes, drawing
    return Pipeline(regressor=regressor, num_threads=threads)


def load_pipeline() -> Pipeline | None:
    """The shared pipeline, or None after showing why it could not be loaded."""
    try:
        return shared_pipeline()
    except Exception as exc:  # missing or corrupt files: a message on the page, the trace in the log
        log.exception("the face models could not be loaded")
        missing = isinstance(exc, MissingAssetsError)
        st.error(("The model files are missing.\n\n" if missing else "The models could not be loaded.\n\n")
                 + f"```\n{exc}\n```")
        st.info(f"See the Home page for where the files go (set `{ASSETS_ENV}` to a folder "
                "holding them, or run `python -m densehead fetch` once while online).")
        return None


def renderer_status() -> str | None:
    """None when the C++ renderer is importable, else the reason it is not."""
    try:
        from ..render import renderer as render  # noqa: F401
    except ImportError as exc:
        return str(exc) or type(exc).__name__
    return None
