"""Live feed for dashboards: one table poller per replica, fanned out to every SSE client.

The poller reads a bounded set (the stats rollup, the active partition, the newest calls) every
`interval` seconds no matter how many clients listen, and not at all while none does: with
hundreds of live calls those reads are a good share of a replica's CPU, spent for nobody.
When the snapshot changes it is published with an id equal to its change time in epoch ms (the
newest `updatedAt` it contains, or the stats' own change), which is the same on every replica,
so `Last-Event-ID` resumes on any of them.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from callplane.clock import now_ms, percentile
from callplane.store.calls import CallReader
from callplane.store.models import call_out
from callplane.store.rollups import read_stats
from callplane.store.tables import Tables

log = logging.getLogger("session_host.live")
RECENT = 20
HEARTBEAT_S = 15.0


@dataclass(slots=True, frozen=True)
class Snapshot:
    id: int
    data: str


def _latency_series(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    points = [
        {
            "t": c["startTime"],  # the chart says "time of the call's start": an ended call is not moved to its end
            "p50": percentile(c["latencies"], 50),
            "max": max(c["latencies"]),
            "callId": c["callId"],
        }
        for c in calls
        if c["latencies"]
    ]
    return sorted(points, key=lambda p: p["t"])


class LiveFeed:
    def __init__(
        self, tables: Tables, reader: CallReader, started_ms: int, interval: float = 0.5, show_numbers: bool = False
    ) -> None:
        self._tables = tables
        self._show_numbers = show_numbers
        self._reader = reader
        self._started = started_ms
        self.interval = interval
        self.latest: Snapshot | None = None
        self._digest = ""
        self._subscribers: set[asyncio.Queue[Snapshot | None]] = set()
        self._task: asyncio.Task[None] | None = None
        self._listened = asyncio.Event()
        self.polls = 0

    @property
    def clients(self) -> int:
        return len(self._subscribers)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="live-feed")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self.end_streams()

    def end_streams(self) -> None:
        """Tell every open stream to end (shutdown: browsers reconnect to another replica)."""
        for queue in list(self._subscribers):
            _offer(queue, None)

    def subscribe(self) -> asyncio.Queue[Snapshot | None]:
        queue: asyncio.Queue[Snapshot | None] = asyncio.Queue(maxsize=1)
        self._subscribers.add(queue)
        self._listened.set()
        return queue

    def unsubscribe(self, queue: asyncio.Queue[Snapshot | None]) -> None:
        self._subscribers.discard(queue)
        if not self._subscribers:
            self._listened.clear()

    async def _idle(self) -> None:
        """Wait for a listener; the snapshot from before the pause is stale, so forget it and let
        the next poll publish afresh (a new client waits one poll, never sees old data)."""
        if self._listened.is_set():
            return
        self.latest, self._digest = None, ""
        await self._listened.wait()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._idle()
            started = loop.time()
            try:
                await self.poll()
            except Exception as exc:  # the store may be down; dashboards keep the last snapshot
                log.warning("live feed poll failed: %s", type(exc).__name__)
            # A fixed cadence: a slow poll shortens the pause instead of stretching the period.
            await asyncio.sleep(max(0.05, self.interval - (loop.time() - started)))

    async def poll(self) -> None:
        self.polls += 1
        stats, active_calls = await asyncio.gather(read_stats(self._tables), self._reader.list_active())
        recent_calls, _ = await self._reader.list_recent(RECENT, active=active_calls)
        active = [call_out(c, self._show_numbers) for c in active_calls]
        recent = [call_out(c, self._show_numbers) for c in recent_calls]
        stats["activeCalls"] = len(active)
        # Rollups count a call's tools when it ends; add the live calls' so the chart moves now.
        for call in active:
            for tool in call["toolCalls"]:
                stats["toolCallsByType"][tool["name"]] = stats["toolCallsByType"].get(tool["name"], 0) + 1
                stats["totalToolCalls"] += 1
        body = {"stats": stats, "active": active, "recent": recent, "latencySeries": _latency_series(recent)}
        digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
        if digest == self._digest:
            return
        self._digest = digest
        changed = max([c["updatedAt"] for c in active + recent] + [self.latest.id + 1 if self.latest else 0])
        body["replica"] = {"startTime": self._started}
        snap = Snapshot(id=changed, data=json.dumps(body, separators=(",", ":")))
        self.latest = snap
        for queue in list(self._subscribers):
            _offer(queue, snap)


def _offer(queue: asyncio.Queue[Snapshot | None], item: Snapshot | None) -> None:
    """Keep only the newest item: a slow client skips snapshots instead of growing a backlog."""
    while True:
        try:
            queue.put_nowait(item)
            return
        except asyncio.QueueFull:
            try:
                queue.get_nowait()
            except asyncio.QueueEmpty:
                pass


def _last_event_id(request: web.Request) -> int:
    raw = request.headers.get("Last-Event-ID") or request.query.get("lastEventId") or ""
    try:
        return int(raw)
    except ValueError:
        return -1


async def events(request: web.Request, feed: LiveFeed) -> web.StreamResponse:
    """`GET /api/events`: Server-Sent Events of dashboard snapshots, with heartbeats."""
    resp = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
    )
    await resp.prepare(request)
    queue = feed.subscribe()
    try:
        await resp.write(b"retry: 2000\n\n")
        last = _last_event_id(request)
        if feed.latest is not None and feed.latest.id > last:
            await _send(resp, feed.latest)
            last = feed.latest.id
        while True:
            try:
                snap = await asyncio.wait_for(queue.get(), timeout=HEARTBEAT_S)
            except TimeoutError:
                await resp.write(f": ping {now_ms()}\n\n".encode())
                continue
            if snap is None:
                break
            if snap.id > last:
                await _send(resp, snap)
                last = snap.id
    except ConnectionResetError:
        pass  # the browser went away; it reconnects by itself with Last-Event-ID
    finally:
        feed.unsubscribe(queue)
    return resp


async def _send(resp: web.StreamResponse, snap: Snapshot) -> None:
    await resp.write(f"id: {snap.id}\nevent: snapshot\ndata: {snap.data}\n\n".encode())
