"""Sidebar settings the live and video pages share."""
from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from ..core.options import PipelineOptions, TrackerOptions
from ..render import draw

_PIPELINE, _TRACKER = PipelineOptions(), TrackerOptions()
MAX_FACES_LIMIT = 16


@dataclass(frozen=True)
class ProcessingSettings:
    mode: str
    threshold: float
    smoothing: bool
    max_faces: int


def processing_settings(prefix: str) -> ProcessingSettings:
    """The overlay / threshold / smoothing / max faces controls; widget keys are `<prefix>_...`."""
    st.header("Settings")
    return ProcessingSettings(
        mode=st.selectbox("Overlay", draw.MODES, index=draw.MODES.index(draw.DEFAULT_MODE),
                          key=f"{prefix}_mode"),
        threshold=st.slider("Detection threshold", 0.3, 0.95, _PIPELINE.score_threshold, 0.05,
                            key=f"{prefix}_threshold"),
        smoothing=st.toggle("Smoothing (One Euro)", value=_TRACKER.smoothing,
                            key=f"{prefix}_smoothing"),
        max_faces=int(st.number_input("Max faces", 1, MAX_FACES_LIMIT, _PIPELINE.max_faces,
                                      key=f"{prefix}_max_faces")))
