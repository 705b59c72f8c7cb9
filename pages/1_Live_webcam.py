"""Live webcam: frames processed server-side in the streamlit-webrtc callback, overlay sent back,
pose/expression charts fed from a bounded, lock-protected buffer; the processed stream can be
recorded as an MP4 with the CSV of exactly its frames."""
from __future__ import annotations

import time
from dataclasses import dataclass

import av
import streamlit as st
from streamlit_webrtc import WebRtcMode, webrtc_streamer

from densehead.dashboard.bitrate_floor import install as keep_a_bitrate_floor
from densehead.dashboard.cached_pipeline import load_pipeline, renderer_status
from densehead.dashboard.device import chart_config
from densehead.dashboard.figures import (
    expression_spec,
    figure,
    longest_tracks,
    pose_spec,
)
from densehead.dashboard.ice_consent import install as keep_consent_of_late_answers
from densehead.dashboard.jitter_buffer import install as decode_at_last_packet
from densehead.dashboard.live import (
    ECHO_ENV,
    LIVE_RESOURCE,
    LiveSession,
    echo_from_environment,
)
from densehead.dashboard.navigation import open_page
from densehead.dashboard.page_runs import reset_streamer_only_on_return
from densehead.dashboard.processing_track import install as use_processing_track
from densehead.dashboard.recording import RECORDING_S
from densehead.dashboard.sessions import server_resources, session_id
from densehead.dashboard.side_by_side import SIDE_PANEL_MIN_PX, side_by_side
from densehead.dashboard.vp8 import install as use_faster_vp8
from densehead.dashboard.webrtc import ice_servers
from densehead.dashboard.widgets import processing_settings
from densehead.render import draw

open_page(__file__)

CHART_WINDOW_S = 20      # the charts' time window unless the slider sets another
CHART_POINTS = 300       # per line: a 20 s window at 25 fps shows every 2nd frame
CHART_TRACKS = 3         # tracks drawn: the ones with the most frames in the window
CHART_PERIOD_S = 3.0     # the charts are rebuilt at most this often; the readouts every second
WINDOW_KEY, RECORD_SECONDS_KEY = "live_window", "live_record_seconds"   # the sliders' state
SESSION_ID_KEY = "live_session_id"         # session state: this session's id
SERIES_EXPORT_KEY = "live_series_export"   # session state: the last SeriesExport
CHARTS_KEY = "live_charts"                 # session state: the Charts last built
STREAMER_KEY = "live"   # the webcam component's key: streamlit-webrtc's context in session state
ACTIONS_KEY = "live_actions"   # the buttons' fragment, rerun by name to show a recording's files

pipe = load_pipeline()
if pipe is None:
    st.stop()

resources = server_resources()
use_faster_vp8()   # the returned video: same quality, less of aiortc's encoding CPU
use_processing_track()   # each result sent as soon as it is ready, once, newest first
decode_at_last_packet()  # a browser's frame is decoded when it is complete, not one frame later
keep_a_bitrate_floor()   # a busy event loop does not tell browsers to send next to nothing
keep_consent_of_late_answers()   # a busy server does not drop a browser that answers late
ECHO = echo_from_environment()
sid = session_id()
st.session_state[SESSION_ID_KEY] = sid  # where tests find this page's session


def live() -> LiveSession:
    """This browser session's live state; it lives in the server's session resources (not in
    st.session_state), so it is released within seconds of the tab closing."""
    return resources.get(sid, LIVE_RESOURCE, lambda: LiveSession(pipe, echo=ECHO))


# The webcam callbacks run on streamlit-webrtc's threads and look the session up each time
# instead of holding it: a closed session is then freed even while its stream winds down.
async def on_frames(frames: list[av.VideoFrame]) -> list[av.VideoFrame]:
    session = resources.find(sid, LIVE_RESOURCE)
    return session.process_newest(frames) if isinstance(session, LiveSession) else frames[-1:]


def on_ended() -> None:
    act("stream_ended")


def act(method: str, *args: object) -> object:
    """Call a method of this session's LiveSession, looked up now. Widgets keep their callbacks
    as long as Streamlit keeps the session, two minutes after the tab closed: they must not hold
    the LiveSession itself."""
    session = resources.find(sid, LIVE_RESOURCE)
    return getattr(session, method)(*args) if isinstance(session, LiveSession) else None


# The controls and the stats panel are fragments: using them reruns only the fragment, never the
# page, so the webcam component is not re-executed and the stream cannot be disturbed by a click.
@st.fragment
def controls() -> None:
    state = live()
    chosen = processing_settings("live")
    new = state.settings.chosen(pipe, chosen.mode, chosen.threshold, chosen.max_faces,
                                chosen.smoothing)
    if new != state.settings:
        state.settings = new   # replaced whole: the stream's thread reads it once per frame
    st.slider("Chart window (s)", 5, 60, CHART_WINDOW_S, key=WINDOW_KEY)
    st.slider("Recording length (s)", 5, 120, int(RECORDING_S), step=5, key=RECORD_SECONDS_KEY,
              help="⏺ Record saves the processed video (with its overlay) as an MP4, with the "
                   "CSV of exactly the recorded frames; it stops by itself after this long.")
    if chosen.mode in draw.RENDERED and (problem := renderer_status()):
        st.warning(f"The **{chosen.mode}** overlay needs the C++ renderer, which is not "
                   f"available ({problem}); the video shows dense points instead and says so.")


@dataclass(frozen=True)
class SeriesExport:
    """The series as exported, kept in st.session_state until the next export: the download
    stays through any rerun of the page (a button's value lasts one run only, and with several
    streams on the server a page rerun could follow the click at once)."""
    csv: str
    made: str   # wall-clock time of the export, shown to the user


def export_series() -> None:
    csv = act("series_csv")
    if isinstance(csv, str):   # None once the session's live state is gone: nothing to export
        st.session_state[SERIES_EXPORT_KEY] = SeriesExport(csv, time.strftime("%H:%M:%S"))


def start_recording() -> None:
    # The length is read at the click: the slider is in another fragment, and arguments bound
    # when this fragment last ran would keep the length it had then.
    act("start_recording", float(st.session_state.get(RECORD_SECONDS_KEY, RECORDING_S)))


# The buttons and downloads live in a fragment that reruns only when one of its own buttons is
# used, and the downloads carry their data (not a function that makes it on click). Streamlit
# forgets a deferred download's id on every rerun of its fragment, and deletes the file a click
# made at the next-but-one end of *any* session's run: in a panel redrawn every second, with
# several people on the server, clicks ended in "Deferred file ... not found" or a 404. A
# download shown here stays valid until this fragment reruns; the series' export is redrawn with
# the same bytes on every run, and the same bytes keep the same URL.
@st.fragment(key=ACTIONS_KEY)
def actions() -> None:
    state = live()
    status = state.recording_status()
    recording = status is not None and status.state == "recording"
    # a row that wraps: each button as wide as its label (in columns they were cut to "Expor…")
    # No tooltips on these buttons: a tooltip shown while ⏺ Record is clicked stays on the page
    # over the ⏹ Stop recording button that replaces it and swallows the next click.
    with st.container(horizontal=True):
        st.button("Export series (CSV)", key="live_export", on_click=export_series)
        st.button("Clear series", on_click=act, args=("clear_series",))
        if recording:
            st.button("⏹ Stop recording", key="live_record_stop", on_click=act,
                      args=("stop_recording",))
        else:
            st.button("⏺ Record", key="live_record_start", on_click=start_recording)
    exported: SeriesExport | None = st.session_state.get(SERIES_EXPORT_KEY)
    if exported is not None:
        st.download_button("Download series (CSV)", data=exported.csv, file_name="live_series.csv",
                           mime="text/csv", on_click="ignore", key="live_series_csv")
        st.caption(f"{exported.csv.count(chr(10)) - 1} rows (one per face per frame), as of "
                   f"{exported.made}.")
    if recording or status is None or status.state != "finished":
        return
    state.recording_collected = True   # its files are on the page: no need to ask for them
    with st.container(horizontal=True):   # both labels whole (in columns, both "Download…")
        st.download_button("Download recording (.mp4)", data=state.recording_mp4(),
                           file_name="live_recording.mp4", mime="video/mp4", on_click="ignore",
                           key="live_record_mp4")
        st.download_button("Download recording series (.csv)", data=state.recording_csv(),
                           file_name="live_recording.csv", mime="text/csv", on_click="ignore",
                           key="live_record_csv")
    st.caption(f"Recorded {status.frames} frames, {status.seconds:.1f} s ({status.reason}); "
               "the CSV's frame column is the frame's number in the MP4"
               + (f"; {status.dropped} processed frames were left out of both (server busy)"
                  if status.dropped else "") + ".")


def recording_progress(state: LiveSession) -> None:
    """The recording's progress, in the once-a-second panel."""
    status = state.recording_status()
    if status is None:
        return
    if status.state == "recording":
        st.caption(f"⏺ Recording: {status.seconds:.1f} s of {status.max_seconds:.0f} s, "
                   f"{status.frames} frames" + (f", {status.dropped} left out (server busy)"
                                                if status.dropped else ""))
    elif status.state == "failed":
        st.error(f"The recording failed: {status.reason}")
    elif not state.recording_collected:   # it ended by itself: the buttons' fragment has them
        st.info(f"The recording ended ({status.reason}) after {status.seconds:.1f} s.")
        st.button("Show the recording's files", key="live_record_files",
                  on_click=show_recording_files)


def show_recording_files() -> None:
    # only the buttons' fragment reruns (a fragment is rerun by name from a callback alone)
    st.rerun(ACTIONS_KEY)


@dataclass(frozen=True)
class Charts:
    """The charts as last built, kept in st.session_state between runs of the panel."""
    version: int          # the series' version they show
    window: float         # the chart window (s) they show
    pose: object
    expression: object
    tracks: int           # tracks in the window (the charts show the CHART_TRACKS longest)
    made: float           # time.monotonic() when built


def charts(state: LiveSession) -> None:
    """The charts, rebuilt when the series changed (after STOP they stay as they are), at most
    every CHART_PERIOD_S (a new window at once), with the CHART_TRACKS longest tracks.
    Streamlit's Plotly element takes its identity from the figure, so every new figure is a
    fresh Plotly plot in the browser, drawn on the main thread that the webcam component and
    every control share: a page that redraws more than the browser can draw answers no click."""
    if not state.buffer.rows:
        return
    window = float(st.session_state.get(WINDOW_KEY, CHART_WINDOW_S))
    cached: Charts | None = st.session_state.get(CHARTS_KEY)
    now = time.monotonic()
    if (cached is None or cached.window != window
            or (cached.version != state.buffer.version and now - cached.made >= CHART_PERIOD_S)):
        table, tracks = longest_tracks(state.buffer.snapshot(window_s=window), CHART_TRACKS)
        cached = Charts(state.buffer.version, window,
                        figure(pose_spec(table, max_points=CHART_POINTS)),
                        figure(expression_spec(table, max_points=CHART_POINTS)), tracks, now)
        st.session_state[CHARTS_KEY] = cached
    config = chart_config()
    st.plotly_chart(cached.pose, key="pose_chart", config=config)
    st.plotly_chart(cached.expression, key="expression_chart", config=config)
    shown = (f"the {CHART_TRACKS} longest of {cached.tracks} tracks in the window"
             if cached.tracks > CHART_TRACKS else f"{cached.tracks} track(s) in the window")
    st.caption("Expression: one colour per coefficient; line style per track (solid = first "
               f"track, dashed = second, dotted = third). Showing {shown}, redrawn every "
               f"{CHART_PERIOD_S:.0f} s.")


@st.fragment(run_every=1.0)
def live_panel() -> None:
    """The readouts and the charts, redrawn once a second on their own, without rerunning the
    page (the video keeps going). Every run of a fragment costs the server a noticeable amount
    of CPU (a script thread, the session's messages) whatever it draws, hence one panel at 1 Hz."""
    state = live()
    recording_progress(state)
    readouts(state)
    charts(state)


def stage_readout(stage: str, ms: float, share: float) -> str:
    """'detect 2.4 ms (1 frame in 10)' for a stage that runs on some frames only."""
    if share >= 0.95 or ms == 0:
        return f"{stage} {ms:.1f} ms"
    return f"{stage} {ms:.1f} ms (1 frame in {1 / share:.0f})"


def rate(fps: float | None) -> str:
    return "…" if fps is None else f"{fps:.1f}"   # None: too few frames yet to tell


def readouts(state: LiveSession) -> None:
    """Rates, frame time, queue lag, stage times, and what went wrong, if anything."""
    stats = state.buffer.stats()
    if stats.error:
        st.error(f"Processing error (the raw video is passed through): {stats.error}")
    if not stats.frames:
        st.info("Press START to begin; the readouts and charts appear here.")
        return
    with st.container(horizontal=True):   # the readouts wrap where narrow columns cut them
        for label, value in (("Server FPS", rate(stats.fps)),
                             ("Camera FPS in", rate(stats.received_fps)),
                             ("Faces", str(stats.faces)),
                             ("Frame ms (median)", f"{stats.frame_ms:.1f}"),
                             ("Queue lag ms", f"{stats.lag_ms:.0f}")):
            st.metric(label, value, width="content")
    if stats.stage_ms:
        st.caption(" · ".join(stage_readout(k, v, stats.stage_share[k]) for k, v in stats.stage_ms.items())
                   + f" · p90 frame {stats.frame_ms_p90:.1f} ms · {stats.frames} frames of "
                   f"{stats.size[0]}x{stats.size[1]} processed, {stats.dropped} dropped")
    if stats.busy:
        st.warning(f"The server is busy: it processes {stats.fps:.0f} of the {stats.received_fps:.0f} "
                   f"frames a second your camera sends (queue lag {stats.lag_ms:.0f} ms). The others "
                   "are dropped, so the video stays close to live but moves less smoothly.")
    if stats.stopped:
        st.info(f"No frames for {stats.idle_s:.0f} s: the stream is stopped or paused. Press "
                "START to go on; the series so far stays here until you clear it.")
    if state.note:
        st.warning(state.note)


with st.sidebar:
    controls()
if ECHO:
    st.warning(f"Processing is off ({ECHO_ENV}=1): the video comes back untouched, to measure "
               "what the transport alone costs.")

# the panel under the video where beside it, it would be too narrow for its buttons and charts
left, right = side_by_side("live_top", (3, 2), SIDE_PANEL_MIN_PX)
with left:
    reset_streamer_only_on_return(STREAMER_KEY)
    try:
        webrtc_streamer(
            key=STREAMER_KEY,
            mode=WebRtcMode.SENDRECV,
            rtc_configuration={"iceServers": ice_servers()},
            media_stream_constraints={"video": {"width": {"ideal": 640}, "height": {"ideal": 480}},
                                      "audio": False},
            queued_video_frames_callback=on_frames,
            on_video_ended=on_ended,
            async_processing=True,
        )
    except Exception as exc:  # e.g. no browser session (bare/AppTest runs): say so, keep the page
        st.error(f"The webcam component could not start: {exc}")
    st.caption("Allow the camera when the browser asks. Browsers give a page the camera only "
               "over https:// or on this machine (localhost): from a phone or another computer, "
               "open the dashboard through HTTPS (docs/deployment.md). If the video still never "
               "starts, the camera may be blocked or in use: check the browser's site "
               "permissions. Behind NAT or a firewall set `DENSEHEAD_ICE_SERVERS` (JSON list) "
               "or `ice_servers` in secrets.")
with right:
    actions()
    live_panel()
