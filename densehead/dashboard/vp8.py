"""The VP8 encoder of the video sent back to the browser: aiortc's, with cheaper settings.

aiortc hard-codes its VP8 settings (speed `cpu-used -6`, the denoiser on, up to 1.5 Mbps) and
has no option for them. Ours (speed -14, no denoiser, at most 1 Mbps, static threshold 1000)
encode talking-head frames much faster at about the same PSNR (the figures behind each setting:
docs/measurements.md, The live page as a server).

The denoiser smooths the picture away from its source; without it the same PSNR needs fewer
bits, which also means fewer packets for the event loop to protect and send. -14 is the
fastest speed worth having: it encodes noticeably faster than -12 for a small loss of PSNR, and
beyond it the picture loses more than the CPU gains.

`static-thresh` (libvpx's encode breakout) skips a macroblock whose prediction already has a
squared error below it: 1000 over a 16x16 block is a mean squared error under 4 (above 42 dB
there), a background that did not change. It saves encode time for a PSNR loss within the
noise; 2000 loses clearly more of the picture.

`install()` makes aiortc's senders in this process use `Vp8SpeedEncoder`; `DENSEHEAD_VP8=aiortc`
keeps aiortc's own encoder.
"""
from __future__ import annotations

import logging
import multiprocessing

import av
from aiortc import rtcrtpsender
from aiortc.codecs import vpx

from .library_parts import library_kept, replace

log = logging.getLogger(__name__)
ENV = "DENSEHEAD_VP8"
SPEED = -14               # libvpx cpu-used: negative = this speed always (realtime deadline)
STATIC_THRESHOLD = 1000   # libvpx encode breakout: skip macroblocks already this close
MAX_BITRATE = 1_000_000   # the browser's bandwidth estimate is capped here (aiortc: 1.5 Mbps)


class Vp8SpeedEncoder(vpx.Vp8Encoder):
    """aiortc's VP8 encoder (packetisation, bitrate control, keyframes) whose codec is opened
    with the settings above. The parent reuses a codec whose size and bitrate still fit, so
    opening it here, under the same rule, is all it takes."""

    @property
    def target_bitrate(self) -> int:
        return vpx.Vp8Encoder.target_bitrate.fget(self)

    @target_bitrate.setter
    def target_bitrate(self, bitrate: int) -> None:
        vpx.Vp8Encoder.target_bitrate.fset(self, min(bitrate, MAX_BITRATE))

    def encode(self, frame: av.VideoFrame, force_keyframe: bool = False) -> tuple[list[bytes], int]:
        if frame.format.name != "yuv420p":
            frame = frame.reformat(format="yuv420p")
        if self._needs_codec(frame):
            self.codec = self._open_codec(frame)
        return super().encode(frame, force_keyframe)

    def _needs_codec(self, frame: av.VideoFrame) -> bool:
        """The parent's rule: a new codec for a new size or a bitrate change of over 10%."""
        codec = self.codec
        return (codec is None or (codec.width, codec.height) != (frame.width, frame.height)
                or abs(self.target_bitrate - codec.bit_rate) / codec.bit_rate > 0.1)

    def _open_codec(self, frame: av.VideoFrame) -> av.VideoCodecContext:
        bitrate = self.target_bitrate
        codec = av.CodecContext.create("libvpx", "w")
        codec.width, codec.height = frame.width, frame.height
        codec.bit_rate, codec.pix_fmt = bitrate, "yuv420p"
        codec.gop_size, codec.qmin, codec.qmax = 3000, 2, 56   # as aiortc: keyframes on request
        codec.options = {
            "bufsize": str(bitrate), "minrate": str(bitrate), "maxrate": str(bitrate),  # CBR
            "cpu-used": str(SPEED), "deadline": "realtime", "lag-in-frames": "0",
            "noise-sensitivity": "0", "overshoot-pct": "15", "undershoot-pct": "100",
            "partitions": "0", "static-thresh": str(STATIC_THRESHOLD),
        }
        codec.thread_count = vpx.number_of_threads(frame.width * frame.height,
                                                   multiprocessing.cpu_count())
        return codec


def _get_encoder(codec):  # replaces aiortc.rtcrtpsender.get_encoder
    if codec.mimeType.lower() == "video/vp8":
        return Vp8SpeedEncoder()
    return _aiortc_get_encoder(codec)


_aiortc_get_encoder = rtcrtpsender.get_encoder


def install() -> bool:
    """Use Vp8SpeedEncoder for every VP8 sender of this process (idempotent). False when
    DENSEHEAD_VP8=aiortc, or when this aiortc does not look the way this module expects."""
    if library_kept(ENV, "aiortc"):
        return False
    if not (callable(getattr(rtcrtpsender, "get_encoder", None))
            and isinstance(getattr(vpx.Vp8Encoder, "target_bitrate", None), property)):
        log.warning("this aiortc has no get_encoder/Vp8Encoder.target_bitrate: "
                    "its own VP8 encoder is used")
        return False
    replace(rtcrtpsender, "get_encoder", _get_encoder,
            f"VP8 sent to browsers: cpu-used {SPEED}, no denoiser, at most {MAX_BITRATE // 1000} kbps")
    return True
