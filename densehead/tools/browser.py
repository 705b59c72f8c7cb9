"""Driving the dashboard from outside, as people would: the app started with `densehead serve`
(`streamlit run`) as a subprocess, a real video as Chromium's fake webcam, one browser context
per person.

Shared by the browser tests (tests/e2e) and `densehead benchmark-live`. Needs Playwright and
Debian's Chromium (test requirements), imported only when a browser is launched.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from ..core.processes import stop_process
from ..dashboard import heap
from ..dashboard.cpu import stat_cpu
from ..dashboard.serve import CHECKOUT, answers_health
from ..render.draw import DEFAULT_MODE

ROOT = CHECKOUT                                  # the checkout: app.py, pages/, .streamlit/
PAGE_LOAD_TIMEOUT_MS = 120_000                   # opening a page of the app (go_to_page)
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--use-fake-ui-for-media-stream",
                  "--use-fake-device-for-media-stream"]

# Every context a person in the foreground: Chromium slows the timers and renderers of pages it
# takes for background ones, which would starve all but one of K people on one browser
NO_BACKGROUND_THROTTLING = ["--disable-background-timer-throttling", "--disable-renderer-backgrounding",
                            "--disable-backgrounding-occluded-windows"]

# Ask Chromium to keep the camera's resolution and give up frame rate instead when it judges
# the CPU busy (the default "balanced" preference halves the size on a loaded machine)
KEEP_RESOLUTION_JS = """(() => { const md = navigator.mediaDevices; if (!md) return;
  const get = md.getUserMedia.bind(md);
  md.getUserMedia = async (c) => { const s = await get(c);
    s.getVideoTracks().forEach(t => { t.contentHint = 'detail'; }); return s; }; })();"""


def to_y4m(src: Path, dst: Path, seconds: float, max_width: int = 640,
           size: tuple[int, int] | None = None, rate: int | None = None) -> list[np.ndarray]:
    """Re-encode the first `seconds` of a video as raw yuv420p .y4m (what Chromium's fake
    camera reads): downscaled to at most max_width, or scaled and centre-cropped to `size`
    (w, h) like a webcam's 4:3 picture; `rate` relabels the frame rate. Returns the RGB frames."""
    frames, src_rate = camera_frames(src, seconds, max_width, size)
    write_y4m(frames, dst, rate or src_rate)
    return frames


def camera_frames(src: Path, seconds: float, max_width: int = 640,
                  size: tuple[int, int] | None = None) -> tuple[list[np.ndarray], Fraction | int]:
    """The first `seconds` of a video as RGB frames, sized as `to_y4m` says; and its frame rate."""
    import av

    frames: list[np.ndarray] = []
    with av.open(str(src)) as inp:
        vin = inp.streams.video[0]
        src_rate = vin.average_rate or 25
        sw, sh = vin.codec_context.width, vin.codec_context.height
        if size is None:
            scale = min(1.0, max_width / sw)
            size = (int(sw * scale) // 2 * 2, int(sh * scale) // 2 * 2)
        w, h = size
        cover = max(w / sw, h / sh)
        sw2, sh2 = int(np.ceil(sw * cover)), int(np.ceil(sh * cover))
        x0, y0 = (sw2 - w) // 2, (sh2 - h) // 2
        for frame in inp.decode(vin):
            if len(frames) >= seconds * float(src_rate):
                break
            rgb = frame.reformat(width=sw2, height=sh2, format="rgb24").to_ndarray()
            frames.append(np.ascontiguousarray(rgb[y0:y0 + h, x0:x0 + w]))
    return frames, src_rate


def write_y4m(frames_rgb: list[np.ndarray], dst: Path, rate: Fraction | int) -> None:
    """RGB frames as raw yuv420p .y4m at `rate` frames per second."""
    import av

    h, w = frames_rgb[0].shape[:2]
    with av.open(str(dst), "w", format="yuv4mpegpipe") as out:
        stream = out.add_stream("rawvideo", rate=rate)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for rgb in frames_rgb:
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_ports(count: int) -> int:
    """A port P with P .. P+count-1 all free on loopback (a proxy's and its replicas')."""
    for _ in range(50):
        base = free_port()
        if base + count < 65536 and all(_bindable(base + i) for i in range(count)):
            return base
    raise RuntimeError(f"no {count} free ports in a row on 127.0.0.1")


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def chromium_path() -> str | None:
    return shutil.which("chromium")


def launch_chromium(playwright: Any, camera: Path, executable: str | None = None,
                    flags: list[str] | None = None) -> Any:
    """Headless Chromium whose webcam plays `camera` (.y4m) in a loop; `flags` added."""
    return playwright.chromium.launch(
        executable_path=executable or chromium_path(), headless=True,
        args=CHROMIUM_FLAGS + (flags or []) + [f"--use-file-for-fake-video-capture={camera}"])


# --- the server -----------------------------------------------------------------------------

@dataclass
class AppServer:
    """The dashboard started as the README says (`python -m densehead serve`, i.e. `streamlit
    run app.py` with the server's memory settings) on a free port; its log goes to `log_path`.
    Use as a context manager: it is always stopped by its own pid (serve becomes Streamlit)."""
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    args: list[str] = field(default_factory=list)
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> "AppServer":
        env = dict(os.environ, PYTHONUNBUFFERED="1", **self.env)
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "densehead", "serve", "--server.headless", "true",
             "--server.port", str(self.port), "--server.address", "127.0.0.1",
             "--browser.gatherUsageStats", "false", *self.args],
            cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT)
        try:
            wait_healthy(self.url, self.proc)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            stop_process(self.proc, 15)
        self._log.close()

    # -- what /proc says about it ------------------------------------------------------------
    def rss_mb(self) -> float:
        return heap.rss_mb(self.proc.pid)

    def log_text(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")


def descendants_cpu(root: int, exclude: set[int] = frozenset()) -> float:
    """CPU seconds of every process below `root` (e.g. the browsers a test started), except
    the subtrees at `exclude` (the server)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    total = 0.0
    for pid in parents:
        p, chain = pid, set()
        while p in parents and p != root and p not in chain:
            chain.add(p)
            p = parents[p]
        if p == root and not chain & set(exclude):
            try:
                total += stat_cpu(Path(f"/proc/{pid}/stat"))
            except OSError:
                pass
    return total


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has been busy (all cores, from /proc/stat)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]   # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with code {proc.returncode}")
        if answers_health(url):
            return
        time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f} s")


def read_status(path: Path, tries: int = 20) -> dict[str, Any]:
    """The server's session status file (see densehead.dashboard.sessions)."""
    for _ in range(tries):
        try:
            return json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            time.sleep(0.25)
    return {"sessions": [], "released": 0, "lingering": 0}


def live_sessions(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{session id: its live page counters} for the sessions that have the live page open."""
    return {s["id"]: s["live"] for s in status.get("sessions", []) if "live" in s}


# --- a person on the live page ---------------------------------------------------------------

def webrtc_frame(page: Any, tries: int = 120, button: str = "START") -> Any:
    """The streamlit-webrtc component's iframe, once its START (or STOP) button shows."""
    for _ in range(tries):
        for frame in page.frames:
            if frame != page.main_frame and _shows(frame, button):
                return frame
        page.wait_for_timeout(500)
    raise AssertionError("the webcam component did not appear")


# the returned video's current picture drawn on a canvas `c` (context `g`), or null before it plays
VIDEO_CANVAS_JS = """const v = document.querySelector('video');
  if (!v || !v.videoWidth) return null;
  const c = document.createElement('canvas'); c.width = v.videoWidth; c.height = v.videoHeight;
  const g = c.getContext('2d'); g.drawImage(v, 0, 0);"""
# ... and how many of its pixels have the landmarks' colour render.draw.GREEN (RGB 80,220,80) and
# the dense points' draw.CYAN (RGB 40,200,230), after video coding
OVERLAY_PIXELS_JS = "() => { " + VIDEO_CANVAS_JS + """
  const d = g.getImageData(0, 0, c.width, c.height).data; let n = 0, m = 0;
  for (let i = 0; i < d.length; i += 4) {
    if (d[i+1] > 170 && d[i] < 140 && d[i+2] < 140) n++;
    if (d[i+2] > 170 && d[i+1] > 140 && d[i] < 120) m++; }
  return {w: c.width, h: c.height, green: n, cyan: m, t: v.currentTime}; }"""


def _shows(frame: Any, button: str) -> bool:
    try:
        return bool(frame.locator("button", has_text=button).count())
    except Exception:   # the frame went away while asked (its page redrew it)
        return False


def click(target: Any, timeout_ms: float = 30_000) -> None:
    """Click as a person does, then go on; the caller waits for what the click should show.
    Playwright's default wait after a click (for navigations the click might have scheduled, and
    a round trip to the page's renderer) is what ran out on a slower machine, after the click had
    been done; a Streamlit button starts a rerun, never a navigation."""
    target.click(timeout=timeout_ms, no_wait_after=True)


def choose(page: Any, label: str, option: str) -> None:
    click(page.locator('[data-testid="stSelectbox"]', has_text=label))
    click(page.get_by_role("option", name=option, exact=True))


def new_page(browser: Any, context: Any = None) -> Any:
    """A page in a new browser context (one person; or in `context`), its console kept in
    `page.console_log` for whoever reads a failure."""
    context = context or browser.new_context(viewport={"width": 1500, "height": 1100})
    page = context.new_page()
    page.console_log = []  # type: ignore[attr-defined]
    page.on("console", lambda m: page.console_log.append(f"{m.type}: {m.text}"))  # type: ignore[attr-defined]
    return page


def go_to_page(page: Any, base_url: str, path: str = "") -> None:
    """Open the app's page at `base_url` + `path` ("/Live_webcam", "/3D_viewer",
    "/Video_analysis"; "" for the home page) in `page`."""
    page.goto(base_url + path, timeout=PAGE_LOAD_TIMEOUT_MS)


def text_retrying(page: Any, locator: Any, tries: int = 10) -> str:
    """A readout's text; Streamlit re-renders the panel while it reruns, so a read that lands
    mid-render is tried again."""
    for attempt in range(tries):
        try:
            return locator.inner_text(timeout=5000)
        except Exception:
            if attempt == tries - 1:
                raise
            page.wait_for_timeout(500)
    raise AssertionError("unreachable")


# the live panel's count of processed frames, from its stage line ("... N frames of WxH
# processed"); 0 while the panel shows none
FRAMES_SHOWN_JS = r"""() => { const m = document.body.innerText.match(/(\d+) frames of \d+x\d+ processed/);
  return m ? Number(m[1]) : 0; }"""


def frames_shown(page: Any) -> int | None:
    """How many frames the live panel says it has processed; None if the page could not be
    read just then (it was navigating)."""
    try:
        return int(page.evaluate(FRAMES_SHOWN_JS))
    except Exception:
        return None


def wait_until(check: Callable[[], Any], timeout_s: float, every_s: float = 0.5) -> Any:
    """`check()` once it is truthy, tried every `every_s` for up to `timeout_s`; else its last
    value (falsy), for the caller to assert on with its own message."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every_s)
    return check()


def set_number(page: Any, label: str, value: int, taken: Callable[[], Any],
               timeout_s: float = 60.0) -> None:
    """Type `value` into the sidebar's number input `label`, press Enter, and wait until
    `taken()` says the app has applied it. Streamlit's page shows nothing that says a given
    rerun has begun or ended in time to be waited on (its running indicator appears only after
    a delay), so the caller names what the server shows once it has the value."""
    box = page.locator('[data-testid="stNumberInput"]', has_text=label).locator("input")
    box.fill(str(value))
    box.press("Enter")
    assert wait_until(taken, timeout_s), f"{label} = {value} was not applied in {timeout_s:.0f} s"


def metric(page: Any, label: str) -> str:
    """The value an st.metric labelled `label` shows."""
    box = page.locator('[data-testid="stMetric"]', has_text=label)
    return text_retrying(page, box.locator('[data-testid="stMetricValue"]'))


def wait_fps(page: Any, timeout_s: float = 60.0) -> float:
    """The live page's Server FPS, once it shows a positive number: frames are processed."""
    deadline = time.monotonic() + timeout_s
    last = "nothing read"
    while time.monotonic() < deadline:
        try:
            fps = float(metric(page, "Server FPS"))
            if fps > 0:
                return fps
            last = f"it showed {fps}"
        except Exception as exc:   # no readout yet, or the panel redrawn under the reading
            last = f"reading it failed: {str(exc).splitlines()[0]}"
        page.wait_for_timeout(500)
    raise AssertionError(f"the server FPS readout never showed a positive number ({last})")


def start_stream(page: Any, frame: Any, attempts: int = 3, timeout_s: float = 45.0) -> None:
    """Click START like a person would, and once more if no frame gets processed: WebRTC
    negotiation on a busy 2-core machine sometimes stalls (the readouts appear with the first
    frame, so they alone do not say the stream is up). A stream started on a page the replicas'
    proxy had just moved was also seen to end within 50 ms; those moves came from the proxy
    reusing connections the replica was closing (dashboard/proxy.py, UPSTREAM_IDLE_S)."""
    for _ in range(attempts):
        click(frame.locator("button", has_text="START"))
        try:
            wait_fps(page, timeout_s=timeout_s)
            return
        except AssertionError:
            if frame.locator("button", has_text="STOP").count():
                click(frame.locator("button", has_text="STOP"))
            page.wait_for_timeout(2000)
    console = getattr(page, "console_log", [])[-15:]
    raise AssertionError(f"the stream never started; the page's console ends: {console}")


def open_live(browser: Any, url: str, mode: str = DEFAULT_MODE, keep_resolution: bool = True,
              init_scripts: tuple[str, ...] = ()) -> Any:
    """A new person (browser context) on the live page with `mode` chosen and the stream
    started; `init_scripts` run in every frame of the page before its own scripts."""
    context = browser.new_context(viewport={"width": 1500, "height": 1100})
    if keep_resolution:
        context.add_init_script(KEEP_RESOLUTION_JS)
    for script in init_scripts:
        context.add_init_script(script)
    page = new_page(browser, context)
    go_to_page(page, url, "/Live_webcam")
    frame = webrtc_frame(page)
    if mode != DEFAULT_MODE:   # the sidebar starts on the default
        choose(page, "Overlay", mode)
    start_stream(page, frame)
    return page


def page_session_id(page: Any, status_path: Path, known: set[str], timeout_s: float = 30.0) -> str:
    """The server's id of the session a freshly opened page created (the one not in `known`)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        new = set(live_sessions(read_status(status_path))) - known
        if len(new) == 1:
            return new.pop()
        time.sleep(0.5)
    raise AssertionError(f"no single new live session appeared (known {len(known)})")


def iter_status(path: Path, seconds: float, every_s: float = 1.0) -> Iterator[dict[str, Any]]:
    """The status file read every `every_s` for `seconds`."""
    end = time.monotonic() + seconds
    while True:
        yield read_status(path)
        if time.monotonic() >= end:
            return
        time.sleep(every_s)


def via_home(page: Any, back_to: str) -> None:
    """A look at the home page from the sidebar, then back to the page titled `back_to`."""
    nav = page.locator('[data-testid="stSidebarNav"]')
    click(nav.get_by_text("Home", exact=True))
    page.get_by_text("Model status").wait_for(timeout=60_000)
    click(nav.get_by_text(back_to, exact=True))
