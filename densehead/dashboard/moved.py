"""What a page says after the proxy moved its browser to another replica because the server it
was on went away: the stream and everything the session held stayed with the old server, so
the person starts again here.

The page knows from the browser's cookies (dashboard/proxy.py): the replica cookie names
another replica than this one (the page's websocket was the first request to move), or the
proxy's moved cookie names the lost one (an earlier request moved first; it lasts a minute).
"""
from __future__ import annotations

import os
import re

import streamlit as st

from .proxy import MOVED_COOKIE, REPLICA_COOKIE, REPLICA_ENV

# what a replica's name looks like (dashboard/replicas.py names them r0, r1, ...): a cookie is
# anyone's on this host name, and only a name is worth repeating on the page
REPLICA_NAME = re.compile(r"[A-Za-z0-9_-]{1,32}")


def lost_replica() -> str | None:
    """The replica this browser was on before the proxy moved it here, if it was moved; None on
    a server that is no replica (nothing could have moved the browser here)."""
    cookies = st.context.cookies
    here, was = os.environ.get(REPLICA_ENV), cookies.get(REPLICA_COOKIE)
    if not here:
        return None
    lost = was if was and was != here else cookies.get(MOVED_COOKIE)
    return lost if lost and REPLICA_NAME.fullmatch(lost) else None


def show_moved_notice() -> None:
    lost = lost_replica()
    if lost:
        st.warning(f"The server this page was on ({lost}) stopped, and the page reconnected to "
                   f"another one. What you had there (a live stream, its series and recording, "
                   f"uploads) stayed behind: on the live page, press START to stream again.",
                   icon="🔄")
