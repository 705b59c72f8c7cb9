"""The server's C heap: what glibc's malloc holds in use and free, and giving free pages back.

Video frames (0.1–1 MB each) are allocated and freed on many threads (decoder, processing,
encoder), so glibc spreads them over per-thread arenas and keeps what is freed there for reuse.
In a soak the memory in use stayed level while the arenas' free part grew by tens of MB a
round, and RSS with it. `trim()` (glibc's `malloc_trim`) returns those free pages to the system;
the session janitor calls it after it has released a session. A trim gives back only whole free
pages, and freed frames leave holes between blocks that stay in the 16 arenas (8 per core).
What keeps a server's memory flat is fewer arenas: start it with MALLOC_ARENA_MAX=2 in the
environment (README, Soak). That cannot be set from here: glibc's `M_ARENA_MAX` binds only
before the arenas exist, and the Streamlit server has 15 by the time the first page script runs
(malloc_info, seen on Streamlit 1.67). Pinning the mmap threshold instead (`M_MMAP_THRESHOLD`,
so every frame is mapped on its own) flattened memory less and cost CPU on every frame in
page faults (docs/measurements.md, Soak). Other C libraries (musl, macOS) have neither call:
there both functions do nothing. `rss_mb` is what a process holds resident.
"""
from __future__ import annotations

import ctypes
from dataclasses import dataclass
from functools import cache
from pathlib import Path

_MB = 2 ** 20


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


def rss_mb(pid: int | str = "self") -> float:
    """A process's resident memory (VmRSS), this one by default; 0.0 if /proc does not say."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0
