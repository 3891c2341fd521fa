"""Bad webhooks are refused in the documented order (docs/realtime.md) and leave no record and no accept."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp

from callplane import signing
from simulator.scenario import load_scenario
from tests.stack import Stack, dead_store, run_stack


def incoming(call_id: str) -> bytes:
    return json.dumps(
        {
            "object": "event",
            "id": "evt_test",
            "type": "realtime.call.incoming",
            "created_at": int(time.time()),
            "data": {"call_id": call_id, "sip_headers": [{"name": "From", "value": "<sip:+15550001111@x.example>"}]},
        }
    ).encode()


async def post(stack: Stack, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    async with stack.http.post(
        stack.webhook_url, data=body, headers={"content-type": "application/json", **headers}
    ) as resp:
        return resp.status, await resp.json()


async def assert_untouched(stack: Stack, call_id: str) -> None:
    call = stack.sim.calls[call_id]
    await asyncio.sleep(0.3)
    assert call.state.value == "ringing", "the call must not have been accepted"
    assert call.accept_body is None
    await stack.api(f"/api/calls/{call_id}", status=404)


async def test_forged_unsigned_stale_and_malformed(conn: str) -> None:
    async with run_stack(conn) as stack:
        secret = stack.sim.config.webhook_secret
        call = stack.sim.new_call(load_scenario("greeting_only"))
        body = incoming(call.call_id)

        status, doc = await post(stack, body, {})
        assert status == 401 and "signature" in doc["error"]

        status, _ = await post(stack, body, signing.sign_headers(signing.new_secret(), body))
        assert status == 401, "signed with another secret"

        status, doc = await post(stack, body, signing.sign_headers(secret, body, timestamp=time.time() - 600))
        assert status == 401 and "too old" in doc["error"]

        status, _ = await post(stack, body, signing.sign_headers(secret, body, timestamp=time.time() + 600))
        assert status == 401, "too new is a replay risk too"

        tampered = body.replace(b"+15550001111", b"+15550002222")
        status, _ = await post(stack, tampered, signing.sign_headers(secret, body))
        assert status == 401, "body changed after signing"

        headers = signing.sign_headers(secret, body)
        headers["webhook-signature"] = "garbage-without-comma"
        status, _ = await post(stack, body, headers)
        assert status == 401

        await assert_untouched(stack, call.call_id)

        for bad in (b"not json at all", b"[1,2,3]", b'{"no_type": true}'):
            status, doc = await post(stack, bad, signing.sign_headers(secret, bad))
            assert status == 400, (bad, doc)

        incomplete = json.dumps({"type": "realtime.call.incoming", "id": "evt_1", "created_at": 1}).encode()
        status, doc = await post(stack, incomplete, signing.sign_headers(secret, incomplete))
        assert status == 400 and "data" in doc["error"]

        other = json.dumps({"type": "response.completed", "id": "evt_2", "created_at": 1, "data": {}}).encode()
        status, doc = await post(stack, other, signing.sign_headers(secret, other))
        assert status == 200 and doc == {"ignored": "response.completed"}

        big = b'{"type": "realtime.call.incoming", "pad": "' + b"x" * (2 * 1024 * 1024) + b'"}'
        status, doc = await post(stack, big, signing.sign_headers(secret, big))
        assert status == 413

        await assert_untouched(stack, call.call_id)
        assert stack.sim.calls[call.call_id].client_events == []

        # The same call, properly signed, is accepted: the refusals above were about the requests.
        status, doc = await post(stack, body, signing.sign_headers(secret, body))
        assert status == 200 and doc["accepted"] is True
        stored = await stack.wait_call(call.call_id)
        assert stored["callerPhone"] == "•••••••1111"


async def test_duplicate_delivery_accepts_once(conn: str) -> None:
    async with run_stack(conn) as stack:
        call_id = await stack.place("greeting_only", faults={"duplicate_webhook": True})
        summary = await stack.wait_ended(call_id)
        assert sorted(summary["webhookStatuses"]) == [200, 200]
        assert summary["socketOpens"] == 1
        call = await stack.wait_call(call_id)
        assert call["status"] == "completed"


async def test_handoff_requires_signature(conn: str) -> None:
    async with run_stack(conn) as stack:
        body = json.dumps({"callId": "rtc_x", "webhookId": "wh_1", "receivedAt": 1}).encode()
        url = f"{stack.host_url}/internal/calls"
        async with stack.http.post(url, data=body) as resp:
            assert resp.status == 401
        headers = signing.sign_headers(signing.new_secret(), body)
        async with stack.http.post(url, data=body, headers=headers) as resp:
            assert resp.status == 401
        bad = b'{"callId": ""}'
        async with stack.http.post(
            url, data=bad, headers=signing.sign_headers(stack.settings.handoff_secret, bad)
        ) as r:
            assert r.status == 400 and "callId" in (await r.json())["error"]


async def test_accept_refused_because_call_gone_is_recorded_failed(conn: str) -> None:
    async with run_stack(conn) as stack:
        call_id = await stack.place("greeting_only", faults={"accept_status": 404})
        await stack.wait_ended(call_id)
        call = await stack.wait_call(call_id)
        assert call["status"] == "failed"
        assert call["endReason"] == "accept failed: the call ended before the accept (call_id_not_found)"
        assert stack.sim.calls[call_id].summary()["socketOpens"] == 0, "no socket for a call never accepted"


async def test_store_unreachable_refuses_the_caller_busy_at_once(conn: str) -> None:
    # A store nobody listens on: no replica can hold a lease (its heartbeat cannot beat), so the
    # caller hears busy at once instead of ringing while the service retries the webhook.
    async with run_stack(conn, STORAGE_CONNECTION_STRING=dead_store(conn)) as stack:
        call = stack.sim.new_call(load_scenario("greeting_only"))
        body = incoming(call.call_id)
        status, doc = await post(stack, body, signing.sign_headers(stack.sim.config.webhook_secret, body))
        assert status == 200 and doc == {"rejected": True, "callId": call.call_id}
        assert stack.sim.calls[call.call_id].accept_body is None
        assert stack.sim.calls[call.call_id].rejected_with == 486


async def test_unknown_voice_parameter_falls_back(conn: str) -> None:
    async with run_stack(conn, dialect="azure") as stack:
        call_id = await stack.place("greeting_only", faults={"reject_voice": "audio_output"})
        summary = await stack.wait_ended(call_id)
        accept = stack.sim.calls[call_id].accept_body or {}
        assert accept.get("voice") == "marin" and "output" not in accept["audio"]
        assert summary["errorsSent"] == [] or all("voice" in (e.get("param") or "") for e in summary["errorsSent"])
        call = await stack.wait_call(call_id)
        assert call["status"] == "completed"


async def test_webhook_app_health(conn: str) -> None:
    async with run_stack(conn) as stack, aiohttp.ClientSession() as http:
        async with http.get(stack.webhook_url.replace("/openai/webhook", "/healthz")) as resp:
            assert resp.status == 200
