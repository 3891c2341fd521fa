"""`POST /internal/calls`: the Function App hands a ringing call to this replica, before it accepts it
(the hand-off is the admission)."""

from __future__ import annotations

import logging

from aiohttp import web
from azure.core.exceptions import AzureError
from pydantic import ValidationError

from callplane import signing
from callplane.bodies import read_limited
from callplane.handoff import HandoffRequest
from callplane.store import leases
from callplane.telemetry import Telemetry
from session_host import keys
from session_host.ownership import LeaseKeeper
from session_host.session import CallSession

log = logging.getLogger("session_host.handoff")
MAX_HANDOFF = 64 * 1024


async def take_call(request: web.Request) -> web.Response:
    app = request.app
    settings = app[keys.SETTINGS]
    body = await read_limited(request, MAX_HANDOFF)
    if len(body) > MAX_HANDOFF:
        return web.json_response({"error": "hand-off body too large"}, status=413)
    try:
        signing.verify(settings.handoff_secret, body, dict(request.headers))
    except signing.SignatureError as exc:
        return web.json_response({"error": f"invalid hand-off signature: {exc}"}, status=401)
    try:
        req = HandoffRequest.model_validate_json(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        return web.json_response(
            {"error": f"invalid hand-off: {'.'.join(map(str, first['loc']))}: {first['msg']}"}, status=400
        )
    registry = app[keys.REGISTRY]
    if req.callId in registry:
        return web.json_response({"callId": req.callId, "status": "already running here"}, status=200)
    if not registry.accepting or registry.full:
        return web.json_response({"error": "at capacity"}, status=503, headers={"Retry-After": "1"})
    if not (heartbeat := app.get(keys.HEARTBEAT)) or not heartbeat.current():
        # Peers would take this replica for dead and claim the call: let a replica that can beat take it.
        return web.json_response({"error": "not ready: heartbeat cannot reach the store"}, status=503,
                                 headers={"Retry-After": "1"})
    lease = None
    try:
        lease = await leases.acquire(app[keys.TABLES], req, app[keys.REPLICA])
        if lease is None:
            return web.json_response({"error": "call owned by another live replica"}, status=409)
    except AzureError as exc:
        # The store is down: take the call anyway (availability first); the heartbeat adopts it later.
        log.warning("could not take the lease (%s); running the call without it", type(exc).__name__,
                    extra={"call_id": req.callId})
    session = CallSession(
        req,
        settings=settings,
        http=app[keys.HTTP],
        control=app[keys.CONTROL],
        writer=app[keys.WRITER],
        replica=app[keys.REPLICA],
        options=app[keys.OPTIONS],
        telemetry=app[keys.TELEMETRY],
        trace_context=Telemetry.extract(request.headers),
        keeper=LeaseKeeper(app[keys.TABLES], lease, req),
    )
    registry.start(session)
    log.info("call handed off", extra={"cat": "CALL", "call_id": req.callId})
    return web.json_response({"callId": req.callId, "status": "taken"}, status=202)
