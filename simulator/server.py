"""The simulator's HTTP face: the app and its routes, the chat completions double, the webhook
endpoint registration API, and a small `/sim/*` API that tests and the load tool use to place
calls and read measurements. Call control and the socket are in realtime_api.py."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from callplane import signing
from simulator.calls import CallState, ms
from simulator.realtime_api import call_action, control_socket
from simulator.scenario import load_scenario
from simulator.service import SIM, SimConfig, Simulator, _authorized, _err

__all__ = ["SIM", "SimConfig", "Simulator", "client_urls", "create_app"]

log = logging.getLogger("simulator")


FAILING_MODEL = "fail-summary"  # a model name that answers 500: lets tests prove the fallback


async def chat_completions(request: web.Request) -> web.Response:
    """A deterministic `/v1/chat/completions`: the reply names the model and how many transcript
    lines it was given, so a test can tell a model summary from the offline one."""
    sim = request.app[SIM]
    if not _authorized(request, sim):
        return _err(401, "Incorrect API key provided.", "invalid_api_key")
    try:
        body = json.loads(await request.read())
    except ValueError:
        return _err(400, "We could not parse the JSON body of your request.", "invalid_json")
    if not isinstance(body, dict) or not isinstance(body.get("model"), str):
        return _err(400, "Missing required parameter: 'model'.", "missing_required_parameter", "model")
    messages = body.get("messages")
    if (
        not isinstance(messages, list)
        or not messages
        or not all(
            isinstance(m, dict)
            and m.get("role") in ("system", "developer", "user", "assistant")
            and isinstance(m.get("content"), str)
            for m in messages
        )
    ):
        return _err(400, "Invalid 'messages': a non-empty list of {role, content}.", "invalid_value", "messages")
    if body["model"] == FAILING_MODEL:
        return _err(500, "The server had an error while processing your request.", None, etype="server_error")
    lines = sum(m["content"].count("\n") + 1 for m in messages if m["role"] == "user")
    text = f"Model summary ({body['model']}): the caller was helped over {lines} transcript lines."
    return web.json_response(
        {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body["model"],
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "logprobs": None,
                    "message": {"role": "assistant", "content": text, "refusal": None},
                }
            ],
            "usage": {"prompt_tokens": 10 * lines, "completion_tokens": 20, "total_tokens": 10 * lines + 20},
        }
    )


# --- REST: call control ----------------------------------------------------------------------
async def create_webhook_endpoint(request: web.Request) -> web.Response:
    sim = request.app[SIM]
    denied = _management_denied(request, sim)
    if denied is not None:
        return denied
    try:
        body = await request.json()
    except ValueError:
        return _err(400, "Invalid JSON.", "invalid_json")
    if not isinstance(body, dict) or not isinstance(body.get("url"), str) or not body.get("name"):
        return _err(400, "Missing required parameter: 'url'.", "missing_required_parameter", "url")
    secret = signing.new_secret()
    endpoint = {
        "id": f"whep_{uuid.uuid4().hex[:16]}",
        "object": "webhook.endpoint",
        "name": body["name"],
        "url": body["url"],
        "event_types": body.get("event_types") or ["realtime.call.incoming"],
        "signing_secret_hint": f"whsec_...{secret[-4:]}",
        "created_at": int(ms() / 1000),
    }
    sim.config.webhook_endpoints.append(endpoint)
    return web.json_response({**endpoint, "signing_secret": secret})


async def delete_webhook_endpoint(request: web.Request) -> web.Response:
    sim = request.app[SIM]
    denied = _management_denied(request, sim)
    if denied is not None:
        return denied
    before = len(sim.config.webhook_endpoints)
    sim.config.webhook_endpoints[:] = [
        e for e in sim.config.webhook_endpoints if e["id"] != request.match_info["endpoint_id"]
    ]
    if len(sim.config.webhook_endpoints) == before:
        return _err(404, "Webhook endpoint not found.", "not_found")
    return web.json_response({"id": request.match_info["endpoint_id"], "deleted": True})


async def list_webhook_endpoints(request: web.Request) -> web.Response:
    sim = request.app[SIM]
    denied = _management_denied(request, sim)
    if denied is not None:
        return denied
    return web.json_response({"object": "list", "data": sim.config.webhook_endpoints})


def _management_denied(request: web.Request, sim: Simulator) -> web.Response | None:
    """The dashboard webhook_endpoints API: an api-key, or an Entra token of a principal with a
    data-plane role; right after the role is granted Azure still answers 403 for a while."""
    auth = request.headers.get("Authorization", "")
    token_ok = auth.startswith("Bearer ") and auth[7:] in sim.config.entra_tokens
    if not token_ok and request.headers.get("api-key", "") != sim.config.api_key:
        return _err(401, "Access denied due to invalid subscription key.", "401")
    if sim.config.forbidden_next > 0:
        sim.config.forbidden_next -= 1
        return _err(
            403, "The principal does not have access to this resource (role not yet effective).", "PermissionDenied"
        )
    return None


# --- /sim: test and load control ----------------------------------------------------------------
async def sim_place(request: web.Request) -> web.Response:
    sim = request.app[SIM]
    try:
        body = await request.json() if request.can_read_body else {}
        scenario = load_scenario(body.get("scenario", "greeting_only"))
        if body.get("faults"):
            scenario = scenario.model_copy(update={"faults": scenario.faults.model_copy(update=body["faults"])})
    except (ValueError, AttributeError) as exc:
        return web.json_response({"error": str(exc)}, status=400)
    call = sim.new_call(scenario, body.get("caller"), body.get("called"))
    if body.get("deliver", True):  # deliver=false: a ringing call for a client that drives it itself
        sim.spawn(sim.place_call(call))
    return web.json_response({"callId": call.call_id}, status=201)


async def sim_get(request: web.Request) -> web.Response:
    call = request.app[SIM].calls.get(request.match_info["call_id"])
    if call is None:
        return web.json_response({"error": "unknown call"}, status=404)
    return web.json_response(call.summary())


async def sim_totals(request: web.Request) -> web.Response:
    calls = request.app[SIM].calls.values()
    return web.json_response(
        {
            "calls": len(calls),
            "openSockets": sum(1 for c in calls for ws in c.sockets if not ws.closed),
            "eventsSent": sum(c.events_sent for c in calls),
            "ended": sum(1 for c in calls if c.state is CallState.ENDED),
        }
    )


async def sim_list(request: web.Request) -> web.Response:
    calls = request.app[SIM].calls.values()
    return web.json_response(
        {"calls": [{"callId": c.call_id, "state": c.state.value, "scenario": c.scenario.name} for c in calls]}
    )


PREFIX = {"openai": "", "azure": "/openai"}  # where each dialect's REST and socket paths start


def client_urls(port: int | str, dialect: str, host: str = "127.0.0.1") -> tuple[str, str]:
    """(OPENAI_BASE, REALTIME_WS_BASE) that point a client of `dialect` at this simulator."""
    base = f"http://{host}:{port}{PREFIX[dialect]}"
    return base, f"ws://{host}:{port}{PREFIX[dialect]}/v1/realtime"


def create_app(config: SimConfig) -> web.Application:
    app = web.Application()
    sim = Simulator(config)
    app[SIM] = sim

    async def http_ctx(_: web.Application) -> AsyncIterator[None]:
        sim.http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=config.webhook_connections))
        yield
        for call in list(sim.calls.values()):
            for task in [call.runner, *call.extra_tasks]:
                if task is not None:
                    task.cancel()
        for task in list(sim._tasks):
            task.cancel()
        await asyncio.gather(*sim._tasks, return_exceptions=True)
        await sim.http.close()

    app.cleanup_ctx.append(http_ctx)
    for prefix in PREFIX.values():
        app.router.add_post(prefix + "/v1/realtime/calls/{call_id}/{action}", call_action)
        app.router.add_get(prefix + "/v1/realtime", control_socket)
        app.router.add_post(prefix + "/v1/chat/completions", chat_completions)
    app.router.add_post("/openai/v1/dashboard/webhook_endpoints", create_webhook_endpoint)
    app.router.add_get("/openai/v1/dashboard/webhook_endpoints", list_webhook_endpoints)
    app.router.add_delete("/openai/v1/dashboard/webhook_endpoints/{endpoint_id}", delete_webhook_endpoint)
    app.router.add_post("/sim/calls", sim_place)
    app.router.add_get("/sim/calls", sim_list)
    app.router.add_get("/sim/totals", sim_totals)
    app.router.add_get("/sim/calls/{call_id}", sim_get)
    app.router.add_get("/healthz", _ok)
    return app


async def _ok(_: web.Request) -> web.Response:
    return web.json_response({"ok": True, "service": "simulator"})
