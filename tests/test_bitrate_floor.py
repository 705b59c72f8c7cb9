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
    return [bitrate for _, bitrate in _rembs(estimator, seconds, lag_ms)]


def _rembs(estimator, seconds: float, lag_ms) -> list[tuple[int, int]]:
    """As `_browser_following`, with the arrival time (ms) of the packet each REMB answered."""
    bitrate, asked = 1_000_000, []
    for f in range(int(seconds * 25)):
        size = max(200, bitrate // 25 // 8)
        packets = max(1, size // 1000)
        for p in range(packets):
            sent_s = f / 25 + p * 0.001
            arrival_ms = int(sent_s * 1000 + lag_ms(f))
            remb = estimator.add(arrival_time_ms=arrival_ms,
                                 abs_send_time=int(sent_s * (1 << 18)) & 0xFFFFFF,
                                 payload_size=size // packets, ssrc=1234)
            if remb is not None:
                bitrate = remb[0]
                asked.append((arrival_ms, bitrate))
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


def test_a_busy_event_loop_is_not_sent_a_remb_for_every_packet():
    """While the loop falls behind, aiortc's estimator sees overuse and answers packet after
    packet with a REMB (an RTCP packet the loop must encrypt and send: here 22 a second, in the
    live server up to one per packet); ours sends one at most every 200 ms, or at once when the
    estimate falls by 3% or more."""
    lag = lambda f: 5 + 30 * (f % 10) if f >= 250 else 5   # noqa: E731
    busy = lambda rembs: [(t, b) for t, b in rembs if t >= 10_000]   # noqa: E731
    aiortcs = busy(_rembs(RemoteBitrateEstimator(), 30, lag))
    ours = busy(_rembs(bitrate_floor.FlooredBitrateEstimator(), 30, lag))
    assert len(aiortcs) > 20 * 10, "aiortc sent fewer than 10 REMBs a second: no test"
    assert len(ours) < len(aiortcs) / 3
    for (t0, b0), (t1, b1) in zip(ours, ours[1:]):
        assert t1 - t0 >= bitrate_floor.REMB_INTERVAL_MS or b1 < bitrate_floor.REMB_FALL_NOW * b0


def test_aiortc_receivers_make_it():
    """The contract with aiortc: its receiver makes its estimator by the module's name
    RemoteBitrateEstimator and calls add with these keywords."""
    source = inspect.getsource(rtcrtpreceiver.RTCRtpReceiver)
    assert "RemoteBitrateEstimator()" in source
    assert list(inspect.signature(RemoteBitrateEstimator.add).parameters) == [
        "self", "arrival_time_ms", "abs_send_time", "payload_size", "ssrc"]
    assert bitrate_floor.install() and bitrate_floor.install()
    assert rtcrtpreceiver.RemoteBitrateEstimator is bitrate_floor.FlooredBitrateEstimator
