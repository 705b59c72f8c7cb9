"""Signals and child processes: what the batch command, the replicas' launcher and the
benchmarks' harnesses do alike."""
from __future__ import annotations

import contextlib
import signal
import subprocess
from typing import Any, Iterator


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Inside, `kill PID` stops the program as Ctrl-C does (KeyboardInterrupt), so that it
    cleans up as it would then; the handler before is put back on leaving."""
    before = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def stop_process(process: subprocess.Popen, timeout_s: float, terminate: bool = True) -> None:
    """End a child: SIGTERM (or, with `terminate=False`, only a wait for it to end by itself),
    then SIGKILL if it is still there after `timeout_s`."""
    if process.poll() is not None:
        return
    if terminate:
        process.terminate()
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
