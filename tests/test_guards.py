"""Call-ending guards and the SIGTERM drain with no peer to hand calls to."""

from __future__ import annotations

import asyncio

from session_host import keys
from session_host.ownership import LeaseTiming
from session_host.session import SessionOptions
from tests.stack import run_stack


async def test_max_duration_wraps_up_politely(conn: str) -> None:
    options = SessionOptions(reconnect_base_s=0.05, wrap_up_s=0.5)
    async with run_stack(conn, time_scale=4, options=options, MAX_CALL_SECONDS="1.5") as stack:
        call_id = await stack.place("standard")
        summary = await stack.wait_ended(call_id, timeout=30)
        assert summary["marks"].get("hangup") is not None, "we hung up, the caller did not"
        call = await stack.wait_call(call_id)
        assert call["status"] == "completed"
        assert call["endReason"] == "assistant ended the call: max call duration reached"
        assert 1500 <= call["duration"] < 6000


async def test_sigterm_without_a_peer_keeps_the_call_then_wraps_up(conn: str) -> None:
    options = SessionOptions(reconnect_base_s=0.05, wrap_up_s=0.5, lease=LeaseTiming(ttl_s=1.5, sweep_s=0.3))
    async with run_stack(conn, time_scale=4, options=options) as stack:
        call_id = await stack.place("standard")
        await stack.wait_call(call_id, final=False)
        await asyncio.sleep(1.0)
        registry = stack.host_app[keys.REGISTRY]
        await registry.drain(grace=3.0, wrap_up_before=1.0, handover_wait=0.8)
        assert len(registry) == 0
        call = await stack.wait_call(call_id)
        assert call["status"] == "completed"
        assert call["endReason"] == "assistant ended the call: replica shutting down"
        assert stack.sim.calls[call_id].socket_opens == 1, "nobody took it over; it stayed here"


async def test_the_sessions_own_time_cap_wraps_up_before_it(conn: str) -> None:
    """The session's `expires_at` (in `session.created`) is read, and the call ends politely ahead of it."""
    options = SessionOptions(reconnect_base_s=0.05, wrap_up_s=0.5)
    async with run_stack(conn, time_scale=4, options=options) as stack:
        stack.sim.config.session_seconds = 3  # wrap-up starts 3 x wrap_up_s = 1.5 s before the cap
        call_id = await stack.place("standard")
        summary = await stack.wait_ended(call_id, timeout=30)
        assert summary["marks"].get("hangup") is not None, "we hung up, the caller did not"
        call = await stack.wait_call(call_id)
        assert call["endReason"] == "assistant ended the call: realtime session time cap"
        assert call["duration"] < 4000


async def test_one_clock_guards_every_call_and_each_ends_on_its_own_time(conn: str) -> None:
    """Calls started at different moments each reach the maximum duration from their own start,
    all watched by one timer task (not one per call), which stops once no call is left."""
    options = SessionOptions(reconnect_base_s=0.05, wrap_up_s=0.5)
    async with run_stack(conn, time_scale=4, options=options, MAX_CALL_SECONDS="1.5") as stack:
        first = await stack.place("standard")
        await asyncio.sleep(0.8)
        second = await stack.place("standard")
        await stack.wait_call(second, final=False)
        await asyncio.sleep(0.2)
        clocks = [t for t in asyncio.all_tasks() if t.get_name() == "guard-clock"]
        assert len(clocks) == 1 and not clocks[0].done()
        calls = [await stack.wait_call(call_id) for call_id in (first, second)]
        for call in calls:
            assert call["endReason"] == "assistant ended the call: max call duration reached"
            assert 1500 <= call["duration"] < 4000, call["duration"]
        assert calls[1]["endTime"] - calls[0]["endTime"] >= 500, "the second call was ended on the first one's clock"
        await asyncio.sleep(0.6)
        assert clocks[0].done(), "the clock runs on with no call to guard"
