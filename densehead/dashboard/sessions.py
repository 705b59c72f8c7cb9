"""What each browser session holds on the server, and its release when the browser goes away.

Streamlit has no public session-end hook, and it keeps a disconnected session (with its
`st.session_state`) for `server.disconnectedSessionTTL` (2 minutes) in case the tab reconnects,
and drops it lazily after that. So the heavy per-session things — the live page's tracker,
series and recording, the video page's temporary files — are not kept in `st.session_state`
but here, keyed by the session id, and a janitor thread polls `Runtime.is_active_session` (thread
safe) once a second: a session that has had no browser for `grace_s` has its resources closed
and dropped. Nothing else holds them, so they are freed right then (the tests check it with weak
references), and the janitor then gives the C heap's free pages back to the system (`heap`).
Each tick also runs the registry's `on_tick` hooks (the server's status file, `status`).
"""
from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, TypeVar

from ..core.face import ms_since
from . import heap, server_log
from .status import STATUS_ENV, status_writer

log = logging.getLogger(__name__)
GRACE_S = 3.0   # a reload or a network blip reconnects within this; a closed tab does not
TICK_S = 1.0


class Resource(Protocol):
    def close(self) -> None: ...


R = TypeVar("R", bound=Resource)


@dataclass
class _Entry:
    resources: dict[str, Resource] = field(default_factory=dict)
    gone_since: float | None = None  # when the janitor first saw the session without a browser


class SessionResources:
    """Per-session resources by (session id, name); closed when their session ends.

    `is_active(session_id)` says whether a browser is still connected to the session."""

    def __init__(self, is_active: Callable[[str], bool], grace_s: float = GRACE_S,
                 clock: Callable[[], float] = time.monotonic,
                 on_tick: Callable[["SessionResources"], None] | None = None) -> None:
        self._is_active = is_active
        self._grace_s = grace_s
        self._clock = clock
        self._on_tick = on_tick
        self._lock = threading.Lock()
        self._sessions: dict[str, _Entry] = {}
        self._released: list[weakref.ref] = []  # of closed resources, to see that they are freed
        self._released_count = 0
        self._thread: threading.Thread | None = None
        self._trim_ms: float | None = None      # how long the last heap trim took

    # -- for the pages ---------------------------------------------------------------------
    def get(self, session_id: str, name: str, factory: Callable[[], R]) -> R:
        """The session's resource `name`, made by `factory` the first time."""
        with self._lock:
            entry = self._sessions.setdefault(session_id, _Entry())
            entry.gone_since = None
            if name not in entry.resources:
                entry.resources[name] = factory()
                log.info("session %s: %s opened", session_id[:8], name)
            return entry.resources[name]  # type: ignore[return-value]

    def find(self, session_id: str, name: str) -> Resource | None:
        """The resource if the session still has it (for threads that must not create one)."""
        with self._lock:
            entry = self._sessions.get(session_id)
            return entry.resources.get(name) if entry else None

    def close(self, session_id: str, name: str) -> None:
        """Close and forget one resource now (e.g. the page replaces it)."""
        with self._lock:
            entry = self._sessions.get(session_id)
            resource = entry.resources.pop(name, None) if entry else None
        if resource is not None:
            self._close(session_id, name, resource)

    # -- the janitor -----------------------------------------------------------------------
    def sweep(self) -> list[str]:
        """One janitor round: close everything of the sessions gone for `grace_s`; their ids."""
        now = self._clock()
        ended: list[tuple[str, dict[str, Resource]]] = []
        with self._lock:
            for sid, entry in list(self._sessions.items()):
                if self._is_active(sid):
                    entry.gone_since = None
                    continue
                if entry.gone_since is None:
                    entry.gone_since = now
                if now - entry.gone_since >= self._grace_s:
                    ended.append((sid, entry.resources))
                    del self._sessions[sid]
        for sid, resources in ended:
            for name, resource in resources.items():
                self._close(sid, name, resource)
        if ended:  # their frames were freed on many threads: give the arenas' free pages back
            self._trim_heap()
        return [sid for sid, _ in ended]

    def _trim_heap(self) -> None:
        start = time.perf_counter()
        if heap.trim():
            self._trim_ms = ms_since(start)
            log.info("heap trimmed in %.1f ms", self._trim_ms)

    def start(self, tick_s: float = TICK_S) -> None:
        """Run `sweep` (then `on_tick`) every tick on a daemon thread; idempotent."""
        with self._lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._run, args=(tick_s,), daemon=True,
                                            name="densehead-session-janitor")
            self._thread.start()

    def _run(self, tick_s: float) -> None:
        while True:
            try:
                self.sweep()
                if self._on_tick is not None:
                    self._on_tick(self)
            except Exception:  # the janitor must outlive any one bad resource
                log.exception("session janitor round failed")
            time.sleep(tick_s)

    def _close(self, session_id: str, name: str, resource: Resource) -> None:
        try:
            resource.close()
        except Exception:
            log.exception("closing %s of session %s failed", name, session_id[:8])
        with self._lock:
            self._released = [r for r in self._released if r() is not None]
            try:
                self._released.append(weakref.ref(resource))
            except TypeError:  # not weak-referenceable: nothing to watch
                pass
            self._released_count += 1
        log.info("session %s: %s released", session_id[:8], name)

    # -- what it holds ---------------------------------------------------------------------
    @property
    def last_trim_ms(self) -> float | None:
        """How long the last heap trim took (None before the first)."""
        return self._trim_ms

    def status(self) -> dict[str, Any]:
        """Sessions and their resources' own `status()` where they have one, how many were
        released and how many of those are still alive (should drop to 0 within a moment)."""
        with self._lock:
            sessions = {sid: dict(entry.resources) for sid, entry in self._sessions.items()}
            lingering = sum(r() is not None for r in self._released)
            released = self._released_count
        out: dict[str, Any] = {"released": released, "lingering": lingering, "sessions": []}
        for sid, resources in sessions.items():
            item: dict[str, Any] = {"id": sid}
            for name, resource in resources.items():
                report = getattr(resource, "status", None)
                item[name] = report() if callable(report) else {}
            out["sessions"].append(item)
        return out


# --- the one instance of a Streamlit server -------------------------------------------------

def session_id() -> str:
    """The id of the browser session running this script."""
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    return ctx.session_id if ctx is not None else "no-session"


def _log_to_stderr() -> None:
    """Streamlit configures only its own loggers: make the dashboard's INFO lines (sessions and
    streams opened and released; never one per frame) reach the server log, and aiortc's and
    streamlit-webrtc's warnings (a sender that died, a connection that failed); and keep
    Streamlit's harmless traceback of a browser that went away out of it (server_log)."""
    server_log.install()
    _to_stderr("densehead.dashboard", logging.INFO, "%(asctime)s densehead: %(message)s")
    for name in ("aiortc", "streamlit_webrtc"):
        _to_stderr(name, logging.WARNING, "%(asctime)s %(name)s: %(levelname)s %(message)s")


def _to_stderr(name: str, level: int, fmt: str) -> None:
    logger = logging.getLogger(name)
    if not logger.handlers:   # once per process: the page calls this on every run
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(fmt))
        logger.addHandler(handler)
        logger.setLevel(level)
        logger.propagate = False


def _browser_connected(sid: str) -> bool:
    from streamlit.runtime import Runtime

    if not Runtime.exists():  # bare or AppTest runs: no server, nothing ever disconnects
        return True
    return Runtime.instance().is_active_session(sid)


_server_resources: SessionResources | None = None
_server_lock = threading.Lock()


def server_resources() -> SessionResources:
    """The process-wide registry, its janitor started on first use."""
    global _server_resources
    with _server_lock:
        if _server_resources is None:
            _log_to_stderr()
            path = os.environ.get(STATUS_ENV)
            _server_resources = SessionResources(
                _browser_connected, on_tick=status_writer(path) if path else None)
            _server_resources.start()
        return _server_resources
