"""Videos the browser can play: the overlay videos OpenCV writes (mp4v) re-encoded as H.264."""
from __future__ import annotations

from pathlib import Path


def browser_mp4(src: str | Path, dst: str | Path, crf: int = 23) -> Path:
    """Re-encode a video as H.264/yuv420p MP4 (what every browser plays; OpenCV's mp4v is not)
    with PyAV, which ships libx264. Even frame sizes are required by yuv420p, so odd ones are
    cropped by a pixel."""
    import av

    dst = Path(dst)
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        vin = inp.streams.video[0]
        rate = vin.average_rate or 25
        stream = out.add_stream("libx264", rate=rate)
        stream.width, stream.height = vin.codec_context.width // 2 * 2, vin.codec_context.height // 2 * 2
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(crf), "preset": "veryfast", "movflags": "+faststart"}
        for frame in inp.decode(vin):
            img = frame.to_ndarray(format="rgb24")[: stream.height, : stream.width]
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return dst
