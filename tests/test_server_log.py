"""The server log's filter (densehead.dashboard.server_log): Streamlit 1.67's traceback of a
browser that went away is dropped, every other error still comes through."""
from __future__ import annotations

import asyncio
import logging

import pytest

pytest.importorskip("streamlit")
from helpers import run_coroutine  # noqa: E402
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketDisconnected  # noqa: E402
from uvicorn.protocols.utils import ClientDisconnected  # noqa: E402

from densehead.dashboard import server_log  # noqa: E402


def _streamlit_after_the_browser_left() -> BaseException:
    """The exception Streamlit's websocket endpoint lets out, made by the same steps with real
    starlette and uvicorn objects: the sender's write fails because the browser is gone (uvicorn
    raises ClientDisconnected), then the endpoint's receive loop reads once more and, taking the
    RuntimeError for a text frame, closes the socket (starlette_websocket.py, the receive loop)."""
    async def receive():
        if not hasattr(receive, "connected"):
            receive.connected = True
            return {"type": "websocket.connect"}
        await asyncio.sleep(3600)

    async def send(message):
        if message["type"] == "websocket.send":
            raise ClientDisconnected()

    async def endpoint() -> BaseException:
        ws = WebSocket({"type": "websocket", "path": "/_stcore/stream", "headers": []}, receive, send)
        await ws.accept()
        with pytest.raises(WebSocketDisconnect):   # Streamlit's sender catches this one
            await ws.send_bytes(b"a ForwardMsg")
        try:
            try:
                await ws.receive_bytes()
            except WebSocketDisconnect:
                raise AssertionError("starlette now says WebSocketDisconnect: the filter may go")
            except RuntimeError:
                await ws.close()
        except Exception as exc:
            return exc
        raise AssertionError("the endpoint's close did not raise")

    return run_coroutine(endpoint())


class Kept(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def uvicorn_log():
    """uvicorn's error logger with the filter installed, and what reaches its handler."""
    logger = logging.getLogger(server_log.UVICORN_LOGGER)
    kept = Kept()
    logger.addHandler(kept)
    server_log.install()
    server_log.install()   # the page calls it on every run: once is once
    try:
        yield logger, kept
    finally:
        logger.removeHandler(kept)
        logger.removeFilter(server_log._FILTER)


def _log_as_uvicorn(logger: logging.Logger, exc: BaseException) -> None:
    try:
        raise exc
    except BaseException:
        logger.exception("Exception in ASGI application\n")


def test_the_traceback_of_a_browser_that_left_is_dropped_and_real_errors_come_through(uvicorn_log):
    logger, kept = uvicorn_log
    gone = _streamlit_after_the_browser_left()
    assert isinstance(gone, WebSocketDisconnected) and isinstance(gone.__context__, WebSocketDisconnected)
    assert logger.filters.count(server_log._FILTER) == 1

    _log_as_uvicorn(logger, gone)
    assert kept.records == [], "the browser-gone traceback reached the log"

    # an app's own error, and a websocket misused by an app (no browser had gone), still do
    _log_as_uvicorn(logger, RuntimeError("a real bug in an endpoint"))
    _log_as_uvicorn(logger, WebSocketDisconnected('WebSocket is not connected. Need to call "accept" first.'))
    logger.error("ASGI callable returned without sending handshake.")
    assert [r.getMessage() for r in kept.records] == [
        "Exception in ASGI application\n", "Exception in ASGI application\n",
        "ASGI callable returned without sending handshake."]
    assert isinstance(kept.records[0].exc_info[1], RuntimeError)


def test_other_loggers_keep_that_exception():
    """Only uvicorn's record of an escaped exception is dropped: the same exception logged by
    anyone else (our own code, Streamlit's) is theirs to show."""
    record = logging.LogRecord("densehead.dashboard", logging.ERROR, __file__, 1, "x", None, None)
    gone = _streamlit_after_the_browser_left()
    record.exc_info = (type(gone), gone, gone.__traceback__)
    assert server_log.BrowserGoneFilter().filter(record)
