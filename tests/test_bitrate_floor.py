"""The bandwidth estimate the live server sends browsers (dashboard/bitrate_floor.py): aiortc's
own, with a floor, on the arrivals aiortc's receiver would feed it."""
from __future__ import annotations

import inspect

from aiortc import rtcrtpreceiver
from aiortc.rate import RemoteBitrateEstimator

from densehead.dashboard import bitrate_floor


def _browser_following(estimator, seconds: float, lag_ms) -> list[int]:
    """A browser sending 25 frames a second at the bitrate the estimator last asked for (from 1
    Mbps), in packets of up to 1000 bytes, each frame arriving `lag_ms(frame)` after it was
    sent: the REMB values the estimator asks for, in order."""
    bitrate, asked = 1_000_000, []
    for f in range(int(seconds * 25)):
        size = max(200, bitrate // 25 // 8)
        packets = max(1, size // 1000)
        for p in range(packets):
            sent_s = f / 25 + p * 0.001
            remb = estimator.add(arrival_time_ms=int(sent_s * 1000 + lag_ms(f)),
                                 abs_send_time=int(sent_s * (1 << 18)) & 0xFFFFFF,
                                 payload_size=size // packets, ssrc=1234)
            if remb is not None:
                bitrate = remb[0]
                asked.append(bitrate)
    return asked


def test_a_busy_event_loop_does_not_ask_the_browser_for_next_to_nothing():
    """Arrivals on time for 10 s, then an event loop that falls behind by up to 270 ms and
    catches up, over and over: aiortc's estimate spirals down (the browser sends less, less
    arrives, less is asked for); the floored one stops at MIN_BITRATE. While arrivals are on
    time the two agree: above the floor nothing changes."""
    lag = lambda f: 5 + 30 * (f % 10) if f >= 250 else 5   # noqa: E731
    ours = _browser_following(bitrate_floor.FlooredBitrateEstimator(), 30, lag)
    aiortcs = _browser_following(RemoteBitrateEstimator(), 30, lag)
    assert min(aiortcs) < bitrate_floor.MIN_BITRATE / 3, "aiortc's estimate did not fall: no test"
    assert min(ours) == bitrate_floor.MIN_BITRATE
    calm = _browser_following(RemoteBitrateEstimator(), 10, lambda f: 5)
    assert ours[:len(calm)] == calm and min(calm) > bitrate_floor.MIN_BITRATE


def test_aiortc_receivers_make_it():
    """The contract with aiortc: its receiver makes its estimator by the module's name
    RemoteBitrateEstimator and calls add with these keywords."""
    source = inspect.getsource(rtcrtpreceiver.RTCRtpReceiver)
    assert "RemoteBitrateEstimator()" in source
    assert list(inspect.signature(RemoteBitrateEstimator.add).parameters) == [
        "self", "arrival_time_ms", "abs_send_time", "payload_size", "ssrc"]
    assert bitrate_floor.install() and bitrate_floor.install()
    assert rtcrtpreceiver.RemoteBitrateEstimator is bitrate_floor.FlooredBitrateEstimator
