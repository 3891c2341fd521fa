"""Azurite frozen for 30 s (SIGSTOP, then SIGCONT; an in-memory Azurite loses everything on a
restart) in the middle of live calls: the calls go on, and afterwards no call record, no
transcript turn and no rollup count is missing or doubled."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

from callplane.clock import now_ms
from callplane.store.models import CallRecord, CallStatus
from callplane.store.writer import StoreWriter
from session_host import keys
from simulator.azurite import start_azurite
from tests.stack import run_stack

pytestmark = pytest.mark.slow


async def test_thirty_second_freeze_loses_nothing() -> None:
    azurite = start_azurite()
    try:
        async with run_stack(azurite.connection_string, time_scale=4) as stack:
            ids = [await stack.place("standard", caller=f"+1425555{i:04d}") for i in range(6)]
            for call_id in ids:  # every call accepted and live before the freeze
                await stack.wait_call(call_id, final=False)
            writer = stack.host_app[keys.WRITER]
            os.kill(azurite.proc.pid, signal.SIGSTOP)
            frozen_at = time.monotonic()
            held = 0
            try:
                ended = [stack.sim.calls[c].ended.wait() for c in ids]
                await asyncio.wait_for(asyncio.gather(*ended), timeout=28)  # calls go on meanwhile
                assert time.monotonic() - frozen_at < 29
                while time.monotonic() - frozen_at < 30:
                    held = max(held, writer.pending)
                    await asyncio.sleep(0.5)
            finally:
                os.kill(azurite.proc.pid, signal.SIGCONT)
            # While frozen, the final records of the six calls could only wait in memory.
            assert held >= 6, held
            for call_id in ids:
                call = await stack.wait_call(call_id, timeout=90)
                assert call["status"] == "completed", call
                assert len(call["toolCalls"]) == 2
                expected = len(stack.sim.calls[call_id].transcript)
                deadline = time.monotonic() + 30
                while True:
                    turns = (await stack.api(f"/api/calls/{call_id}/transcript"))["transcript"]
                    if len(turns) >= expected or time.monotonic() > deadline:
                        break
                    await asyncio.sleep(0.5)
                assert len(turns) == expected == 7, (call_id, len(turns), expected)
            await asyncio.sleep(1.5)
            stats = await stack.api("/api/stats")
            assert stats["totalCalls"] == 6 and stats["completedCalls"] == 6 and stats["activeCalls"] == 0
            assert stats["totalToolCalls"] == 12
            assert writer.stats.dropped_turns == 0
    finally:
        azurite.stop()


async def test_closing_the_writer_mid_flush_loses_nothing(conn: str) -> None:
    """Shutdown cancels the writer's loop; a flush it had begun (its batch already taken out of
    the buffer) must still reach the store, or calls that ended just before a deploy vanish."""
    async with run_stack(conn) as stack:
        writer = StoreWriter(stack.host_app[keys.TABLES])
        writer.start()
        now = now_ms()
        calls = [
            CallRecord(
                callId=f"rtc_close{i}",
                startTime=now,
                endTime=now + 1,
                duration=1,
                status=CallStatus.COMPLETED,
                updatedAt=now,
            )
            for i in range(40)
        ]
        for call in calls:
            writer.put_call(call, urgent=True)
        while writer.stats.flushes == 0:  # the loop has begun its flush
            await asyncio.sleep(0)
        for _ in range(3):  # and is waiting on the store
            await asyncio.sleep(0)
        await writer.close()
        reader = stack.host_app[keys.READER]
        missing = [c.callId for c in calls if await reader.get_call(c.callId) is None]
        assert missing == [], missing
        listed = {c["callId"] for c in (await stack.api("/api/calls?limit=100"))["calls"]}
        assert {c.callId for c in calls} <= listed
