"""Direct (not write-behind) writes for the Function App, which has no long-lived writer: the
records of calls that never reached a session host."""

from __future__ import annotations

from callplane.clock import now_ms
from callplane.store.calls import by_partition, call_operation, index_upserts, remove_from_active
from callplane.store.models import CallRecord, CallStatus
from callplane.store.rollups import apply_delta, call_finished
from callplane.store.tables import Tables


async def record_unhandled_call(
    tables: Tables,
    call_id: str,
    status: CallStatus,
    reason: str,
    caller_phone: str | None,
    started_ms: int,
) -> None:
    """Store a call that ended in the Function App (rejected, or never handed off)."""
    end = now_ms()
    call = CallRecord(
        callId=call_id,
        startTime=started_ms,
        endTime=end,
        duration=end - started_ms,
        status=status,
        endReason=reason,
        callerPhone=caller_phone,
        updatedAt=end,
        summary=f"Call {status.value} before the conversation: {reason}",
    )
    _, entity, options = call_operation(call)
    await tables.calls.upsert_entity(entity, **options)
    for ops in by_partition(index_upserts(call)).values():
        await tables.callindex.submit_transaction(ops)
    await remove_from_active(tables, call_id)
    await apply_delta(tables, call_finished(call, counted_start=False))
