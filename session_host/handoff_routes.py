"""`POST /internal/calls`: the Function App hands a ringing call to this replica, before it accepts it
(the hand-off is the admission); then tells it how the accept went. Each has a batch route too,
for the messages the Function App sends at the same moment (callplane/handoff.py)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any, TypeVar

from aiohttp import web
from azure.core.exceptions import AzureError
from pydantic import BaseModel, ValidationError

from callplane import signing
from callplane.bodies import read_limited
from callplane.clock import now_ms
from callplane.handoff import (
    BATCH_CONTENT_TYPE,
    MAX_BATCH_BODY,
    MAX_HANDOFF,
    AcceptOutcome,
    Batch,
    BatchItem,
    HandoffRequest,
)
from callplane.store import leases
from callplane.telemetry import Telemetry
from callplane.validation import first_error
from session_host import keys
from session_host.ownership import LeaseKeeper
from session_host.session import CallSession

log = logging.getLogger("session_host.handoff")
MAX_HANDOFF_AGE_MS = 60_000  # the Function App gives up after seconds; older is a replay


M = TypeVar("M", bound=BaseModel)


async def _signed(request: web.Request, model: type[M], limit: int, what: str) -> M | web.Response:
    """The signed body (HANDOFF_SECRET) as `model`, or the answer refusing it (nothing touched yet)."""
    body = await read_limited(request, limit)
    if len(body) > limit:
        return web.json_response({"error": f"{what} body too large"}, status=413)
    try:
        signing.verify(request.app[keys.SETTINGS].handoff_secret, body, dict(request.headers))
    except signing.SignatureError as exc:
        return web.json_response({"error": f"invalid {what} signature: {exc}"}, status=401)
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        return web.json_response({"error": f"invalid {what}: {first_error(exc)}"}, status=400)


def session_for(app: web.Application, req: HandoffRequest, keeper: LeaseKeeper | None, **more: Any) -> CallSession:
    """A session for `req` wired to this replica's long-lived resources."""
    return CallSession(
        req,
        settings=app[keys.SETTINGS],
        http=app[keys.HTTP],
        control=app[keys.CONTROL],
        writer=app[keys.WRITER],
        replica=app[keys.REPLICA],
        options=app[keys.OPTIONS],
        telemetry=app[keys.TELEMETRY],
        observers=app[keys.OBSERVERS],
        keeper=keeper,
        **more,
    )


Answer = tuple[int, dict[str, Any]]
_BUSY_HEADERS = {"Retry-After": "1"}


def _answer(answer: Answer) -> web.Response:
    status, doc = answer
    return web.json_response(doc, status=status, headers=_BUSY_HEADERS if status == 503 else None)


async def take_call(request: web.Request) -> web.Response:
    req = await _signed(request, HandoffRequest, MAX_HANDOFF, "hand-off")
    if isinstance(req, web.Response):
        return req
    return _answer(await _take(request.app, req, request.headers))


async def take_calls(request: web.Request) -> web.StreamResponse:
    """A batch of hand-offs (one signed request); each answered as `take_call` would answer it.
    They are taken side by side, so their leases share the store's requests."""
    return await _each(
        request, "hand-off", HandoffRequest, lambda req, item: _take(request.app, req, item.trace_headers())
    )


async def _each(
    request: web.Request, what: str, model: type[M], act: Callable[[M, BatchItem], Awaitable[Answer]]
) -> web.StreamResponse:
    """A signed batch of `model` messages, each validated on its own (a bad one is answered 400
    alone) and handed to `act`."""
    batch = await _signed(request, Batch, MAX_BATCH_BODY, f"{what} batch")
    if isinstance(batch, web.Response):
        return batch

    async def one(item: BatchItem) -> Answer:
        try:
            message = model.model_validate(item.body)
        except ValidationError as exc:
            return 400, {"error": f"invalid {what}: {first_error(exc)}"}
        return await act(message, item)

    return await _answer_each(request, [one(item) for item in batch.items])


async def _answer_each(request: web.Request, work: list[Coroutine[Any, Any, Answer]]) -> web.StreamResponse:
    """Answer a batch one line per message (`{"i", "status", "body"}`, NDJSON) as each is
    decided, not when the slowest is: a call refused at once (full, duplicate) is not held up
    by the lease of one taken beside it. Started in order, so capacity goes first come, first
    served, as with single requests."""
    pending = {asyncio.ensure_future(_indexed(i, w)) for i, w in enumerate(work)}
    resp = web.StreamResponse(headers={"Content-Type": BATCH_CONTENT_TYPE})
    await resp.prepare(request)
    while pending:
        # The answers decided by the same moment go out as one write (the leases of a burst are
        # taken in one transaction, so a hundred answers may be ready at once).
        done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        lines = (
            json.dumps({"i": i, "status": status, "body": doc}, separators=(",", ":")).encode() + b"\n"
            for i, (status, doc) in sorted(task.result() for task in done)
        )
        await resp.write(b"".join(lines))
    await resp.write_eof()
    return resp


async def _indexed(i: int, work: Coroutine[Any, Any, Answer]) -> tuple[int, Answer]:
    return i, await work


async def _take(app: web.Application, req: HandoffRequest, trace: Mapping[str, str]) -> Answer:
    registry = app[keys.REGISTRY]
    # The hand-off is also the dedupe (the lease is an atomic insert keyed by the call id), so a
    # second delivery of a webhook arrives here: a call still waiting for its accept (the service's
    # retry after a failed one, or two deliveries at once) is "reserved" again, so that delivery
    # accepts too; a call that runs (or that this replica follows) is "already running here".
    existing = registry.sessions.get(req.callId)
    if req.callId in registry.taking or (existing is not None and existing.awaiting_accept):
        return 202, {"callId": req.callId, "status": "reserved"}
    if req.callId in registry:
        return 200, {"callId": req.callId, "status": "already running here"}
    if not registry.accepting or registry.full:
        # `fleetFull`: no live peer had room at its last beat either, so the Function App refuses
        # the caller now (and the next ones for a moment) instead of asking again.
        return 503, {"error": "at capacity", "fleetFull": registry.peers_full}
    if not (heartbeat := app.get(keys.HEARTBEAT)) or not heartbeat.current():
        # Peers would take this replica for dead and claim the call: let a replica that can beat take it.
        return 503, {"error": "not ready: heartbeat cannot reach the store"}
    age_ms = now_ms() - req.receivedAt
    if age_ms > MAX_HANDOFF_AGE_MS:
        # The Function App hands a call off within seconds of its webhook; an older hand-off is a
        # replay, answered without touching the call.
        return 409, {"error": f"stale hand-off: its webhook arrived {age_ms // 1000} s ago"}
    # Counted against capacity from here, before the store is asked: a burst of hand-offs must
    # not all pass the capacity check while their leases are on the way.
    registry.taking.add(req.callId)
    try:
        return await _reserve(app, req, trace)
    finally:
        registry.taking.discard(req.callId)


async def _reserve(app: web.Application, req: HandoffRequest, trace: Mapping[str, str]) -> Answer:
    lease = None
    try:
        # One store request on the caller's path, shared with the hand-offs that arrive with it.
        # A replayed hand-off of a call that already ended finds its tombstone: it must not run
        # the call again nor touch its record.
        lease = await leases.acquire(app[keys.LANE], req, app[keys.REPLICA])
        if lease is not None and lease.ended:
            return 200, {"callId": req.callId, "status": "already ended"}
        if lease is None:
            return 409, {"error": "call owned by another live replica"}
    except AzureError as exc:
        # The store is down: take the call anyway (availability first); the heartbeat adopts it later.
        log.warning(
            "could not take the lease (%s); running the call without it",
            type(exc).__name__,
            extra={"call_id": req.callId},
        )
    session = session_for(app, req, LeaseKeeper(app[keys.LANE], lease, req), trace_context=Telemetry.extract(trace))
    app[keys.REGISTRY].start(session)
    log.info("call handed off", extra={"cat": "CALL", "call_id": req.callId})
    return 202, {"callId": req.callId, "status": "taken"}


async def accept_outcome(request: web.Request) -> web.Response:
    """The Function App's word on a reserved call's accept. Delivered to the session when the call
    is here; otherwise left in the store for its owner (the ingress may route to any replica)."""
    outcome = await _signed(request, AcceptOutcome, 4096, "outcome")
    if isinstance(outcome, web.Response):
        return outcome
    if outcome.callId != request.match_info["call_id"]:
        return web.json_response({"error": "callId does not match the path"}, status=400)
    return _answer(await _deliver(request.app, outcome))


async def accept_outcomes(request: web.Request) -> web.StreamResponse:
    """A batch of accept outcomes, each answered as `accept_outcome` would answer it."""
    return await _each(request, "outcome", AcceptOutcome, lambda outcome, _: _deliver(request.app, outcome))


async def _deliver(app: web.Application, outcome: AcceptOutcome) -> Answer:
    session = app[keys.REGISTRY].sessions.get(outcome.callId)
    if session is not None:
        session.accept_outcome(outcome)
        return 200, {"callId": outcome.callId, "status": "delivered"}
    await leases.put_outcome(app[keys.LANE], outcome)
    return 202, {"callId": outcome.callId, "status": "left for the owner"}
