"""ICE consent (RFC 7675) that a busy server keeps while the browser still answers.

After a connection is up, aioice (0.13, `Connection.query_consent`) asks the browser every 4-6 s
whether it still wants the stream (a STUN binding request), waits 0.5 s for the answer without
asking again, and closes the connection after six requests in a row went unanswered. On a
server with more streams than cores the answers came back 0.6-1.5 s after their request: six in
a row timed out while video still flowed both ways, and the viewer's stream ended about 30 s
later (aioice issue #58 reports the same under load). RFC 7675 asks only that a valid answer has
come in the last 30 s.

`query_consent` sends the same requests, lets STUN retransmit each one (0.5, 1.5 and 3.5 s after
the first; an answer up to 7.5 s after the request still counts) and closes the connection when
no answer has come for 30 s. `install()` puts it in place of aioice's;
`DENSEHEAD_ICE_CONSENT=aioice` keeps aioice's own.
"""
from __future__ import annotations

import asyncio
import logging
import random

from aioice import ice, stun

from .library_parts import library_kept, replace

log = logging.getLogger(__name__)
ENV = "DENSEHEAD_ICE_CONSENT"
INTERVAL_S = 5.0          # RFC 7675 section 5.1: every 4-6 s (randomised by +-20%)
EXPIRY_S = 30.0           # RFC 7675 section 5.1: no valid answer for 30 s ends consent
RETRANSMISSIONS = 3       # STUN's timer doubles from 0.5 s: sent at 0, 0.5, 1.5, 3.5 s; gone at 7.5


async def query_consent(connection: ice.Connection) -> None:
    """Aioice's consent task for `connection`, counting an answer by when it last came."""
    loop = asyncio.get_running_loop()
    answered = loop.time()
    while True:
        await asyncio.sleep(INTERVAL_S * random.uniform(0.8, 1.2))
        for pair in list(connection._nominated.values()):
            if await _answered(connection, pair):
                answered = loop.time()
        silent_s = loop.time() - answered
        if silent_s >= EXPIRY_S:
            log.info("ICE consent expired: the browser did not answer for %.0f s; its stream "
                     "ends", silent_s)
            connection._query_consent_task = None   # close() would cancel this very task
            await connection.close()
            return


async def _answered(connection: ice.Connection, pair: ice.CandidatePair) -> bool:
    request = connection.build_request(pair, nominate=False)
    try:
        await pair.protocol.request(request, pair.remote_addr, retransmissions=RETRANSMISSIONS,
                                    integrity_key=connection.remote_password.encode("utf8"))
        return True
    except stun.TransactionError:
        return False


def install() -> bool:
    """Make aioice's connections in this process use `query_consent` (idempotent). False when
    DENSEHEAD_ICE_CONSENT=aioice."""
    if library_kept(ENV, "aioice"):
        return False
    replace(ice.Connection, "query_consent", query_consent,
            "ICE consent: a browser's answer counts for 30 s, even if it comes late")
    return True
