"""The Realtime control plane as the simulator serves it: call control (accept, reject, refer,
hang up) and the control WebSocket with its client events, validated like the service."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web

from simulator import protocol as p
from simulator.caller import Runner
from simulator.calls import CallState, SimCall, ms
from simulator.service import SIM, Simulator, _authorized, _err

log = logging.getLogger("simulator")


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
    acted = False
    try:
        async for msg in ws:
            if msg.type is aiohttp.WSMsgType.TEXT:
                if not acted:
                    acted = True
                    call.acting_sockets += 1
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
    call.response_create_times.append(ms())
    if call.output_waiters and call.active_response is None:
        # A response asked for while a function call waits for its output (a filler, or a
        # re-engagement after a takeover): the model speaks now; the function call still waits.
        if instructions.startswith("Say only this"):
            call.mark("filler_requested")
            sim.spawn(runner.play_response(instructions.split(":", 1)[1].strip()))
        else:
            sim.spawn(runner.play_response("Sorry about that, I'm still here. Where were we?"))
        return
    if call.awaiting_response or len(call.response_instructions) == 1:
        # The call's first response.create is the greeting the caller waits for, even when it
        # arrives before the caller's script has started waiting (the socket just opened).
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
        call.output_times.setdefault(item["call_id"], ms())
        waiter = call.output_waiters.pop(item["call_id"], None)
        if waiter is not None and not waiter.done():
            waiter.set_result(ms())
        # The service adds the item to the conversation and says so on every attached socket.
        echoed = p.output_item(str(item.get("id") or p.new_id("item")), item["call_id"], str(item.get("output")))
        await runner.send(p.event("conversation.item.added", previous_item_id=ev.get("previous_item_id"), item=echoed))
        await runner.send(p.event("conversation.item.done", previous_item_id=ev.get("previous_item_id"), item=echoed))


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
