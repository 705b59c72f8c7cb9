"""Uploaded files on the server's disk."""
from __future__ import annotations

import tempfile
from pathlib import Path

import streamlit as st


def save_upload(data: bytes, name: str) -> Path:
    """Uploaded bytes to a private temporary file keeping the suffix (codecs go by it)."""
    folder = Path(tempfile.mkdtemp(prefix="densehead-"))
    path = folder / ("upload" + Path(name).suffix.lower())
    path.write_bytes(data)
    return path


def max_upload_mb() -> int:
    return int(st.get_option("server.maxUploadSize"))
