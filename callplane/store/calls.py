"""Reads and writes of calls and transcripts, keyed for the admin API's queries.

Keys (docs/storage.md):
- calls      PK=<callId>  RK="call"                        the call record
             PK=<callId>  RK="t<epoch ms:013d>-<seq:06d>"  transcript turns, in order
- callindex  PK="r<inverted hour>"  RK=<inverted start ms>-<callId>   newest-first listing (full
                                                                       record), one partition per hour
             PK="buckets"  RK="r<inverted hour>"            the hours that hold calls, newest first
             PK="active"  RK=<callId>                       live calls only
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from typing import Any

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import UpdateMode

from callplane.store.models import (
    CallRecord,
    CallStatus,
    TranscriptTurn,
    call_entity,
    call_from_entity,
    from_entity,
    to_entity,
)
from callplane.store.tables import Tables

CALL_RK = "call"
BUCKETS_PK = "buckets"
ACTIVE_PK = "active"
_MAX_MS = 10**13 - 1
_MAX_HOUR = 10**9 - 1
HOUR_MS = 3_600_000
_BUCKET_SCAN = 24  # hour buckets read per request while filling a page


def recent_pk(start_ms: int) -> str:
    # One partition per hour of start time, inverted so the bucket list reads newest first. A
    # single "recent" partition would take every insert of the deployment (the append
    # hot-partition anti-pattern) and grow without bound.
    return f"r{_MAX_HOUR - start_ms // HOUR_MS:09d}"


def recent_rk(call: CallRecord) -> str:
    # Table order is ascending only, so newest-first needs an inverted, zero-padded time.
    return f"{_MAX_MS - call.startTime:013d}-{call.callId}"


def turn_rk(timestamp_ms: int, seq: int) -> str:
    # Time first, so turns stay in order even when two replicas wrote parts of one call's
    # transcript (a hand-over); the sequence keeps same-millisecond turns apart.
    return f"t{timestamp_ms:013d}-{seq:06d}"


TAIL = "pendingTurns"
_MAX_TAIL = 28_000  # characters of JSON: one Edm.String property holds 32K UTF-16 units


def tail_property(turns: Sequence[TranscriptTurn]) -> str | None:
    """The turns not yet in the call's own partition, as the active row's `pendingTurns`; None
    when they do not fit one property (the writer then flushes the call's partition at once)."""
    raw = json.dumps(
        [{"rk": turn_rk(t.timestamp, t.seq), "seq": t.seq, **t.model_dump(mode="json")} for t in turns],
        separators=(",", ":"),
    )
    return raw if len(raw) <= _MAX_TAIL else None


def index_upserts(
    call: CallRecord, *, recent: bool = True, tail: str | None = None
) -> list[tuple[str, tuple[Any, ...]]]:
    """(partition, batchable upsert) pairs that keep the index partitions in step with `call`.
    `recent=False` leaves the newest-first row alone: a live call's row there is written when it
    starts and when it ends, and readers overlay the live state from the active partition.
    `tail`: the live call's unflushed turns (see `tail_property`), carried by its active row, which
    is written within a second anyway: turns are durable that fast while the call's own partition
    is written only now and then."""
    ops: list[tuple[str, tuple[Any, ...]]] = []
    if recent or call.final:
        pk = recent_pk(call.startTime)
        ops.append((pk, ("upsert", call_entity(pk, recent_rk(call), call), {"mode": UpdateMode.REPLACE})))
        ops.append((BUCKETS_PK, bucket_upsert(pk)))
    if call.status is CallStatus.ACTIVE:
        entity = call_entity(ACTIVE_PK, call.callId, call)
        if tail is not None:
            entity[TAIL] = tail
        ops.append((ACTIVE_PK, ("upsert", entity, {"mode": UpdateMode.REPLACE})))
    return ops


def bucket_upsert(pk: str) -> tuple[Any, ...]:
    return ("upsert", {"PartitionKey": BUCKETS_PK, "RowKey": pk}, {"mode": UpdateMode.REPLACE})


def by_partition(pairs: list[tuple[str, tuple[Any, ...]]]) -> dict[str, list[tuple[Any, ...]]]:
    """Group (partition, operation) pairs: a table transaction holds one partition, and the same
    row twice in one transaction is refused, so repeats keep the last."""
    out: dict[str, dict[str, tuple[Any, ...]]] = {}
    for pk, op in pairs:
        out.setdefault(pk, {})[str(op[1]["RowKey"])] = op
    return {pk: list(ops.values()) for pk, ops in out.items()}


async def remove_from_active(tables: Tables, call_id: str) -> None:
    """A final call leaves the active partition. Not batchable: a delete of a row that was never
    written (a short call coalesced into one flush) fails a whole transaction, while
    `delete_entity` alone treats 404 as done."""
    await tables.callindex.delete_entity(ACTIVE_PK, call_id)


def call_operation(call: CallRecord) -> tuple[Any, ...]:
    return ("upsert", call_entity(call.callId, CALL_RK, call), {"mode": UpdateMode.REPLACE})


def turn_operation(call_id: str, turn: TranscriptTurn) -> tuple[Any, ...]:
    data = turn.model_dump(mode="json")
    return ("upsert", to_entity(call_id, turn_rk(turn.timestamp, turn.seq), data), {"mode": UpdateMode.REPLACE})


def encode_token(token: dict[str, str] | None) -> str | None:
    if not token:
        return None
    return base64.urlsafe_b64encode(json.dumps(token, separators=(",", ":")).encode()).decode()


def decode_token(raw: str) -> dict[str, str]:
    """Raises ValueError on anything that is not a token we issued."""
    try:
        token = json.loads(base64.urlsafe_b64decode(raw.encode()))
    except (ValueError, TypeError) as exc:
        raise ValueError("next is not a valid page token") from exc
    if not isinstance(token, dict) or not all(isinstance(v, str) for v in token.values()):
        raise ValueError("next is not a valid page token")
    return token


class CallReader:
    """Read side of the admin API. Every method is one bounded query."""

    def __init__(self, tables: Tables) -> None:
        self._t = tables

    async def get_call(self, call_id: str) -> CallRecord | None:
        """The stored record; for a live call, its newer state from the active partition."""
        try:
            entity = await self._t.calls.get_entity(call_id, CALL_RK)
        except ResourceNotFoundError:
            live = await self.live_state(call_id)  # a live call's partition is written later
            return live[0] if live is not None else None
        call = call_from_entity(dict(entity))
        if call.status is CallStatus.ACTIVE:
            live = await self.live_state(call_id)
            if live is not None:
                return live[0]
        return call

    async def has_ended(self, call_id: str) -> bool:
        """Whether the call's own record says it ended: one read (an ended call always has one)."""
        try:
            entity = await self._t.calls.get_entity(call_id, CALL_RK, select=["status"])
        except ResourceNotFoundError:
            return False
        return str(entity.get("status") or CallStatus.ACTIVE.value) != CallStatus.ACTIVE.value

    async def live_state(self, call_id: str) -> tuple[CallRecord, list[TranscriptTurn]] | None:
        """A live call's active row: its current record and the turns not yet in its partition."""
        try:
            entity = dict(await self._t.callindex.get_entity(ACTIVE_PK, call_id))
        except ResourceNotFoundError:
            return None
        tail = [TranscriptTurn.model_validate(t) for t in json.loads(entity.get(TAIL) or "[]")]
        return call_from_entity(entity), tail

    async def list_recent(
        self,
        limit: int,
        next_token: str | None = None,
        active: list[CallRecord] | None = None,
        status: CallStatus | None = None,
    ) -> tuple[list[CallRecord], str | None]:
        """Newest first, across hour buckets. `active`: the live calls if the caller already read
        them (saves a query). The token names the bucket to go on in and, within it, the SDK's
        continuation (or that the bucket is done)."""
        token = decode_token(next_token) if next_token else {}
        # One row more than asked for: a `next` is given only when that row exists, so a page
        # that ends exactly at the last call does not lead to an empty one. The token names that
        # row by its keys (the service's own continuation values are opaque).
        found = await self._index_rows(limit + 1, token.get("b", ""), token.get("rk", ""), status)
        calls = [call for _, _, call in found[:limit]]
        next_raw = None
        if len(found) > limit:
            bucket, row_key, _ = found[limit]
            next_raw = encode_token({"b": bucket, "rk": row_key})
        if any(c.status is CallStatus.ACTIVE for c in calls):
            # Live calls' rows here are as they started; their current state is in `active`.
            live = {c.callId: c for c in (active if active is not None else await self.list_active())}
            calls = [live.get(c.callId, c) if c.status is CallStatus.ACTIVE else c for c in calls]
        return calls, next_raw

    async def _index_rows(
        self, want: int, start: str, start_row: str, status: CallStatus | None = None
    ) -> list[tuple[str, str, CallRecord]]:
        """Up to `want` index rows, newest first, from row `start_row` of bucket `start` on."""
        found: list[tuple[str, str, CallRecord]] = []
        lo, exclusive = start, False
        while len(found) < want:
            buckets, _ = await self._t.callindex.query_page(
                f"PartitionKey eq @pk and RowKey {'gt' if exclusive else 'ge'} @lo",
                {"pk": BUCKETS_PK, "lo": lo},
                limit=_BUCKET_SCAN,
                token=None,
                parse=lambda e: str(e["RowKey"]),
            )
            for bucket in buckets:
                after: Any = None
                row_from = start_row if bucket == start else ""
                while len(found) < want:  # the service may end a page early with a continuation
                    rows, after = await self._t.callindex.query_page(
                        "PartitionKey eq @pk and RowKey ge @rk" + (" and status eq @status" if status else ""),
                        {"pk": bucket, "rk": row_from, **({"status": status.value} if status else {})},
                        limit=want - len(found),
                        token=after,
                        parse=lambda e: (str(e["RowKey"]), call_from_entity(dict(e))),
                    )
                    found.extend((bucket, row_key, call) for row_key, call in rows)
                    if not after:
                        break
                if len(found) >= want:
                    break
            if len(buckets) < _BUCKET_SCAN:
                break
            lo, exclusive = buckets[-1], True
        return found

    async def list_active(self) -> list[CallRecord]:
        calls = await self._t.callindex.query(
            "PartitionKey eq @pk", {"pk": ACTIVE_PK}, parse=lambda e: call_from_entity(dict(e))
        )
        calls.sort(key=lambda c: c.startTime, reverse=True)
        return calls

    async def count_active(self) -> int:
        rows = await self._t.callindex.query(
            "PartitionKey eq @pk", {"pk": ACTIVE_PK}, select=["RowKey"], parse=lambda e: e["RowKey"]
        )
        return len(rows)

    async def transcript(self, call_id: str) -> list[dict[str, Any]]:
        """In order: the call partition's turns, plus a live call's unflushed tail. A turn both
        replicas wrote around a hand-over (same `turnId`) or both places hold (same key) once."""
        rows: list[tuple[str, dict[str, Any]]] = await self._t.calls.query(
            "PartitionKey eq @pk and RowKey gt @lo and RowKey lt @hi",
            {"pk": call_id, "lo": "t", "hi": "u"},
            parse=lambda e: (str(e["RowKey"]), from_entity(dict(e))),
        )
        live = await self.live_state(call_id)
        if live is not None:
            rows += [(turn_rk(t.timestamp, t.seq), t.model_dump(mode="json")) for t in live[1]]
        turns: list[dict[str, Any]] = []
        seen: set[str] = set()
        for key, turn in sorted(rows, key=lambda r: r[0]):
            turn_id = turn.pop("turnId", None)
            if key in seen or (turn_id is not None and turn_id in seen):
                continue
            seen.update(k for k in (key, turn_id) if k is not None)
            turns.append(turn)
        return turns
