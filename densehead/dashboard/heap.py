"""The server's C heap: what glibc's malloc holds in use and free, and giving free pages back.

Video frames (0.1–1 MB each) are allocated and freed on many threads (decoder, processing,
encoder), so glibc spreads them over per-thread arenas and keeps what is freed there for reuse.
In a soak the memory in use stayed level while the arenas' free part grew by tens of MB a
round, and RSS with it. `trim()` (glibc's `malloc_trim`) returns those free pages to the system;
the session janitor calls it after it has released a session. A trim gives back only whole free
pages, and freed frames leave holes between blocks that stay: glibc raises its mmap threshold to
the size of any larger mapped block that is freed, so after the first frame all frames come from
the arenas (16 here, one per thread up to 8 per core). `fix_mmap_threshold()`, called when the
dashboard package is imported, pins the threshold (glibc's `M_MMAP_THRESHOLD`) when
DENSEHEAD_MMAP_THRESHOLD asks for it (65536: below the smallest frame): every frame-sized block
is then mapped on its own and unmapped when freed. It is off by default: in a 10-minute soak
it cut the RSS slope from +3.6 to +0.9 MB/min, but the page faults of mapping every frame anew
cost about 1 ms of CPU per 640x480 frame in the engine alone (README, Soak). Capping the arenas
(`M_ARENA_MAX`) would not do: it binds only before the arenas exist, and the Streamlit server
has 15 by the time the first page script runs (malloc_info, seen on Streamlit 1.67). Other C
libraries (musl, macOS) have none of these calls: there the functions do nothing. `rss_mb` is
what a process holds resident.
"""
from __future__ import annotations

import ctypes
import logging
import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path

log = logging.getLogger(__name__)

_MB = 2 ** 20
_M_MMAP_THRESHOLD = -3     # mallopt parameter, from glibc's malloc.h


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
        "uordblks", "fordblks", "keepcost")]


@dataclass(frozen=True)
class Heap:
    in_use_mb: float    # handed out by malloc and not freed (arenas and mmapped chunks)
    free_mb: float      # freed, kept in the arenas for reuse (resident unless trimmed)


@cache
def _glibc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = _MallInfo2
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        return libc
    except (OSError, AttributeError):  # not glibc, or glibc older than 2.33 (no mallinfo2)
        return None


def usage() -> Heap | None:
    """The heap now (summed over all arenas), or None without glibc."""
    libc = _glibc()
    if libc is None:
        return None
    info = libc.mallinfo2()
    return Heap(in_use_mb=(info.uordblks + info.hblkhd) / _MB, free_mb=info.fordblks / _MB)


def trim() -> bool:
    """Give the free pages of every arena back to the system; False without glibc."""
    libc = _glibc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True


def fix_mmap_threshold() -> bool:
    """If DENSEHEAD_MMAP_THRESHOLD=N (bytes, > 0) is set, serve every block of at least N bytes
    by its own mapping, returned when freed, from now on and in every arena. False when it is
    unset, 0 or not a number, and without glibc."""
    chosen = os.environ.get("DENSEHEAD_MMAP_THRESHOLD", "").strip()
    if not chosen:
        return False
    try:
        size = int(chosen)
    except ValueError:
        log.warning("DENSEHEAD_MMAP_THRESHOLD=%r is not a number of bytes: ignored", chosen)
        return False
    libc = _glibc()
    if libc is None or size <= 0:
        return False
    log.info("malloc: blocks of %d bytes and more are mapped on their own", size)
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, size))


def rss_mb(pid: int | str = "self") -> float:
    """A process's resident memory (VmRSS), this one by default; 0.0 if /proc does not say."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0
