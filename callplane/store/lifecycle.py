"""How long call data lives, and deleting it on request.

- `delete_call`: every row that holds a call (its partition: record and turns; its newest-first
  and live index rows; its lease, accept-outcome and answer-claim rows; the webhook dedupe row
  that names it). Rollup counters are aggregates without personal data and stay as they are.
- `delete_caller`: every call from one number (found through the index, whose rows carry the
  caller), each deleted as above.
- `purge`: calls that started more than RETENTION_DAYS ago, whole hour buckets at a time, and
  dedupe rows past the service's retry horizon. One replica runs it at a time (a lease row), in
  small steps that yield, so live calls never wait on it.
Every deletion on request leaves an audit row (in the admin table, beside the sessions): who,
when, what kind, how many rows; never the number or the call's content.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from dataclasses import dataclass
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError

from callplane.clock import now_ms
from callplane.handoff import e164
from callplane.store.calls import ACTIVE_PK, BUCKETS_PK, HOUR_MS, recent_pk
from callplane.store.leases import ANSWER_PK, OUTCOME_PK
from callplane.store.leases import PK as LEASE_PK
from callplane.store.tables import TableOps, Tables

log = logging.getLogger("callplane.store.lifecycle")
AUDIT_PK = "audit"
PURGE_LEASE_RK = "~purge"
DEDUPE_HORIZON_MS = 4 * 24 * HOUR_MS  # the service retries a webhook for up to 72 h; keep a day more


async def _delete_rows(table: TableOps, rows: list[tuple[str, str]]) -> int:
    """Delete rows known to exist (found by a query or `_existing`); the SDK's delete does not
    say whether a row was there, so the count comes from the finding."""
    for pk, rk in rows:
        await table.delete_entity(pk, rk)
    return len(rows)


async def _existing(table: TableOps, rows: list[tuple[str, str]]) -> list[tuple[str, str]]:
    found = []
    for pk, rk in rows:
        try:
            await table.get_entity(pk, rk, select=["PartitionKey"])
            found.append((pk, rk))
        except ResourceNotFoundError:
            pass
    return found


async def _keys(table: TableOps, query: str, params: dict[str, Any]) -> list[tuple[str, str]]:
    return await table.query(
        query, params, select=["PartitionKey", "RowKey"], parse=lambda e: (str(e["PartitionKey"]), str(e["RowKey"]))
    )


async def delete_call(tables: Tables, call_id: str, start_ms: int | None = None) -> int:
    """Delete every row holding `call_id`; the number of rows deleted (0: nothing was there)."""
    deleted = await _delete_rows(tables.calls, await _keys(tables.calls, "PartitionKey eq @pk", {"pk": call_id}))
    index_rows = await _existing(tables.callindex, [(ACTIVE_PK, call_id)])
    if start_ms is not None:
        bucket = recent_pk(start_ms)
        index_rows += await _keys(
            tables.callindex, "PartitionKey eq @pk and callId eq @id", {"pk": bucket, "id": call_id}
        )
    else:
        index_rows += await _keys(
            tables.callindex, "PartitionKey ne @active and callId eq @id", {"active": ACTIVE_PK, "id": call_id}
        )
    deleted += await _delete_rows(tables.callindex, index_rows)
    claims = await _keys(
        tables.leases,
        "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi",
        {"pk": ANSWER_PK, "lo": f"{call_id}:", "hi": f"{call_id};"},
    )
    points = await _existing(tables.leases, [(LEASE_PK, call_id), (OUTCOME_PK, call_id)])
    deleted += await _delete_rows(tables.leases, [*points, *claims])
    deleted += await _delete_rows(tables.webhooks, await _keys(tables.webhooks, "callId eq @id", {"id": call_id}))
    return deleted


async def calls_of_caller(tables: Tables, number: str) -> list[tuple[str, int]]:
    """(call id, start time) of every indexed call from `number`, in any punctuation."""
    wanted = {number, e164(number)}
    rows = await tables.callindex.query(
        "PartitionKey ne @b",
        {"b": BUCKETS_PK},
        select=["callId", "callerPhone", "startTime"],
        parse=lambda e: (str(e.get("callId")), e.get("callerPhone"), e.get("startTime")),
    )
    found: dict[str, int] = {}
    for call_id, phone, start in rows:
        if phone and (phone in wanted or e164(str(phone)) in wanted):
            found[call_id] = int(getattr(start, "value", start) or 0)
    return list(found.items())


async def delete_caller(tables: Tables, number: str) -> tuple[int, int]:
    """Delete every call from `number`: (calls, rows)."""
    calls = await calls_of_caller(tables, number)
    rows = 0
    for call_id, start in calls:
        rows += await delete_call(tables, call_id, start or None)
    return len(calls), rows


async def audit(tables: Tables, who: str, action: str, rows: int, calls: int) -> None:
    """Who did what and how much; never the number or the call's content."""
    await tables.sessions.create_entity(
        {
            "PartitionKey": AUDIT_PK,
            "RowKey": f"{10**13 - 1 - now_ms():013d}-{uuid.uuid4().hex[:8]}",  # newest first
            "at": str(now_ms()),
            "who": who,
            "action": action,
            "rows": rows,
            "calls": calls,
        }
    )


def who_of(token_or_session: str) -> str:
    """An admin's identity for the audit: a short hash of the credential used, never the credential."""
    return "admin:" + hashlib.sha256(token_or_session.encode()).hexdigest()[:12]


@dataclass(slots=True)
class PurgeResult:
    buckets: int = 0
    calls: int = 0
    rows: int = 0
    dedupe_rows: int = 0


async def _take_purge_turn(tables: Tables, replica: str, every_ms: int) -> bool:
    """One replica purges at a time: the lease row says who and until when (ETag-guarded)."""
    now = now_ms()
    entity = {"PartitionKey": LEASE_PK, "RowKey": PURGE_LEASE_RK, "owner": replica, "until": str(now + every_ms)}
    try:
        current = await tables.leases.get_entity(LEASE_PK, PURGE_LEASE_RK)
    except ResourceNotFoundError:
        try:
            await tables.leases.create_entity(entity)
            return True
        except ResourceExistsError:
            return False
    if int(current.get("until") or 0) > now:
        return False
    try:
        await tables.leases.update_entity(
            entity, etag=current.metadata["etag"], match_condition=MatchConditions.IfNotModified
        )
    except (ResourceModifiedError, ResourceNotFoundError):
        return False
    return True


async def purge(tables: Tables, retention_days: float, replica: str, every_ms: int = HOUR_MS) -> PurgeResult | None:
    """Delete what is past retention; None when another replica has this turn."""
    if not await _take_purge_turn(tables, replica, every_ms):
        return None
    result = PurgeResult()
    cutoff = now_ms() - int(retention_days * 24 * HOUR_MS)
    # Buckets are named by inverted hour, so those older than the cutoff sort after its name.
    old_buckets = await _keys(
        tables.callindex, "PartitionKey eq @pk and RowKey gt @lo", {"pk": BUCKETS_PK, "lo": recent_pk(cutoff)}
    )
    for _, bucket in old_buckets:
        rows = await tables.callindex.query(
            "PartitionKey eq @pk",
            {"pk": bucket},
            select=["RowKey", "callId"],
            parse=lambda e: (str(e["RowKey"]), str(e.get("callId"))),
        )
        for _, call_id in rows:
            result.rows += await _delete_call_rows(tables, call_id)
            result.calls += 1
        result.rows += await _delete_rows(tables.callindex, [(bucket, rk) for rk, _ in rows])
        result.rows += await _delete_rows(tables.callindex, await _existing(tables.callindex, [(BUCKETS_PK, bucket)]))
        result.buckets += 1
    stale = await _keys(tables.webhooks, "receivedAt lt @cut", {"cut": str(now_ms() - DEDUPE_HORIZON_MS)})
    result.dedupe_rows = await _delete_rows(tables.webhooks, stale)
    claims = await tables.leases.query(
        "PartitionKey eq @a or PartitionKey eq @o",
        {"a": ANSWER_PK, "o": OUTCOME_PK},
        select=["PartitionKey", "RowKey", "Timestamp"],
        parse=lambda e: (str(e["PartitionKey"]), str(e["RowKey"]), e.metadata.get("timestamp")),
    )
    old = [(pk, rk) for pk, rk, ts in claims if ts is not None and ts.timestamp() * 1000 < now_ms() - 24 * HOUR_MS]
    result.rows += await _delete_rows(tables.leases, old)
    if result.calls or result.dedupe_rows:
        log.info(
            "retention purge: %d calls (%d rows) in %d hour buckets, %d dedupe rows",
            result.calls,
            result.rows,
            result.buckets,
            result.dedupe_rows,
        )
    return result


async def _delete_call_rows(tables: Tables, call_id: str) -> int:
    """A purged call's own partition and leftovers; its index row goes with its bucket."""
    rows = await _delete_rows(tables.calls, await _keys(tables.calls, "PartitionKey eq @pk", {"pk": call_id}))
    return rows + await _delete_rows(
        tables.leases, await _existing(tables.leases, [(LEASE_PK, call_id), (OUTCOME_PK, call_id)])
    )
