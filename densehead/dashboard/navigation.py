"""The dashboard's pages as the navigation shows them, and the guard that keeps every page
inside it.

app.py names the pages with `st.navigation` (the entry shows as "Home", not as the file's
name). But Streamlit keeps a fallback for apps with a `pages/` folder (its multipage "v1"): until
some run of app.py has called `st.navigation` in the server process, a page opened by its own
URL (a bookmark of /Live_webcam, the first visitor after a restart) runs without app.py, under
a navigation built from the file names ("app"). `stay_in_app_navigation` at the top of a page
turns that fallback off and reruns, so the page runs through app.py like any other.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from .moved import show_moved_notice


@dataclass(frozen=True)
class PageEntry:
    script: str      # relative to app.py
    title: str
    icon: str
    url_path: str


PAGES = (
    PageEntry("pages/1_Live_webcam.py", "Live webcam", "🎥", "Live_webcam"),
    PageEntry("pages/2_3D_viewer.py", "3D viewer", "🧊", "3D_viewer"),
    PageEntry("pages/3_Video_analysis.py", "Video analysis", "🎬", "Video_analysis"),
)


SEEN = "densehead_page_seen"   # session state: this session has run a page already


def stay_in_app_navigation() -> None:
    """Rerun a page that Streamlit's pages-folder fallback ran without app.py, through app.py.
    Only a session's first run is rerun: it is a page load, so nothing of the person's is lost
    (a later run may carry a button's click, which a rerun would drop)."""
    from streamlit.runtime.pages_manager import PagesManager

    first_run = not st.session_state.get(SEEN, False)
    st.session_state[SEEN] = True
    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False   # what st.navigation itself sets
        if first_run:
            st.rerun()


def open_page(script: str) -> None:
    """What every page does first (`open_page(__file__)`), with its title and icon from PAGES
    (one home for both): through app.py if it was opened by its own URL, the browser tab's
    title, the heading, and the notice of a moved session behind the replicas' proxy."""
    entry = next(e for e in PAGES if Path(e.script).name == Path(script).name)
    stay_in_app_navigation()
    st.set_page_config(page_title=f"densehead · {entry.title}", page_icon=entry.icon,
                       layout="wide")
    st.title(entry.title)
    show_moved_notice()
