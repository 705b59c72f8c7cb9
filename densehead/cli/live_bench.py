"""`densehead benchmark-live`: the live page as a server, measured the way people use it.

The app runs as a subprocess (`densehead serve`: `streamlit run app.py` with two malloc arenas,
or MALLOC_ARENA_MAX from the environment), with DENSEHEAD_LIVE_STATUS set so that the server
writes its per-session counters to a file; one headless Chromium (background throttling off:
every context is a person in the foreground) plays a real video as every context's webcam,
each frame numbered in its top left corner; K contexts (K people) open the live page and press
START. After a warm-up (Chromium ramps its bitrate and size), for a window of N seconds it reads,
once a second, each session's processed and arrived frame counters and queue lag and the
server's CPU per thread from /proc, and each page reads its own camera track and the returned
track (WebCodecs, in a worker) to time every numbered frame from camera to screen. Then it checks
that every page still streams and answers, closes them and waits until the server has released
their sessions.

Printed per K: processed and arrived fps per session, the longest gap without a processed frame,
the queue lag (median, max), glass-to-glass latency (median, p90) and where it goes (the
browser's encode, pacer, jitter buffer and decode from its RTCPeerConnection statistics, the
server's queue lag, processing and VP8 encode), whether a stream ended by itself, the tracebacks
in the server log, and the server's CPU per processed frame next to the engine's own cost on the
same frames (tracker + overlay, no WebRTC) and the VP8 decode + encode that aiortc does per frame.
Then the same rounds on a second server with processing off (DENSEHEAD_LIVE_ECHO=1: frames go
back untouched): the latency floor of the same stack. `--busy N` runs N busy-loop processes
throughout, standing in for a slower machine. DENSEHEAD_WEBRTC_TRACK=streamlit-webrtc in the
environment runs the server with streamlit-webrtc's own processing track.

`--soak MINUTES` instead opens and closes sessions for that long (streams started and stopped,
tabs closed, a recording now and then) and prints the server's memory after every round.
"""
from __future__ import annotations

import argparse
from typing import Any

from ..core.options import AUTO, REGRESSOR_NAMES
from ..dashboard.serve import DEFAULT_THREADS, THREADS_ENV
from ..render import draw
from ..tools.samples import sample
from .options import parse_size


def add_cli(sub: Any) -> None:
    p = sub.add_parser(
        "benchmark-live", help="the live page with K browser sessions at once (needs Chromium "
                               "and Playwright); or --soak MINUTES",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sessions", type=_counts, default=[1, 2, 3, 4],
                   help="how many people at once, one round each (default 1,2,3,4)")
    p.add_argument("--size", type=parse_size, default=(640, 480), help="camera WxH (default 640x480)")
    p.add_argument("--rate", type=int, default=25, help="camera frames per second (default 25)")
    p.add_argument("--video", default=str(sample("videos", "obama.mp4")),
                   help="the video the fake camera plays, looped (default: obama.mp4 of the "
                        "samples)")
    p.add_argument("--camera-seconds", type=float, default=10.0,
                   help="seconds of the video to loop (default 10)")
    p.add_argument("--mode", default=draw.DEFAULT_MODE,
                   help=f"overlay: {', '.join(draw.MODES)} (default {draw.DEFAULT_MODE})")
    p.add_argument("--seconds", type=float, default=30.0, help="measured window per round")
    p.add_argument("--warmup", type=float, default=20.0,
                   help="seconds of streaming before the window (Chromium ramps up its bitrate)")
    p.add_argument("--threads", type=int, default=DEFAULT_THREADS,
                   help=f"the server's TFLite threads per model ({THREADS_ENV}; "
                        f"default {DEFAULT_THREADS})")
    p.add_argument("--regressor", default=AUTO, choices=(AUTO, *REGRESSOR_NAMES),
                   help=f"the server's regressor (DENSEHEAD_REGRESSOR; default {AUTO}, "
                        "the dashboard's)")
    p.add_argument("--vp8", choices=("speed", "aiortc"), default="speed",
                   help="the server's VP8 encoder: the page's faster settings (default) or aiortc's own")
    p.add_argument("--rounds", type=int, default=1, help="rounds per K (default 1)")
    p.add_argument("--busy", type=int, default=0, metavar="N",
                   help="busy-loop processes running throughout: a slower machine (default 0)")
    p.add_argument("--proxy", action="store_true",
                   help="every round also through nginx in front of the server (the replicas' "
                        "proxy, densehead serve --replicas), alternated with the direct round")
    p.add_argument("--no-floor", dest="floor", action="store_false",
                   help="skip the echo floor (the same rounds with processing off)")
    p.add_argument("--soak", type=float, default=0.0, metavar="MINUTES",
                   help="instead: open, stream, record, stop and close sessions for this long "
                        "and print the server's memory after every round")
    p.set_defaults(func=run)


def _counts(text: str) -> list[int]:
    try:
        counts = [int(v) for v in text.split(",")]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"a comma-separated list of session counts like 1,2,4, got {text!r}")
    return counts


def run(args: argparse.Namespace) -> int:
    if args.mode not in draw.MODES:
        raise ValueError(f"unknown mode {args.mode!r}; choose one of {', '.join(draw.MODES)}")
    if args.seconds < 2 or args.warmup < 0:
        raise ValueError("--seconds must be at least 2 and --warmup at least 0")
    if args.rounds < 1 or args.busy < 0:
        raise ValueError("--rounds must be at least 1 and --busy at least 0")
    try:
        import playwright.sync_api  # noqa: F401  (a test requirement)
    except ImportError as exc:
        raise ValueError(f"benchmark-live needs the test requirements "
                         f"(pip install -r tests/requirements.txt): {exc}") from exc
    from ..tools import live_bench

    return live_bench.run(args)
