"""Glass-to-glass latency of the live page, measured the direct way: a frame number stamped into
the fake camera's frames is read back inside the page from the camera's own track and from the
returned track; latency = when the returned track delivered a number - when the camera track
delivered it. Where the time goes is read from the page's RTCPeerConnection statistics (the
browser's encode, jitter buffer and decode).

Both tracks are read with WebCodecs (`MediaStreamTrackProcessor`) in a worker, so a busy page
main thread does not delay the reading; only a stripe at the top of each frame is copied out.
Used by `densehead benchmark-live` (tools/live_bench.py).
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import browser as harness

BITS = 10        # frame numbers 0..1023: a camera loop of up to 40 s at 25 fps
SQUARE = 0.05    # a square's side as a fraction of the frame's width (16 px at 320)
MAX_MS = 2500.0  # a match later than this is a number seen again on the next loop of the camera

# In every frame of every page: keep the camera's track and the peer connections the page makes
CAPTURE_JS = """(() => { const md = navigator.mediaDevices;
  if (md) { const get = md.getUserMedia.bind(md);
    md.getUserMedia = async (c) => { const s = await get(c);
      window.__camTrack = s.getVideoTracks()[0]; return s; }; }
  const PC = window.RTCPeerConnection; if (!PC) return; window.__pcs = [];
  window.RTCPeerConnection = function (...a) { const pc = new PC(...a); window.__pcs.push(pc); return pc; };
  window.RTCPeerConnection.prototype = PC.prototype; Object.setPrototypeOf(window.RTCPeerConnection, PC); })();"""

# The worker: reads one track's frames for `ms`, returns [[time, number], ...]
WORKER_JS = r"""
onmessage = async (ev) => {
  const {readable, ms, bits, square} = ev.data; const reader = readable.getReader();
  const out = []; const now = () => performance.timeOrigin + performance.now();
  const end = now() + ms; let buf = null;
  while (now() < end) {
    const {value: f, done} = await reader.read(); if (done) break;
    const t = now();
    try {
      const side = square * f.displayWidth;
      const rows = Math.min(f.codedHeight, 2 * Math.ceil(side * 1.5 / 2));
      const rect = {x: 0, y: 0, width: f.codedWidth, height: rows};
      const size = f.allocationSize({rect}); if (!buf || buf.length < size) buf = new Uint8Array(size);
      const layout = await f.copyTo(buf, {rect});
      const rgb = f.format && /^(RGB|BGR)/.test(f.format), px = rgb ? 4 : 1, g = rgb ? 1 : 0;
      const y = Math.round(side / 2);
      const lum = (i) => buf[layout[0].offset + y * layout[0].stride
                             + Math.round(side * i + side / 2) * px + g];
      if (lum(0) > 128 && lum(bits + 1) < 128) { let code = 0;
        for (let b = 1; b <= bits; b++) code = code * 2 + (lum(b) > 128 ? 1 : 0);
        out.push([t, code]); }
    } catch (e) { } finally { f.close(); }
  }
  reader.cancel(); postMessage(out);
};"""

# In the webcam component's frame: read both tracks for `ms` and the RTCPeerConnection's
# statistics over the same time; the result lands in window.__latency
START_JS = """([ms, src, bits, square]) => {
  window.__latency = null;
  const video = document.querySelector('video'); const cam = window.__camTrack;
  const pc = (window.__pcs || []).filter(p => p.connectionState === 'connected').pop();
  if (!video || !video.srcObject || !cam || !pc) return false;
  const remote = video.srcObject.getVideoTracks()[0];
  const url = URL.createObjectURL(new Blob([src], {type: 'text/javascript'}));
  const read = (track) => new Promise((resolve) => { const w = new Worker(url);
    const readable = new MediaStreamTrackProcessor({track: track.clone()}).readable;
    w.onmessage = (e) => { resolve(e.data); w.terminate(); };
    w.postMessage({readable, ms, bits, square}, [readable]); });
  const video_stats = async () => { const out = {}; (await pc.getStats()).forEach(s => {
    if ((s.type === 'inbound-rtp' || s.type === 'outbound-rtp') && s.kind === 'video') out[s.type] = s;
    if (s.type === 'candidate-pair' && s.nominated) out.pair = s; }); return out; };
  (async () => {
    const before = await video_stats();
    const [camera, returned] = await Promise.all([read(cam), read(remote)]);
    const after = await video_stats();
    const d = (type, key) => ((after[type] || {})[key] || 0) - ((before[type] || {})[key] || 0);
    const per = (type, key, count) => 1000 * d(type, key) / Math.max(d(type, count), 1);
    window.__latency = {camera, returned, stats: {
      browser_encode_ms: per('outbound-rtp', 'totalEncodeTime', 'framesEncoded'),
      browser_send_ms: per('outbound-rtp', 'totalPacketSendDelay', 'packetsSent'),
      jitter_buffer_ms: per('inbound-rtp', 'jitterBufferDelay', 'jitterBufferEmittedCount'),
      decode_ms: per('inbound-rtp', 'totalDecodeTime', 'framesDecoded'),
      round_trip_ms: 1000 * ((after.pair || {}).currentRoundTripTime || 0),
      frames_sent: d('outbound-rtp', 'framesEncoded'), frames_received: d('inbound-rtp', 'framesDecoded'),
      sent_kbps: 8 * d('outbound-rtp', 'bytesSent') / ms, received_kbps: 8 * d('inbound-rtp', 'bytesReceived') / ms,
      packets_per_frame_sent: d('outbound-rtp', 'packetsSent') / Math.max(d('outbound-rtp', 'framesEncoded'), 1),
      sent_size: [(after['outbound-rtp'] || {}).frameWidth, (after['outbound-rtp'] || {}).frameHeight]}};
  })();
  return true;
}"""
RESULT_JS = "() => window.__latency"


@dataclass
class Latency:
    """One page's glass-to-glass latency over a window, and what its browser says of the parts."""
    samples_ms: list[float]
    browser_encode_ms: float = 0.0   # the page's VP8 encode of a camera frame
    browser_send_ms: float = 0.0     # a packet in the page's pacer before it is sent
    jitter_buffer_ms: float = 0.0    # a returned frame waiting in the page's jitter buffer
    decode_ms: float = 0.0           # the page's decode of a returned frame
    round_trip_ms: float = 0.0       # the network (loopback here)
    frames_sent: int = 0
    frames_received: int = 0
    sent_kbps: float = 0.0           # the page's camera video as sent
    received_kbps: float = 0.0       # the returned video
    packets_per_frame_sent: float = 0.0

    @property
    def median_ms(self) -> float:
        return statistics.median(self.samples_ms) if self.samples_ms else float("nan")

    @property
    def p90_ms(self) -> float:
        return float(np.percentile(self.samples_ms, 90)) if self.samples_ms else float("nan")


def stamp(frames_rgb: list[np.ndarray]) -> list[np.ndarray]:
    """Copies of the frames with their number drawn as black and white squares at the top left."""
    out = []
    for n, rgb in enumerate(frames_rgb):
        rgb = rgb.copy()
        side = round(SQUARE * rgb.shape[1])
        # a white guard, the bits (most significant first), a black guard
        bits = [1] + [(n >> (BITS - 1 - b)) & 1 for b in range(BITS)] + [0]
        for i, bit in enumerate(bits):
            rgb[:side, side * i:side * (i + 1)] = 255 if bit else 0
        out.append(rgb)
    return out


def stamped_camera(src: Path, dst: Path, seconds: float, size: tuple[int, int],
                   rate: int) -> list[np.ndarray]:
    """The fake camera's .y4m with every frame numbered (at most 2**BITS frames); its frames."""
    frames = stamp(harness.camera_frames(src, seconds, size=size)[0][:2 ** BITS])
    harness.write_y4m(frames, dst, rate)
    return frames


def start(page: Any, seconds: float) -> Any | None:
    """Start reading the page's two tracks for `seconds` (it returns at once): the webcam
    component's frame to ask for the `result`, or None when the page has no stream to read."""
    try:
        frame = harness.webrtc_frame(page, button="STOP", tries=20)
        return frame if frame.evaluate(START_JS, [seconds * 1000, WORKER_JS, BITS, SQUARE]) else None
    except Exception:   # no stream on the page (it ended, or the page redrew the component)
        return None


def result(frame: Any, timeout_s: float = 30.0) -> Latency | None:
    """The latency read by `start` once its window is over (None if it never finished)."""
    raw = None
    deadline = time.monotonic() + timeout_s
    while not raw and time.monotonic() < deadline:
        try:
            raw = frame.evaluate(RESULT_JS)
        except Exception:   # the component was redrawn: its reading is gone
            return None
        if not raw:
            time.sleep(0.5)
    if not raw:
        return None
    stats = raw["stats"]
    return Latency(match(raw["camera"], raw["returned"]),
                   **{k: float(stats[k]) for k in ("browser_encode_ms", "browser_send_ms",
                                                   "jitter_buffer_ms", "decode_ms", "round_trip_ms",
                                                   "sent_kbps", "received_kbps", "packets_per_frame_sent")},
                   frames_sent=int(stats["frames_sent"]), frames_received=int(stats["frames_received"]))


def match(camera: list[list[float]], returned: list[list[float]]) -> list[float]:
    """Per returned number: its time minus the time the camera track last delivered that number
    before it. A number returned twice (the same picture sent again) counts once."""
    seen_at: dict[int, list[float]] = {}
    for t, code in camera:
        seen_at.setdefault(int(code), []).append(t)
    used: set[tuple[int, float]] = set()
    out = []
    for t, code in returned:
        times = [tc for tc in seen_at.get(int(code), []) if tc <= t]
        if not times or (int(code), times[-1]) in used:
            continue
        used.add((int(code), times[-1]))
        if t - times[-1] < MAX_MS:
            out.append(t - times[-1])
    return out
