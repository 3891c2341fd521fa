"""Write-behind for calls and transcripts: the call loop never waits on storage.

Changes are coalesced in memory (latest call record wins, turns keyed by sequence) and flushed
as one request per partition: the shared index partitions every `index_interval` (dashboards see
changes within 2 s; a live call's newest-first row is written only when it starts and ends, its
live state goes to the small active partition, together with its turns not yet in its own
partition, so a turn is durable within about a second), each call's own partition (record + new
turns in one transaction) when the call ends, every `call_interval` while it runs, and at the
next flush when its unflushed turns outgrow the active row. Flushes are at least
`index_interval` apart, so the starts and ends of a moment share their requests. Table
requests cost CPU each, so fewer of them is what lets one replica hold many calls. A failed
flush keeps everything and retries with backoff and jitter, so a store outage loses nothing
while the buffer holds; past `max_turns` the oldest non-final turns are dropped, logged and
counted, never silently.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from azure.core.exceptions import AzureError, HttpResponseError

from callplane.clock import now_ms
from callplane.logs import Throttle
from callplane.store.calls import (
    ACTIVE_PK,
    BUCKETS_PK,
    by_partition,
    call_operation,
    index_upserts,
    remove_from_active,
    tail_property,
    turn_operation,
)
from callplane.store.models import CallRecord, TranscriptTurn
from callplane.store.refusals import key_problem, refused_as_invalid
from callplane.store.rollups import RollupCache, RollupDelta, apply_delta
from callplane.store.submitter import Submitter, WriterStats
from callplane.store.tables import Tables

log = logging.getLogger(__name__)
_PARALLEL = 16  # call-partition transactions in flight at once


@dataclass(slots=True)
class _Pending:
    call: CallRecord | None = None
    turns: dict[int, TranscriptTurn] = field(default_factory=dict)
    since: float = 0.0
    urgent: bool = False


def snapshot(call: CallRecord) -> CallRecord:
    """A copy the session can go on changing: its only mutable fields are two lists whose items
    are never changed once appended, so copying the lists does what a deep copy (10x slower,
    on every publish) did."""
    return call.model_copy(update={"toolCalls": list(call.toolCalls), "latencies": list(call.latencies)})


class StoreWriter:
    def __init__(
        self,
        tables: Tables,
        *,
        index_interval: float = 1.0,
        call_interval: float = 60.0,
        max_turns: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._t = tables
        self._index_interval = index_interval
        self._call_interval = call_interval
        self._max_turns = max_turns
        self._clock = clock
        self._calls: dict[str, _Pending] = {}
        self._index: dict[str, CallRecord] = {}
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._backoff = 0.0
        self._turn_count = 0
        self._rollup = RollupDelta()
        self._rollup_in_doubt: RollupDelta | None = None
        self._rollup_cache = RollupCache()
        self._in_recent: set[str] = set()  # live calls whose newest-first row is written
        self._buckets: set[str] = set()  # hour buckets this writer has listed already
        self._in_active: set[str] = set()  # live calls whose active row this writer wrote
        self._generation = tables.generation
        self._rollups_generation = tables.generations.get(tables.rollups.table_name, 0)
        self._rollup_ok_ms = 0  # when a rollup delta last reached the store
        # Called when the store turned out to have lost tables (it came back empty), with the
        # time before which this writer's rollup counts are lost too (0: the rollups survived):
        # the owner puts its live calls again, and the "started" counts it had written.
        self.on_store_reset: Callable[[int], None] | None = None
        self.stats = WriterStats()
        self._out = Submitter(tables.endpoint, self.stats)
        # True while callers are being answered (hand-offs, accepts, greetings under way): a
        # flush then waits up to `max_yield_s`, so the store thread's CPU (the SDK holds the GIL
        # for milliseconds per request) goes to greetings first. Forced flushes never wait.
        self.busy: Callable[[], bool] = lambda: False
        self.max_yield_s = 1.0
        self._throttle = Throttle()  # rollup failures (writes are throttled by the submitter)
        self.set_aside = self._out.set_aside  # the newest entities the store refused

    # --- producer side (never awaits) ---------------------------------------------------
    def put_call(self, call: CallRecord, *, urgent: bool = False, index: bool = True) -> None:
        pending = self._calls.setdefault(call.callId, _Pending(since=self._clock()))
        pending.call = snapshot(call)
        pending.urgent = pending.urgent or urgent or call.final
        if index:
            self._index[call.callId] = pending.call
        if pending.urgent:
            self._wake.set()

    def put_live(self, call: CallRecord) -> None:
        """A call that starts (or is resumed): index rows now, its own partition later. Readers
        find a live call by its active row, which is the newer state anyway."""
        self._index[call.callId] = snapshot(call)
        self._wake.set()

    def put_turn(self, call_id: str, turn: TranscriptTurn) -> None:
        pending = self._calls.setdefault(call_id, _Pending(since=self._clock()))
        if turn.seq not in pending.turns:
            self._turn_count += 1
        pending.turns[turn.seq] = turn
        self._enforce_bound()

    def put_rollup(self, delta: RollupDelta) -> None:
        self._rollup.merge(delta)

    def _check_store_reset(self) -> None:
        if self._t.generation == self._generation:
            return
        self._generation = self._t.generation
        rollups_generation = self._t.generations.get(self._t.rollups.table_name, 0)
        counts_lost_before = self._rollup_ok_ms if rollups_generation != self._rollups_generation else 0
        self._rollups_generation = rollups_generation
        # Tables were created again, so rows this writer believes written may be gone: forget
        # those beliefs so the next writes put them back (bucket list, newest-first and live rows,
        # the rollup's cached ETag).
        self._buckets.clear()
        self._in_recent.clear()
        self._in_active.clear()
        self._rollup_cache.entity = self._rollup_cache.etag = None
        self.stats.store_resets += 1
        log.warning("the store lost its tables; rewriting what this replica holds")
        if self.on_store_reset is not None:
            self.on_store_reset(counts_lost_before)

    def _enforce_bound(self) -> None:
        while self._turn_count > self._max_turns:
            # Drop the oldest turn of the call with the most buffered turns; the records stay.
            victim = max(self._calls.values(), key=lambda p: len(p.turns))
            oldest = min(victim.turns)
            del victim.turns[oldest]
            self._turn_count -= 1
            self.stats.dropped_turns += 1
            log.error("store buffer full: dropped a transcript turn", extra={"dropped": self.stats.dropped_turns})

    @property
    def pending(self) -> int:
        return len(self._calls) + len(self._index) + bool(self._rollup) + (self._rollup_in_doubt is not None)

    # --- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="store-writer")

    async def close(self, timeout: float = 20.0) -> None:
        """Stop the loop and flush what is left, trying until `timeout`."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        async with self._lock:
            pass  # a flush the loop had begun finishes first (its batch is not in `pending`)
        deadline = self._clock() + timeout
        while self.pending and self._clock() < deadline:
            if not await self.flush(force=True):
                await asyncio.sleep(min(0.5, max(0.0, deadline - self._clock())))
        if self.pending:
            log.error("store writer closed with unsaved changes", extra={"pending": self.pending})

    async def _run(self) -> None:
        last = float("-inf")
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self._index_interval)
            except TimeoutError:
                pass
            # A wake-up (a call started, ended or needs its partition written) is served by the
            # next flush, but flushes are at least `index_interval` apart: calls start and end
            # at their own moments, and a flush for each was a request (or three) for each.
            # bench.store (50 calls): 144 flushes and 338 requests in 52 s before, 55 and 102 after.
            gap = last + self._index_interval - time.monotonic()
            if gap > 0:
                await asyncio.sleep(gap)
            self._wake.clear()
            await self._yield_to_callers()
            last = time.monotonic()
            # Shielded: `close` cancels this loop, and a flush cancelled halfway would lose the
            # batch it had taken out of the buffer. The flush finishes; `close` waits for its lock.
            ok = await asyncio.shield(self.flush())
            if ok:
                self._backoff = 0.0
            else:
                self._backoff = min(5.0, max(0.2, self._backoff * 2))
                await asyncio.sleep(self._backoff * (0.5 + random.random()))

    async def _yield_to_callers(self) -> None:
        waited = 0.0
        while waited < self.max_yield_s and self.busy():
            await asyncio.sleep(0.05)
            waited += 0.05

    # --- flushing --------------------------------------------------------------------------
    async def flush(self, force: bool = False) -> bool:
        """Write what is due (everything when `force`). True when nothing failed."""
        async with self._lock:
            self.stats.flushes += 1
            self._check_store_reset()
            # The shared index first: it is what dashboards read, and it is one or two requests.
            ok = await self._flush_index()
            ok = await self._flush_calls(force) and ok
            ok = await self._flush_rollup() and ok
            return ok

    async def _flush_rollup(self) -> bool:
        # A delta whose write failed may still have committed, so it is retried unchanged (its id
        # makes the retry a no-op if so); newer counts wait in `_rollup` until it is settled.
        if self._rollup_in_doubt is None:
            if not self._rollup:
                return True
            self._rollup_in_doubt, self._rollup = self._rollup, RollupDelta()
        before = self._rollup_cache.requests
        generation = self._t.generations.get(self._t.rollups.table_name, 0)
        try:
            conflicts = await apply_delta(self._t, self._rollup_in_doubt, cache=self._rollup_cache)
            self.stats.rollup_conflicts += conflicts
            self._rollup_in_doubt = None
            if self._t.generations.get(self._t.rollups.table_name, 0) == generation:
                # (A delta written into a table recreated just now survived; what was lost is what
                # the previous write had counted, so its time stays the mark.)
                self._rollup_ok_ms = now_ms()
            return True
        except (TimeoutError, AzureError, OSError) as exc:
            self.stats.failures += 1
            if (skipped := self._throttle.due("rollup")) is not None:
                log.warning(
                    "rollup update failed, will retry: %s (%d more since the last line)", type(exc).__name__, skipped
                )
            return False
        finally:
            self.stats.requests += self._rollup_cache.requests - before

    async def _flush_calls(self, force: bool) -> bool:
        now = self._clock()
        due = [cid for cid, p in self._calls.items() if force or p.urgent or now - p.since >= self._call_interval]
        batches = {call_id: self._calls.pop(call_id) for call_id in due}
        # One transaction per call partition, several in flight: with many live calls a serial
        # loop would hold every other write (and the dashboards) behind it.
        limit = asyncio.Semaphore(_PARALLEL)

        async def write(call_id: str, pending: _Pending) -> bool:
            ops: list[tuple[Any, ...]] = []
            if pending.call is not None:
                ops.append(call_operation(pending.call))
            ops.extend(turn_operation(call_id, t) for t in sorted(pending.turns.values(), key=lambda t: t.seq))
            async with limit:
                return await self._out.submit(self._t.calls, ops)

        results = await asyncio.gather(*(write(cid, p) for cid, p in batches.items()))
        for (call_id, pending), stored in zip(batches.items(), results, strict=True):
            if stored:
                self._turn_count -= len(pending.turns)
                if pending.call is not None and pending.call.final:
                    log.info(
                        "call record stored (%s)",
                        pending.call.status.value,
                        extra={"cat": "SUCCESS", "call_id": call_id},
                    )
            else:
                self._merge_back(call_id, pending)
        return all(results)

    def _merge_back(self, call_id: str, failed: _Pending) -> None:
        newer = self._calls.get(call_id)
        if newer is None:
            self._calls[call_id] = failed
            return
        if newer.call is None:
            newer.call = failed.call
        for seq, turn in failed.turns.items():
            if seq not in newer.turns:
                newer.turns[seq] = turn
            else:
                self._turn_count -= 1
        newer.urgent = True

    async def _flush_index(self) -> bool:
        if not self._index:
            return True
        batch, self._index = self._index, {}
        pairs = await self._index_ops(batch)
        finals = [c.callId for c in batch.values() if c.final]
        # A row this writer put in `active` is known to exist, so its delete can ride in the
        # partition's transaction (a delete of a missing row would fail the whole batch).
        batched_deletes = [cid for cid in finals if cid in self._in_active]
        pairs += [(ACTIVE_PK, ("delete", {"PartitionKey": ACTIVE_PK, "RowKey": cid})) for cid in batched_deletes]
        by_pk = by_partition([(pk, op) for pk, op in pairs if pk != BUCKETS_PK or op[1]["RowKey"] not in self._buckets])
        ok = True
        for pk, ops in by_pk.items():
            stored = await self._out.submit(self._t.callindex, ops)
            ok = stored and ok
            if stored and pk == BUCKETS_PK:
                self._buckets.update(str(op[1]["RowKey"]) for op in ops)
            if pk == ACTIVE_PK:
                if stored:
                    self._in_active.update(c.callId for c in batch.values() if not c.final)
                self._in_active.difference_update(batched_deletes)  # done, or retried alone below
        if ok:
            for call in batch.values():
                (self._in_recent.discard if call.final else self._in_recent.add)(call.callId)
            finals = [cid for cid in finals if cid not in batched_deletes]
        ok = await self._remove_from_active(finals) and ok
        if not ok:
            for cid, call in batch.items():
                self._index.setdefault(cid, call)
        return ok

    async def _index_ops(self, batch: dict[str, CallRecord]) -> list[tuple[str, tuple[Any, ...]]]:
        """The index rows of `batch`, built on the store thread from snapshots (no writer state)."""
        jobs = [(call, call.callId not in self._in_recent, self._tail_turns(call)) for call in batch.values()]

        def build() -> tuple[list[tuple[str, tuple[Any, ...]]], list[str]]:
            out: list[tuple[str, tuple[Any, ...]]] = []
            too_long: list[str] = []
            for call, recent, turns in jobs:
                tail = tail_property(turns) if turns else None
                if turns and tail is None:
                    too_long.append(call.callId)
                out += index_upserts(call, recent=recent, tail=tail)
            return out, too_long

        pairs, too_long = await self._t.compute(build)
        for call_id in too_long:  # its turns outgrew the active row: write its partition in this flush
            if call_id in self._calls:
                self._calls[call_id].urgent = True
        return pairs

    async def _remove_from_active(self, call_ids: list[str]) -> bool:
        ok = True
        for call_id in call_ids:
            if key_problem({"PartitionKey": ACTIVE_PK, "RowKey": call_id}) is not None:
                continue  # never written either: its upsert was set aside
            try:
                self.stats.requests += 1
                await remove_from_active(self._t, call_id)
            except HttpResponseError as exc:
                if not refused_as_invalid(exc):
                    ok = self._out.failed(exc) and ok
            except AzureError as exc:
                ok = self._out.failed(exc) and ok
        return ok

    def _tail_turns(self, call: CallRecord) -> list[TranscriptTurn]:
        """A live call's turns not yet in its own partition, for its active row."""
        pending = self._calls.get(call.callId)
        if call.final or pending is None or not pending.turns:
            return []
        return sorted(pending.turns.values(), key=lambda t: t.seq)
