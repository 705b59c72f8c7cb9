"""aiortc's video jitter buffer, handing a frame on when its last packet arrives.

aiortc's `JitterBuffer` (1.16, `aiortc/jitterbuffer.py`) knows a frame is complete only when a
packet of the next frame arrives (a new RTP timestamp), so every frame the browser sends waits
there one frame period (40 ms at 25 fps) before it is decoded. The sender marks the last packet of
each video frame (the RTP marker bit; RFC 7741 for VP8, and aiortc's own sender does it too):
`MarkerJitterBuffer` hands the frame on at that packet when every packet before it has arrived,
and otherwise keeps aiortc's rule (a lost packet still waits for its retransmission).

`install()` makes aiortc's receivers use it for video; `DENSEHEAD_JITTER_BUFFER=aiortc` keeps
aiortc's own.
"""
from __future__ import annotations

from aiortc import rtcrtpreceiver
from aiortc.jitterbuffer import JitterBuffer, JitterFrame

from .library_parts import library_kept, replace

ENV = "DENSEHEAD_JITTER_BUFFER"


class MarkerJitterBuffer(JitterBuffer):
    def _remove_frame(self, sequence_number: int) -> JitterFrame | None:
        return super()._remove_frame(sequence_number) or self._frame_at_marker()

    def _frame_at_marker(self) -> JitterFrame | None:
        """The oldest frame, if all its packets are here up to one with the marker bit."""
        packets = []
        for count in range(self.capacity):
            packet = self._packets[(self._origin + count) % self.capacity]
            if packet is None or (packets and packet.timestamp != packets[0].timestamp):
                return None
            packets.append(packet)
            if packet.marker:
                self.remove(count + 1)
                return JitterFrame(data=b"".join(p._data for p in packets), timestamp=packet.timestamp)
        return None


def _jitter_buffer(capacity: int, prefetch: int = 0, is_video: bool = False) -> JitterBuffer:
    """What aiortc's receiver makes in place of `JitterBuffer(...)`: ours for video."""
    kind = MarkerJitterBuffer if is_video else JitterBuffer
    return kind(capacity, prefetch=prefetch, is_video=is_video)


def install() -> bool:
    """Make aiortc's video receivers in this process use MarkerJitterBuffer (idempotent). False
    when DENSEHEAD_JITTER_BUFFER=aiortc."""
    if library_kept(ENV, "aiortc"):
        return False
    replace(rtcrtpreceiver, "JitterBuffer", _jitter_buffer,
            "video from browsers: a frame is decoded at its last packet")
    return True
