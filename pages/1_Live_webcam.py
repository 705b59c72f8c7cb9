"""Live webcam: frames processed server-side in the streamlit-webrtc callback, overlay sent back,
pose/expression charts fed from a bounded, lock-protected buffer."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import av
import streamlit as st
from streamlit_webrtc import WebRtcMode, webrtc_streamer

from densehead import draw
from densehead.dashboard.drawing import draw_with_fallback
from densehead.dashboard.figures import expression_figure, pose_figure
from densehead.dashboard.models import load_pipeline, renderer_status
from densehead.dashboard.series import SeriesBuffer
from densehead.dashboard.webrtc import ice_servers
from densehead.dashboard.widgets import processing_settings
from densehead.tracking import FaceTracker

log = logging.getLogger("densehead.pages.live")
st.set_page_config(page_title="densehead · live", page_icon="🎥", layout="wide")
st.title("Live webcam")


@dataclass
class LiveState:
    """Per browser session; shared with the callback thread, which reads the settings once per
    frame (the tracker's pipeline and options are frozen values the page replaces whole) and
    writes to the buffer (which has its own lock)."""
    tracker: FaceTracker
    buffer: SeriesBuffer = field(default_factory=SeriesBuffer)
    mode: str = "sparse"
    window_s: float = 20.0           # chart window
    note: str = ""


def process(state: LiveState, frame: av.VideoFrame) -> av.VideoFrame:
    """The video frame callback body: track, draw, record; errors go to the page, the raw
    frame goes back so the stream never stops."""
    start = time.perf_counter()
    image = frame.to_ndarray(format="bgr24")
    media_time = float(frame.pts * frame.time_base) if frame.pts is not None else None
    tracker, mode, faces = state.tracker, state.mode, []
    try:
        result = tracker(image, dense=draw.needs_dense(mode), timestamp=media_time)
        faces, times = result.faces, result.times
        drawn = time.perf_counter()
        out, state.note = draw_with_fallback(image, faces, mode, tracker.pipeline.model)
        times.render = (time.perf_counter() - drawn) * 1e3
    except Exception as exc:  # shown on the page by the stats panel, logged with its traceback
        log.exception("live frame processing failed")
        state.buffer.set_error(f"{type(exc).__name__}: {exc}")
        return frame
    state.buffer.add_frame(faces, times, (time.perf_counter() - start) * 1e3, media_time,
                           size=(image.shape[1], image.shape[0]))
    return av.VideoFrame.from_ndarray(out, format="bgr24")


async def process_newest(state: LiveState, frames: list[av.VideoFrame]) -> list[av.VideoFrame]:
    """Everything that arrived while the last frame was being processed: only the newest is
    processed, the rest are counted as dropped, so latency stays one frame deep."""
    state.buffer.add_arrivals(len(frames))
    return [process(state, frames[-1])]


pipe = load_pipeline()
if pipe is None:
    st.stop()

if "live_state" not in st.session_state:
    st.session_state.live_state = LiveState(tracker=FaceTracker(pipe))
state: LiveState = st.session_state.live_state


# The controls and the stats panel are fragments: using them reruns only the fragment, never the
# page, so the webcam component is not re-executed and the stream cannot be disturbed by a click.
@st.fragment
def controls() -> None:
    settings = processing_settings("live")
    tracker = state.tracker
    detection = {"score_threshold": settings.threshold, "max_faces": settings.max_faces}
    if any(getattr(tracker.pipeline.options, k) != v for k, v in detection.items()):
        tracker.pipeline = pipe.with_options(**detection)   # replaced whole, never mutated
    if tracker.options.smoothing != settings.smoothing:
        tracker.options = tracker.options.replace(smoothing=settings.smoothing)
    state.mode = settings.mode
    state.window_s = float(st.slider("Chart window (s)", 5, 60, 20, key="live_window"))
    if settings.mode in draw.RENDERED and (problem := renderer_status()):
        st.warning(f"The **{settings.mode}** overlay needs the C++ renderer, which is not "
                   f"available ({problem}); the video shows dense points instead and says so.")


@st.fragment(run_every=0.5)
def live_panel() -> None:
    """Redrawn twice a second on its own, without rerunning the page (the video keeps going)."""
    c1, c2 = st.columns(2)
    c1.download_button("Download series (CSV)", data=state.buffer.csv, file_name="live_series.csv",
                       mime="text/csv", on_click="ignore")
    if c2.button("Clear series"):
        state.buffer.clear()
    stats = state.buffer.stats()
    if stats.error:
        st.error(f"Processing error (the raw video is passed through): {stats.error}")
    if not stats.frames:
        st.info("Press START to begin; the readouts and charts appear here.")
        return
    a, b, c = st.columns(3)
    a.metric("Server FPS", f"{stats.fps:.1f}")
    b.metric("Camera FPS in", f"{stats.received_fps:.1f}")
    c.metric("Faces", stats.faces)
    a, b, _ = st.columns(3)
    a.metric("Frame ms (median)", f"{stats.frame_ms:.1f}")
    b.metric("Queue lag ms", f"{stats.lag_ms:.0f}")
    if stats.stage_ms:
        st.caption(" · ".join(f"{k} {v:.1f} ms" for k, v in stats.stage_ms.items())
                   + f" · p90 frame {stats.frame_ms_p90:.1f} ms · {stats.frames} frames of "
                   f"{stats.size[0]}x{stats.size[1]} processed, {stats.dropped} dropped")
    if stats.stopped:
        st.info(f"No frames for {stats.idle_s:.0f} s: the stream is stopped or paused. Press "
                "START to go on; the series so far stays here until you clear it.")
    if state.note:
        st.warning(state.note)
    table = state.buffer.snapshot(window_s=state.window_s)
    st.plotly_chart(pose_figure(table), key="pose_chart", config={"displaylogo": False})
    st.plotly_chart(expression_figure(table), key="expression_chart", config={"displaylogo": False})
    st.caption("Expression: one colour per coefficient; line style per track "
               "(solid = first track, dashed = second, dotted = third, …).")


with st.sidebar:
    controls()

left, right = st.columns([3, 2])
with left:
    try:
        webrtc_streamer(
            key="live",
            mode=WebRtcMode.SENDRECV,
            rtc_configuration={"iceServers": ice_servers()},
            media_stream_constraints={"video": {"width": {"ideal": 640}, "height": {"ideal": 480}},
                                      "audio": False},
            queued_video_frames_callback=lambda frames: process_newest(state, frames),
            async_processing=True,
        )
    except Exception as exc:  # e.g. no browser session (bare/AppTest runs): say so, keep the page
        st.error(f"The webcam component could not start: {exc}")
    st.caption("Allow the camera when the browser asks. If the video never starts, the camera "
               "may be blocked or in use: check the browser's site permissions. Behind NAT or a "
               "firewall set `DENSEHEAD_ICE_SERVERS` (JSON list) or `ice_servers` in secrets.")
with right:
    live_panel()
