"""CPU time per thread of this process, by the thread's role in the live server: what
`benchmark-live` reports as where a frame's server CPU goes. Per-thread figures come from
Linux's /proc; elsewhere there are none, and the process total comes from Python."""
from __future__ import annotations

import functools
import os
import threading
import time
from pathlib import Path

TASKS = Path("/proc/self/task")
PROCESSING_THREAD = "densehead-processing"   # the name of a live stream's processing thread
# Python thread names (prefixes) -> role. Threads Python does not know (libvpx's, OpenCV's,
# TFLite's workers) are "native"; Python threads not named here are "other".
ROLES = (
    ("MainThread", "event loop (RTP, SRTP, ICE, websockets)"),
    (PROCESSING_THREAD, "our processing (track, draw, convert)"),
    ("async_media_processor", "our processing (track, draw, convert)"),   # streamlit-webrtc's
    ("asyncio_", "VP8 encode (aiortc, the loop's executor)"),
    ("video-decoder", "VP8 decode (aiortc)"),
    ("ScriptRunner", "page scripts (fragment reruns)"),
)


def role(name: str | None) -> str:
    if name is None:
        return "native threads"
    return next((r for prefix, r in ROLES if name.startswith(prefix)), "other Python threads")


def thread_cpu() -> dict[str, float]:
    """{"<tid> <role>": CPU seconds} for every thread alive now."""
    if not TASKS.is_dir():
        return {}
    names = {t.native_id: t.name for t in threading.enumerate()}
    out: dict[str, float] = {}
    for task in TASKS.iterdir():
        try:
            seconds = stat_cpu(task / "stat")
        except OSError:  # the thread ended just now
            continue
        out[f"{task.name} {role(names.get(int(task.name)))}"] = seconds
    return out


def process_cpu() -> float:
    """CPU seconds of this process so far, ended threads included."""
    if not TASKS.is_dir():
        return time.process_time()
    return stat_cpu(Path("/proc/self/stat"))


def stat_cpu(stat: Path) -> float:
    """utime + stime, in seconds, from a /proc/.../stat file (a process's or a thread's)."""
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _clock_ticks()


@functools.cache
def _clock_ticks() -> int:
    return os.sysconf("SC_CLK_TCK")  # POSIX only: asked when /proc exists, never at import


def by_role(before: dict[str, float], after: dict[str, float], total_s: float) -> dict[str, float]:
    """CPU seconds per role between two `thread_cpu()` readings; what threads that ended in
    between used (the process total minus the live threads') is "ended threads"."""
    roles: dict[str, float] = {}
    for key, cpu in after.items():
        name = key.split(" ", 1)[1]
        roles[name] = roles.get(name, 0.0) + cpu - before.get(key, 0.0)
    gone = total_s - sum(roles.values())
    roles["ended threads (short-lived script runs)"] = max(gone, 0.0)
    return roles
