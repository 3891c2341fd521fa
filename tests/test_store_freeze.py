"""Azurite frozen for 30 s (SIGSTOP, then SIGCONT; an in-memory Azurite loses everything on a
restart) in the middle of live calls: the calls go on, and afterwards no call record, no
transcript turn and no rollup count is missing or doubled."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

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
