"""Streamlit glue shared by the pages: cached pipeline, ICE servers, upload reading, and the
overlay with a visible fallback. Streamlit does not list `__init__.py` as a page, and the app's
directory is on sys.path under `streamlit run`, so pages import this as `pages`.
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import streamlit as st


ICE_ENV = "DENSEHEAD_ICE_SERVERS"
REGRESSOR = os.environ.get("DENSEHEAD_REGRESSOR", "mb05")
FALLBACK_MODE = "dense"


# --- models ------------------------------------------------------------------------------------

@st.cache_resource(show_spinner="Loading the face models (first start compiles the regressor)…")
def shared_pipeline(regressor: str = REGRESSOR) -> Any:
    """One Pipeline per process: its TFLite models serialise their own calls, so sessions and
    the webcam callback thread may share it."""
    from densehead import Pipeline

    return Pipeline(regressor=regressor, num_threads=2)


def load_pipeline() -> Any | None:
    """The shared pipeline, or None after showing why it could not be loaded."""
    try:
        return shared_pipeline()
    except Exception as exc:  # missing files, corrupt files: a message, not a traceback
        missing = type(exc).__name__ in ("MissingAssetsError", "AssetVerificationError")
        st.error(("The model files are missing.\n\n" if missing else "The models could not be loaded.\n\n")
                 + f"```\n{exc}\n```")
        st.info("See the Home page for where the files go (set `DENSEHEAD_ASSETS` to a folder "
                "holding them, or run `python -m densehead fetch` once while online).")
        return None


@dataclass
class ProcessingSettings:
    mode: str
    threshold: float
    smoothing: bool
    max_faces: int


def processing_settings(prefix: str) -> ProcessingSettings:
    """The sidebar settings the live and video pages share; widget keys are `<prefix>_...`."""
    from densehead import draw

    st.header("Settings")
    return ProcessingSettings(
        mode=st.selectbox("Overlay", draw.MODES, index=0, key=f"{prefix}_mode"),
        threshold=st.slider("Detection threshold", 0.3, 0.95, 0.7, 0.05, key=f"{prefix}_threshold"),
        smoothing=st.toggle("Smoothing (One Euro)", value=True, key=f"{prefix}_smoothing"),
        max_faces=int(st.number_input("Max faces", 1, 8, 4, key=f"{prefix}_max_faces")))


def renderer_status() -> str | None:
    """None when the C++ renderer is importable, else the reason it is not."""
    try:
        from densehead import render  # noqa: F401
    except Exception as exc:
        return str(exc) or type(exc).__name__
    return None


def overlay(frame: np.ndarray, faces: list, mode: str, model: Any) -> tuple[np.ndarray, str]:
    """Draw `mode`; when the renderer is missing draw the dense points instead and say so on
    the frame itself, so the fallback is visible, never silent."""
    from densehead import draw

    try:
        return draw.overlay(frame, faces, mode, model), ""
    except Exception as exc:
        if mode not in draw.RENDERED:
            raise
        note = f"{mode} needs the C++ renderer: showing {FALLBACK_MODE} points"
        out = draw.overlay(frame, faces, FALLBACK_MODE, model) if all(
            f.vertices is not None for f in faces) else frame.copy()
        cv2.putText(out, note, (8, out.shape[0] - 10), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
                    (0, 0, 255), 1, cv2.LINE_AA)
        return out, f"{note} ({exc})"


# --- WebRTC ------------------------------------------------------------------------------------

def ice_servers() -> list[dict[str, Any]]:
    """ICE servers from $DENSEHEAD_ICE_SERVERS (a JSON list) or secrets `ice_servers`; none by
    default, which is what a browser on the same machine needs."""
    raw: Any = os.environ.get(ICE_ENV)
    if raw:
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError:
            st.warning(f"{ICE_ENV} is not valid JSON; using no ICE servers.")
            return []
    else:
        try:
            raw = st.secrets.get("ice_servers", [])
        except Exception:  # no secrets.toml at all
            raw = []
    return [{"urls": s} if isinstance(s, str) else dict(s) for s in (raw or [])]


# --- uploads -----------------------------------------------------------------------------------

def save_upload(data: bytes, name: str) -> Path:
    """Uploaded bytes to a private temporary file keeping the suffix (codecs go by it)."""
    folder = Path(tempfile.mkdtemp(prefix="densehead-"))
    path = folder / ("upload" + Path(name).suffix.lower())
    path.write_bytes(data)
    return path


def max_upload_mb() -> int:
    return int(st.get_option("server.maxUploadSize"))
