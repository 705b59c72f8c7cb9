"""The live page's VP8 encoder: aiortc's packetisation with cheaper settings; a browser (or
libvpx's decoder) gets back the picture it was given."""
from __future__ import annotations

import av
import numpy as np
from aiortc import rtcrtpsender
from aiortc.codecs import vpx

from densehead.dashboard import vp8
from densehead.dashboard.live import _video_frame
from densehead.dashboard.processing_track import RTP_CLOCK
from densehead.io.video import iter_frames


def _frames(samples, size, count=20):
    import cv2
    out = []
    for i, frame in enumerate(iter_frames(samples / "videos" / "obama.mp4")):
        if i == count:
            break
        out.append(cv2.resize(frame, size))
    return out


def _round_trip(encoder, images):
    """Encode as aiortc sends it (RTP payloads), depayload, decode: the pictures that come back."""
    decoder = av.CodecContext.create("libvpx", "r")
    back = []
    for i, image in enumerate(images):
        frame = _video_frame(image)
        frame.pts, frame.time_base = i * 3600, RTP_CLOCK
        payloads, _ = encoder.encode(frame)
        data = b"".join(vpx.vp8_depayload(p) for p in payloads)
        back += [f.to_ndarray(format="bgr24") for f in decoder.decode(av.Packet(data))]
    return back


class RecordingEncoder(vp8.Vp8SpeedEncoder):
    """Remembers the codecs it opened with the page's settings (and their options as given:
    libvpx consumes the ones it applies)."""

    def __init__(self) -> None:
        super().__init__()
        self.opened: list[tuple[object, dict]] = []

    def _open_codec(self, frame):
        codec = super()._open_codec(frame)
        self.opened.append((codec, dict(codec.options)))
        return codec


def test_the_picture_comes_back_with_the_settings_and_cap(samples):
    images = _frames(samples, (640, 480))
    encoder = RecordingEncoder()
    encoder.target_bitrate = 5_000_000   # a browser on localhost estimates far more than needed
    assert encoder.target_bitrate == vp8.MAX_BITRATE
    back = _round_trip(encoder, images)
    assert len(back) == len(images)
    assert len(encoder.opened) == 1, "aiortc's encoder replaced the codec with its own settings"
    codec, options = encoder.opened[0]
    assert encoder.codec is codec and codec.bit_rate == vp8.MAX_BITRATE
    assert options["cpu-used"] == str(vp8.SPEED) and options["noise-sensitivity"] == "0"
    assert options["static-thresh"] == str(vp8.STATIC_THRESHOLD)
    assert not {"cpu-used", "static-thresh"} & set(codec.options), "libvpx did not take a setting"
    error = np.abs(back[-1].astype(int) - images[-1].astype(int)).mean()
    assert error < 6, f"the returned picture is {error:.1f} grey levels off on average"


def test_a_new_size_gets_a_new_codec(samples):
    encoder = RecordingEncoder()
    _round_trip(encoder, _frames(samples, (640, 480), 3))
    back = _round_trip(encoder, _frames(samples, (480, 360), 3))
    assert len(encoder.opened) == 2 and encoder.codec is encoder.opened[1][0]
    assert (encoder.codec.width, encoder.codec.height) == (480, 360)
    assert back[-1].shape == (360, 480, 3)


def test_install_is_for_vp8_only_and_can_be_turned_off(monkeypatch):
    monkeypatch.setattr(rtcrtpsender, "get_encoder", vp8._aiortc_get_encoder)
    monkeypatch.setenv(vp8.ENV, "aiortc")
    assert vp8.install() is False
    assert rtcrtpsender.get_encoder is vp8._aiortc_get_encoder
    monkeypatch.delenv(vp8.ENV)
    assert vp8.install() is True
    codec = type("Codec", (), {})
    video, audio = codec(), codec()
    video.mimeType, audio.mimeType = "video/VP8", "audio/opus"
    assert isinstance(rtcrtpsender.get_encoder(video), vp8.Vp8SpeedEncoder)
    assert not isinstance(rtcrtpsender.get_encoder(audio), vpx.Vp8Encoder)
