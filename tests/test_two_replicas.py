"""Two session-host replicas on one Azurite: a call run by replica A shows up on replica B's
SSE stream within 2 s, and Last-Event-ID resumes on B without replaying what was seen."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from simulator.azurite import free_port
from simulator.readiness import wait_healthy
from tests.stack import run_stack

ROOT = Path(__file__).resolve().parent.parent


async def read_snapshots(resp: aiohttp.ClientResponse, out: list[tuple[float, int, dict[str, Any]]]) -> None:
    event_id = None
    async for raw in resp.content:
        line = raw.decode().rstrip("\r\n")
        if line.startswith("id: "):
            event_id = int(line[4:])
        elif line.startswith("data: "):
            out.append((time.monotonic(), event_id or 0, json.loads(line[6:])))


async def test_call_on_replica_a_reaches_replica_b_within_2s(conn: str) -> None:
    async with run_stack(conn, time_scale=20) as stack:
        port_b = free_port()
        env = {
            **os.environ,
            "OPENAI_API_KEY": stack.settings.openai_api_key,
            "HANDOFF_SECRET": stack.settings.handoff_secret,
            "STORAGE_CONNECTION_STRING": conn,
            "TABLE_PREFIX": stack.settings.table_prefix,
            "PORT": str(port_b),
            "LOG_FORMAT": "json",
            "SHUTDOWN_GRACE_SECONDS": "1",
        }
        replica_b = subprocess.Popen(
            [sys.executable, "-m", "session_host"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        url_b = f"http://127.0.0.1:{port_b}"
        try:
            await wait_healthy(stack.http, url_b)
            snaps: list[tuple[float, int, dict[str, Any]]] = []
            async with stack.http.get(f"{url_b}/api/events") as resp:
                assert resp.headers["Content-Type"] == "text/event-stream"
                reader = asyncio.create_task(read_snapshots(resp, snaps))
                call_id = await stack.place("greeting_only")  # runs on replica A (the stack's host)
                ended = stack.sim.calls[call_id].ended
                await asyncio.wait_for(ended.wait(), 30)
                await stack.wait_call(call_id)  # A has written the final record
                stored_at = time.monotonic()

                def seen_final() -> float | None:
                    for t, _, snap in snaps:
                        if any(c["callId"] == call_id and c["status"] == "completed" for c in snap["recent"]):
                            return t
                    return None

                deadline = stored_at + 5
                while seen_final() is None and time.monotonic() < deadline:
                    await asyncio.sleep(0.05)
                seen = seen_final()
                assert seen is not None, "replica B never showed the call"
                assert seen - stored_at <= 2.0
                assert any(c["callId"] == call_id for _, _, s in snaps for c in s["active"] + s["recent"])
                reader.cancel()
            await asyncio.sleep(2.5)  # let the rollup and index settle: the feed goes quiet
            latest: list[tuple[float, int, dict[str, Any]]] = []
            async with stack.http.get(f"{url_b}/api/events") as resp:
                task = asyncio.create_task(read_snapshots(resp, latest))
                await asyncio.sleep(0.5)
                task.cancel()
            last_id = latest[-1][1]
            # Resume on B with the last id: nothing new is replayed, only heartbeats would follow.
            again: list[tuple[float, int, dict[str, Any]]] = []
            async with stack.http.get(f"{url_b}/api/events", headers={"Last-Event-ID": str(last_id)}) as resp:
                task = asyncio.create_task(read_snapshots(resp, again))
                await asyncio.sleep(1.2)
                task.cancel()
            assert again == []
            # And an older id gets the current snapshot straight away.
            async with stack.http.get(f"{url_b}/api/events", headers={"Last-Event-ID": str(last_id - 1)}) as resp:
                task = asyncio.create_task(read_snapshots(resp, again))
                await asyncio.sleep(0.5)
                task.cancel()
            assert [i for _, i, _ in again] == [last_id]
        finally:
            replica_b.terminate()
            replica_b.wait(15)
