"""WebRTC settings for the live page."""
from __future__ import annotations

import json
import logging
import os
from typing import Any

import streamlit as st

log = logging.getLogger(__name__)
ICE_ENV = "DENSEHEAD_ICE_SERVERS"


def ice_servers() -> list[dict[str, Any]]:
    """ICE servers from $DENSEHEAD_ICE_SERVERS (a JSON list) or secrets `ice_servers`; none by
    default, which is what a browser on the same machine needs."""
    raw: Any = os.environ.get(ICE_ENV)
    if raw:
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError:
            log.warning("%s is not valid JSON; using no ICE servers", ICE_ENV)
            st.warning(f"{ICE_ENV} is not valid JSON; using no ICE servers.")
            return []
    else:
        try:
            raw = st.secrets.get("ice_servers", [])
        except FileNotFoundError:  # no secrets.toml at all
            raw = []
    return [{"urls": s} if isinstance(s, str) else dict(s) for s in (raw or [])]
