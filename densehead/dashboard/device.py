"""What a page can tell of the visitor's device before it draws: whether it is a phone."""
from __future__ import annotations

import streamlit as st

# Phones' browsers put "Mobi" in their User-Agent and tablets' do not (MDN's advice for telling
# them apart); the server sees no screen size before the page is drawn.
PHONE_MARK = "Mobi"


def on_phone() -> bool:
    """True when this session's browser says it runs on a phone."""
    try:
        agent = st.context.headers.get("User-Agent", "")
    except Exception:   # no browser behind the session (a bare run): not a phone
        return False
    return PHONE_MARK in agent


def chart_config() -> dict:
    """Plotly's config for a page's charts: the tool bar only while the pointer is over the chart
    (always shown, it covered the legend's first entries), and on a phone none, which a touch
    screen would keep shown (a finger still zooms and pans)."""
    return {"displaylogo": False, "displayModeBar": False if on_phone() else "hover"}
