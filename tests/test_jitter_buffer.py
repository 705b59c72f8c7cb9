"""The live page's receive jitter buffer (dashboard/jitter_buffer.py): aiortc's, handing a video
frame on at its last packet instead of at the first packet of the next frame. Real VP8 frames,
packetised by aiortc's own encoder as its sender does."""
from __future__ import annotations

import inspect

import av
import pytest
from aiortc import rtcrtpreceiver
from aiortc.codecs import vpx
from aiortc.jitterbuffer import JitterBuffer
from aiortc.rtp import RtpPacket

from densehead.dashboard import jitter_buffer
from densehead.dashboard.live import _video_frame
from densehead.dashboard.processing_track import RTP_CLOCK
from densehead.io.video import iter_frames


@pytest.fixture(scope="module")
def frames_as_packets(samples) -> list[list[RtpPacket]]:
    """12 frames of obama.mp4 at 640x480, every fourth a keyframe (several packets each), as
    the RTP packets a sender puts on the wire: the marker bit on each frame's last packet."""
    import cv2

    encoder = vpx.Vp8Encoder()
    out, seq = [], 1000
    for i, image in enumerate(iter_frames(samples / "videos" / "obama.mp4", max_frames=12)):
        frame = _video_frame(cv2.resize(image, (640, 480)))
        frame.pts, frame.time_base = i * 3600, RTP_CLOCK
        payloads, timestamp = encoder.encode(frame, force_keyframe=i % 4 == 0)
        packets = []
        for n, payload in enumerate(payloads):
            packet = RtpPacket(payload_type=96, sequence_number=seq, timestamp=timestamp,
                               marker=int(n == len(payloads) - 1), payload=payload)
            packet._data = vpx.vp8_depayload(payload)   # what aiortc's receiver does first
            packets.append(packet)
            seq += 1
        out.append(packets)
    assert max(len(p) for p in out) > 3, "no frame of several packets to check"
    return out


def test_a_frame_goes_on_at_its_last_packet_with_the_same_bytes(frames_as_packets):
    ours, aiortcs = jitter_buffer.MarkerJitterBuffer(512, is_video=True), JitterBuffer(512, is_video=True)
    ours_out, aiortc_out = [], []
    for number, packets in enumerate(frames_as_packets):
        for n, packet in enumerate(packets):
            mine, theirs = ours.add(packet)[1], aiortcs.add(packet)[1]
            # ours: the frame at its own last packet; aiortc's: the previous frame, at this one's first
            assert (mine is not None) == (n == len(packets) - 1), (number, n)
            assert (theirs is not None) == (n == 0 and number > 0), (number, n)
            ours_out += [mine] if mine else []
            aiortc_out += [theirs] if theirs else []
    assert len(ours_out) == len(frames_as_packets) and len(aiortc_out) == len(frames_as_packets) - 1
    assert [(f.data, f.timestamp) for f in ours_out[:-1]] == [(f.data, f.timestamp) for f in aiortc_out]
    decoder = av.CodecContext.create("libvpx", "r")
    pictures = [p for f in ours_out for p in decoder.decode(av.Packet(f.data))]
    assert len(pictures) == len(frames_as_packets) and pictures[0].width == 640


def test_a_frame_with_a_lost_packet_waits_for_its_retransmission(frames_as_packets):
    keyframe = frames_as_packets[4]
    assert len(keyframe) > 2
    buffer = jitter_buffer.MarkerJitterBuffer(512, is_video=True)
    for packets in frames_as_packets[:4]:
        for packet in packets:
            buffer.add(packet)
    lost, *rest = keyframe[1:]
    assert buffer.add(keyframe[0])[1] is None
    for packet in rest:   # the last one has the marker, but a packet before it is missing
        assert buffer.add(packet)[1] is None
    frame = buffer.add(lost)[1]   # the retransmission completes it
    assert frame is not None and frame.data == b"".join(p._data for p in keyframe)


def test_aiortc_receivers_make_it_for_video_only():
    """The contract with aiortc: its receiver makes its jitter buffer by the module's name
    JitterBuffer, with is_video for video, and the buffer's frame rule is _remove_frame."""
    source = inspect.getsource(rtcrtpreceiver.RTCRtpReceiver.__init__)
    assert "JitterBuffer(capacity=512, is_video=True)" in source
    assert "JitterBuffer(capacity=16, prefetch=4)" in source
    assert list(inspect.signature(JitterBuffer._remove_frame).parameters) == ["self", "sequence_number"]
    assert jitter_buffer.install() and jitter_buffer.install()
    assert isinstance(rtcrtpreceiver.JitterBuffer(capacity=512, is_video=True),
                      jitter_buffer.MarkerJitterBuffer)
    audio = rtcrtpreceiver.JitterBuffer(capacity=16, prefetch=4)
    assert type(audio) is JitterBuffer and audio._prefetch == 4
