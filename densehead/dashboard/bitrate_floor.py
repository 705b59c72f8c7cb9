"""A floor under the bandwidth estimate the server sends each browser (REMB).

aiortc's receiver estimates the bandwidth from how a browser's packets arrive against the times
they were sent (`aiortc/rate.py`, a delay-based estimator like the browser's own) and tells the
browser to send no more than that. It takes a packet's arrival time when the event loop gets to
the packet, so a busy loop (several people at 640x480 on 2 cores) looks to it like a congested
network: the estimate falls to tens of kbps and the browser, keeping its resolution, sends one or
two frames a second. `FlooredBitrateEstimator` never asks for less than MIN_BITRATE; on a real
congested link the browser still backs off on its own when packets are lost.

While the estimator sees overuse, aiortc sends a REMB with nearly every packet that arrives; on an
overloaded server those RTCP packets took a noticeable share of the event loop's time, all asking
for the floor (docs/measurements.md). Like libwebrtc's REMB throttle, a REMB goes out at most every 200 ms unless the estimate
fell by 3% or more since the last one.

`install()` makes aiortc's receivers use it; `DENSEHEAD_BITRATE_FLOOR=aiortc` keeps aiortc's.
"""
from __future__ import annotations

from aiortc import rtcrtpreceiver
from aiortc.rate import RemoteBitrateEstimator

from .library_parts import library_kept, replace

ENV = "DENSEHEAD_BITRATE_FLOOR"
MIN_BITRATE = 300_000   # bps: a 640x480 talking head at 25 fps in VP8, a little soft
REMB_INTERVAL_MS = 200  # libwebrtc's REMB throttle: at most one per 200 ms ...
REMB_FALL_NOW = 0.97    # ... unless the estimate fell below 97% of the last one sent


class FlooredBitrateEstimator(RemoteBitrateEstimator):
    def __init__(self) -> None:
        super().__init__()
        self._sent: tuple[int, int] | None = None   # (arrival ms, bitrate) of the last REMB

    def add(self, arrival_time_ms: int, abs_send_time: int, payload_size: int,
            ssrc: int) -> tuple[int, list[int]] | None:
        estimate = super().add(arrival_time_ms=arrival_time_ms, abs_send_time=abs_send_time,
                               payload_size=payload_size, ssrc=ssrc)
        if estimate is None:
            return None
        bitrate = max(estimate[0], MIN_BITRATE)
        if self._sent is not None:
            sent_ms, sent_bitrate = self._sent
            if (arrival_time_ms - sent_ms < REMB_INTERVAL_MS
                    and bitrate >= REMB_FALL_NOW * sent_bitrate):
                return None
        self._sent = (arrival_time_ms, bitrate)
        return bitrate, estimate[1]


def install() -> bool:
    """Make aiortc's receivers in this process use FlooredBitrateEstimator (idempotent). False
    when DENSEHEAD_BITRATE_FLOOR=aiortc."""
    if library_kept(ENV, "aiortc"):
        return False
    replace(rtcrtpreceiver, "RemoteBitrateEstimator", FlooredBitrateEstimator,
            f"bandwidth asked of browsers: at least {MIN_BITRATE // 1000} kbps")
    return True
