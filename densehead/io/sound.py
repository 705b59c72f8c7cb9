"""The input video's sound carried into the overlay video written from it: its packets copied
as they are (nothing decoded or encoded again), on the overlay's clock, cut to the frames the
overlay holds.

The overlay's clock starts at the input's first frame (densehead.io.video.iter_timed_frames),
so a packet at input time a goes to a - start, where start is the time the input's video
stream states for its first frame. Packets are kept whole, from PRE_ROLL_S before 0: a decoder
needs the packets before a cut to decode the first sound after it (AAC's windows overlap, Opus
asks for 80 ms), and the file's edit list keeps what lies before 0 from being heard.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

# the sound codecs browsers play inside MP4 and QuickTime files (the dashboard shows overlays
# in the browser); other codecs these files can hold (PCM, Vorbis, AC-3) would leave the whole
# video unplayable there
BROWSER_SOUND = frozenset({"aac", "mp3", "opus", "flac"})
BROWSER_CONTAINERS = frozenset({".mp4", ".m4v", ".mov"})
PRE_ROLL_S = 0.1


@dataclass
class SoundCopy:
    """The source's sound stream being copied into `stream` of the overlay's container."""
    source: Any          # the input, opened by PyAV for its sound alone
    packets: Any         # its sound packets in file order
    stream: Any          # the overlay's sound stream
    shift: int           # subtracted from each packet's time: the first frame's, in `time_base`
    time_base: Any       # the input sound stream's time base
    name: str            # the input's file name, for messages
    pending: Any = None  # the packet read past the time muxed so far
    done: bool = False
    note: str = ""       # why the sound stopped early, if it did

    def mux_until(self, container: Any, seconds: float) -> None:
        """Mux the packets that start before `seconds` of the overlay's clock. Where the input's
        sound is damaged, no more is copied and `note` says so."""
        while not self.done:
            packet = self.pending if self.pending is not None else self._next(seconds)
            self.pending = None
            if packet is None:
                self.done = True
            elif packet.dts is None or packet.pts is None:
                continue   # a demuxer's flush packet: nothing to copy
            elif float((packet.pts - self.shift) * self.time_base) >= seconds:
                self.pending = packet
                return
            elif float((packet.pts + (packet.duration or 0) - self.shift) * self.time_base) > \
                    -PRE_ROLL_S:
                packet.pts, packet.dts = packet.pts - self.shift, packet.dts - self.shift
                packet.stream = self.stream
                container.mux(packet)

    def _next(self, seconds: float) -> Any:
        """The next packet of the input's sound; None at its end or where it is damaged."""
        import av

        try:
            return next(self.packets, None)
        except av.FFmpegError as error:
            self.note = (f"the overlay video's sound stops at {seconds:.1f} s: {self.name} is "
                         f"damaged there ({error})")
            return None

    def close(self) -> None:
        self.source.close()


def start_copy(source: str | Path, container: Any, suffix: str) -> tuple[SoundCopy | None, str]:
    """Add the source's first sound stream to `container` (a PyAV output not yet started) for
    copying: (the copy, "") or, when it cannot be copied, (None, a note saying why); (None, "")
    for a video without sound. The picture could be read: its sound is never worth failing for."""
    import av

    name = Path(source).name
    try:
        opened = av.open(str(source))
    except av.FFmpegError:
        return None, f"the overlay video has no sound: {name} could not be opened for it"
    try:
        copy, note = _first_sound(opened, container, suffix, name)
    except Exception as error:   # a stream PyAV cannot describe (no decoder for it, say)
        copy, note = None, f"the overlay video has no sound: {name}'s sound cannot be read " \
                           f"({type(error).__name__})"
    if copy is None:
        opened.close()
    return copy, note


def _first_sound(opened: Any, container: Any, suffix: str, name: str
                 ) -> tuple[SoundCopy | None, str]:
    sounds, videos = opened.streams.audio, opened.streams.video
    if not sounds or not videos:
        return None, ""
    sound, video = sounds[0], videos[0]
    codec = sound.codec_context.codec.canonical_name   # mp3, not its decoder mp3float
    if codec not in container.supported_codecs:
        return None, f"the overlay video has no sound: {name}'s sound ({codec}) cannot go " \
                     f"into a {suffix} file"
    if suffix in BROWSER_CONTAINERS and codec not in BROWSER_SOUND:
        return None, f"the overlay video has no sound: {name}'s sound ({codec}) would not " \
                     f"play in a browser inside {suffix}; an .mkv overlay keeps it"
    start = float(video.start_time * video.time_base) if video.start_time is not None else 0.0
    stream = container.add_stream_from_template(sound)
    return SoundCopy(opened, opened.demux(sound), stream, round(start / sound.time_base),
                     sound.time_base, name), ""
