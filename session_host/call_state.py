"""What a call session's parts share: its options, the state of one response, the exceptions
that end a socket's life, and small helpers on events."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from openai.types.realtime import (
    RealtimeConversationItemAssistantMessage,
    RealtimeConversationItemFunctionCall,
)

from callplane.profiles import ChosenProfile
from callplane.settings import Settings
from session_host.health import HostCounters
from session_host.ownership import LeaseTiming

DISCLOSING = "(requested)"


def interruptible(update: Event, on: bool) -> Event:
    """`update` with the caller's speech allowed (or not) to cut the assistant's response."""
    turn = update["session"]["audio"]["input"]["turn_detection"]
    turn["interrupt_response"] = on
    return update


CLAIM_WINDOW_S = 10.0  # after a takeover: long enough for the previous owner to notice it lost the call
# Behind an ingress the Function App's word on the accept reaches the owner only sometimes (with
# two replicas, half the time); otherwise the owner finds it in the store within this long.
OUTCOME_POLL_S = 0.2
Event = dict[str, Any]


class CallGone(Exception):
    """The control socket was refused with 404: the call no longer exists."""


class NotYetAccepted(Exception):
    """The upgrade was refused because the accept has not landed yet (the hand-off comes first)."""


@dataclass(slots=True)
class PendingResponse:
    id: str
    text: str = ""
    first_output: bool = False
    interrupted: bool = False
    done: bool = False
    turn_written: bool = False
    calls: list[tuple[str, str, str]] = field(default_factory=list)  # (call_id, name, arguments)


@dataclass(slots=True)
class SessionOptions:
    reconnect_attempts: int = 5
    reconnect_base_s: float = 0.2
    silence_timeout_s: float = 120.0
    wrap_up_s: float = 10.0
    counters: HostCounters = field(default_factory=HostCounters)
    lease: LeaseTiming = field(default_factory=LeaseTiming)
    accept_wait_s: float = 8.0  # how long a reserved call waits for the Function App's word on the accept
    accept_retry_wait_s: float = 60.0  # after a retryable accept failure: the service's retry may come


def default_transfer(chosen: ChosenProfile | None, settings: Settings) -> str:
    return chosen.profile.transfer_target(None, settings.sip_target_uri) if chosen else settings.sip_target_uri


def take_output(resp: PendingResponse, output: list[Any]) -> None:
    """Function calls and text from a response's final output that the deltas did not carry
    (a socket attached mid-response sees only the end)."""
    for item in output:
        if isinstance(item, RealtimeConversationItemFunctionCall):
            if item.call_id and not any(c[0] == item.call_id for c in resp.calls):
                resp.calls.append((item.call_id, item.name, item.arguments or ""))
        elif isinstance(item, RealtimeConversationItemAssistantMessage) and not resp.text:
            for part in item.content:
                resp.text += part.transcript or part.text or ""
