"""Who hears what happens on a call: the store, the metrics and the log.

The session changes its own state (the `CallRecord`, its turns) and says what happened; each
observer does its one part with it, and the session knows nothing about tables, instruments or
log formats. A new consumer (another exporter, a test's recorder) is one more observer, not one
more call in the event handlers. Observers are called on the calls' loop while an event is being
handled: they never wait, and they never raise (a failing metric or log line must not cost the
caller a turn).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from callplane.logs import SUMMARY_FIELD, Throttle
from callplane.store.models import CallRecord, CallStatus, TranscriptTurn
from callplane.store.rollups import call_finished, call_started
from callplane.store.writer import StoreWriter
from callplane.telemetry import Telemetry
from session_host.tools_runner import ToolOutcome

log = logging.getLogger("session_host.session")

CallSummary = dict[str, Any]  # the end-of-call fields: structured in the log, a box when pretty


class CallObserver:
    """The events of one call; each does nothing unless an observer overrides it."""

    def started(self, call: CallRecord, *, new: bool) -> None:
        """The call runs here: `new` when it starts, not when it is resumed or taken over."""

    def changed(self, call: CallRecord, *, urgent: bool = False) -> None:
        """The call's record changed (`urgent`: a change to store now, such as its summary)."""

    def turn(self, call: CallRecord, turn: TranscriptTurn) -> None:
        """A transcript turn was added to the call."""

    def tool(self, call: CallRecord, outcome: ToolOutcome) -> None:
        """A tool ran and its answer went to the model."""

    def latency(self, call: CallRecord, ms: float) -> None:
        """Caller stopped speaking -> the assistant's first output, for one turn."""

    def usage(self, call: CallRecord, tokens: int, cost: float) -> None:
        """A response's model tokens and their cost."""

    def ended(self, call: CallRecord, summary: CallSummary) -> None:
        """The call ended here with its final record."""


class StoreObserver(CallObserver):
    """The call's record, turns and rollup counts, through the write-behind."""

    def __init__(self, writer: StoreWriter) -> None:
        self.writer = writer

    def started(self, call: CallRecord, *, new: bool) -> None:
        if new:
            self.writer.put_rollup(call_started())
        self.writer.put_live(call)

    def changed(self, call: CallRecord, *, urgent: bool = False) -> None:
        self.writer.put_call(call, urgent=urgent)

    def turn(self, call: CallRecord, turn: TranscriptTurn) -> None:
        self.writer.put_turn(call.callId, turn)

    def ended(self, call: CallRecord, summary: CallSummary) -> None:
        self.writer.put_call(call, urgent=True)
        self.writer.put_rollup(call_finished(call))


class MetricsObserver(CallObserver):
    """Application Insights instruments (OpenTelemetry metrics)."""

    def __init__(self, telemetry: Telemetry) -> None:
        self.telemetry = telemetry

    def started(self, call: CallRecord, *, new: bool) -> None:
        if new:
            self.telemetry.calls_started.add(1)

    def tool(self, call: CallRecord, outcome: ToolOutcome) -> None:
        self.telemetry.tool_duration.record(outcome.duration_ms, {"tool": outcome.name, "success": outcome.success})

    def latency(self, call: CallRecord, ms: float) -> None:
        self.telemetry.turn_latency.record(ms)

    def usage(self, call: CallRecord, tokens: int, cost: float) -> None:
        self.telemetry.tokens.add(tokens)
        self.telemetry.cost.add(cost)


class LogObserver(CallObserver):
    """The call's story in the log: transcript lines, tools, latency, the end-of-call summary."""

    def turn(self, call: CallRecord, turn: TranscriptTurn) -> None:
        who = "ASSISTANT" if turn.speaker == "assistant" else "USER"
        log.info("%s: %s", who, turn.text[:300], extra={"cat": "TRANSCRIPT", "call_id": call.callId})

    def tool(self, call: CallRecord, outcome: ToolOutcome) -> None:
        log.log(
            logging.INFO if outcome.success else logging.WARNING,
            "%s %s in %.1f ms",
            outcome.name,
            "ok" if outcome.success else f"failed: {outcome.error}",
            outcome.duration_ms,
            extra={"cat": "TOOL", "call_id": call.callId},
        )

    def latency(self, call: CallRecord, ms: float) -> None:
        log.info("turn latency %.0f ms", ms, extra={"cat": "INFO", "call_id": call.callId})

    def ended(self, call: CallRecord, summary: CallSummary) -> None:
        # Structured for queries (JSON logs, Application Insights); the pretty formatter draws the box.
        log.info(
            "call summary",
            extra={
                "cat": "SUCCESS" if call.status is not CallStatus.FAILED else "ERROR",
                "call_id": call.callId,
                SUMMARY_FIELD: summary,
            },
        )


class Observers(CallObserver):
    """Several observers as one, in order; one that raises is logged (once per 30 s for each
    observer and event, with how often meanwhile) and the rest still hear."""

    def __init__(self, observers: Sequence[CallObserver]) -> None:
        self.all = tuple(observers)
        self._throttle = Throttle()

    def add(self, observer: CallObserver) -> None:
        """One more observer, heard from the next event on (live calls included)."""
        self.all = (*self.all, observer)

    def _each(self, method: str, *args: Any, **kwargs: Any) -> None:
        for observer in self.all:
            try:
                getattr(observer, method)(*args, **kwargs)
            except Exception:
                name = type(observer).__name__
                if (skipped := self._throttle.due(f"{name}.{method}")) is not None:
                    log.exception("call observer %s failed on %s (%d more since the last line)", name, method, skipped)

    def started(self, call: CallRecord, *, new: bool) -> None:
        self._each("started", call, new=new)

    def changed(self, call: CallRecord, *, urgent: bool = False) -> None:
        self._each("changed", call, urgent=urgent)

    def turn(self, call: CallRecord, turn: TranscriptTurn) -> None:
        self._each("turn", call, turn)

    def tool(self, call: CallRecord, outcome: ToolOutcome) -> None:
        self._each("tool", call, outcome)

    def latency(self, call: CallRecord, ms: float) -> None:
        self._each("latency", call, ms)

    def usage(self, call: CallRecord, tokens: int, cost: float) -> None:
        self._each("usage", call, tokens, cost)

    def ended(self, call: CallRecord, summary: CallSummary) -> None:
        self._each("ended", call, summary)


def standard(writer: StoreWriter, telemetry: Telemetry) -> Observers:
    """What every session on a replica is observed by: its store first (the record is what the
    dashboards and a successor replica read), then metrics, then the log."""
    return Observers([StoreObserver(writer), MetricsObserver(telemetry), LogObserver()])
