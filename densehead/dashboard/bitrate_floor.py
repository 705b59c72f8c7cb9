"""A floor under the bandwidth estimate the server sends each browser (REMB).

aiortc's receiver estimates the bandwidth from how a browser's packets arrive against the times
they were sent (`aiortc/rate.py`, a delay-based estimator like the browser's own) and tells the
browser to send no more than that. It takes a packet's arrival time when the event loop gets to
the packet, so a busy loop (several people at 640x480 on 2 cores) looks to it like a congested
network: the estimate falls to tens of kbps and the browser, keeping its resolution, sends one or
two frames a second. `FlooredBitrateEstimator` never asks for less than MIN_BITRATE; on a real
congested link the browser still backs off on its own when packets are lost.

`install()` makes aiortc's receivers use it; `DENSEHEAD_BITRATE_FLOOR=aiortc` keeps aiortc's.
"""
from __future__ import annotations

from aiortc import rtcrtpreceiver
from aiortc.rate import RemoteBitrateEstimator

from .library_parts import library_kept, replace

ENV = "DENSEHEAD_BITRATE_FLOOR"
MIN_BITRATE = 300_000   # bps: a 640x480 talking head at 25 fps in VP8, a little soft


class FlooredBitrateEstimator(RemoteBitrateEstimator):
    def add(self, arrival_time_ms: int, abs_send_time: int, payload_size: int,
            ssrc: int) -> tuple[int, list[int]] | None:
        estimate = super().add(arrival_time_ms=arrival_time_ms, abs_send_time=abs_send_time,
                               payload_size=payload_size, ssrc=ssrc)
        if estimate is None:
            return None
        bitrate, ssrcs = estimate
        return max(bitrate, MIN_BITRATE), ssrcs


def install() -> bool:
    """Make aiortc's receivers in this process use FlooredBitrateEstimator (idempotent). False
    when DENSEHEAD_BITRATE_FLOOR=aiortc."""
    if library_kept(ENV, "aiortc"):
        return False
    replace(rtcrtpreceiver, "RemoteBitrateEstimator", FlooredBitrateEstimator,
            f"bandwidth asked of browsers: at least {MIN_BITRATE // 1000} kbps")
    return True
