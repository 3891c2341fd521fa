"""Admin API and health routes. Everything here reads Table Storage, so any replica answers alike."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from azure.core.exceptions import AzureError, HttpResponseError

from callplane.clock import now_ms
from callplane.handoff import e164, hash_number
from callplane.ids import BadId, check_id
from callplane.store import lifecycle
from callplane.store.models import CallStatus, call_out
from callplane.store.rollups import read_stats
from session_host import auth, health, keys, openapi

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
MAX_LIMIT = 200
STORE_RETRY_AFTER_S = 5
log = logging.getLogger("session_host.api")


@web.middleware
async def store_unavailable(request: web.Request, handler: Handler) -> web.StreamResponse:
    """While the store cannot be reached, the API says so in one JSON line with a Retry-After,
    and the log says it once in a while with the endpoint, not once per request."""
    try:
        return await handler(request)
    except (AzureError, OSError, TimeoutError) as exc:
        if isinstance(exc, HttpResponseError) and exc.status_code is not None and exc.status_code < 500:
            raise
        tables = request.app[keys.TABLES]
        skipped = request.app[keys.THROTTLE].due("api-store")
        if skipped is not None:
            log.warning(
                "admin API: store unreachable at %s (%s); answering 503 (%d more since the last line)",
                tables.endpoint,
                type(exc).__name__,
                skipped,
            )
        return web.json_response(
            {"error": "the call store is unavailable; retry shortly", "status": 503},
            status=503,
            headers={"Retry-After": str(STORE_RETRY_AFTER_S)},
        )


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


def readiness(app: web.Application) -> dict[str, str]:
    """Each check's state ("ok" or what is wrong). Not ready means: take no new calls."""
    heartbeat = app.get(keys.HEARTBEAT)
    checks = {"accepting": "ok" if app[keys.REGISTRY].accepting else "draining: no new calls"}
    if heartbeat is None or not heartbeat.current():
        age = "never" if heartbeat is None or not heartbeat.last_ok_ms else f"{now_ms() - heartbeat.last_ok_ms} ms ago"
        checks["heartbeat"] = f"stale: last beat reached the store {age}"
    else:
        checks["heartbeat"] = "ok"
    return checks


async def readyz(request: web.Request) -> web.Response:
    checks = readiness(request.app)
    ready = all(v == "ok" for v in checks.values())
    return web.json_response({"ready": ready, "checks": checks}, status=200 if ready else 503)


async def service_info(request: web.Request) -> web.Response:
    app = request.app
    settings = app[keys.SETTINGS]
    if not await auth.authorized(request):
        # Unauthenticated callers learn what the service is and where its API is, nothing about
        # the host, model, capacity or load.
        return web.json_response({"service": "voice-agent session host", "endpoints": openapi.endpoints()})
    return web.json_response(
        {
            "service": "voice-agent session host",
            "replica": app[keys.REPLICA],
            "dialect": settings.dialect.value,
            "model": settings.realtime_model,
            "activeCallsHere": len(app[keys.REGISTRY]),
            "capacity": settings.max_calls_per_replica,
            "liveFeed": {"clients": app[keys.LIVE].clients, "polls": app[keys.LIVE].polls},
            "store": dataclasses.asdict(app[keys.WRITER].stats),
            "process": {
                "loopLagP99Ms": app[keys.LOOP].p99(),
                "rssBytes": health.rss_bytes(),
                "cpuSeconds": round(health.cpu_seconds(), 3),
                "serverEvents": app[keys.OPTIONS].counters.server_events,
            },
            "uptime": now_ms() - app[keys.STARTED],
            "taskRestarts": app[keys.RESTARTS],
            # Control-plane cost: this replica's table requests per call it ran (the Function
            # App makes one execution per webhook delivery, plus its few direct writes).
            "controlPlane": {
                "tableRequests": app[keys.WRITER].stats.requests,
                "allTableRequests": app[keys.TABLES].requests() + app[keys.LANE].requests(),
                "following": len(app[keys.REGISTRY].followers),
                "callsEndedHere": app[keys.REGISTRY].finished,
                "tableRequestsPerCall": round(app[keys.WRITER].stats.requests / app[keys.REGISTRY].finished, 2)
                if app[keys.REGISTRY].finished
                else None,
            },
            "endpoints": openapi.endpoints(),
        }
    )


def _limit(request: web.Request, default: int = 10) -> int:
    raw = request.query.get("limit", str(default))
    try:
        limit = int(raw)
    except ValueError:
        raise web.HTTPBadRequest(
            text='{"error": "limit must be an integer from 1 to 200"}', content_type="application/json"
        ) from None
    if not 1 <= limit <= MAX_LIMIT:
        raise web.HTTPBadRequest(
            text='{"error": "limit must be an integer from 1 to 200"}', content_type="application/json"
        )
    return limit


async def stats(request: web.Request) -> web.Response:
    app = request.app
    doc = await read_stats(app[keys.TABLES])
    doc["activeCalls"] = await app[keys.READER].count_active()
    doc["uptime"] = now_ms() - app[keys.STARTED]
    doc["startTime"] = app[keys.STARTED]
    return web.json_response(doc)


async def list_calls(request: web.Request) -> web.Response:
    limit = _limit(request)
    raw_status = request.query.get("status") or None
    try:
        status = CallStatus(raw_status) if raw_status else None
    except ValueError:
        return web.json_response(
            {"error": f"status must be one of {', '.join(s.value for s in CallStatus)}"}, status=400
        )
    try:
        calls, nxt = await request.app[keys.READER].list_recent(limit, request.query.get("next") or None, status=status)
    except ValueError as exc:
        return web.json_response({"error": str(exc)}, status=400)
    show = request.app[keys.SETTINGS].show_caller_numbers
    return web.json_response({"calls": [call_out(c, show) for c in calls], "count": len(calls), "next": nxt})


async def active_calls(request: web.Request) -> web.Response:
    limit = _limit(request, default=MAX_LIMIT)
    calls = (await request.app[keys.READER].list_active())[:limit]
    show = request.app[keys.SETTINGS].show_caller_numbers
    return web.json_response({"calls": [call_out(c, show) for c in calls], "count": len(calls)})


def _call_id(request: web.Request) -> str:
    """The path's call id, checked like every entry (it becomes a table key): 400 otherwise."""
    try:
        return check_id("call id", request.match_info["call_id"])
    except BadId as exc:
        raise web.HTTPBadRequest(text=json.dumps({"error": str(exc)}), content_type="application/json") from None


async def get_call(request: web.Request) -> web.Response:
    call = await request.app[keys.READER].get_call(_call_id(request))
    if call is None:
        return web.json_response({"error": "Call not found"}, status=404)
    return web.json_response(call_out(call, request.app[keys.SETTINGS].show_caller_numbers))


async def get_transcript(request: web.Request) -> web.Response:
    call_id = _call_id(request)
    reader = request.app[keys.READER]
    turns = await reader.transcript(call_id)
    if not turns and await reader.get_call(call_id) is None:
        return web.json_response({"error": "Call not found"}, status=404)
    return web.json_response({"callId": call_id, "transcript": turns, "count": len(turns)})


async def delete_call(request: web.Request) -> web.Response:
    """Every row holding the call goes; an audit row stays (who, when, how many rows)."""
    call_id = _call_id(request)
    tables = request.app[keys.TABLES]
    call = await request.app[keys.READER].get_call(call_id)
    if call is not None and call.status is CallStatus.ACTIVE:
        return web.json_response({"error": "the call is live; delete it once it has ended"}, status=409)
    rows = await lifecycle.delete_call(tables, call_id, call.startTime if call is not None else None)
    if rows == 0:
        return web.json_response({"error": "Call not found"}, status=404)
    await lifecycle.audit(tables, auth.who(request), "delete call", rows, 1)
    return web.Response(status=204)


async def delete_caller(request: web.Request) -> web.Response:
    """Every call from one number (any punctuation; `+` URL-encoded as %2B)."""
    settings = request.app[keys.SETTINGS]
    number = e164(request.match_info["number"])
    if not (5 <= len(number.removeprefix("+")) <= 20 and number.removeprefix("+").isdigit()):
        return web.json_response({"error": "number must be a phone number, e.g. +14255550123 (+ as %2B)"}, status=400)
    stored_as = hash_number(settings.caller_hash_key, number) if settings.hash_caller_numbers else number
    tables = request.app[keys.TABLES]
    calls, rows = await lifecycle.delete_caller(tables, stored_as)
    await lifecycle.audit(tables, auth.who(request), "delete caller", rows, calls)
    return web.json_response({"deleted": calls, "rows": rows})


async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response(openapi.document())


async def reset_loop_lag(request: web.Request) -> web.Response:
    """Start a fresh loop-lag window (benchmarks measure a run, not the start-up)."""
    request.app[keys.LOOP].reset()
    return web.json_response({"ok": True})


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/diagnostics/loop-lag/reset", reset_loop_lag)
    app.router.add_get("/api/openapi.json", openapi_json)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/", service_info)
    app.router.add_get("/api/stats", stats)
    app.router.add_get("/api/calls", list_calls)
    app.router.add_get("/api/calls/active", active_calls)
    app.router.add_get("/api/calls/{call_id}", get_call)
    app.router.add_delete("/api/calls/{call_id}", delete_call)
    app.router.add_delete("/api/callers/{number}", delete_caller)
    app.router.add_get("/api/calls/{call_id}/transcript", get_transcript)
