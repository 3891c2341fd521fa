"""A hot standby per call, and failover with a function call in flight at the moment of the stop.

Replica A is a real `python -m session_host` process that gets every call; replica B is the test
stack's in-process host, which follows A's calls as their standby. The `tool_at_stop` scenario
holds each function call at a gate that the test opens at the moment it stops A, so the hard
moment is hit on every call, not by luck. The simulator drops events sent while no socket is
attached and fans every event out to all attached sockets."""

from __future__ import annotations

import asyncio
import signal
import time

import pytest

from callplane.store import leases
from session_host import keys
from session_host.ownership import LeaseTiming
from session_host.session import SessionOptions
from simulator.calls import SimCall
from tests.stack import Stack, run_stack, second_replica
from tests.test_ownership import TTL, live_on_a, two_replicas

pytestmark = pytest.mark.slow


async def held(stack: Stack, ids: list[str], gate: int, *, standby: bool) -> list[SimCall]:
    """Wait until each call's function call waits at `gate` (and, with `standby`, a second socket
    follows it)."""
    calls = [stack.sim.calls[i] for i in ids]
    deadline = time.monotonic() + 30
    while not all(f"tool_held_{gate}" in c.marks and (not standby or c.socket_opens >= 2) for c in calls):
        assert time.monotonic() < deadline, [(c.marks.keys(), c.socket_opens) for c in calls]
        await asyncio.sleep(0.05)
    return calls


def open_gate(calls: list[SimCall], gate: int) -> None:
    for c in calls:
        c.gate(gate).set()


def answered_once(calls: list[SimCall]) -> None:
    for c in calls:
        assert c.function_calls_unanswered == 0, c.call_id
        assert c.function_calls_emitted == 2 and sorted(c.outputs_per_function_call.values()) == [1, 1], (
            c.outputs_per_function_call
        )


async def test_sigkill_the_standby_answers_the_function_call_in_flight(conn: str) -> None:
    async with two_replicas(conn) as (stack, replica_a, _):
        ids = [await stack.place("tool_at_stop") for _ in range(3)]
        await live_on_a(stack, ids)
        calls = await held(stack, ids, 1, standby=True)
        assert len(stack.host_app[keys.REGISTRY].followers) == 3, "B follows every call of A"
        replica_a.kill()
        killed_ms = time.time() * 1000
        open_gate(calls, 1)  # emitted after A died: only B's standby socket hears them
        for c in calls:
            await asyncio.wait_for(c.gate(1).wait(), 1)
            deadline = time.monotonic() + 10
            while not c.output_times:
                assert time.monotonic() < deadline, "the function call in flight was never answered"
                await asyncio.sleep(0.02)
        takeovers = [(min(c.output_times.values()) - killed_ms) / 1000 for c in calls]
        # The owner looks dead after three missed quick beats (0.75 s); a little slack for CI.
        assert max(takeovers) < 2.0, takeovers
        open_gate(calls, 2)
        replica_b = stack.host_app[keys.REPLICA]
        for c in calls:
            await stack.wait_ended(c.call_id, timeout=60)
            assert c.end_reason == "caller hung up"
            assert c.socket_opens == 2, "the takeover used the standby's socket: no new one"
            call = await stack.wait_call(c.call_id, timeout=30)
            assert call["status"] == "completed" and call["replica"] == replica_b
        answered_once(calls)


async def test_sigterm_with_a_function_call_in_flight_hands_over_exactly_once(conn: str) -> None:
    async with two_replicas(conn) as (stack, replica_a, _):
        ids = [await stack.place("tool_at_stop") for _ in range(4)]
        await live_on_a(stack, ids)
        calls = await held(stack, ids, 1, standby=True)
        open_gate(calls, 1)
        replica_a.send_signal(signal.SIGTERM)  # the function calls reach A while it hands over
        assert await asyncio.to_thread(replica_a.wait, 30) == 0
        open_gate(calls, 2)
        replica_b = stack.host_app[keys.REPLICA]
        for c in calls:
            await stack.wait_ended(c.call_id, timeout=60)
            assert c.end_reason == "caller hung up", "the caller noticed nothing"
            call = await stack.wait_call(c.call_id, timeout=30)
            assert call["status"] == "completed" and call["replica"] == replica_b
            turns = (await stack.api(f"/api/calls/{c.call_id}/transcript"))["transcript"]
            assert len(turns) == len(c.transcript), ([t["text"][:25] for t in turns], c.transcript)
        answered_once(calls)


async def test_without_a_standby_a_resumed_caller_hears_the_agent_within_the_ttl(conn: str) -> None:
    async with two_replicas(conn, STANDBY="false") as (stack, replica_a, _):
        ids = [await stack.place("tool_at_stop") for _ in range(2)]
        await live_on_a(stack, ids)
        calls = await held(stack, ids, 1, standby=False)
        assert all(c.socket_opens == 1 for c in calls), "no standby when switched off"
        replica_a.kill()
        killed_ms = time.time() * 1000
        open_gate(calls, 1)
        for c in calls:
            deadline = time.monotonic() + TTL + 5
            while not any(t > killed_ms for t in c.response_create_times):
                assert time.monotonic() < deadline, "the resumed call never spoke to the caller"
                await asyncio.sleep(0.02)
            heard_after = (min(t for t in c.response_create_times if t > killed_ms) - killed_ms) / 1000
            assert heard_after <= TTL + 1.5, heard_after
        open_gate(calls, 2)
        for c in calls:
            await stack.wait_ended(c.call_id, timeout=60)
            assert c.socket_opens == 2 and c.end_reason == "caller hung up"


async def test_one_replica_sigterm_serves_the_function_call_in_flight(conn: str) -> None:
    options = SessionOptions(reconnect_base_s=0.05, wrap_up_s=0.5, lease=LeaseTiming(ttl_s=1.5, sweep_s=0.3))
    async with run_stack(conn, time_scale=4, options=options) as stack:
        ids = [await stack.place("tool_at_stop") for _ in range(3)]
        calls = await held(stack, ids, 1, standby=False)
        registry = stack.host_app[keys.REGISTRY]
        open_gate(calls, 1)
        drain = asyncio.ensure_future(registry.drain(grace=60.0, wrap_up_before=5.0, handover_wait=0.8))
        await asyncio.sleep(0.5)
        open_gate(calls, 2)
        await asyncio.wait_for(drain, 60)
        for c in calls:
            assert c.end_reason == "caller hung up", "served to its natural end"
            call = await stack.wait_call(c.call_id, timeout=30)
            assert call["status"] == "completed" and call["endReason"] == "caller hung up"
        answered_once(calls)


async def standbys_of(stack: Stack, ids: list[str]) -> dict[str, str]:
    got = {}
    for call_id in ids:
        lease = await leases.get(stack.host_app[keys.LANE], call_id)
        got[call_id] = lease.standby if lease is not None else ""
    return got


async def test_a_standby_that_stops_is_replaced(conn: str) -> None:
    async with two_replicas(conn) as (stack, _, _):
        b = stack.host_app[keys.REPLICA]
        async with second_replica(stack) as (c_app, _):
            c = c_app[keys.REPLICA]
            ids: list[str] = []
            named: dict[str, str] = {}
            deadline = time.monotonic() + 40
            # Calls are spread over the live peers by id: place them until C stands by for some.
            while c not in named.values():
                assert len(ids) < 20 and time.monotonic() < deadline, named
                ids.append(await stack.place("tool_at_stop"))
                await held(stack, ids, 1, standby=True)
                named = await standbys_of(stack, ids)
            assert set(named.values()) <= {b, c}
            on_c = [i for i, who in named.items() if who == c]
            assert all(i in c_app[keys.REGISTRY].followers for i in on_c)
        # C stopped: A names B for those calls, and B follows them.
        deadline = time.monotonic() + 10
        while set((await standbys_of(stack, ids)).values()) != {b}:
            assert time.monotonic() < deadline, await standbys_of(stack, ids)
            await asyncio.sleep(0.1)
        while not all(i in stack.host_app[keys.REGISTRY].followers for i in ids):
            assert time.monotonic() < deadline, "B follows every call"
            await asyncio.sleep(0.1)
        calls = [stack.sim.calls[i] for i in ids]
        open_gate(calls, 1)
        open_gate(calls, 2)
        for call in calls:
            await stack.wait_ended(call.call_id, timeout=60)
        answered_once(calls)
