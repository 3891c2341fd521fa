"""The webhook app's side of the conversation with the session hosts: the signed hand-off (the
admission: a replica reserves the call, or says it is full, or that the call is a duplicate) and
the accept's outcome told to the replica that reserved the call."""

from __future__ import annotations

import asyncio
import logging
import time
from enum import Enum
from typing import TYPE_CHECKING, Any

import aiohttp

from callplane import signing
from callplane.handoff import HANDOFF_PATH, OUTCOME_PATH, AcceptOutcome, HandoffRequest

if TYPE_CHECKING:
    from function_app.webhook import WebhookDeps

log = logging.getLogger("function_app.webhook")

HANDOFF_DEADLINE_S = 4.0  # no replica reachable for this long: the caller is refused, not left ringing
FULL_ANSWERS = 3  # this many 503s in a row: every replica behind the URL is at capacity
FULL_MEMO_S = 0.25  # after that, how long new calls are refused busy without asking


class Handoff(Enum):
    TAKEN = "taken"  # reserved for this delivery (202), or owned by a peer that may await it (409)
    DUPLICATE = "duplicate"  # already running (or ended): this delivery is a duplicate (200)
    BUSY = "busy"  # no replica could take it


async def hand_off(deps: WebhookDeps, req: HandoffRequest, extra: dict[str, Any]) -> Handoff | str:
    """What became of the hand-off; a string: it was refused for what it is (a 4xx other than
    409), which no retry changes."""
    with deps.telemetry.tracer.start_as_current_span("handoff") as span:
        taken = await _post_handoff(deps, req, extra)
        span.set_attribute("handoff.taken", taken is Handoff.TAKEN)
        return taken


async def _post_handoff(deps: WebhookDeps, req: HandoffRequest, extra: dict[str, Any]) -> Handoff | str:
    settings = deps.settings
    if time.monotonic() < deps.full_until:
        log.warning("every replica was at capacity a moment ago; refused busy", extra=extra)
        return Handoff.BUSY
    url = settings.session_host_url.rstrip("/") + HANDOFF_PATH
    body = req.body()
    deadline = time.monotonic() + HANDOFF_DEADLINE_S
    attempt = full = 0
    while time.monotonic() < deadline and full < FULL_ANSWERS:
        attempt += 1
        headers = {"content-type": "application/json", **signing.sign_headers(settings.handoff_secret, body)}
        deps.telemetry.inject(headers)  # traceparent: the session host continues this trace
        try:
            timeout = aiohttp.ClientTimeout(total=max(0.5, deadline - time.monotonic()))
            async with deps.http.post(url, data=body, headers=headers, timeout=timeout) as resp:
                await resp.read()
                if resp.status == 200:
                    return Handoff.DUPLICATE
                if resp.status in (202, 409):
                    # 409: a peer owns the call; it may be waiting for this very accept (the
                    # service's retry after a failed one), and a second accept changes nothing.
                    log.info("handed off to session host (%s)", resp.status, extra=extra)
                    deps.full_until = 0.0
                    return Handoff.TAKEN
                if 400 <= resp.status < 500 and resp.status != 429:
                    log.error("hand-off refused (%s); not retried", resp.status, extra=extra)
                    return f"hand-off refused by the session host ({resp.status})"
                # 503 = that replica is full (or cannot beat); the next try may reach another one
                # behind the URL, so try again at once: overload is refused fast, not slowly.
                log.warning("hand-off answered %s (attempt %d)", resp.status, attempt, extra=extra)
                if resp.status == 503:
                    full += 1
                    said = await _json_or_empty(resp)
                    if said.get("fleetFull") is True:
                        full = FULL_ANSWERS  # that replica knows its peers are full too
                    if full >= FULL_ANSWERS and "capacity" in str(said.get("error")):
                        deps.full_until = time.monotonic() + FULL_MEMO_S
                    continue
                full = 0
        except (TimeoutError, aiohttp.ClientError) as exc:
            log.warning("hand-off failed: %s (attempt %d)", type(exc).__name__, attempt, extra=extra)
        await asyncio.sleep(min(0.05 * attempt, max(0.0, deadline - time.monotonic())))
    return Handoff.BUSY


async def _json_or_empty(resp: aiohttp.ClientResponse) -> dict[str, Any]:
    try:
        doc = await resp.json(content_type=None)
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


async def tell_owner(deps: WebhookDeps, outcome: AcceptOutcome, extra: dict[str, Any]) -> None:
    """Best effort, twice: an owner that never hears tries its socket once its wait runs out."""
    url = deps.settings.session_host_url.rstrip("/") + OUTCOME_PATH.format(call_id=outcome.callId)
    body = outcome.body()
    for attempt in (1, 2):
        headers = {"content-type": "application/json", **signing.sign_headers(deps.settings.handoff_secret, body)}
        try:
            async with deps.http.post(
                url, data=body, headers=headers, timeout=aiohttp.ClientTimeout(total=2.0)
            ) as resp:
                await resp.read()
                if resp.status < 500:
                    return
        except (TimeoutError, aiohttp.ClientError) as exc:
            log.warning("accept outcome not delivered: %s (attempt %d)", type(exc).__name__, attempt, extra=extra)
