"""A reserved call waits for the Function App's word on the accept before its socket opens;
and what a socket refused as gone (404) means for the call's record."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from azure.core.exceptions import AzureError

from callplane.store import leases
from callplane.store.models import CallStatus

if TYPE_CHECKING:
    from callplane.store.tables import Tables
    from session_host.session import CallSession

log = logging.getLogger("session_host.session")


async def wait_for_accept(s: CallSession) -> tuple[CallStatus, str] | None:
    """A reserved call opens its socket only once the accept has landed: None then. A refused
    accept ends the reservation here: its status and reason. When no word comes (the
    Function App died, or its word went to another replica and the store cannot say), the
    socket is tried once the wait runs out: the service's answer settles it. Words that went to
    another replica are found in the store by `watch_outcomes`, for all waiting calls at once."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + s.opts.accept_wait_s
    while loop.time() < deadline:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(s._outcome_changed.wait(), max(0.0, deadline - loop.time()))
        s._outcome_changed.clear()
        outcome = s._outcome
        if outcome is None:
            continue
        if outcome.accepted:
            return None
        if outcome.retrying:  # the service retries the webhook: hold the reservation longer
            s._outcome = None
            deadline = loop.time() + s.opts.accept_retry_wait_s
            continue
        log.warning("the accept failed: %s", outcome.error, extra=s.extra)
        return CallStatus.FAILED, f"accept failed: {outcome.error or 'unknown'}"
    log.warning("no word on the accept; trying the control socket", extra=s.extra)
    return None


# Behind an ingress the Function App's word on the accept reaches the owner only sometimes (with
# two replicas, half the time); the replica it reached leaves it in the store, where the owner
# finds it within this long. One query per poll for every waiting call: a burst of new calls
# must not turn into a burst of reads.
OUTCOME_POLL_S = 0.2


async def watch_outcomes(
    tables: Tables, waiting: Callable[[], dict[str, CallSession]], started: asyncio.Event | None = None
) -> None:
    """Forever: while calls wait for their accept's outcome, look for the ones left in the store.
    `started` (set when a session starts): with none waiting, sleep until then, not poll."""
    while True:
        if started is not None and not waiting():
            started.clear()
            if not waiting():
                await started.wait()
        await asyncio.sleep(OUTCOME_POLL_S)
        sessions = waiting()
        if not sessions:
            continue
        try:
            found = await leases.take_outcomes(tables, set(sessions))
        except AzureError:
            continue  # the store is down: the wait runs out and the socket settles it
        for outcome in found:
            if (session := sessions.get(outcome.callId)) is not None:
                session.accept_outcome(outcome)


def gone_outcome(s: CallSession) -> tuple[CallStatus, str]:
    if s._end:
        return s._end
    if s.resumed is not None and not s._connected_once:
        return CallStatus.FAILED, "call gone while its replica was away"
    if s._greeted:
        return CallStatus.FAILED, "call gone after the control socket dropped"
    if s._outcome is None or not s._outcome.accepted:
        return CallStatus.FAILED, "the call was never accepted"
    return CallStatus.FAILED, "call gone before the control socket opened"
