"""Rollup counters for `/api/stats`, merged across replicas.

One entity (`rollups` PK="stats", RK="all") holds totals, per-tool counts and a latency
histogram. Writers add deltas with read-modify-write under ETag optimistic concurrency and retry
on conflict, so two replicas finishing calls at once both count. Latency is kept as bucket
counts (not a list of samples) so percentiles merge across replicas and the entity stays small.
"""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import EdmType, EntityProperty, UpdateMode

from callplane.clock import now_ms
from callplane.store.models import CallRecord, CallStatus
from callplane.store.tables import Tables

PK, RK = "stats", "all"
# Upper edges (ms) of the latency buckets; the last bucket is open-ended.
EDGES: tuple[float, ...] = (50, 100, 150, 200, 250, 300, 400, 500, 600, 750, 1000, 1250, 1500, 2000, 3000, 5000, 10000)
_COUNTERS = (
    "totalCalls",
    "completedCalls",
    "failedCalls",
    "transferredCalls",
    "rejectedCalls",
    "finishedCalls",
    "totalDurationMs",
    "totalToolCalls",
    "bargeInEvents",
    "latencySamples",
    "totalTokens",
    "totalCostMicroUsd",  # cost kept in millionths of a dollar: an integer sums exactly
)
PERIOD_FIELDS = ("calls", "tokens", "costMicroUsd", "durationMs")
KEEP_DAYS, KEEP_HOURS = 62, 48
_STATUS_FIELD = {
    CallStatus.COMPLETED: "completedCalls",
    CallStatus.FAILED: "failedCalls",
    CallStatus.TRANSFERRED: "transferredCalls",
    CallStatus.REJECTED: "rejectedCalls",
}


def bucket(latency_ms: float) -> int:
    for i, edge in enumerate(EDGES):
        if latency_ms <= edge:
            return i
    return len(EDGES)


@dataclass(slots=True)
class RollupDelta:
    # Applying is idempotent per id: a write that timed out but did commit is not counted twice
    # when it is retried (the entity remembers the last ids it applied).
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    counters: dict[str, int] = field(default_factory=dict)
    tools: dict[str, int] = field(default_factory=dict)
    buckets: dict[int, int] = field(default_factory=dict)
    latency_sum: float = 0.0
    # Per day ("d:2026-12-01") and hour ("h:2026-12-01T14"), UTC, by when calls ended.
    periods: dict[str, dict[str, int]] = field(default_factory=dict)

    def add(self, name: str, n: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + n

    def merge(self, other: RollupDelta) -> None:
        """Add `other` into this delta (which keeps its id)."""
        for k, v in other.counters.items():
            self.add(k, v)
        for k, v in other.tools.items():
            self.tools[k] = self.tools.get(k, 0) + v
        for b, v in other.buckets.items():
            self.buckets[b] = self.buckets.get(b, 0) + v
        self.latency_sum += other.latency_sum
        _merge_periods(self.periods, other.periods)

    def __bool__(self) -> bool:
        return bool(self.counters or self.tools or self.buckets or self.periods)


def _merge_periods(into: dict[str, dict[str, int]], add: dict[str, dict[str, int]]) -> None:
    for key, values in add.items():
        slot = into.setdefault(key, {})
        for name, v in values.items():
            slot[name] = slot.get(name, 0) + v


def period_keys(epoch_ms: int) -> tuple[str, str]:
    stamp = datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)
    return f"d:{stamp:%Y-%m-%d}", f"h:{stamp:%Y-%m-%dT%H}"


def call_started() -> RollupDelta:
    delta = RollupDelta()
    delta.add("totalCalls")
    return delta


def call_finished(call: CallRecord, *, counted_start: bool = True) -> RollupDelta:
    """The delta a final call contributes; `counted_start=False` for calls that never started
    a session (rejected or failed in the Function App), which count in totalCalls here."""
    delta = RollupDelta()
    if not counted_start:
        delta.add("totalCalls")
    delta.add(_STATUS_FIELD.get(call.status, "completedCalls"))
    delta.add("finishedCalls")
    delta.add("totalDurationMs", int(call.duration or 0))
    delta.add("totalToolCalls", len(call.toolCalls))
    delta.add("bargeInEvents", call.bargeInEvents)
    for tool in call.toolCalls:
        delta.tools[tool.name] = delta.tools.get(tool.name, 0) + 1
    for latency in call.latencies:
        b = bucket(latency)
        delta.buckets[b] = delta.buckets.get(b, 0) + 1
        delta.latency_sum += latency
    delta.add("latencySamples", len(call.latencies))
    micro = round(call.cost * 1_000_000)
    delta.add("totalTokens", call.usage.totalTokens + call.summaryTokens)
    delta.add("totalCostMicroUsd", micro)
    values = {
        "calls": 1,
        "tokens": call.usage.totalTokens + call.summaryTokens,
        "costMicroUsd": micro,
        "durationMs": int(call.duration or 0),
    }
    for key in period_keys(call.endTime or call.startTime):
        delta.periods[key] = dict(values)
    delta.periods[f"p:{call.profile or 'default'}"] = dict(values)  # per agent profile, all time
    return delta


def _int64(value: int) -> EntityProperty:
    return EntityProperty(value, EdmType.INT64)


def _plain(value: Any) -> Any:
    return value.value if isinstance(value, EntityProperty) else value


_REMEMBERED = 256  # delta ids kept on the entity; far more than the flushes that can be in doubt


def _applied(entity: dict[str, Any]) -> list[str]:
    return list(json.loads(entity.get("appliedDeltas") or "[]"))


def _apply(entity: dict[str, Any], delta: RollupDelta) -> dict[str, Any]:
    out: dict[str, Any] = {"PartitionKey": PK, "RowKey": RK}
    out["appliedDeltas"] = json.dumps((_applied(entity) + [delta.id])[-_REMEMBERED:])
    for name in _COUNTERS:
        out[name] = _int64(int(_plain(entity.get(name, 0)) or 0) + delta.counters.get(name, 0))
    tools: dict[str, int] = json.loads(entity.get("toolCallsByType") or "{}")
    for k, v in delta.tools.items():
        tools[k] = tools.get(k, 0) + v
    out["toolCallsByType"] = json.dumps(tools, separators=(",", ":"))
    hist: list[int] = json.loads(entity.get("latencyBuckets") or "[]") or [0] * (len(EDGES) + 1)
    for b, v in delta.buckets.items():
        hist[b] += v
    out["latencyBuckets"] = json.dumps(hist, separators=(",", ":"))
    out["totalLatencyMs"] = float(_plain(entity.get("totalLatencyMs", 0.0)) or 0.0) + delta.latency_sum
    periods: dict[str, dict[str, int]] = json.loads(entity.get("periods") or "{}")
    _merge_periods(periods, delta.periods)
    days = sorted(k for k in periods if k.startswith("d:"))[-KEEP_DAYS:]
    hours = sorted(k for k in periods if k.startswith("h:"))[-KEEP_HOURS:]
    profiles = sorted(k for k in periods if k.startswith("p:"))[:500]
    out["periods"] = json.dumps({k: periods[k] for k in days + hours + profiles}, separators=(",", ":"))
    return out


@dataclass(slots=True)
class RollupCache:
    """The rollup entity and ETag as this writer last wrote them. With it a delta is one
    conditional write instead of a read and a write; another writer's change in between fails
    the write (412) and costs the read after all."""

    entity: dict[str, Any] | None = None
    etag: str | None = None
    requests: int = 0  # table requests made through this cache (for the writer's counts)


def _count(cache: RollupCache | None) -> None:
    if cache is not None:
        cache.requests += 1


_DONE = "done"  # the delta is in the store (created it, or an earlier try committed)
_RACED = "raced"  # another writer created the entity first: read again


async def _read_current(
    tables: Tables, delta: RollupDelta, cache: RollupCache | None
) -> tuple[dict[str, Any], str] | str:
    """The entity and its ETag; or _DONE / _RACED when there is nothing to update."""
    try:
        _count(cache)
        read = await tables.rollups.get_entity(PK, RK)
    except ResourceNotFoundError:
        try:
            _count(cache)
            created = _apply({}, delta)
            meta = await tables.rollups.create_entity(created)
        except ResourceExistsError:
            return _RACED
        if cache is not None:
            cache.entity, cache.etag = created, str(meta["etag"])
        return _DONE
    current = dict(read)
    return _DONE if delta.id in _applied(current) else (current, str(read.metadata["etag"]))


async def apply_delta(tables: Tables, delta: RollupDelta, attempts: int = 20, cache: RollupCache | None = None) -> int:
    """Add `delta` to the rollup entity; returns the number of ETag conflicts retried.
    Raises azure.core.exceptions.AzureError when the store is unreachable (and then forgets the
    cache: the write may have committed, so the retry must read and check the delta's id)."""
    conflicts = 0
    cached = (cache.entity, cache.etag) if cache is not None and cache.entity is not None and cache.etag else None
    try:
        for _ in range(attempts):
            state = cached if cached is not None else await _read_current(tables, delta, cache)
            cached = None
            if state == _DONE:
                return conflicts
            if state == _RACED:
                conflicts += 1
                continue
            assert isinstance(state, tuple)
            current, etag = state
            updated = _apply(dict(current), delta)
            try:
                _count(cache)
                meta = await tables.rollups.update_entity(
                    updated,
                    mode=UpdateMode.REPLACE,
                    etag=etag,
                    match_condition=MatchConditions.IfNotModified,
                )
            except ResourceModifiedError:
                conflicts += 1
                await asyncio.sleep(random.uniform(0.005, 0.05) * min(conflicts, 5))
                continue
            except ResourceNotFoundError:
                # The row went (the store came back empty) since the ETag was read: the next
                # pass reads nothing and creates it with this delta, now rather than on a retry.
                conflicts += 1
                continue
            if cache is not None:
                cache.entity, cache.etag = updated, str(meta["etag"])
            return conflicts
    except BaseException:
        if cache is not None:
            cache.entity = cache.etag = None
        raise
    raise ResourceModifiedError(f"rollup update lost {attempts} races in a row")


def histogram_percentile(hist: list[int], q: float) -> float | None:
    """The upper edge of the bucket holding the q-th percentile (the open bucket reports its
    lower edge): an upper bound within one bucket width."""
    total = sum(hist)
    if not total:
        return None
    rank = q / 100 * total
    seen = 0
    for i, count in enumerate(hist):
        seen += count
        if seen >= rank and count:
            return float(EDGES[i] if i < len(EDGES) else EDGES[-1])
    return float(EDGES[-1])


async def read_stats(tables: Tables) -> dict[str, Any]:
    """The rollup as API fields; one point read."""
    try:
        entity: dict[str, Any] = dict(await tables.rollups.get_entity(PK, RK))
    except ResourceNotFoundError:
        entity = {}
    n = {name: int(_plain(entity.get(name, 0)) or 0) for name in _COUNTERS}
    hist: list[int] = json.loads(entity.get("latencyBuckets") or "[]") or [0] * (len(EDGES) + 1)
    total_latency = float(_plain(entity.get("totalLatencyMs", 0.0)) or 0.0)
    samples = n["latencySamples"]
    return {
        "totalCalls": n["totalCalls"],
        "completedCalls": n["completedCalls"],
        "failedCalls": n["failedCalls"],
        "transferredCalls": n["transferredCalls"],
        "rejectedCalls": n["rejectedCalls"],
        "averageCallDuration": round(n["totalDurationMs"] / n["finishedCalls"]) if n["finishedCalls"] else 0,
        "totalToolCalls": n["totalToolCalls"],
        "toolCallsByType": json.loads(entity.get("toolCallsByType") or "{}"),
        "averageLatencyMs": round(total_latency / samples, 1) if samples else 0,
        "totalLatencyMs": round(total_latency, 1),
        "latencySamples": samples,
        "p50LatencyMs": histogram_percentile(hist, 50),
        "p95LatencyMs": histogram_percentile(hist, 95),
        "p99LatencyMs": histogram_percentile(hist, 99),
        "bargeInEvents": n["bargeInEvents"],
        "latencyBuckets": {"edgesMs": list(EDGES), "counts": hist},
        "totalTokens": n["totalTokens"],
        "totalCost": round(n["totalCostMicroUsd"] / 1_000_000, 6),
        **_period_stats(json.loads(entity.get("periods") or "{}"), n),
    }


def _period_stats(periods: dict[str, dict[str, int]], n: dict[str, int]) -> dict[str, Any]:
    today, this_hour = period_keys(now_ms())
    day = periods.get(today, {})
    minutes = n["totalDurationMs"] / 60_000

    def row(key: str) -> dict[str, Any]:
        p = periods[key]
        return {
            "period": key[2:],
            "calls": p.get("calls", 0),
            "tokens": p.get("tokens", 0),
            "cost": round(p.get("costMicroUsd", 0) / 1_000_000, 6),
            "minutes": round(p.get("durationMs", 0) / 60_000, 2),
        }

    return {
        "costToday": round(day.get("costMicroUsd", 0) / 1_000_000, 6),
        "tokensToday": day.get("tokens", 0),
        "callsEndedToday": day.get("calls", 0),
        "costPerCallMinute": round(n["totalCostMicroUsd"] / 1_000_000 / minutes, 6) if minutes else 0,
        "usageByDay": [row(k) for k in sorted(k for k in periods if k.startswith("d:"))],
        "usageByHour": [row(k) for k in sorted(k for k in periods if k.startswith("h:"))],
        "usageByProfile": [row(k) for k in sorted(k for k in periods if k.startswith("p:"))],
    }


def merge_all(deltas: Iterable[RollupDelta]) -> RollupDelta:
    total = RollupDelta()
    for d in deltas:
        total.merge(d)
    return total
