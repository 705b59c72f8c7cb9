"""The server log without Streamlit 1.67's harmless websocket traceback.

When a browser goes away while the server is sending to it, starlette 1.x marks the socket
disconnected and Streamlit's websocket endpoint (`web/server/starlette/starlette_websocket.py`,
the receive loop) then reads from it once more. That read raises
`starlette.websockets.WebSocketDisconnected` ("WebSocket is not connected"), a RuntimeError that
the endpoint takes for a text frame: it closes the socket, which raises WebSocketDisconnected
again ("Cannot call send once a close message has been sent"), and uvicorn logs the escaped
exception with its traceback as "Exception in ASGI application". The session is disconnected
in the endpoint's `finally` all the same; the only effect is the traceback, seen with several
people coming and going. `install()` drops exactly that record and nothing else.
"""
from __future__ import annotations

import logging

UVICORN_LOGGER = "uvicorn.error"   # where uvicorn logs an exception that left the app


class BrowserGoneFilter(logging.Filter):
    """Drops uvicorn's record of a WebSocketDisconnected that escaped a websocket endpoint while
    handling an earlier WebSocketDisconnected: the browser had already gone."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not is_browser_gone(record)


def is_browser_gone(record: logging.LogRecord) -> bool:
    from starlette.websockets import WebSocketDisconnected

    exc = record.exc_info[1] if record.exc_info else None
    return (record.name == UVICORN_LOGGER and isinstance(exc, WebSocketDisconnected)
            and isinstance(exc.__context__, WebSocketDisconnected))


_FILTER = BrowserGoneFilter()


def install() -> None:
    """Add the filter to uvicorn's error logger (idempotent)."""
    logger = logging.getLogger(UVICORN_LOGGER)
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
