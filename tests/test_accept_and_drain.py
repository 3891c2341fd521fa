"""Open after the accept, and calls that outlive a stop: through the real webhook app, session
host, simulator and Azurite, time-scaled.

- The owner opens the control socket only once it hears the accept landed, so nothing depends on
  what the service answers a socket opened earlier (undocumented): 404 and 400 alike.
- A failed accept ends the reservation and records the call with the accept's error.
- The Function App's word that reached another replica is found in the store.
- One replica, SIGTERM, calls whose callers use tools: every call is served to its end.
- Every function call is answered exactly once while two replicas may hear it.
- A crashed background task is restarted; a replica whose heartbeat fails goes unready.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from callplane.handoff import AcceptOutcome
from callplane.store import leases
from session_host import keys
from session_host.ownership import Heartbeat
from session_host.session import SessionOptions
from simulator.scenario import load_scenario
from tests.stack import Stack, run_stack


@pytest.mark.parametrize("pre_accept_status", [404, 400])
async def test_the_socket_opens_only_after_the_accept(conn: str, pre_accept_status: int) -> None:
    async with run_stack(conn, time_scale=40, pre_accept_status=pre_accept_status) as stack:
        ids = [await stack.place("standard") for _ in range(3)]
        for call_id in ids:
            summary = await stack.wait_ended(call_id, timeout=60)
            assert summary["earlySockets"] == 0, "never tried before the accept"
            assert summary["socketOpens"] == 1 and summary["marks"]["greeting_requested"] is not None
            call = await stack.wait_call(call_id)
            assert call["status"] == "completed" and len(call["toolCalls"]) == 2


async def test_a_failed_accept_releases_the_reservation_and_records_why(conn: str) -> None:
    async with run_stack(conn) as stack:
        call_id = await stack.place("greeting_only", faults={"accept_status": 400})
        call = await stack.wait_call(call_id, timeout=20)
        assert call["status"] == "failed" and call["endReason"].startswith("accept failed: "), call
        summary = stack.sim.calls[call_id].summary()
        assert summary["socketOpens"] == 0 and summary["earlySockets"] == 0
        await asyncio.sleep(0.5)
        lease = await leases.get(stack.host_app[keys.TABLES], call_id)
        assert lease is not None and lease.ended, "reservation released: a tombstone, so no replay runs the call"


async def test_an_outcome_left_in_the_store_is_found_by_the_owner(conn: str) -> None:
    """The ingress sent the Function App's word to another replica, which left it in the store."""
    options = SessionOptions(reconnect_base_s=0.05, silence_timeout_s=60, wrap_up_s=1.0, accept_wait_s=30)
    async with run_stack(conn, options=options) as stack:
        # Stop the direct delivery: the session only learns through the store.
        from session_host.session import CallSession

        delivered: list[str] = []
        pending: list[asyncio.Future[None]] = []
        real = CallSession.accept_outcome

        def via_store_only(self: CallSession, outcome: AcceptOutcome) -> None:
            if not delivered:
                delivered.append(outcome.callId)
                pending.append(asyncio.ensure_future(leases.put_outcome(stack.host_app[keys.TABLES], outcome)))
                return
            real(self, outcome)

        CallSession.accept_outcome = via_store_only  # type: ignore[method-assign]
        try:
            started = time.monotonic()
            call_id = await stack.place("greeting_only")
            call = await stack.wait_call(call_id, timeout=20)
            assert call["status"] == "completed"
            assert time.monotonic() - started < 10, "found in the store, not after the 30 s wait"
            assert delivered == [call_id]
        finally:
            CallSession.accept_outcome = real  # type: ignore[method-assign]


async def test_one_replica_sigterm_serves_every_call_to_its_end(conn: str) -> None:
    """No peer to hand to: the drain must not stop answering tools (before, a tool call in flight
    went unanswered for the whole hand-over wait, then the call was cut)."""
    async with run_stack(conn, time_scale=6) as stack:
        ids = [await stack.place("standard") for _ in range(8)]
        for call_id in ids:
            await stack.wait_call(call_id, final=False)
        registry = stack.host_app[keys.REGISTRY]
        started = time.monotonic()
        await registry.drain(grace=40.0, wrap_up_before=5.0)
        assert time.monotonic() - started < 35, "ended with the calls, not at the grace period"
        for call_id in ids:
            sim_call = stack.sim.calls[call_id]
            assert sim_call.end_reason == "caller hung up", sim_call.end_reason
            assert len(sim_call.tool_outputs) == 2 and all(n == 1 for n in sim_call.outputs_per_function_call.values())
            call = await stack.wait_call(call_id)
            assert call["status"] == "completed" and len(call["toolCalls"]) == 2


async def test_answers_are_claimed_exactly_once(conn: str) -> None:
    async with run_stack(conn) as stack:
        tables = stack.host_app[keys.TABLES]
        results = await asyncio.gather(
            *(leases.claim_answer(tables, "rtc_x", "call_1", f"replica-{i}") for i in range(8))
        )
        assert sorted(results) == [False] * 7 + [True]
        assert await leases.claim_answer(tables, "rtc_x", "call_2", "replica-0") is True


async def test_a_crashed_background_task_is_restarted(conn: str) -> None:
    async with run_stack(conn, LEASE_TTL_SECONDS="1") as stack:
        heartbeat = stack.host_app[keys.HEARTBEAT]
        cls = type(heartbeat)
        real = cls.beat
        crashes = [1]

        async def flaky(self: Heartbeat) -> bool:
            if crashes:
                crashes.pop()
                raise RuntimeError("boom")
            return await real(self)

        cls.beat = flaky  # type: ignore[method-assign]
        try:
            await _crash_then_fail(stack, heartbeat, cls, failing_beat)
        finally:
            cls.beat = real  # type: ignore[method-assign]


async def failing_beat(self: Heartbeat) -> bool:
    return False


async def _crash_then_fail(stack: Stack, heartbeat: Heartbeat, cls: type[Heartbeat], failing: object) -> None:
    deadline = time.monotonic() + 10
    while stack.host_app[keys.RESTARTS].get("heartbeat", 0) < 1:
        assert time.monotonic() < deadline, "the crash was not noticed"
        await asyncio.sleep(0.1)
    before = heartbeat.last_ok_ms
    deadline = time.monotonic() + 10
    while heartbeat.last_ok_ms == before:
        assert time.monotonic() < deadline, "beating again after the restart"
        await asyncio.sleep(0.1)
    assert (await stack.api("/"))["taskRestarts"]["heartbeat"] == 1
    assert (await stack.api("/readyz"))["ready"] is True

    cls.beat = failing  # type: ignore[method-assign]
    deadline = time.monotonic() + 10
    while True:
        async with stack.http.get(f"{stack.host_url}/readyz") as resp:
            if resp.status == 503:
                assert (await resp.json())["checks"]["heartbeat"].startswith("stale")
                break
        assert time.monotonic() < deadline
        await asyncio.sleep(0.2)
    # A replica that is not ready takes no new calls.
    call = stack.sim.new_call(load_scenario("greeting_only"))
    await stack.sim.place_call(call)
    await asyncio.wait_for(call.ended.wait(), 20)
    assert call.summary()["socketOpens"] == 0 and call.rejected_with == 486
