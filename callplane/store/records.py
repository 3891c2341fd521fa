"""Direct (not write-behind) writes for the Function App, which has no long-lived writer:
webhook dedupe rows and the records of calls that never reached a session host."""

from __future__ import annotations

from azure.core.exceptions import ResourceExistsError

from callplane.clock import now_ms
from callplane.store.calls import by_partition, call_operation, index_upserts, remove_from_active
from callplane.store.models import CallRecord, CallStatus
from callplane.store.rollups import apply_delta, call_finished
from callplane.store.tables import Tables


async def claim_webhook(tables: Tables, webhook_id: str, call_id: str) -> bool:
    """Atomic insert keyed by webhook-id: True for the first delivery, False for a duplicate.
    Raises azure.core.exceptions.AzureError when the store cannot be reached."""
    try:
        await tables.webhooks.create_entity(
            {"PartitionKey": webhook_id, "RowKey": "", "callId": call_id, "receivedAt": str(now_ms())}
        )
    except ResourceExistsError:
        return False
    return True


async def release_webhook(tables: Tables, webhook_id: str) -> None:
    """Forget a delivery we could not finish, so the service's retry is processed."""
    await tables.webhooks.delete_entity(webhook_id, "")


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
