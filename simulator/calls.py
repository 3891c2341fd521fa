"""Simulated call state and what the system under test did when (the measurements)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from aiohttp import web

from simulator.scenario import Scenario


class CallState(StrEnum):
    RINGING = "ringing"
    ACCEPTED = "accepted"
    ENDED = "ended"


def ms() -> float:
    return time.time() * 1000


@dataclass
class SimCall:
    call_id: str
    scenario: Scenario
    caller: str
    called: str = "+18005551212"  # the number dialled (the To header)
    state: CallState = CallState.RINGING
    end_reason: str | None = None
    accept_body: dict[str, Any] | None = None
    session: dict[str, Any] = field(default_factory=dict)
    sockets: list[web.WebSocketResponse] = field(default_factory=list)
    early_sockets: int = 0  # upgrades attempted before the accept (refused)
    outputs_per_function_call: dict[str, int] = field(default_factory=dict)  # answered twice shows here
    function_calls_emitted: int = 0
    function_call_times: dict[str, float] = field(default_factory=dict)  # call_id -> epoch ms emitted
    output_times: dict[str, float] = field(default_factory=dict)  # call_id -> epoch ms first answered
    # Held function calls (a scenario step with `hold: N`) wait for gate N, which a benchmark or a
    # test opens, so that every call has one in flight at a chosen moment (a replica's stop).
    gates: dict[int, asyncio.Event] = field(default_factory=dict)
    response_create_times: list[float] = field(default_factory=list)  # epoch ms of each response.create
    response_instructions: list[str] = field(default_factory=list)  # of every response.create
    usage_sent: dict[str, int] = field(default_factory=dict)  # sums of the usage in response.done events
    function_calls_unanswered: int = 0  # the model waited for an output that never came
    socket_opens: int = 0
    acting_sockets: int = 0  # sockets that sent at least one client event (a standby only listens)
    socket_open_times: list[float] = field(default_factory=list)  # epoch ms of every attach
    referred_to: str | None = None
    rejected_with: int | None = None
    marks: dict[str, float] = field(default_factory=dict)
    tool_round_trips: list[float] = field(default_factory=list)
    tool_outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    client_events: list[str] = field(default_factory=list)
    errors_sent: list[dict[str, Any]] = field(default_factory=list)
    events_sent: int = 0
    webhook_statuses: list[int] = field(default_factory=list)
    transcript: list[tuple[str, str]] = field(default_factory=list)
    ws_ready: asyncio.Event = field(default_factory=asyncio.Event)
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    response_requests: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)
    output_waiters: dict[str, asyncio.Future[float]] = field(default_factory=dict)
    active_response: str | None = None
    awaiting_response: bool = False
    runner: asyncio.Task[None] | None = None
    extra_tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    dropped_once: bool = False

    def gate(self, n: int) -> asyncio.Event:
        return self.gates.setdefault(n, asyncio.Event())

    def mark(self, name: str) -> None:
        self.marks.setdefault(name, ms())

    @property
    def live_socket(self) -> web.WebSocketResponse | None:
        for ws in reversed(self.sockets):
            if not ws.closed:
                return ws
        return None

    def summary(self) -> dict[str, Any]:
        m = self.marks

        def span(a: str, b: str) -> float | None:
            return round(m[b] - m[a], 2) if a in m and b in m else None

        return {
            "callId": self.call_id,
            "scenario": self.scenario.name,
            "state": self.state.value,
            "endReason": self.end_reason,
            "referredTo": self.referred_to,
            "rejectedWith": self.rejected_with,
            "socketOpens": self.socket_opens,
            "actingSockets": self.acting_sockets,
            "earlySockets": self.early_sockets,
            "marks": {k: round(v, 2) for k, v in m.items()},
            "webhookToAcceptMs": span("webhook_sent", "accept"),
            "acceptToSocketMs": span("accept", "ws_open"),
            "socketToSessionUpdateMs": span("ws_open", "session_update"),
            "webhookToGreetingRequestMs": span("webhook_sent", "greeting_requested"),
            "toolRoundTripsMs": [round(x, 3) for x in self.tool_round_trips],
            "toolOutputs": self.tool_outputs,
            "eventsSent": self.events_sent,
            "errorsSent": self.errors_sent,
            "clientEventTypes": self.client_events,
            "webhookStatuses": self.webhook_statuses,
            "session": self.session,
            "transcript": self.transcript,
        }
