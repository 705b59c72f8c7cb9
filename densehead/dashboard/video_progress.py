"""How the video page's progress bar reads while a video is analysed."""
from __future__ import annotations


def progress_line(done: int, total: int | None, elapsed_s: float) -> tuple[float, str]:
    """(the bar's fill, its text) after `done` frames of about `total` (None: the header
    states no length) in `elapsed_s` seconds."""
    rate = done / elapsed_s if elapsed_s > 0 else 0.0
    if not total:
        return 0.5, f"Frame {done} · {rate:.1f} fps (length unknown)"
    eta = (total - done) / rate if rate else 0.0
    return (min(done / total, 1.0),
            f"Frame {done} of ~{total} · {rate:.1f} fps · ETA {max(eta, 0):.0f} s")
