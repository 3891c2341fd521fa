"""The simulator's HTTP face: call-control REST, the control WebSocket, webhook placement and a
small `/sim/*` API that tests and the load tool use to place calls and read measurements."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from callplane import signing
from simulator import protocol as p
from simulator.caller import Runner
from simulator.calls import CallState, SimCall, ms
from simulator.scenario import Scenario, load_scenario

log = logging.getLogger("simulator")


@dataclass
class SimConfig:
    webhook_url: str
    webhook_secret: str
    api_key: str
    dialect: str = "openai"  # "openai" | "azure"
    time_scale: float = 1.0
    webhook_retries: int = 3
    session_seconds: int = 3600
    webhook_endpoints: list[dict[str, Any]] = field(default_factory=list)
    # Entra tokens the azure dialect accepts (Authorization: Bearer) besides the api-key.
    entra_tokens: set[str] = field(default_factory=set)
    # The next N management calls answer 403, as Azure does until a new role assignment propagates.
    forbidden_next: int = 0
    # What a control socket opened before the accept gets. Undocumented by the service; OpenAI's
    # SIP guide says to open it after the accept returns. 404 (as for an unknown call) is the
    # strict default: a client that depends on any particular answer fails here.
    pre_accept_status: int = 404


class Simulator:
    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.calls: dict[str, SimCall] = {}
        self.http: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Any) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # --- placing calls -----------------------------------------------------------------------
    def new_call(self, scenario: Scenario, caller: str | None = None, called: str | None = None) -> SimCall:
        call_id = f"rtc_{uuid.uuid4().hex}"
        call = SimCall(call_id=call_id, scenario=scenario, caller=caller or scenario.caller)
        if called:
            call.called = called
        self.calls[call_id] = call
        return call

    def webhook_body(self, call: SimCall) -> bytes:
        doc = {
            "object": "event",
            "id": f"evt_{uuid.uuid4().hex}",
            "type": "realtime.call.incoming",
            "created_at": int(ms() / 1000),
            "data": {
                "call_id": call.call_id,
                "sip_headers": [
                    {
                        "name": "From",
                        "value": f'"Caller" <sip:{call.caller}@sip.example.com>;tag={uuid.uuid4().hex[:8]}',
                    },
                    {"name": "To", "value": f"<sip:{call.called}@sip.example.com>"},
                    {"name": "Call-ID", "value": str(uuid.uuid4())},
                ],
            },
        }
        return json.dumps(doc).encode()

    async def place_call(self, call: SimCall) -> None:
        """Send the signed webhook (with the scenario's delivery faults) and retry like the service."""
        assert self.http is not None
        f = call.scenario.faults
        body = self.webhook_body(call)
        secret = signing.new_secret() if f.wrong_secret else self.config.webhook_secret
        msg_id = f"wh_{uuid.uuid4().hex}"
        if f.webhook_delay_ms:
            await asyncio.sleep(f.webhook_delay_ms / 1000 / self.config.time_scale)
        call.mark("webhook_sent")

        async def deliver() -> int:
            ts = ms() / 1000 - (600 if f.stale_timestamp else 0)
            headers = {
                **signing.sign_headers(secret, body, msg_id=msg_id, timestamp=ts),
                "content-type": "application/json",
                "user-agent": "OpenAI/1.0 (+https://platform.openai.com/docs/webhooks)",
            }
            assert self.http is not None
            try:
                async with self.http.post(
                    self.config.webhook_url, data=body, headers=headers, timeout=aiohttp.ClientTimeout(total=15)
                ) as resp:
                    await resp.read()
                    call.webhook_statuses.append(resp.status)
                    return resp.status
            except (TimeoutError, aiohttp.ClientError):
                call.webhook_statuses.append(0)
                return 0

        attempts = 1 + max(0, self.config.webhook_retries)
        for attempt in range(attempts):
            if f.duplicate_webhook and attempt == 0:
                statuses = await asyncio.gather(deliver(), deliver())
                status = min(statuses)
            else:
                status = await deliver()
            if 200 <= status < 300 or call.state is CallState.ENDED:
                break
            await asyncio.sleep((0.2 * 2**attempt) / self.config.time_scale)

    async def end_call(self, call: SimCall, reason: str) -> None:
        if call.state is CallState.ENDED and call.ended.is_set() and not call.live_socket:
            return
        call.state = CallState.ENDED
        call.end_reason = call.end_reason or reason
        call.mark("ended")
        call.ended.set()
        for ws in list(call.sockets):
            if not ws.closed:
                await ws.close(code=1000, message=b"call ended")
        runner = call.runner
        if runner is not None and runner is not asyncio.current_task():
            runner.cancel()
        for task in list(call.extra_tasks):
            if task is not asyncio.current_task():
                task.cancel()


# --- REST: chat completions (the optional model summary) --------------------------------------
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
def _authorized(request: web.Request, sim: Simulator) -> bool:
    key = sim.config.api_key.encode()
    if sim.config.dialect == "azure":
        given = request.headers.get("api-key", "")
        return hmac.compare_digest(given.encode(), key)
    auth = request.headers.get("Authorization", "")
    return auth.startswith("Bearer ") and hmac.compare_digest(auth[7:].encode(), key)


def _err(
    status: int, message: str, code: str | None, param: str | None = None, etype: str = "invalid_request_error"
) -> web.Response:
    return web.json_response(p.rest_error(message, code, etype, param), status=status)


def _voice_problem(config: dict[str, Any], mode: str, prefix: str) -> str | None:
    """The parameter the service refuses under the `reject_voice` fault, if any."""
    has_new = bool(((config.get("audio") or {}).get("output") or {}).get("voice"))
    if mode in ("audio_output", "both") and has_new:
        return f"{prefix}audio.output.voice"
    if mode == "both" and "voice" in config:
        return f"{prefix}voice"
    return None


def _config_problem(sim: Simulator, call: SimCall, config: dict[str, Any], prefix: str) -> str | None:
    if sim.config.dialect == "azure" and ((config.get("audio") or {}).get("input") or {}).get("transcription"):
        return f"{prefix}audio.input.transcription"
    for path in call.scenario.faults.reject_params:
        if _has_path(config, path):
            return f"{prefix}{path}"
    return _voice_problem(config, call.scenario.faults.reject_voice, prefix)


def _has_path(config: dict[str, Any], path: str) -> bool:
    node: Any = config
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


async def call_action(request: web.Request) -> web.Response:
    sim = request.app[SIM]
    if not _authorized(request, sim):
        return _err(401, "Incorrect API key provided.", "invalid_api_key")
    call_id, action = request.match_info["call_id"], request.match_info["action"]
    call = sim.calls.get(call_id)
    if call is None:
        return _err(404, f"Call '{call_id}' not found.", "call_id_not_found", "call_id")
    raw = await request.read()
    body: Any = None
    if raw:
        try:
            body = json.loads(raw)
        except ValueError:
            return _err(400, "We could not parse the JSON body of your request.", "invalid_json")
    if action == "accept":
        return await _accept(sim, call, body)
    if call.state is CallState.ENDED:
        return _err(404, f"Call '{call_id}' not found.", "call_id_not_found", "call_id")
    act = _ACTIONS.get(action)
    if act is None:
        return _err(404, f"Unknown action '{action}'.", "not_found")
    return await act(sim, call, body)


async def _reject(sim: Simulator, call: SimCall, body: Any) -> web.Response:
    if call.state is not CallState.RINGING:
        return _err(400, "Call has already been accepted.", "invalid_call_state")
    status = 603
    if isinstance(body, dict) and "status_code" in body:
        if not isinstance(body["status_code"], int) or not 400 <= body["status_code"] <= 699:
            return _err(400, "Invalid 'status_code'.", "invalid_value", "status_code")
        status = body["status_code"]
    call.rejected_with = status
    await sim.end_call(call, f"rejected {status}")
    return web.Response(status=200)


async def _refer(sim: Simulator, call: SimCall, body: Any) -> web.Response:
    if not isinstance(body, dict) or not isinstance(body.get("target_uri"), str) or not body["target_uri"]:
        return _err(400, "Missing required parameter: 'target_uri'.", "missing_required_parameter", "target_uri")
    extra = set(body) - {"target_uri"}
    if extra:
        return _err(400, f"Unknown parameter: '{sorted(extra)[0]}'.", "unknown_parameter", sorted(extra)[0])
    call.referred_to = body["target_uri"]
    call.mark("refer")
    sim.spawn(_end_later(sim, call, 0.3, "referred"))
    return web.Response(status=200)


async def _hangup(sim: Simulator, call: SimCall, body: Any) -> web.Response:
    call.mark("hangup")
    await sim.end_call(call, "hung up by the server")
    return web.Response(status=200)


_ACTIONS: dict[str, Callable[[Simulator, SimCall, Any], Awaitable[web.Response]]] = {
    "reject": _reject,
    "refer": _refer,
    "hangup": _hangup,
}


async def _end_later(sim: Simulator, call: SimCall, seconds: float, reason: str) -> None:
    await asyncio.sleep(seconds / sim.config.time_scale)
    await sim.end_call(call, reason)


async def _accept(sim: Simulator, call: SimCall, body: Any) -> web.Response:
    f = call.scenario.faults
    if f.accept_delay_ms:
        await asyncio.sleep(f.accept_delay_ms / 1000 / sim.config.time_scale)
    if f.accept_status == 404:
        await sim.end_call(call, "caller hung up while ringing")
        return _err(404, f"Call '{call.call_id}' not found.", "call_id_not_found", "call_id")
    if f.accept_status:
        return _err(
            f.accept_status, "The server had an error while processing your request.", None, etype="server_error"
        )
    if call.state is CallState.ENDED:
        return _err(404, f"Call '{call.call_id}' not found.", "call_id_not_found", "call_id")
    if call.state is CallState.ACCEPTED:
        return _err(400, "Call has already been accepted.", "call_already_accepted")
    if not isinstance(body, dict):
        return _err(400, "The accept body must be a session configuration object.", "invalid_request_error")
    if body.get("type") != "realtime":
        return _err(400, "Missing required parameter: 'type'.", "missing_required_parameter", "type")
    problem = _config_problem(sim, call, body, "")
    if problem:
        return _err(400, f"Unknown parameter: '{problem}'.", "unknown_parameter", problem)
    call.accept_body = body
    call.session = dict(body)
    call.state = CallState.ACCEPTED
    call.mark("accept")
    call.runner = asyncio.ensure_future(
        Runner(call, time_scale=sim.config.time_scale, dialect=sim.config.dialect, end_call=sim.end_call).run()
    )
    return web.Response(status=200)


# --- the control WebSocket ---------------------------------------------------------------------
async def control_socket(request: web.Request) -> web.StreamResponse:
    sim = request.app[SIM]
    if sim.config.dialect == "azure" and "api-version" in request.query:
        return _err(401, "api-version is not supported on the /openai/v1 path.", "invalid_api_version")
    if not _authorized(request, sim):
        return _err(401, "Incorrect API key provided.", "invalid_api_key")
    call_id = request.query.get("call_id", "")
    call = sim.calls.get(call_id)
    # An ended or unknown call is a 404 (as call control answers for one).
    if call is None or call.state is CallState.ENDED:
        return _err(404, f"Call '{call_id}' not found.", "call_id_not_found", "call_id")
    if call.state is CallState.RINGING:
        call.early_sockets += 1
        if sim.config.pre_accept_status == 404:
            return _err(404, f"Call '{call_id}' not found.", "call_id_not_found", "call_id")
        return _err(sim.config.pre_accept_status, "Call has not been accepted.", "invalid_call_state")
    ws = web.WebSocketResponse(heartbeat=None, max_msg_size=16 * 1024 * 1024)
    await ws.prepare(request)
    call.sockets.append(ws)
    call.socket_opens += 1
    call.socket_open_times.append(ms())
    call.mark("ws_open")
    runner = Runner(call, time_scale=sim.config.time_scale, dialect=sim.config.dialect, end_call=sim.end_call)
    expires = int(ms() / 1000) + sim.config.session_seconds
    await runner.send(p.event("session.created", session=p.session_object(call.session, expires)))
    call.ws_ready.set()
    try:
        async for msg in ws:
            if msg.type is aiohttp.WSMsgType.TEXT:
                await _client_event(sim, call, runner, msg.data, expires)
    finally:
        if ws in call.sockets and len(call.sockets) > 4:
            call.sockets.remove(ws)
    return ws


async def _client_event(sim: Simulator, call: SimCall, runner: Runner, raw: str, expires: int) -> None:
    ev, err = p.validate_client_event(raw)
    if err is not None:
        call.errors_sent.append(err["error"])
        await runner.send(err)
        return
    assert ev is not None
    call.client_events.append(ev["type"])
    handler = _CLIENT_EVENTS.get(ev["type"])
    if handler is not None:
        await handler(sim, call, runner, ev, expires)


async def _send_error(call: SimCall, runner: Runner, code: str, message: str, **kw: Any) -> None:
    e = p.error_event(code, message, **kw)
    call.errors_sent.append(e["error"])
    await runner.send(e)


async def _session_update(sim: Simulator, call: SimCall, runner: Runner, ev: dict[str, Any], expires: int) -> None:
    call.mark("session_update")
    session = ev["session"]
    problem = _config_problem(sim, call, session, "session.")
    if problem:
        await _send_error(
            call,
            runner,
            "unknown_parameter",
            f"Unknown parameter: '{problem}'.",
            param=problem,
            client_event_id=ev.get("event_id"),
        )
        return
    merged = {**call.session, **{k: v for k, v in session.items() if k != "audio"}}
    if "audio" in session:
        audio = dict(call.session.get("audio") or {})
        for side, cfg in (session.get("audio") or {}).items():
            audio[side] = {**(audio.get(side) or {}), **(cfg or {})}
        merged["audio"] = audio
    call.session = merged
    await runner.send(p.event("session.updated", session=p.session_object(merged, expires)))


async def _response_create(sim: Simulator, call: SimCall, runner: Runner, ev: dict[str, Any], expires: int) -> None:
    if "greeting_requested" not in call.marks:
        call.mark("greeting_requested")
    instructions = str((ev.get("response") or {}).get("instructions") or "")
    call.response_instructions.append(instructions)
    if call.output_waiters and instructions.startswith("Say only this") and call.active_response is None:
        # A filler while a function call is pending: the model says it now.
        call.mark("filler_requested")
        sim.spawn(runner.play_response(instructions.split(":", 1)[1].strip()))
        return
    if call.awaiting_response:
        await call.response_requests.put(ev)
    elif call.active_response is not None:
        await _send_error(
            call,
            runner,
            "conversation_already_has_active_response",
            f"Conversation already has an active response in progress: {call.active_response}. "
            "Wait until the response is finished before creating a new one.",
            client_event_id=ev.get("event_id"),
        )
    else:
        instructions = str((ev.get("response") or {}).get("instructions") or "").lower()
        text = "Sure, one moment."
        if "goodbye" in instructions or "end the call" in instructions:
            text = "Thanks for calling. Goodbye!"
        elif "transfer" in instructions:
            text = "Let me transfer you to a colleague now."
        sim.spawn(runner.play_response(text))


async def _item_create(sim: Simulator, call: SimCall, runner: Runner, ev: dict[str, Any], expires: int) -> None:
    item = ev["item"]
    if item.get("type") == "function_call_output":
        call.outputs_per_function_call[item["call_id"]] = call.outputs_per_function_call.get(item["call_id"], 0) + 1
        call.tool_outputs[item["call_id"]] = _maybe_json(item.get("output"))
        waiter = call.output_waiters.pop(item["call_id"], None)
        if waiter is not None and not waiter.done():
            waiter.set_result(ms())


async def _response_cancel(sim: Simulator, call: SimCall, runner: Runner, ev: dict[str, Any], expires: int) -> None:
    if call.active_response is None:
        e = p.error_event(
            "response_cancel_not_active",
            "Cancellation failed: no active response found.",
            client_event_id=ev.get("event_id"),
        )
        await runner.send(e)
    else:
        call.active_response = None


async def _buffer_clear(sim: Simulator, call: SimCall, runner: Runner, ev: dict[str, Any], expires: int) -> None:
    await runner.send(p.event("output_audio_buffer.cleared", response_id=call.active_response or "resp_none"))


_CLIENT_EVENTS: dict[str, Callable[[Simulator, SimCall, Runner, dict[str, Any], int], Awaitable[None]]] = {
    "session.update": _session_update,
    "response.create": _response_create,
    "conversation.item.create": _item_create,
    "response.cancel": _response_cancel,
    "output_audio_buffer.clear": _buffer_clear,
}


def _maybe_json(raw: Any) -> Any:
    try:
        return json.loads(raw)
    except (TypeError, ValueError):
        return raw


# --- Azure webhook endpoint registration --------------------------------------------------------
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


SIM = web.AppKey("sim", Simulator)
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
        sim.http = aiohttp.ClientSession()
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
