"""What a page says after the proxy moved its browser to another replica because the server it
was on went away: the stream and everything the session held stayed with the old server, so
the person starts again here.

The page knows from the browser's cookies (dashboard/proxy.py): the replica cookie names
another replica than this one (the page's websocket was the first request to move), or the
proxy's moved cookie names the lost one (an earlier request moved first; it lasts a minute).
"""
from __future__ import annotations

import os

import streamlit as st

from .proxy import MOVED_COOKIE, REPLICA_COOKIE, REPLICA_ENV


def lost_replica() -> str | None:
    """The replica this browser was on before the proxy moved it here, if it was moved."""
    cookies = st.context.cookies
    here, was = os.environ.get(REPLICA_ENV), cookies.get(REPLICA_COOKIE)
    return was if here and was and was != here else cookies.get(MOVED_COOKIE)


def show_moved_notice() -> None:
    lost = lost_replica()
    if lost:
        st.warning(f"The server this page was on ({lost}) stopped, and the page reconnected to "
                   f"another one. What you had there (a live stream, its series and recording, "
                   f"uploads) stayed behind: on the live page, press START to stream again.",
                   icon="🔄")
