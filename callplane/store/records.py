"""Direct (not write-behind) writes for the Function App, which has no long-lived writer: the
records of calls that never reached a session host.

Refusals come in bursts (a full fleet refuses every new call), and each refused call used to
cost about seven store requests made on the webhook app's loop while the next callers waited to
hear busy. `RefusalRecorder` writes the refusals of a short window together: one upsert per call
record (each call has its own partition), one transaction per index partition, one rollup
update, and tombstones that share transactions. Callers are refused before they are recorded,
and each waits until its own record is stored (or the write failed), so nothing is lost quietly.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from callplane.clock import now_ms
from callplane.handoff import HandoffRequest
from callplane.store import leases
from callplane.store.calls import by_partition, call_operation, index_upserts
from callplane.store.models import CallRecord, CallStatus
from callplane.store.rollups import apply_delta, call_finished, merge_all
from callplane.store.tables import Tables

_BATCH = 100  # operations in one table transaction


@dataclass(frozen=True, slots=True)
class Unhandled:
    """A call that ended in the Function App (rejected, or never handed off)."""

    request: HandoffRequest
    status: CallStatus
    reason: str


def _record_of(item: Unhandled, end: int) -> CallRecord:
    started = item.request.receivedAt
    return CallRecord(
        callId=item.request.callId,
        startTime=started,
        endTime=end,
        duration=end - started,
        status=item.status,
        endReason=item.reason,
        callerPhone=item.request.callerPhone,
        updatedAt=end,
        summary=f"Call {item.status.value} before the conversation: {item.reason}",
    )


async def record_unhandled_calls(tables: Tables, items: Sequence[Unhandled]) -> None:
    """Store these calls: their records, index rows, counts, and a tombstone for each lease (a
    later delivery of the same webhook must not run the call nor overwrite its record). A call
    that never reached a session host has no live row to remove."""
    end = now_ms()
    calls = [_record_of(item, end) for item in items]
    # Tombstones first: whoever can read a refused call's record can count on its tombstone, so
    # a delivery of the webhook that arrives after the record is visible cannot take the call.
    tombstones = [leases.mark_refused(tables, item.request) for item in items]
    marked = await asyncio.gather(*tombstones, return_exceptions=True)
    writes: list[Any] = []
    for call in calls:
        _, entity, options = call_operation(call)
        writes.append(tables.calls.upsert_entity(entity, **options))
    pairs = [pair for call in calls for pair in index_upserts(call)]
    for ops in by_partition(pairs).values():
        writes += [tables.callindex.submit_transaction(ops[i : i + _BATCH]) for i in range(0, len(ops), _BATCH)]
    results = [*marked, *await asyncio.gather(*writes, return_exceptions=True)]
    await apply_delta(tables, merge_all(call_finished(call, counted_start=False) for call in calls))
    for result in results:
        if isinstance(result, BaseException):
            raise result


class RefusalRecorder:
    """Refusals made within `window_s` of each other are stored together."""

    def __init__(self, tables: Tables, window_s: float = 0.1) -> None:
        self._tables = tables
        self._window_s = window_s
        self._pending: list[Unhandled] = []
        self._written: asyncio.Future[None] | None = None

    async def record(self, item: Unhandled) -> None:
        """Store `item` with the others of its window; raises what the store raised."""
        self._pending.append(item)
        if self._written is None:
            self._written = asyncio.get_running_loop().create_future()
            asyncio.get_running_loop().call_later(self._window_s, self._flush)
        await asyncio.shield(self._written)

    def _flush(self) -> None:
        items, written = self._pending, self._written
        self._pending, self._written = [], None
        assert written is not None
        task = asyncio.ensure_future(record_unhandled_calls(self._tables, items))

        def settle(done: asyncio.Task[None]) -> None:
            if written.done():
                return
            if done.cancelled():
                written.set_exception(ConnectionError("closed before the refusals were stored"))
            elif (exc := done.exception()) is not None:
                written.set_exception(exc)
            else:
                written.set_result(None)

        task.add_done_callback(settle)
