"""A peer's standby for a call: what tells it the owner may be gone, and its promotion to owner
on the socket it already holds."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from callplane.store.models import CallRecord
from session_host import session_tools
from session_host.call_state import PendingResponse
from session_host.ownership import LeaseKeeper

if TYPE_CHECKING:
    from session_host.session import CallSession

log = logging.getLogger("session_host.session")
# Only a follower needs to see the owner's answers go by.
FOLLOWER_EVENTS = ("conversation.item.added", "conversation.item.done", "conversation.item.created")


def overdue(s: CallSession) -> bool:
    """A function call heard while following has waited past the deadline for its answer."""
    deadline = time.monotonic() - s.opts.lease.quick_beat_s
    return any(seen <= deadline for _, _, seen in s.unanswered.values())


def promote(s: CallSession, keeper: LeaseKeeper, record: CallRecord, turns: int, *, offered: bool) -> None:
    """Take the call over from its owner: act on the socket that is already listening,
    and answer at once what the owner left unanswered."""
    s.following = False
    for etype in FOLLOWER_EVENTS:
        s._handlers.pop(etype, None)
    s.keeper = keeper
    s.resumed = record
    s._go_on_from(record, turns)
    s.observers.started(s.call, new=False)
    ws = s._ws
    if ws is not None and not ws.closed:
        s._start_acting(ws)
    else:
        s._reengage = True  # between sockets: the next one re-engages the caller
    if not offered:
        # Taken from a dead (or frozen) owner, which never claims answers and holds them
        # while its heartbeat is stale (the fence): a claim here would only add a round trip.
        s._claim_until = 0.0
    if s.unanswered:
        calls = [(c, n, a) for c, (n, a, _) in s.unanswered.items()]
        pending = PendingResponse("takeover", done=True, calls=calls)
        s.unanswered.clear()
        s._spawn(session_tools.run_tools(s, pending), "takeover-tools")
    log.info("took the call over from its standby socket", extra=s.extra)
