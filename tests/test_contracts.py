"""Other libraries' internals the dashboard relies on, checked on the versions installed: the gate
for upgrading them (docs/contributing.md lists each with its test). Plotly's and aiortc's have
their own tests (test_figures.py, test_vp8.py); Streamlit's are here."""
from __future__ import annotations

import inspect

import pytest

streamlit = pytest.importorskip("streamlit")


def _page() -> None:
    import streamlit as st

    from densehead.dashboard.sessions import session_id

    st.write(f"session {session_id()}")


def test_streamlit_tells_a_script_its_session_id():
    """dashboard.sessions keys every session's resources by get_script_run_ctx().session_id."""
    from streamlit.testing.v1 import AppTest

    app = AppTest.from_function(_page)
    app.run()
    assert not app.exception
    text = app.markdown[0].value
    # AppTest names its one session "test session id"; a server gives a uuid
    assert text.startswith("session ") and text != "session no-session", text


def test_streamlit_runtime_answers_whether_a_browser_is_connected():
    """The janitor asks Runtime.instance().is_active_session(id) once a second, from its own
    thread; Runtime.exists() says whether a server runs at all. The e2e tests check the release
    this drives (test_live_server.py: a closed tab's session is released)."""
    from streamlit.runtime import Runtime

    assert callable(Runtime.exists) and callable(Runtime.instance)
    assert list(inspect.signature(Runtime.is_active_session).parameters) == ["self", "session_id"]
    assert Runtime.exists() is False   # no server in this process: the janitor then keeps all


def test_streamlit_keeps_its_pages_folder_fallback_switch():
    """dashboard.navigation turns the pages-folder fallback off the way st.navigation does, by
    PagesManager.uses_pages_directory (None until a server starts, then whether pages/ exists);
    the fallback itself is checked in a browser (test_browser.py, a fresh server's first visitor
    on a page URL)."""
    import inspect as inspect_module

    from streamlit.commands import navigation
    from streamlit.runtime.pages_manager import PagesManager

    assert hasattr(PagesManager, "uses_pages_directory")
    assert "PagesManager.uses_pages_directory = False" in inspect_module.getsource(navigation)


def test_streamlit_webrtc_resets_a_streamer_by_its_last_drawn_run_count():
    """dashboard.page_runs sets a streamer context's `_last_rendered_run_count` before each draw:
    None to skip streamlit-webrtc's reset (its count lags on a busy server), a stale number to
    make it reset when the person came back from another page. The behaviour is checked in a
    browser (test_live_server.py: STOP then START, and leaving the page and coming back)."""
    from streamlit_webrtc import component
    from streamlit_webrtc.component import WebRtcStreamerContext, WebRtcStreamerState

    from densehead.dashboard.page_runs import _STALE

    context = WebRtcStreamerContext(worker=None, state=WebRtcStreamerState(playing=False,
                                                                           signalling=False))
    assert context._last_rendered_run_count is None
    source = inspect.getsource(component._get_or_create_context)
    assert "context._last_rendered_run_count is not None" in source
    assert "current_run_count > context._last_rendered_run_count + 1" in source
    assert 0 > _STALE + 1   # any run count (from 0) is past a stale one
