"""Rollups: exact under concurrent writers (ETag retries), and /api/stats from one point read."""

from __future__ import annotations

import asyncio

from callplane.settings import Settings
from callplane.store.models import CallRecord, CallStatus, ToolCallRecord
from callplane.store.rollups import PK, RK, RollupCache, apply_delta, call_finished, histogram_percentile, read_stats
from callplane.store.tables import Tables, ensure_tables, open_tables
from tests.stack import run_stack

SEED_FIELDS = {
    "totalCalls",
    "activeCalls",
    "completedCalls",
    "failedCalls",
    "transferredCalls",
    "averageCallDuration",
    "totalToolCalls",
    "toolCallsByType",
    "averageLatencyMs",
    "totalLatencyMs",
    "latencySamples",
    "uptime",
    "startTime",
    "rejectedCalls",
    "p50LatencyMs",
    "p95LatencyMs",
    "p99LatencyMs",
    "bargeInEvents",
}


def finished(i: int, status: CallStatus) -> CallRecord:
    return CallRecord(
        callId=f"rtc_{i}",
        startTime=1,
        endTime=1001,
        duration=1000,
        status=status,
        toolCalls=[ToolCallRecord(name="lookup_order", timestamp=1, duration=1.0, success=True)],
        latencies=[400.0, 900.0],
        bargeInEvents=1,
    )


async def test_two_writers_racing_lose_no_update(store_settings: Settings) -> None:
    a, b = open_tables(store_settings), open_tables(store_settings)  # two "replicas", separate clients
    try:
        await ensure_tables(a)
        statuses = [CallStatus.COMPLETED, CallStatus.FAILED, CallStatus.TRANSFERRED]
        results = await asyncio.gather(
            *(
                apply_delta(a if i % 2 else b, call_finished(finished(i, statuses[i % 3]), counted_start=False))
                for i in range(30)
            )
        )
        assert sum(results) > 0, "the test must actually produce ETag conflicts"
        stats = await read_stats(a)
        assert stats["totalCalls"] == 30
        assert (stats["completedCalls"], stats["failedCalls"], stats["transferredCalls"]) == (10, 10, 10)
        assert stats["toolCallsByType"] == {"lookup_order": 30} and stats["totalToolCalls"] == 30
        assert stats["latencySamples"] == 60 and stats["averageLatencyMs"] == 650.0
        assert stats["p50LatencyMs"] == 400.0 and stats["p95LatencyMs"] == 1000.0
        assert stats["bargeInEvents"] == 30 and stats["averageCallDuration"] == 1000
    finally:
        await a.close()
        await b.close()


def test_histogram_percentile_bounds() -> None:
    assert histogram_percentile([0] * 18, 50) is None
    hist = [0] * 18
    hist[3] = 99  # <= 200 ms
    hist[10] = 1  # <= 1000 ms
    assert histogram_percentile(hist, 50) == 200.0
    assert histogram_percentile(hist, 99) == 200.0
    assert histogram_percentile(hist, 100) == 1000.0


async def test_api_stats_after_calls(conn: str) -> None:
    async with run_stack(conn, time_scale=40, CALLER_DENY="+1900*") as stack:
        done = await stack.place("standard")
        denied = await stack.place("greeting_only", caller="+19005550100")
        await stack.wait_call(done, timeout=60)
        await stack.wait_call(denied)
        await asyncio.sleep(1.0)  # the rollup flush interval
        stats = await stack.api("/api/stats")
        assert set(stats) >= SEED_FIELDS
        assert stats["totalCalls"] == 2 and stats["completedCalls"] == 1 and stats["rejectedCalls"] == 1
        assert stats["activeCalls"] == 0
        assert stats["toolCallsByType"] == {"lookup_order": 1, "check_inventory": 1}
        assert stats["latencySamples"] == 3 and stats["p95LatencyMs"] is not None


async def test_a_retried_delta_is_counted_once(tables: Tables) -> None:
    delta = call_finished(finished(1, CallStatus.COMPLETED), counted_start=False)
    await apply_delta(tables, delta)
    await apply_delta(tables, delta)  # as after a write that timed out but had committed
    stats = await read_stats(tables)
    assert stats["totalCalls"] == 1 and stats["completedCalls"] == 1
    other = call_finished(finished(2, CallStatus.FAILED), counted_start=False)
    await apply_delta(tables, other)
    assert (await read_stats(tables))["totalCalls"] == 2


async def test_a_cached_rollup_is_one_write_per_delta_and_survives_another_writer(
    store_settings: Settings,
) -> None:
    a, b = open_tables(store_settings), open_tables(store_settings)
    try:
        await ensure_tables(a)
        cache = RollupCache()
        await apply_delta(a, call_finished(finished(0, CallStatus.COMPLETED), counted_start=False), cache=cache)
        first = cache.requests  # nothing cached yet: a read and a create (or write)
        for i in range(1, 6):
            await apply_delta(a, call_finished(finished(i, CallStatus.COMPLETED), counted_start=False), cache=cache)
        assert cache.requests - first == 5, "with the ETag cached, each delta is one conditional write"
        await apply_delta(b, call_finished(finished(6, CallStatus.FAILED), counted_start=False))  # no cache
        conflicts = await apply_delta(
            a, call_finished(finished(7, CallStatus.COMPLETED), counted_start=False), cache=cache
        )
        assert conflicts == 1, "the stale ETag fails once, then a read and a write"
        stats = await read_stats(a)
        assert stats["totalCalls"] == 8 and stats["completedCalls"] == 7 and stats["failedCalls"] == 1
    finally:
        await a.close()
        await b.close()


async def test_a_cached_rollup_whose_entity_vanished_is_written_again_at_once(tables: Tables) -> None:
    # The store came back empty (or someone deleted the rollup row) while this writer held its
    # ETag: the conditional write answers 404, and the delta must be created fresh, not failed
    # and left for a retry seconds later (the dashboard would show zero until then).
    cache = RollupCache()
    await apply_delta(tables, call_finished(finished(0, CallStatus.COMPLETED), counted_start=False), cache=cache)
    assert cache.etag is not None
    await tables.rollups.delete_entity(PK, RK)
    conflicts = await apply_delta(
        tables, call_finished(finished(1, CallStatus.FAILED), counted_start=False), cache=cache
    )
    assert conflicts == 1, "the stale ETag fails once, then the row is created"
    stats = await read_stats(tables)
    assert stats["totalCalls"] == 1 and stats["failedCalls"] == 1 and stats["completedCalls"] == 0
