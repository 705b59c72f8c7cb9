"""The server's status as a JSON file: which browser sessions it holds and what each one does,
its CPU time per thread and its C heap, rewritten every second.

With `DENSEHEAD_LIVE_STATUS=<file>` in its environment the server writes it (`densehead
serve` passes the environment on). It is how an operator sees what one replica carries, and
what the browser tests and `densehead benchmark-live` read.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from ..core.files import atomic_write
from . import cpu, heap

if TYPE_CHECKING:
    from .sessions import SessionResources

STATUS_ENV = "DENSEHEAD_LIVE_STATUS"


def server_status(resources: "SessionResources") -> dict[str, Any]:
    """The registry's status with the process's pid, CPU (total and per thread) and heap."""
    out: dict[str, Any] = {"time": time.time(), "pid": os.getpid(),
                           "cpu_s": cpu.process_cpu(), "threads": cpu.thread_cpu()}
    if (now := heap.usage()) is not None:
        out["heap"] = {"in_use_mb": round(now.in_use_mb, 1), "free_mb": round(now.free_mb, 1),
                       "last_trim_ms": resources.last_trim_ms}
    return {**out, **resources.status()}


def write_status(resources: "SessionResources", path: str | os.PathLike) -> None:
    atomic_write(path, json.dumps(server_status(resources)), sync=False)  # never half a file


def status_writer(path: str | os.PathLike) -> Callable[["SessionResources"], None]:
    """A janitor hook that writes the status to `path`."""
    return lambda resources: write_status(resources, Path(path))
