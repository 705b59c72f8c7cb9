"""The video page's progress bar text (dashboard.video_progress)."""
from __future__ import annotations

from densehead.dashboard.video_progress import progress_line


def test_the_bar_says_where_it_is_how_fast_and_how_long_is_left():
    fill, text = progress_line(50, 200, 5.0)
    assert fill == 0.25
    assert text == "Frame 50 of ~200 · 10.0 fps · ETA 15 s"


def test_a_header_that_undercounts_never_overfills_the_bar_or_counts_below_zero():
    fill, text = progress_line(210, 200, 10.0)
    assert fill == 1.0 and text.endswith("ETA 0 s")


def test_a_video_of_unknown_length_shows_its_rate_alone():
    fill, text = progress_line(30, None, 0.0)
    assert 0 < fill < 1 and text == "Frame 30 · 0.0 fps (length unknown)"
