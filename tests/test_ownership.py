"""Calls that never drop: two real session-host replicas on one Azurite.

Replica A is a `python -m session_host` process that the webhook hands calls to; replica B is the
in-process host of the test stack, which only ever gets calls by taking them over. Covers
hand-over on SIGTERM, resume after SIGKILL, the sweeper for calls gone while unowned, admission
at capacity (486 and overflow REFER), the hand-off deadline, and a duplicate hand-off to both."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from callplane import signing
from callplane.clock import now_ms
from callplane.handoff import HandoffRequest
from session_host import keys
from session_host.ownership import LeaseTiming
from session_host.session import SessionOptions
from simulator.azurite import free_port
from simulator.readiness import wait_healthy
from tests.stack import Stack, run_stack

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "artifacts"
TTL = 1.5
B_OPTIONS = SessionOptions(reconnect_base_s=0.05, lease=LeaseTiming(ttl_s=TTL, sweep_s=0.3))


@asynccontextmanager
async def two_replicas(conn: str, **env: str) -> AsyncIterator[tuple[Stack, subprocess.Popen[bytes], str]]:
    port_a = free_port()
    url_a = f"http://127.0.0.1:{port_a}"
    async with run_stack(conn, time_scale=4, options=B_OPTIONS, SESSION_HOST_URL=url_a, **env) as stack:
        s = stack.settings
        proc_env = {
            **os.environ,
            "OPENAI_API_KEY": s.openai_api_key,
            "HANDOFF_SECRET": s.handoff_secret,
            "OPENAI_BASE": s.openai_base,
            "REALTIME_WS_BASE": s.realtime_ws_base,
            "REALTIME_DIALECT": s.dialect.value,
            "STORAGE_CONNECTION_STRING": conn,
            "TABLE_PREFIX": s.table_prefix,
            "PORT": str(port_a),
            "LOG_FORMAT": "json",
            "LEASE_TTL_SECONDS": str(TTL),
            "SHUTDOWN_GRACE_SECONDS": "20",
            **env,
        }
        # Replica A's own log, kept beside the screenshots: a failed takeover is read from it.
        ARTIFACTS.mkdir(exist_ok=True)
        log_a = open(os.environ.get("REPLICA_A_LOG", ARTIFACTS / "replica-a.log"), "ab")  # noqa: SIM115
        replica_a = subprocess.Popen(
            [sys.executable, "-m", "session_host"], cwd=ROOT, env=proc_env, stdout=log_a, stderr=subprocess.STDOUT
        )
        try:
            await wait_healthy(stack.http, url_a)
            yield stack, replica_a, url_a
        finally:
            if replica_a.poll() is None:
                replica_a.kill()
            replica_a.wait(10)
            log_a.close()


async def live_on_a(stack: Stack, ids: list[str]) -> None:
    for call_id in ids:
        deadline = time.monotonic() + 10
        while stack.sim.calls[call_id].socket_opens < 1 or "greeting_requested" not in stack.sim.calls[call_id].marks:
            assert time.monotonic() < deadline, "call never reached replica A"
            await asyncio.sleep(0.05)


async def check_whole(stack: Stack, call_id: str, replica_b: str) -> dict[str, object]:
    call = await stack.wait_call(call_id, timeout=60)
    sim = stack.sim.calls[call_id]
    assert call["status"] == "completed", call
    assert call["replica"] == replica_b
    assert sim.socket_opens == 2, "a second socket attached to the same call"
    assert len(sim.tool_outputs) == 2 and len(call["toolCalls"]) == 2, "each tool ran exactly once"  # type: ignore[arg-type]
    turns = (await stack.api(f"/api/calls/{call_id}/transcript"))["transcript"]
    assert len(turns) == len(sim.transcript) == 7, ([t["text"][:30] for t in turns], sim.transcript)
    return call


async def test_sigterm_hands_live_calls_to_the_peer(conn: str) -> None:
    async with two_replicas(conn) as (stack, replica_a, _):
        ids = [await stack.place("standard") for _ in range(4)]
        await live_on_a(stack, ids)
        replica_a.send_signal(signal.SIGTERM)
        for call_id in ids:
            await stack.wait_ended(call_id, timeout=60)
        assert await asyncio.to_thread(replica_a.wait, 30) == 0, "A exits cleanly once its calls are handed over"
        replica_b = stack.host_app[keys.REPLICA]
        for call_id in ids:
            await check_whole(stack, call_id, replica_b)
            assert stack.sim.calls[call_id].end_reason == "caller hung up", "the caller noticed nothing"


async def test_sigkill_calls_resume_on_the_peer(conn: str) -> None:
    async with two_replicas(conn) as (stack, replica_a, _):
        ids = [await stack.place("standard") for _ in range(3)]
        await live_on_a(stack, ids)
        for call_id in ids:  # the greeting at least has been heard on every call
            while not stack.sim.calls[call_id].transcript:
                await asyncio.sleep(0.05)
        # What the callers heard up to here is more than a second old when A dies: stored (in the
        # active row's tail if not yet in the call's partition), so the peer must keep all of it.
        heard = {call_id: list(stack.sim.calls[call_id].transcript) for call_id in ids}
        assert any(heard.values())
        await asyncio.sleep(1.5)
        killed = time.monotonic()
        replica_a.kill()
        resumed_after = []
        for call_id in ids:
            sim = stack.sim.calls[call_id]
            while sim.socket_opens < 2:
                assert time.monotonic() - killed < 15, "not resumed"
                await asyncio.sleep(0.05)
            resumed_after.append(time.monotonic() - killed)
        assert max(resumed_after) <= TTL + 2.0, resumed_after
        replica_b = stack.host_app[keys.REPLICA]
        for call_id in ids:
            await stack.wait_ended(call_id, timeout=60)
            call = await stack.wait_call(call_id, timeout=60)
            assert call["status"] == "completed" and call["replica"] == replica_b
            stored = [t["text"] for t in (await stack.api(f"/api/calls/{call_id}/transcript"))["transcript"]]
            assert all(text in stored for _, text in heard[call_id]), (heard[call_id], stored)


async def test_sweeper_finalises_a_call_that_ended_while_unowned(conn: str) -> None:
    async with two_replicas(conn) as (stack, replica_a, _):
        call_id = await stack.place("standard")
        await live_on_a(stack, [call_id])
        replica_a.kill()
        await stack.sim.end_call(stack.sim.calls[call_id], "caller hung up while nobody listened")
        call = await stack.wait_call(call_id, timeout=20)
        assert call["status"] == "failed" and call["endReason"] == "call gone while its replica was away"
        await asyncio.sleep(1.0)
        assert (await stack.api("/api/stats"))["activeCalls"] == 0


async def test_duplicate_handoff_to_both_replicas_runs_once(conn: str) -> None:
    async with two_replicas(conn) as (stack, _, url_a):
        call_id = await stack.place("standard")
        await live_on_a(stack, [call_id])
        call = stack.sim.calls[call_id]
        body = HandoffRequest(callId=call_id, webhookId="wh_dup", receivedAt=int(time.time() * 1000)).body()

        async def hand(url: str) -> int:
            headers = {"content-type": "application/json", **signing.sign_headers(stack.settings.handoff_secret, body)}
            async with stack.http.post(f"{url}/internal/calls", data=body, headers=headers) as resp:
                return resp.status

        assert sorted(await asyncio.gather(hand(url_a), hand(stack.host_url))) == [200, 409]
        await stack.wait_ended(call_id, timeout=60)
        assert call.acting_sockets == 1, "one replica acted; the other at most listened as the standby"
        assert len(call.tool_outputs) == 2 and len(call.tool_round_trips) == 2


async def test_full_replicas_reject_busy_or_overflow(conn: str) -> None:
    async with run_stack(conn, time_scale=4, MAX_CALLS_PER_REPLICA="1") as stack:
        first = await stack.place("standard")
        await stack.wait_call(first, final=False)
        busy = await stack.place("greeting_only")
        summary = await stack.wait_ended(busy)
        assert summary["rejectedWith"] == 486 and summary["socketOpens"] == 0
        call = await stack.wait_call(busy)
        assert call["status"] == "rejected" and "486" in call["endReason"]
        # Once a sweep has seen that no peer has room, the full replica says the fleet is full:
        # the Function App then refuses without asking again.
        body = HandoffRequest(callId="rtc_another", webhookId="wh_full", receivedAt=now_ms()).body()
        said: dict[str, object] = {}
        for _ in range(50):
            headers = {"content-type": "application/json", **signing.sign_headers(stack.settings.handoff_secret, body)}
            async with stack.http.post(f"{stack.host_url}/internal/calls", data=body, headers=headers) as resp:
                assert resp.status == 503
                said = await resp.json()
            if said.get("fleetFull"):
                break
            await asyncio.sleep(0.1)
        assert said == {"error": "at capacity", "fleetFull": True}
    async with run_stack(
        conn, time_scale=4, MAX_CALLS_PER_REPLICA="1", OVERFLOW_TARGET_URI="tel:+18005550000"
    ) as stack:
        first = await stack.place("standard")
        await stack.wait_call(first, final=False)
        over = await stack.place("greeting_only")
        summary = await stack.wait_ended(over)
        assert summary["referredTo"] == "tel:+18005550000"
        call = await stack.wait_call(over)
        assert call["status"] == "rejected" and "overflow" in call["endReason"]


async def test_an_ended_call_frees_its_room_before_its_end_is_stored(conn: str) -> None:
    """A call that ended no longer takes room while its lease tombstone is on the way (it gathers
    with others for a moment, and a slow store takes longer): the next caller on a full replica
    is admitted, and a duplicate hand-off of the ended call is still not run again."""
    async with run_stack(conn, time_scale=4, MAX_CALLS_PER_REPLICA="1") as stack:
        registry = stack.host_app[keys.REGISTRY]
        first = await stack.place("greeting_only")
        await stack.wait_call(first, final=False)
        keeper = registry.sessions[first].keeper
        assert keeper is not None
        # The store is slow to take the tombstone: hold the call's lease operations.
        await keeper._lock.acquire()
        try:
            await stack.wait_ended(first)
            for _ in range(100):
                if first in registry.ending:
                    break
                await asyncio.sleep(0.02)
            assert first in registry.sessions and first in registry.ending, "the call's end is not being stored"
            body = HandoffRequest(callId=first, webhookId="wh_again", receivedAt=now_ms()).body()
            headers = {"content-type": "application/json", **signing.sign_headers(stack.settings.handoff_secret, body)}
            async with stack.http.post(f"{stack.host_url}/internal/calls", data=body, headers=headers) as resp:
                assert resp.status == 200 and (await resp.json())["status"] == "already running here"
            second = await stack.place("greeting_only")
            summary = await stack.wait_ended(second)
            assert summary["rejectedWith"] is None and summary["socketOpens"] >= 1, summary
        finally:
            keeper._lock.release()
        for _ in range(100):
            if first not in registry.sessions:
                break
            await asyncio.sleep(0.05)
        assert first not in registry.sessions and not registry.ending
        assert (await stack.wait_call(first))["status"] == "completed"


async def test_handoff_deadline_refuses_instead_of_leaving_silence(conn: str) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    async with run_stack(conn, SESSION_HOST_URL=dead) as stack:
        started = time.monotonic()
        call_id = await stack.place("greeting_only")
        summary = await stack.wait_ended(call_id, timeout=20)
        assert summary["rejectedWith"] == 486 and summary["state"] == "ended"
        assert time.monotonic() - started < 8
        call = await stack.wait_call(call_id)
        assert call["status"] == "rejected"
        assert json.dumps(call)  # stored and listed
