"""One replica holds many live calls at once: each keeps a control socket open for its whole life,
so nothing in the path may cap them (aiohttp's client pool defaults to 100 connections)."""

from __future__ import annotations

import asyncio

from simulator.scenario import load_scenario
from tests.stack import run_stack

CALLS = 130


async def test_more_than_a_hundred_calls_live_on_one_replica_at_once(conn: str) -> None:
    # 200 s of caller patience at time scale 20 = 10 s: every call is still live when the last attaches.
    long_call = load_scenario("greeting_only").model_copy(update={"hangup_after_ms": 200_000})
    async with run_stack(conn, time_scale=20, MAX_CALLS_PER_REPLICA=str(CALLS + 10)) as stack:
        calls = [stack.sim.new_call(long_call) for _ in range(CALLS)]
        await asyncio.gather(*(stack.sim.place_call(c) for c in calls))
        await asyncio.wait_for(asyncio.gather(*(c.ws_ready.wait() for c in calls)), timeout=8)
        live = sum(1 for c in calls if c.sockets and not c.sockets[-1].closed and not c.ended.is_set())
        assert live == CALLS, f"only {live} of {CALLS} calls had a live control socket at once"
        await asyncio.wait_for(asyncio.gather(*(c.ended.wait() for c in calls)), timeout=30)
        assert {c.end_reason for c in calls} == {"caller hung up"}
