"""What a call session's parts share: its options and the state of one response."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from session_host.health import HostCounters
from session_host.ownership import LeaseTiming

if TYPE_CHECKING:
    from session_host.session_guards import GuardClock

DISCLOSING = "(requested)"


Event = dict[str, Any]


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
    # This replica's heartbeat is old enough that a standby may take its calls (set by the app).
    fenced: Callable[[], bool] = lambda: False
    # session.update as sent, per configuration: the same ~5 KB of JSON for every call of an
    # agent, encoded once (see CallSession._session_update_text). Bounded; cleared when full.
    encoded_updates: dict[tuple[Any, ...], tuple[Any, str]] = field(default_factory=dict)
    # One timer for every call's guards (session_guards.clock_of), made on first use.
    guard_clock: GuardClock | None = None
