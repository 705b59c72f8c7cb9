"""`densehead benchmark-live`: the live page as a server, measured the way people use it (the
command's help, densehead/cli/live_bench.py, says what it does and prints)."""
from __future__ import annotations

import argparse
import contextlib
import glob
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ..core.face import ms_since
from ..core.machine import this_machine
from ..core.options import REGRESSOR_ENV
from ..dashboard import bitrate_floor, ice_consent, jitter_buffer, processing_track
from ..dashboard import cpu as server_cpu
from ..dashboard.live import ECHO_ENV
from ..dashboard.serve import THREADS_ENV
from ..dashboard.status import STATUS_ENV
from ..weights.assets import ASSETS_ENV
from . import browser as harness
from . import latency as glass
from .latency import Latency


@dataclass
class SessionRun:
    size: str
    arrived_fps: float
    processed_fps: float
    longest_gap_s: float
    frame_ms: float               # the page's own readout: wall time of our callback, median
    lag_ms: float = 0.0           # the server's queue lag (frames waiting before processing), median
    lag_max_ms: float = 0.0       # ... and its largest sample in the window
    ended: bool = False           # the stream ended by itself (nobody pressed STOP)
    page_live: bool = True        # the page's readouts and charts answered at the end
    latency: Latency | None = None


@dataclass
class Round:
    k: int
    sessions: list[SessionRun]
    cpu_cores: float
    cpu_ms_per_frame: float
    released_s: float | None      # how long until the server had released every closed session
    browser_cores: float = 0.0    # the Chromium processes (same machine)
    machine_cores: float = 0.0    # everything on the machine (other users included)
    problems: list[str] = field(default_factory=list)
    ms_by_role: dict[str, float] = field(default_factory=dict)  # server CPU ms per processed frame
    tracebacks: int = 0           # new in the server log during the round
    floor: "Round | None" = None  # the same round with processing off (DENSEHEAD_LIVE_ECHO)
    via: str = "direct"           # "proxy": the pages went through nginx (--proxy)
    control_s: float | None = None  # a change of overlay: from the click until the video shows it
    echo: bool = False            # processing was off (the floor)

    def latencies(self) -> list[float]:
        return [ms for s in self.sessions if s.latency for ms in s.latency.samples_ms]


# --- the engine alone ------------------------------------------------------------------------

def engine_cost(frames_rgb: list[np.ndarray], mode: str, threads: int, regressor: str,
                repeats: int = 3) -> tuple[float, float]:
    """(median wall ms, CPU ms) per frame of tracker + overlay on these frames."""
    import cv2

    from ..dashboard.drawing import draw_with_fallback
    from ..engine.pipeline import Pipeline
    from ..engine.tracking import FaceTracker
    from ..render import draw

    cv2.setNumThreads(threads)   # as the dashboard does
    pipe = Pipeline(regressor=regressor, num_threads=threads)
    tracker = FaceTracker(pipe)
    frames = [cv2.cvtColor(f, cv2.COLOR_RGB2BGR) for f in frames_rgb]
    dense = draw.needs_dense(mode)
    walls: list[float] = []
    cpu0 = time.process_time()
    for frame in frames * repeats:
        start = time.perf_counter()
        draw_with_fallback(frame, tracker(frame, dense=dense).faces, mode, pipe.face_model)
        walls.append(ms_since(start))
    cpu_ms = (time.process_time() - cpu0) * 1e3 / len(walls)
    return statistics.median(walls), cpu_ms


def codec_cost(frames_rgb: list[np.ndarray], encoder_class: type, bitrate: int) -> float:
    """CPU ms per frame of what aiortc does to every frame besides our work: VP8 decode of the
    browser's frame and VP8 encode of ours (the given encoder class at the given bitrate; on
    one machine the browser's estimate soon reaches the encoder's maximum)."""
    import av

    frames = [av.VideoFrame.from_ndarray(f, format="rgb24").reformat(format="yuv420p")
              for f in frames_rgb]
    for i, f in enumerate(frames):
        f.pts, f.time_base = i * 3600, processing_track.RTP_CLOCK   # 25 fps on the RTP clock
    encoder = encoder_class()
    encoder.target_bitrate = bitrate
    start = time.process_time()
    for f in frames * 2:
        encoder.encode(f)
    encode_ms = (time.process_time() - start) * 1e3 / (2 * len(frames))
    # a VP8 stream of the same frames, as the browser would send it, to time the decoder on
    writer = av.CodecContext.create("libvpx", "w")
    writer.width, writer.height, writer.pix_fmt = frames[0].width, frames[0].height, "yuv420p"
    writer.bit_rate = bitrate
    writer.options = {"deadline": "realtime", "cpu-used": "-6", "lag-in-frames": "0"}
    packets = [p for f in frames for p in writer.encode(f)]
    decoder = av.CodecContext.create("libvpx", "r")
    start = time.process_time()
    for p in packets * 2:
        decoder.decode(p)
    decode_ms = (time.process_time() - start) * 1e3 / (2 * len(packets))
    return encode_ms + decode_ms


# --- the live server --------------------------------------------------------------------------

def measure_round(server: harness.AppServer, browser: Any, status_path: Path, k: int, mode: str,
                  warmup_s: float, seconds: float, echo: bool = False,
                  url: str | None = None) -> Round:
    """K people stream at once; after the warm-up, for `seconds`: their frame counters and queue
    lag (the server's status), their glass-to-glass latency (read in each page), the server's CPU
    by thread; then whether each page still answers, and the tracebacks the round logged.
    `echo`: the server sends frames back untouched (no charts to look for); `url`: where the
    pages open the server (a proxy in front of it)."""
    problems: list[str] = []
    log_before = server.log_text().count("Traceback")
    known = set(harness.live_sessions(harness.read_status(status_path)))
    pages, ids = [], []
    try:
        for _ in range(k):
            page = harness.open_live(browser, url or server.url, mode,
                                     init_scripts=(glass.CAPTURE_JS,))
            ids.append(harness.page_session_id(page, status_path, known | set(ids)))
            pages.append(page)
        _wait_streaming(status_path, ids, timeout_s=90)
        time.sleep(warmup_s)
        readers = [glass.start(page, seconds) for page in pages]
        samples, statuses = [], []
        me = os.getpid()
        browsers0, machine0 = harness.descendants_cpu(me, {server.proc.pid}), harness.machine_busy_seconds()
        for status in harness.iter_status(status_path, seconds):
            samples.append((time.monotonic(), harness.live_sessions(status)))
            statuses.append(status)
        browsers1, machine1 = harness.descendants_cpu(me, {server.proc.pid}), harness.machine_busy_seconds()
        runs, processed = [], 0
        span = samples[-1][0] - samples[0][0]
        for sid, page, reader in zip(ids, pages, readers):
            counts = [(t, s[sid]) for t, s in samples if sid in s]
            first, last = counts[0][1], counts[-1][1]
            done = last["processed"] - first["processed"]
            processed += done
            lags = [c["lag_ms"] for _, c in counts]
            runs.append(SessionRun(size="x".join(map(str, last["size"])),
                                   arrived_fps=(last["arrived"] - first["arrived"]) / span,
                                   processed_fps=done / span,
                                   longest_gap_s=_longest_gap(counts),
                                   frame_ms=statistics.median(c["frame_ms"] for _, c in counts),
                                   lag_ms=statistics.median(lags), lag_max_ms=max(lags),
                                   ended=not all(c["streaming"] for _, c in counts)
                                   or not page_streams(page),
                                   page_live=page_answers(page, charts=not echo),
                                   latency=glass.result(reader) if reader is not None else None))
        control_s = None if echo else overlay_change_s(pages[0])
        for page in pages:
            if page.locator("text=Traceback").count() or page.locator('[data-testid="stException"]').count():
                problems.append("a traceback on a page")
        first, last = statuses[0], statuses[-1]   # the server's own CPU readings
        server_s = last["cpu_s"] - first["cpu_s"]
        cores, ms = server_s / span, server_s * 1e3 / max(processed, 1)
        browser_cores, machine_cores = (browsers1 - browsers0) / span, (machine1 - machine0) / span
        roles = server_cpu.by_role(first["threads"], last["threads"], server_s)
        ms_by_role = {name: s * 1e3 / max(processed, 1) for name, s in roles.items()}
    finally:
        for page in pages:
            page.context.close()
    released = _wait_released(status_path, set(ids), timeout_s=60)
    if released is None:
        problems.append("closed sessions were not released within 60 s")
    problems += [f"session {i}: no latency read" for i, r in enumerate(runs, 1) if r.latency is None]
    return Round(k, runs, cores, ms, released, ms_by_role=ms_by_role, browser_cores=browser_cores,
                 machine_cores=machine_cores, problems=problems,
                 tracebacks=server.log_text().count("Traceback") - log_before, control_s=control_s,
                 echo=echo, via="proxy" if url else "direct")


# what a person sees on the page: the webcam component still shows STOP (the stream was not
# ended by itself), and the readouts and charts are there and answer within a few seconds
STREAMING_JS = "() => [...document.querySelectorAll('button')].some(b => b.innerText.includes('STOP'))"
ANSWERS_JS = """(charts) => { const fps = [...document.querySelectorAll('[data-testid="stMetric"]')]
    .find(m => m.innerText.includes('Server FPS'));
  const drawn = [...document.querySelectorAll('.js-plotly-plot')].filter(p => (p.data || []).length);
  return !!fps && parseFloat(fps.querySelector('[data-testid="stMetricValue"]').innerText) > 0
    && drawn.length >= charts; }"""


def overlay_change_s(page: Any, timeout_s: float = 30.0) -> float | None:
    """Seconds from a person's click on the Overlay option "dense" until the returned video shows
    the dense points (and no more landmark lines); None if it did not within `timeout_s`."""
    try:
        return _overlay_change_s(page, timeout_s)
    except Exception:   # Playwright's timeouts, a component redrawn under the reading
        return None


def _overlay_change_s(page: Any, timeout_s: float) -> float | None:
    frame = harness.webrtc_frame(page, button="STOP")
    harness.click(page.locator('[data-testid="stSelectbox"]', has_text="Overlay"))
    option = page.get_by_role("option", name="dense", exact=True)
    option.wait_for()
    clicked = time.monotonic()
    harness.click(option)
    while time.monotonic() - clicked < timeout_s:
        shot = frame.evaluate(harness.OVERLAY_PIXELS_JS)
        if shot and shot["cyan"] > DENSE_POINTS_PIXELS and shot["green"] < DENSE_POINTS_PIXELS / 4:
            return time.monotonic() - clicked
        time.sleep(0.03)
    return None


DENSE_POINTS_PIXELS = 200   # cyan pixels that are the dense points of a face, at 320x240 and up


def page_streams(page: Any) -> bool:
    """The webcam component still shows STOP."""
    try:
        return any(f.evaluate(STREAMING_JS) for f in page.frames if f != page.main_frame)
    except Exception:   # a frame that went away while asked
        return False


def page_answers(page: Any, charts: bool = True, timeout_s: float = 10.0) -> bool:
    """The page shows a positive Server FPS (and both charts) within `timeout_s`."""
    try:
        page.wait_for_function(ANSWERS_JS, arg=2 if charts else 0, timeout=timeout_s * 1000)
        return True
    except Exception:   # Playwright's timeout: the page's main thread did not answer in time
        return False


def _wait_streaming(status_path: Path, ids: list[str], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        live = harness.live_sessions(harness.read_status(status_path))
        if all(live.get(sid, {}).get("processed", 0) > 0 for sid in ids):
            return
        time.sleep(0.5)
    raise AssertionError("not every session streamed within %.0f s" % timeout_s)


def _wait_released(status_path: Path, ids: set[str], timeout_s: float) -> float | None:
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        status = harness.read_status(status_path)
        if not ids & set(harness.live_sessions(status)) and status.get("lingering", 0) == 0:
            return time.monotonic() - start
        time.sleep(0.25)
    return None


def _longest_gap(counts: list[tuple[float, dict]]) -> float:
    """Longest time between two samples of one session with no new processed frame."""
    longest, since = 0.0, counts[0][0]
    for (t0, a), (t1, b) in zip(counts, counts[1:]):
        if b["processed"] > a["processed"]:
            since = t1
        longest = max(longest, t1 - since)
    return longest


# --- soak -----------------------------------------------------------------------------------

def soak(server: harness.AppServer, browser: Any, status_path: Path, minutes: float,
         mode: str, sessions: int = 2, stream_s: float = 20.0) -> list[dict[str, Any]]:
    """Rounds of: `sessions` people open the page and stream (one of them records), then one
    presses STOP and closes, the others close the tab; memory and what the server holds after.
    A round that goes wrong (a stream that does not start or ends by itself) is reported in its
    row and the soak goes on: one bad round must not lose the minutes of the others."""
    rows: list[dict[str, Any]] = []
    end = time.monotonic() + minutes * 60
    started = time.monotonic()
    n = 0
    while time.monotonic() < end:
        n += 1
        pages: list[Any] = []
        ids: list[str] = []
        problem = ""
        try:
            problem = _soak_round(server, browser, status_path, mode, sessions, stream_s, pages, ids)
        except Exception as exc:  # playwright timeouts, a page that never showed the component
            problem = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        finally:
            for page in pages:
                page.context.close()
        released = _wait_released(status_path, set(ids), timeout_s=60)
        status = harness.read_status(status_path)
        rows.append({"round": n, "minute": (time.monotonic() - started) / 60,
                     "rss_mb": server.rss_mb(), "released_s": released,
                     "heap_in_use_mb": status.get("heap", {}).get("in_use_mb"),
                     "live_sessions": len(harness.live_sessions(status)),
                     "lingering": status.get("lingering", 0),
                     "temp_dirs": len(glob.glob(os.path.join(tempfile.gettempdir(), "densehead-live-*"))),
                     "problem": problem})
        print(_soak_line(rows[-1]), flush=True)
    return rows


def _soak_round(server: harness.AppServer, browser: Any, status_path: Path, mode: str,
                sessions: int, stream_s: float, pages: list[Any], ids: list[str]) -> str:
    """One round; fills `pages` and `ids` as it goes (the caller closes them) and returns what
    went wrong, or ""."""
    known = set(harness.live_sessions(harness.read_status(status_path)))
    for _ in range(sessions):
        page = harness.open_live(browser, server.url, mode)
        pages.append(page)
        ids.append(harness.page_session_id(page, status_path, known | set(ids)))
    harness.click(pages[0].get_by_role("button", name="⏺ Record"))
    time.sleep(stream_s)
    live = harness.live_sessions(harness.read_status(status_path))
    stopped = [i for i, sid in enumerate(ids) if not live.get(sid, {}).get("streaming")]
    if stopped:
        return f"the stream of person {stopped[0] + 1} ended by itself"
    stop = harness.webrtc_frame(pages[0], button="STOP").locator("button", has_text="STOP")
    harness.click(stop)
    time.sleep(2)
    return ""


def _soak_line(row: dict[str, Any]) -> str:
    released = "never" if row["released_s"] is None else f"{row['released_s']:.1f} s"
    in_use = row["heap_in_use_mb"]
    heap_part = f" (C heap in use {in_use:4.0f} MB)" if in_use is not None else ""
    problem = f"  PROBLEM: {row['problem']}" if row["problem"] else ""
    return (f"round {row['round']:3d}  {row['minute']:5.1f} min  server RSS {row['rss_mb']:6.1f} MB"
            f"{heap_part}  released after {released}  live sessions {row['live_sessions']}"
            f"  lingering {row['lingering']}  densehead-live temp dirs {row['temp_dirs']}{problem}")


# --- the command ------------------------------------------------------------------------------

def run(args: argparse.Namespace) -> int:
    if harness.chromium_path() is None:
        raise ValueError("benchmark-live needs Debian's Chromium (apt-get install -y chromium)")
    if not Path(args.video).is_file():
        raise ValueError(f"no such video: {args.video}")
    work = Path(tempfile.mkdtemp(prefix="densehead-bench-"))   # kept: the server log, the status
    camera = work / "camera.y4m"                                 # not kept: about 0.5 MB a frame
    try:
        return _run(args, work, camera)
    finally:
        camera.unlink(missing_ok=True)


def _run(args: argparse.Namespace, work: Path, camera: Path) -> int:
    width, height = args.size
    frames = glass.stamped_camera(Path(args.video), camera, args.camera_seconds, (width, height),
                                  args.rate)
    kept = [f"{env}={os.environ[env]}" for env in (processing_track.ENV, jitter_buffer.ENV,
                                                   bitrate_floor.ENV, ice_consent.ENV)
            if os.environ.get(env)]
    print(f"densehead benchmark-live: {Path(args.video).name} as {width}x{height} at {args.rate} fps"
          f" ({len(frames)} frames, looped, numbered for the latency), mode {args.mode}, regressor"
          f" {args.regressor}, server TFLite threads {args.threads}, libraries' own parts kept:"
          f" {', '.join(kept) or 'none'},"
          f" {args.busy} busy-loop process(es), load average {os.getloadavg()[0]:.1f} at the start",
          flush=True)
    print(f"machine: {this_machine().describe()}", flush=True)
    engine_ms, engine_cpu = engine_cost(frames, args.mode, args.threads, args.regressor)
    from aiortc.codecs import vpx as aiortc_vpx

    from ..dashboard import vp8
    codec_ms = {name: codec_cost(frames, cls, rate) for name, cls, rate in
                (("aiortc's", aiortc_vpx.Vp8Encoder, aiortc_vpx.MAX_BITRATE),
                 ("the page's", vp8.Vp8SpeedEncoder, vp8.MAX_BITRATE))}
    print(f"engine alone (tracker + {args.mode} overlay, same frames, no WebRTC): "
          f"{engine_ms:.2f} ms median, {engine_cpu:.2f} ms CPU per frame", flush=True)
    print(f"VP8 decode + encode alone, {width}x{height}, at each encoder's top bitrate: "
          + ", ".join(f"{name} encoder {ms:.2f} ms" for name, ms in codec_ms.items())
          + " CPU per frame; the server uses " + ("aiortc's" if args.vp8 == "aiortc" else "the page's"),
          flush=True)
    env = {THREADS_ENV: str(args.threads), vp8.ENV: args.vp8, REGRESSOR_ENV: args.regressor}
    if os.environ.get(ASSETS_ENV):
        env[ASSETS_ENV] = os.environ[ASSETS_ENV]
    with busy_loops(args.busy):
        if args.soak:
            _serve(args, work, camera, env, "soak", engine_cpu)
            print(f"files in {work}")
            return 0
        rounds = _serve(args, work, camera, env, "page", engine_cpu)
        if args.floor:
            floors = _serve(args, work, camera, {**env, ECHO_ENV: "1"}, "echo", engine_cpu)
            for r in rounds:
                r.floor = next((f for f in floors if f.k == r.k), None)
    print()
    print(format_table(rounds, engine_cpu))
    print(f"server logs, status files: {work}")
    return 0


def _serve(args: argparse.Namespace, work: Path, camera: Path, env: dict[str, str], name: str,
           engine_cpu: float) -> list[Round]:
    """One server (log and status in `work`, named `name`) and one browser: the rounds of
    `args.sessions` (each `args.rounds` times; the echo floor once), or the soak."""
    from playwright.sync_api import sync_playwright

    status_path = work / f"{name}-status.json"
    rounds: list[Round] = []
    server_env = {**env, STATUS_ENV: str(status_path)}
    with harness.AppServer(work / f"{name}-server.log", env=server_env) as server, \
            _proxied(server, work / f"{name}-proxy", args.proxy and name != "echo") as proxy_url, \
            sync_playwright() as pw:
        browser = harness.launch_chromium(pw, camera, flags=harness.NO_BACKGROUND_THROTTLING)
        try:
            if args.soak:
                _print_soak_summary(soak(server, browser, status_path, args.soak, args.mode))
                print(f"server log: {server.log_text().count('Traceback')} traceback(s)")
                return []
            for k in args.sessions:
                for _ in range(1 if name == "echo" else args.rounds):
                    for url in (None, proxy_url) if proxy_url else (None,):   # alternated
                        label = f"[{name}{' via nginx' if url else ''}]"
                        try:
                            rounds.append(measure_round(server, browser, status_path, k, args.mode,
                                                        args.warmup, args.seconds,
                                                        echo=name == "echo", url=url))
                        except Exception as exc:   # a page that never streamed, Playwright's timeouts
                            first = str(exc).splitlines()[0] if str(exc) else ""
                            print(f"{label} K={k}: the round failed ({type(exc).__name__}: {first}); "
                                  "the next one starts", flush=True)
                            continue
                        print(f"{label} " + format_round(rounds[-1], engine_cpu), flush=True)
        finally:
            browser.close()
    return rounds


@contextlib.contextmanager
def _proxied(server: harness.AppServer, prefix: Path, wanted: bool) -> Iterator[str | None]:
    """The replicas' nginx in front of `server` (one replica), when `wanted`."""
    if not wanted:
        yield None
        return
    from ..dashboard.proxy import Backend, ProxySettings, nginx_in_front

    prefix.mkdir(parents=True, exist_ok=True)
    settings = ProxySettings(harness.free_port(), "127.0.0.1")
    with nginx_in_front([Backend("r1", "127.0.0.1", server.port)], settings, prefix) as url:
        yield url


@contextlib.contextmanager
def busy_loops(n: int) -> Iterator[None]:
    """`n` processes that spin on a core each: this machine made slower, as a slower CPU or
    other work on it would."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
    try:
        yield
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def format_round(r: Round, engine_cpu: float) -> str:
    lines = [f"K={r.k}: server {r.cpu_cores:.2f} cores, {r.cpu_ms_per_frame:.1f} ms CPU per processed"
             f" frame ({r.cpu_ms_per_frame / max(engine_cpu, 1e-6):.1f}x the engine's)"
             + (f", released {r.released_s:.1f} s after closing" if r.released_s is not None else "")
             + f"; browsers {r.browser_cores:.2f} cores, whole machine {r.machine_cores:.2f} cores busy;"
             f" {r.tracebacks} traceback(s) in the server log" + _control_text(r)]
    for i, s in enumerate(r.sessions, 1):
        share = s.processed_fps / s.arrived_fps if s.arrived_fps else 0.0
        lat = (f"latency {s.latency.median_ms:.0f}/{s.latency.p90_ms:.0f} ms (median/p90 of "
               f"{len(s.latency.samples_ms)})" if s.latency and s.latency.samples_ms else "latency -")
        lines.append(f"  session {i}: {s.size}  arrived {s.arrived_fps:5.1f} fps  processed "
                     f"{s.processed_fps:5.1f} fps ({share:.0%})  longest gap {s.longest_gap_s:.1f} s  "
                     f"frame {s.frame_ms:.1f} ms  queue lag {s.lag_ms:.0f} (max {s.lag_max_ms:.0f}) ms  "
                     f"{lat}" + ("  ENDED BY ITSELF" if s.ended else "")
                     + ("" if s.page_live else "  PAGE NOT ANSWERING"))
    if split := latency_split(r):
        lines.append("  where the time goes (ms, medians over sessions): " + ", ".join(
            f"{name} {ms:.1f}" for name, ms in split.items()))
    if traffic := [s.latency for s in r.sessions if s.latency]:
        sent, packets, back = (statistics.median(getattr(t, k) for t in traffic)
                               for k in ("sent_kbps", "packets_per_frame_sent", "received_kbps"))
        lines.append(f"  video per page (median): sent {sent:.0f} kbps in {packets:.1f} packets a frame,"
                     f" returned {back:.0f} kbps")
    if r.ms_by_role:
        lines.append("  server CPU ms per processed frame by thread: " + ", ".join(
            f"{name} {ms:.1f}" for name, ms in sorted(r.ms_by_role.items(), key=lambda x: -x[1])))
    lines += [f"  problem: {p}" for p in r.problems]
    return "\n".join(lines)


def _control_text(r: Round) -> str:
    if r.echo:
        return ""   # no overlay to change
    return ("; overlay change never showed" if r.control_s is None
            else f"; overlay change shown {r.control_s:.2f} s after the click")


def latency_split(r: Round) -> dict[str, float]:
    """The glass-to-glass median in the parts that can be measured: the browser's own (its
    RTCPeerConnection statistics), the server's (queue lag and processing from its status, its
    VP8 encode from the CPU of its encoder threads), and the rest (packets on the way, the
    receiver's assembly, the page's frame delivery)."""
    with_latency = [s for s in r.sessions if s.latency and s.latency.samples_ms]
    if not with_latency:
        return {}
    med = lambda values: statistics.median(values)   # noqa: E731
    parts = {
        "browser encode": med([s.latency.browser_encode_ms for s in with_latency]),
        "browser send pacer": med([s.latency.browser_send_ms for s in with_latency]),
        "server queue lag": med([s.lag_ms for s in with_latency]),
        "server processing": med([s.frame_ms for s in with_latency]),
        "server VP8 encode (CPU)": next((ms for name, ms in r.ms_by_role.items()
                                         if name.startswith("VP8 encode")), 0.0),
        "browser jitter buffer": med([s.latency.jitter_buffer_ms for s in with_latency]),
        "browser decode": med([s.latency.decode_ms for s in with_latency]),
    }
    total = med([s.latency.median_ms for s in with_latency])
    return {"glass to glass": total, **parts, "the rest": total - sum(parts.values())}


def format_table(rounds: list[Round], engine_cpu: float) -> str:
    """Markdown, ready for the README: one row per round."""
    out = ["| people | processed fps per person (min–max) | arrived fps | kept | latency median / p90 "
           "| echo floor median / p90 | queue lag max | ended by itself | overlay change shown after "
           "| server CPU ms per frame | x engine | tracebacks |",
           "|---:|---|---|---:|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rounds:
        p = [s.processed_fps for s in r.sessions]
        people = f"{r.k} via nginx" if r.via == "proxy" else f"{r.k}"
        a = [s.arrived_fps for s in r.sessions]
        share = sum(p) / max(sum(a), 1e-9)
        floor = _median_p90(r.floor.latencies()) if r.floor else "–"
        control = "never" if r.control_s is None else f"{r.control_s:.2f} s"
        out.append(f"| {people} | {min(p):.1f}–{max(p):.1f} | {min(a):.1f}–{max(a):.1f} | {share:.0%} "
                   f"| {_median_p90(r.latencies())} | {floor} "
                   f"| {max(s.lag_max_ms for s in r.sessions):.0f} ms | {sum(s.ended for s in r.sessions)} "
                   f"| {control} | {r.cpu_ms_per_frame:.1f} | {r.cpu_ms_per_frame / max(engine_cpu, 1e-6):.1f} "
                   f"| {r.tracebacks} |")
    return "\n".join(out)


def _median_p90(samples: list[float]) -> str:
    if not samples:
        return "–"
    return f"{statistics.median(samples):.0f} / {np.percentile(samples, 90):.0f} ms"


def _print_soak_summary(rows: list[dict[str, Any]]) -> None:
    if len(rows) < 2:
        return
    minutes = np.array([r["minute"] for r in rows])
    rss = np.array([r["rss_mb"] for r in rows])
    print(f"soak: {len(rows)} rounds over {minutes[-1]:.1f} min; RSS first {rss[0]:.0f} MB, "
          f"max {rss.max():.0f} MB, last {rss[-1]:.0f} MB; second-half slope "
          f"{_second_half_slope(minutes, rss):+.2f} MB/min; every round released: "
          f"{all(r['released_s'] is not None for r in rows)}; rounds with a problem: "
          f"{sum(bool(r['problem']) for r in rows)}")
    if all(r["heap_in_use_mb"] is not None for r in rows):
        in_use = np.array([r["heap_in_use_mb"] for r in rows])
        print(f"C heap in use: first {in_use[0]:.0f} MB, max {in_use.max():.0f} MB, last "
              f"{in_use[-1]:.0f} MB; second-half slope {_second_half_slope(minutes, in_use):+.2f} MB/min")


def _second_half_slope(minutes: np.ndarray, mb: np.ndarray) -> float:
    half = len(mb) // 2
    return float(np.polyfit(minutes[half:], mb[half:], 1)[0]) if len(mb) >= 4 else float("nan")
