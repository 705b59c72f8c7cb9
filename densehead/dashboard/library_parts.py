"""Our replacements for parts of aiortc, aioice and streamlit-webrtc, each put in place by one
call.

Five modules replace a part the libraries give no option for (vp8: the VP8 encoder,
processing_track: streamlit-webrtc's processing track, jitter_buffer: the video jitter buffer,
bitrate_floor: the bandwidth estimate, ice_consent: aioice's consent checks); each has a
contract test and an environment variable that keeps the library's own part, to measure against
it or to get round a problem.
"""
from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)


def library_kept(env: str, library: str) -> bool:
    """True when the environment variable `env` says to keep `library`'s own part."""
    return os.environ.get(env, "").strip().lower() == library


def replace(owner: object, name: str, ours: object, said: str = "") -> None:
    """Put `ours` in place of `owner.name` (idempotent); `said` is logged the first time."""
    if getattr(owner, name) is not ours:
        setattr(owner, name, ours)
        if said:
            log.info(said)
