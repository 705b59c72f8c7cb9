"""benchmark-live's split of the server's CPU by thread: a busy thread's CPU lands on its role."""
from __future__ import annotations

import threading
import time

from densehead.dashboard import cpu


def _spin(seconds: float) -> None:
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def test_a_busy_thread_is_counted_under_its_role_and_an_ended_one_as_ended():
    before, total0 = cpu.thread_cpu(), cpu.process_cpu()
    spun, stop = threading.Event(), threading.Event()
    worker = threading.Thread(target=lambda: (_spin(0.3), spun.set(), stop.wait()),
                              name="async_media_processor_9")
    worker.start()
    short = threading.Thread(target=_spin, args=(0.3,), name="ScriptRunner.scriptThread")
    short.start()
    short.join()
    assert spun.wait(60)   # the worker has spun and waits, alive: however busy the machine
    # the ended thread's CPU joins the process's total when Linux reaps it, which is when its
    # task leaves /proc, a moment after join() returns
    gone = cpu.TASKS / str(short.native_id)
    deadline = time.monotonic() + 60
    while gone.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    after, total1 = cpu.thread_cpu(), cpu.process_cpu()
    stop.set()
    worker.join()
    roles = cpu.by_role(before, after, total1 - total0)
    ours = roles[cpu.role("async_media_processor_9")]
    assert 0.2 <= ours <= 0.5, f"the processing thread's 0.3 s of CPU came out as {ours:.2f} s"
    assert roles["ended threads (short-lived script runs)"] >= 0.2
    assert cpu.role(None) == "native threads" and cpu.role("MainThread").startswith("event loop")
