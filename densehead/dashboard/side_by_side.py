"""Two panes side by side in a given ratio, stacked once the second would be narrower than it
needs. Streamlit's columns stack only below a 640 px window, whatever they hold; a horizontal
container wraps its items, and CSS on its keyed panes says how wide each may shrink."""
from __future__ import annotations

import streamlit as st
from streamlit.delta_generator import DeltaGenerator

# A side panel of readouts, buttons and charts: narrower, its labels were cut and its charts
# were 160-210 px wide (a 1024 px window with the sidebar open)
SIDE_PANEL_MIN_PX = 300


def side_by_side(key: str, ratio: tuple[int, int],
                 second_min_px: float) -> tuple[DeltaGenerator, DeltaGenerator]:
    """(first pane, second pane): side by side, their widths in `ratio`, while the second is at
    least `second_min_px` wide; on a narrower page the second goes under the first, both whole."""
    first, second = f"{key}_first", f"{key}_second"
    st.html(f"<style>{pane_css(key, first, ratio[0], ratio[0] / ratio[1] * second_min_px)}"
            f"{pane_css(key, second, ratio[1], second_min_px)}</style>")
    with st.container(horizontal=True, key=key):
        return st.container(key=first), st.container(key=second)


def pane_css(row: str, pane: str, grow: int, basis_px: float) -> str:
    """A pane grows in proportion to `grow` from `basis_px`, below which the row wraps. Streamlit
    puts each item of a horizontal container in a wrapper div, the flex item; a keyed container
    gets the class st-key-<key>."""
    item = f".st-key-{row} > div:has(> .st-key-{pane}), .st-key-{row} > .st-key-{pane}"
    return f"{item} {{flex: {grow} 1 {basis_px:.0f}px; min-width: 0}}"
