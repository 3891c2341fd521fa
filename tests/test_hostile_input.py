"""Hostile input and store faults, through real HTTP against the running apps and Azurite: nothing
poisons the store, nothing strands a call, every failure answers clearly."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import pytest

from callplane import signing
from callplane.clock import now_ms
from callplane.handoff import HANDOFF_PATH, HandoffRequest, SipHeader
from callplane.redact import mask_phone, redact
from callplane.store import leases
from callplane.store.models import CallRecord, CallStatus
from session_host import keys
from session_host.insights import summarize
from simulator.calls import SimCall
from simulator.scenario import load_scenario
from tests.stack import Stack, run_stack, second_replica

HOSTILE_IDS = ["rtc/a", "rtc#a", "rtc?a", "rtc\x01a", ".", "..", "r" * 201, "rtc a", "rtc\\a"]


def incoming(call_id: str, sip: list[dict[str, str]] | None = None) -> bytes:
    headers = sip or [{"name": "From", "value": "<sip:+15550001111@x.example>"}]
    return json.dumps(
        {
            "object": "event",
            "id": "evt_hostile",
            "type": "realtime.call.incoming",
            "created_at": int(time.time()),
            "data": {"call_id": call_id, "sip_headers": headers},
        }
    ).encode()


async def post_webhook(stack: Stack, body: bytes, msg_id: str | None = None) -> tuple[int, dict[str, Any]]:
    headers = signing.sign_headers(stack.sim.config.webhook_secret, body, msg_id=msg_id)
    async with stack.http.post(stack.webhook_url, data=body, headers=headers) as resp:
        return resp.status, await resp.json()


async def post_handoff(stack: Stack, body: bytes) -> tuple[int, dict[str, Any]]:
    headers = {"content-type": "application/json", **signing.sign_headers(stack.settings.handoff_secret, body)}
    async with stack.http.post(stack.host_url + HANDOFF_PATH, data=body, headers=headers) as resp:
        return resp.status, await resp.json()


async def dedupe_rows(stack: Stack) -> list[str]:
    tables = stack.host_app[keys.TABLES]
    return await tables.webhooks.query("PartitionKey ne @x", {"x": ""}, parse=lambda e: str(e["PartitionKey"]))


@pytest.mark.parametrize("bad", HOSTILE_IDS, ids=lambda v: repr(v)[:12])
async def test_a_hostile_call_id_is_refused_before_anything_is_claimed(conn: str, bad: str) -> None:
    async with run_stack(conn) as stack:
        sim_call = SimCall(call_id=bad, scenario=load_scenario("greeting_only"), caller="+15550001111")
        stack.sim.calls[bad] = sim_call
        status, doc = await post_webhook(stack, incoming(bad), msg_id="wh_hostile1")
        assert status == 400 and "call id" in doc["error"], doc
        assert await dedupe_rows(stack) == [], "nothing claimed"
        assert sim_call.accept_body is None and sim_call.marks.get("accept") is None
        # The service's retry of the same delivery, now with a good call id, still works.
        good = stack.sim.new_call(load_scenario("greeting_only"))
        status, doc = await post_webhook(stack, incoming(good.call_id), msg_id="wh_hostile1")
        assert status == 200 and doc.get("accepted") is True, doc
        await stack.wait_call(good.call_id)
        listed = await stack.api("/api/calls")
        assert [c["callId"] for c in listed["calls"]] == [good.call_id]


@pytest.mark.parametrize("bad", ["wh/1", "wh#1", "x" * 300, "wh 1"])
async def test_a_hostile_webhook_id_is_a_clear_400_not_a_503(conn: str, bad: str) -> None:
    async with run_stack(conn) as stack:
        call = stack.sim.new_call(load_scenario("greeting_only"))
        status, doc = await post_webhook(stack, incoming(call.call_id), msg_id=bad)
        assert status == 400 and "webhook-id" in doc["error"], doc
        assert await dedupe_rows(stack) == []


async def test_hostile_ids_in_a_signed_hand_off_and_in_api_paths(conn: str) -> None:
    async with run_stack(conn) as stack:
        for bad in HOSTILE_IDS:
            body = json.dumps({"callId": bad, "webhookId": "wh_1", "receivedAt": now_ms(), "sipHeaders": []}).encode()
            status, doc = await post_handoff(stack, body)
            assert status == 400 and "callId" in doc["error"], (bad, doc)
        for bad in ("rtc%2Fa", "rtc%23a", "..%2F..", "%2E%2E", "r" * 200):
            async with stack.http.get(f"{stack.host_url}/api/calls/{bad}") as resp:
                assert resp.status in (400, 404) and resp.content_type == "application/json", (bad, resp.status)
        assert stack.host_app[keys.WRITER].stats.set_aside == 0, "nothing hostile reached the writer"


async def test_the_writer_sets_aside_what_the_store_refuses_and_writes_the_rest(conn: str) -> None:
    async with run_stack(conn, time_scale=40) as stack:
        writer = stack.host_app[keys.WRITER]
        now = now_ms()
        # Bypass every entry check: the last line of defence is the writer itself.
        for bad in ("rtc/poison", "rtc#poison", "rtc\x07poison"):
            writer.put_call(CallRecord(callId=bad, startTime=now, status=CallStatus.COMPLETED, updatedAt=now))
        ids = [await stack.place("greeting_only") for _ in range(3)]
        for call_id in ids:
            call = await stack.wait_call(call_id)
            assert call["status"] == "completed"
        listed = [c["callId"] for c in (await stack.api("/api/calls?limit=50"))["calls"]]
        assert sorted(listed) == sorted(ids), listed
        assert writer.stats.set_aside >= 3 and writer.pending == 0
        info = await stack.api("/")
        assert info["store"]["set_aside"] >= 3


async def test_a_replayed_hand_off_never_touches_a_finished_call(conn: str) -> None:
    async with run_stack(conn) as stack:
        call_id = await stack.place("greeting_only")
        done = await stack.wait_call(call_id)
        stats = await stack.api("/api/stats")
        req = HandoffRequest(callId=call_id, webhookId="wh_replay", receivedAt=now_ms() - 2000, sipHeaders=[])
        status, doc = await post_handoff(stack, req.body())
        assert status == 200 and doc["status"] == "already ended", doc
        stale = HandoffRequest(callId=call_id, webhookId="wh_replay", receivedAt=now_ms() - 120_000)
        status, doc = await post_handoff(stack, stale.body())
        assert status == 409 and "stale" in doc["error"]
        await asyncio.sleep(1.5)
        assert await stack.api(f"/api/calls/{call_id}") == done
        after = await stack.api("/api/stats")
        assert after["totalCalls"] == stats["totalCalls"] == 1 and after["failedCalls"] == 0


async def test_large_sip_headers_and_lone_surrogates_reach_the_session(conn: str) -> None:
    async with run_stack(conn) as stack:
        call = stack.sim.new_call(load_scenario("greeting_only"))
        sip = [
            {"name": "From", "value": "<sip:+15550001111@x.example>"},
            {"name": "X-Big", "value": "MARK" + "v" * (900 * 1024)},
        ]
        body = incoming(call.call_id, sip).replace(b"MARK", b"\\ud800", 1)  # a lone surrogate, JSON-escaped
        assert len(body) > 64 * 1024
        status, doc = await post_webhook(stack, body)
        assert status == 200 and doc.get("accepted") is True, doc
        stored = await stack.wait_call(call.call_id)
        assert stored["status"] == "completed", stored


async def test_tables_that_vanish_are_created_again(conn: str) -> None:
    async with run_stack(conn) as stack:
        first = await stack.place("greeting_only")
        await stack.wait_call(first)
        tables = stack.host_app[keys.TABLES]
        for ops in tables.all():
            await tables.run(lambda name=ops.table_name: tables.service.delete_table(name))  # type: ignore[misc]
        # The webhook app, the session host and the admin API all repair the store on first use.
        second = await stack.place("greeting_only")
        call = await stack.wait_call(second, timeout=30)
        assert call["status"] == "completed"
        listed = await stack.api("/api/calls")
        assert [c["callId"] for c in listed["calls"]] == [second], "listed again: the bucket row was rewritten"
        stats = await stack.wait_stats(lambda s: s["completedCalls"] >= 1)
        assert stats["totalCalls"] == stats["completedCalls"] == 1, stats
        assert stack.host_app[keys.WRITER].stats.store_resets >= 1


async def test_an_unreachable_store_answers_503_json_and_the_replica_goes_unready() -> None:
    from simulator.azurite import start_azurite

    azurite = start_azurite()
    try:
        async with run_stack(azurite.connection_string, LEASE_TTL_SECONDS="1") as stack:
            assert (await stack.api("/readyz"))["ready"] is True
            azurite.stop()
            async with stack.http.get(f"{stack.host_url}/api/calls") as resp:
                assert resp.status == 503 and resp.headers["Retry-After"] == "5"
                doc = await resp.json()
                assert "store is unavailable" in doc["error"] and "Traceback" not in json.dumps(doc)
            deadline = time.monotonic() + 10
            while True:
                async with stack.http.get(f"{stack.host_url}/readyz") as resp:
                    doc = await resp.json()
                    if resp.status == 503:
                        break
                assert time.monotonic() < deadline, doc
                await asyncio.sleep(0.2)
            assert doc["checks"]["heartbeat"].startswith("stale")
            assert (await stack.api("/healthz")) == {"ok": True}, "liveness is not readiness"
    finally:
        azurite.stop()


async def test_idle_connections_are_closed_and_capped() -> None:
    from aiohttp import web

    from callplane.http_server import JsonErrorRunner
    from simulator.azurite import free_port

    port = free_port()
    app = web.Application()

    async def ok(_: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app.router.add_get("/healthz", ok)
    runner = JsonErrorRunner(app, max_connections=20, keepalive_timeout=0.5)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(20)]
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/healthz") as resp:
                assert resp.status == 503 and resp.content_type == "application/json"
                assert "too many open connections" in (await resp.json())["error"]
            # Connections that never send a request are closed after the idle timeout...
            for reader, _ in idle:
                assert await asyncio.wait_for(reader.read(), 3) == b""
            # ...and the server answers again.
            async with http.get(f"http://127.0.0.1:{port}/healthz") as resp:
                assert resp.status == 200
    finally:
        await runner.cleanup()


async def test_admin_sessions_are_random_expiring_revocable_and_rate_limited(conn: str) -> None:
    token = "t" * 40
    async with run_stack(conn, ADMIN_TOKEN=token) as stack:
        url = f"{stack.host_url}/api/session"
        cookies = []
        for _ in range(2):
            async with stack.http.post(url, json={"token": token}, headers={"X-Forwarded-Proto": "https"}) as resp:
                assert resp.status == 200
                set_cookie = resp.headers["Set-Cookie"]
                assert "Secure" in set_cookie and "HttpOnly" in set_cookie
                assert resp.headers["Strict-Transport-Security"].startswith("max-age=")
                cookies.append(set_cookie.split(";")[0])
        assert cookies[0] != cookies[1], "a new random session per sign-in"
        await stack.api("/api/calls", headers={"Cookie": cookies[0]})
        # A second replica on the same store honours the session, and a sign-out on it ends it here too.
        async with second_replica(stack) as (_, other_url):
            async with stack.http.get(f"{other_url}/api/calls", headers={"Cookie": cookies[0]}) as resp:
                assert resp.status == 200
            async with stack.http.delete(f"{other_url}/api/session", headers={"Cookie": cookies[0]}) as r:
                assert r.status == 200
        await stack.api("/api/calls", status=401, headers={"Cookie": cookies[0]})
        await stack.api("/api/calls", headers={"Cookie": cookies[1]})
        # Expired on the server: the cookie alone is worth nothing.
        table = stack.host_app[keys.TABLES].sessions
        rows = await table.query("PartitionKey eq @pk", {"pk": "session"}, parse=dict)
        for row in rows:
            row["idleUntil"] = str(now_ms() - 1)
            await table.upsert_entity(row)
        await stack.api("/api/calls", status=401, headers={"Cookie": cookies[1]})
        # Guessing is slowed: five wrong tokens, then 429 with Retry-After, even for the right one.
        for _ in range(5):
            async with stack.http.post(url, json={"token": "wrong"}) as resp:
                assert resp.status == 401
        async with stack.http.post(url, json={"token": token}) as resp:
            assert resp.status == 429 and int(resp.headers["Retry-After"]) > 0
        # Headers on every answer, and nothing about the host for anonymous callers.
        async with stack.http.get(f"{stack.host_url}/dashboard") as resp:
            assert "frame-ancestors 'none'" in resp.headers["Content-Security-Policy"]
        anonymous = await stack.api("/")
        assert set(anonymous) == {"service", "endpoints"}
        admin = await stack.api("/", headers={"Authorization": f"Bearer {token}"})
        assert "replica" in admin and "capacity" in admin


async def test_numbers_are_masked_in_the_api_and_summaries_quote_no_digits(conn: str) -> None:
    async with run_stack(conn) as stack:
        call_id = await stack.place("greeting_only", caller="+14255550123")
        call = await stack.wait_call(call_id)
        assert call["callerPhone"] == "•••••••0123"
    async with run_stack(conn, SHOW_CALLER_NUMBERS="1") as stack:
        call_id = await stack.place("greeting_only", caller="+14255550123")
        assert (await stack.wait_call(call_id))["callerPhone"] == "+14255550123"
    assert mask_phone("1234") == "••••" and mask_phone("anonymous") == "anonymous"
    text = summarize("completed", "caller hung up", 1000, [], 2, 0, "my number is 425 555 0123 and order 99871")
    assert not any(ch.isdigit() for ch in text.split("2 turns")[0]), text
    long = summarize("completed", None, 1000, [], 1, 1, "word " * 40)
    assert '…"' in long and "1 barge-in." in long, long


@pytest.mark.parametrize(
    ("raw", "leak"),
    [
        ("call +14255550123x now", "4255550"),
        ("dial +1 425 555 0123ext 55", "0123"),
        ("tel:+1-425-555-0123;ext=9", "555-0123"),
    ],
)
def test_redaction_covers_numbers_glued_to_letters(raw: str, leak: str) -> None:
    assert leak not in redact(raw), redact(raw)


async def test_hand_off_store_state_is_untouched_by_a_missing_call(conn: str) -> None:
    """A replayed hand-off of a call the Function App refused (never run) leaves its record alone,
    however soon after the record can be read: the refusal's tombstone is stored before it."""
    from function_app import runtime

    async with run_stack(conn, CALLER_DENY="+1900*") as stack:
        deps = runtime._holder.deps
        assert deps is not None
        release = asyncio.Event()
        real_create = deps.tables.leases.create_entity

        async def held(*args: Any, **kw: Any) -> Any:
            await release.wait()
            return await real_create(*args, **kw)

        deps.tables.leases.create_entity = held  # type: ignore[method-assign]
        try:
            call_id = await stack.place("greeting_only", caller="+19005550100")
            await asyncio.sleep(0.6)  # the refusal is recorded a window (0.1 s) later
            assert stack.sim.calls[call_id].rejected_with == 603
            async with stack.http.get(f"{stack.host_url}/api/calls/{call_id}") as resp:
                assert resp.status == 404, "the record was stored before the tombstone"
        finally:
            release.set()
            deps.tables.leases.create_entity = real_create  # type: ignore[method-assign]
        rejected = await stack.wait_call(call_id)
        req = HandoffRequest(
            callId=call_id, webhookId="wh_x", receivedAt=now_ms(), sipHeaders=[SipHeader(name="a", value="b")]
        )
        status, doc = await post_handoff(stack, req.body())
        assert status == 200 and doc["status"] == "already ended"
        await asyncio.sleep(1)
        assert await stack.api(f"/api/calls/{call_id}") == rejected
        lease = await leases.get(stack.host_app[keys.TABLES], call_id)
        assert lease is not None and lease.ended, "the refused call's tombstone, not a lease"
