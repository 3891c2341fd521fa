"""What a session puts in the store: its record as it changes, the end-of-call record and
summary.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from callplane.clock import now_ms, percentile
from callplane.logs import SUMMARY_FIELD
from callplane.model_summary import model_summary
from callplane.store.models import CallStatus
from callplane.store.rollups import call_finished
from session_host import insights

if TYPE_CHECKING:
    from session_host.session import CallSession

log = logging.getLogger("session_host.session")


def publish(s: CallSession) -> None:
    if s.following:
        return  # the owner's record is the call's
    s.call.updatedAt = now_ms()
    s.writer.put_call(s.call, index=True)


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
        s.writer.put_call(c, urgent=True)


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
    s.writer.put_call(c, urgent=True)
    s.writer.put_rollup(call_finished(c))
    p50 = percentile(c.latencies, 50)
    summary = {
        "status": status.value,
        "reason": reason,
        "durationMs": c.duration or 0,
        "tools": [t.name for t in c.toolCalls],
        "turns": s._seq,
        "bargeIns": c.bargeInEvents,
        "latencyP50Ms": round(p50) if p50 is not None else None,
        "sentiment": c.sentiment,
    }
    # Structured for queries (JSON logs, Application Insights); the pretty formatter draws the box.
    log.info(
        "call summary",
        extra={
            "cat": "SUCCESS" if status is not CallStatus.FAILED else "ERROR",
            "call_id": c.callId,
            SUMMARY_FIELD: summary,
        },
    )
