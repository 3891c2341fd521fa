"""A session's record as it changes and at its end (sentiment, summary): told to its observers,
which store and log it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from callplane.clock import now_ms, percentile
from callplane.model_summary import model_summary
from callplane.store.models import CallStatus
from session_host import insights

if TYPE_CHECKING:
    from session_host.session import CallSession


def publish(s: CallSession) -> None:
    if s.following:
        return  # the owner's record is the call's
    s.call.updatedAt = now_ms()
    s.observers.changed(s.call)


async def write_model_summary(s: CallSession) -> None:
    """With SUMMARY_MODEL, replace the offline summary (already stored) with the model's."""
    if not s.settings.summary_model:
        return
    c = s.call
    written = await model_summary(
        s.http,
        s.settings,
        await s.control.auth.headers(),
        s._lines,
        f"{c.status.value} ({c.endReason})",
    )
    if written is not None:
        c.summary, c.summaryTokens = written
        c.updatedAt = now_ms()
        s.observers.changed(c, urgent=True)


def finalize(s: CallSession, status: CallStatus, reason: str) -> None:
    end = now_ms()
    c = s.call
    c.status, c.endReason, c.endTime = status, reason, end
    c.duration = end - c.startTime
    wanted_human = any(t.name == "handoff_human" for t in c.toolCalls)
    c.sentiment = insights.call_sentiment(s._user_texts, c.bargeInEvents, wanted_human)
    c.summary = insights.summarize(
        status.value,
        reason,
        c.duration,
        [t.name for t in c.toolCalls],
        s._seq,
        c.bargeInEvents,
        s._user_texts[0] if s._user_texts else None,
    )
    c.updatedAt = end
    p50 = percentile(c.latencies, 50)
    s.observers.ended(
        c,
        {
            "status": status.value,
            "reason": reason,
            "durationMs": c.duration or 0,
            "tools": [t.name for t in c.toolCalls],
            "turns": s._seq,
            "bargeIns": c.bargeInEvents,
            "latencyP50Ms": round(p50) if p50 is not None else None,
            "sentiment": c.sentiment,
        },
    )
