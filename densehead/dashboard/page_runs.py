"""Which page ran last, counted on the script thread: streamlit-webrtc's own count lags on a busy
server and made it stop streams that had just started.

streamlit-webrtc resets a streamer (stopping its stream) when the session's run count moved on by
more than one since the streamer was last drawn: its sign that the person went to another page
and came back, so that the remounted component starts afresh. That count is Streamlit's
`script_run_count`, advanced when a run's end is *sent*, on the server's event loop. With several
streams on the server the loop lags behind the script thread; around START several runs follow
each other at once, two of them can be sent between two draws of the streamer, and the stream
that just started is stopped (the live page's "ended by itself" after STOP then START).

Here app.py counts the runs that reached their end, in the run itself, and the live page tells
streamlit-webrtc "drawn in the previous run" or "stale" from that count before each draw.
"""
from __future__ import annotations

import streamlit as st

FINISHED_RUNS = "densehead_finished_runs"   # session state: full runs that reached their end
_DRAWN = "densehead_drawn_after_runs:"      # + a streamer's key: FINISHED_RUNS when last drawn
_STALE = -2   # a last-drawn count that streamlit-webrtc takes as "not drawn for several runs"


def count_finished_run() -> None:
    """app.py calls this after the page's script ran to its end (an interrupted run is not
    counted: it raised past the call)."""
    st.session_state[FINISHED_RUNS] = st.session_state.get(FINISHED_RUNS, 0) + 1


def came_back(key: str) -> bool:
    """Whether a run of another page finished since this streamer was last drawn (the person
    left the page and came back); records this draw."""
    finished = st.session_state.get(FINISHED_RUNS, 0)
    last = st.session_state.get(_DRAWN + key)
    st.session_state[_DRAWN + key] = finished
    return last is not None and finished > last + 1


def reset_streamer_only_on_return(key: str) -> None:
    """Before `webrtc_streamer(key=key)`: let streamlit-webrtc reset the streamer's context when
    the person came back from another page, and never because its own count lagged."""
    returned = came_back(key)
    context = st.session_state.get(key)
    if context is not None and hasattr(context, "_last_rendered_run_count"):
        context._last_rendered_run_count = _STALE if returned else None
