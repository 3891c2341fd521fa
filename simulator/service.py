"""The simulated service's state: its configuration, the calls it carries, how it places them
(signed webhooks, retried like the service) and the pieces every handler shares."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import uuid
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from callplane import signing
from simulator import protocol as p
from simulator.calls import CallState, SimCall, ms
from simulator.scenario import Scenario

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
    # Webhook deliveries in flight at once (0: no cap). The service sends each on its own request;
    # aiohttp's default pool of 100 held the 101st delivery of a burst until an earlier one was
    # answered, which benchmarks of older versions of this project ran with.
    webhook_connections: int = 0


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


SIM = web.AppKey("sim", Simulator)
