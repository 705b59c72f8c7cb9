"""ICE consent on the live server (dashboard/ice_consent.py): two real aioice connections on this
machine's network interface, the "server" asking for consent, the "browser" answering late or not
at all. The consent interval and expiry are shortened so that a test takes seconds; the answers
are delayed on the same event loop as the requests' timers, so which comes first does not depend
on the machine's speed."""
from __future__ import annotations

import asyncio

import pytest
from aioice import ice, stun
from helpers import run_coroutine

from densehead.dashboard import ice_consent

ANSWER_LATE_S = 0.8   # later than aioice's 0.5 s, well inside our 7.5 s
# aioice's own consent task, read as this module is imported (collected): before any test puts
# ours in place with ice_consent.install()
AIOICE_OWN = ice.Connection.query_consent


async def _connected() -> tuple[ice.Connection, ice.Connection]:
    server = ice.Connection(ice_controlling=False, use_ipv6=False)
    browser = ice.Connection(ice_controlling=True, use_ipv6=False)
    await asyncio.gather(server.gather_candidates(), browser.gather_candidates())
    for near, far in ((server, browser), (browser, server)):
        near.remote_username, near.remote_password = far.local_username, far.local_password
        for candidate in far.local_candidates:
            await near.add_remote_candidate(candidate)
        await near.add_remote_candidate(None)
    await asyncio.gather(server.connect(), browser.connect())
    return server, browser


def _answer(browser: ice.Connection, after_s: float | None) -> list[stun.Message]:
    """From now on the browser answers each consent request `after_s` late (None: never).
    Returns the list of requests it gets."""
    loop = asyncio.get_running_loop()
    on_time = browser.request_received
    got: list[stun.Message] = []

    def late(message: stun.Message, addr, protocol) -> None:
        got.append(message)
        if after_s is not None:
            loop.call_later(after_s, on_time, message, addr, protocol)

    browser.request_received = late
    return got


async def _still_carries_data(server: ice.Connection, browser: ice.Connection) -> bool:
    await browser.send(b"frame")
    try:
        return await asyncio.wait_for(server.recv(), 5) == b"frame"
    except ConnectionError:
        return False


async def _closed_within(connection: ice.Connection, seconds: float) -> bool:
    try:
        await asyncio.wait_for(connection.recv(), seconds)
    except ConnectionError:
        return True
    except asyncio.TimeoutError:
        return False
    return False


async def _until(got: list, count: int) -> None:
    while len(got) < count:
        await asyncio.sleep(0.05)


async def _closed_before(connection: ice.Connection, got: list, count: int) -> bool:
    """True if the connection closes before the browser has had `count` requests."""
    closed = asyncio.create_task(_closed_within(connection, 60))
    counted = asyncio.create_task(_until(got, count))
    await asyncio.wait({closed, counted}, timeout=60, return_when=asyncio.FIRST_COMPLETED)
    counted.cancel()
    if closed.done():
        return closed.result()
    closed.cancel()
    assert len(got) >= count, f"neither closed nor asked {count} times in 60 s"
    return False


@pytest.fixture
def short_consent(monkeypatch):
    """Consent asked every 0.2 s (aioice's and ours), expiring after 2 s without an answer."""
    monkeypatch.setattr(ice, "CONSENT_INTERVAL", 0.2)
    monkeypatch.setattr(ice_consent, "INTERVAL_S", 0.2)
    monkeypatch.setattr(ice_consent, "EXPIRY_S", 2.0)


def test_a_browser_that_answers_late_keeps_its_stream(monkeypatch, short_consent):
    """Every answer 0.8 s late: aioice's own consent closes the connection; ours keeps it through
    twelve requests (six rounds with their retransmissions, three times the expiry) and data
    still flows."""
    async def run(query_consent) -> tuple[bool, bool]:
        monkeypatch.setattr(ice.Connection, "query_consent", query_consent)
        server, browser = await _connected()
        try:
            closed = await _closed_before(server, _answer(browser, ANSWER_LATE_S), 12)
            return closed, not closed and await _still_carries_data(server, browser)
        finally:
            await asyncio.gather(server.close(), browser.close())

    closed, _ = run_coroutine(run(AIOICE_OWN))
    assert closed, "aioice's own consent kept a connection whose answers all came late: no test"
    closed, flows = run_coroutine(run(ice_consent.query_consent))
    assert not closed, "the server stopped the stream of a browser that answered every request"
    assert flows


def test_a_browser_that_stops_answering_is_let_go(monkeypatch, short_consent):
    """A browser gone silent (a closed laptop, a lost network) loses its stream once no answer
    has come for the expiry: 2 s here, plus at most one interval and one request's 7.5 s."""
    async def run() -> bool:
        monkeypatch.setattr(ice.Connection, "query_consent", ice_consent.query_consent)
        server, browser = await _connected()
        try:
            _answer(browser, None)
            return await _closed_within(server, 30)
        finally:
            await asyncio.gather(server.close(), browser.close())

    assert run_coroutine(run())


def test_aioice_starts_the_consent_task_by_its_method_name():
    """The contract with aioice: a connection starts `self.query_consent()` once it is up, so a
    replaced method is what runs (the two tests above exercise the attributes ours reads)."""
    import inspect

    assert "create_task(self.query_consent())" in inspect.getsource(ice.Connection.connect)
    assert ice_consent.install() and ice_consent.install()
    assert ice.Connection.query_consent is ice_consent.query_consent
