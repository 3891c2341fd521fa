"""The simulator's dialect differences and injected faults, and how the system copes with each."""

from __future__ import annotations

import asyncio

import aiohttp

from session_host.session import SessionOptions
from simulator.scenario import load_scenario
from tests.stack import run_stack


async def test_wrong_secret_and_stale_timestamp_are_refused_and_retried(conn: str) -> None:
    async with run_stack(conn) as stack:
        wrong = await stack.place("greeting_only", faults={"wrong_secret": True})
        stale = await stack.place("greeting_only", faults={"stale_timestamp": True})
        for call_id in (wrong, stale):
            await asyncio.sleep(0.5)
            call = stack.sim.calls[call_id]
            assert call.webhook_statuses == [401, 401], "refused, and retried like the service does"
            assert call.state.value == "ringing" and call.accept_body is None


async def test_delayed_duplicate_and_slow_accept_still_one_call(conn: str) -> None:
    async with run_stack(conn) as stack:
        call_id = await stack.place(
            "greeting_only", faults={"webhook_delay_ms": 2000, "duplicate_webhook": True, "accept_delay_ms": 4000}
        )
        summary = await stack.wait_ended(call_id)
        assert sorted(summary["webhookStatuses"]) == [200, 200]
        assert summary["socketOpens"] == 1
        assert (await stack.wait_call(call_id))["status"] == "completed"


async def test_accept_500_asks_the_service_to_retry(conn: str) -> None:
    options = SessionOptions(reconnect_base_s=0.05, accept_wait_s=1.5, accept_retry_wait_s=1.5)
    async with run_stack(conn, options=options) as stack:
        call_id = await stack.place("greeting_only", faults={"accept_status": 500})
        await asyncio.sleep(1.0)
        call = stack.sim.calls[call_id]
        assert call.webhook_statuses == [503, 503], "each retry is processed again, not dropped as a duplicate"
        # The replica that took the call waits for an accept that never comes, then records why.
        stored = await stack.wait_call(call_id, timeout=10)
        assert stored["status"] == "failed" and stored["endReason"] == "the call was never accepted"


async def test_socket_drop_while_call_lives_reconnects_and_goes_on(conn: str) -> None:
    async with run_stack(conn, time_scale=40) as stack:
        call_id = await stack.place("standard", faults={"drop_socket_after_ms": 9000})
        summary = await stack.wait_ended(call_id, timeout=60)
        assert summary["socketOpens"] == 2
        call = await stack.wait_call(call_id)
        assert call["status"] == "completed" and call["endReason"] == "caller hung up"
        assert len(call["toolCalls"]) == 2


async def test_socket_drop_with_call_gone_finalizes_failed(conn: str) -> None:
    async with run_stack(conn, time_scale=40) as stack:
        call_id = await stack.place("standard", faults={"drop_socket_after_ms": 9000, "end_call_on_drop": True})
        await stack.wait_ended(call_id, timeout=60)
        call = await stack.wait_call(call_id)
        assert call["status"] == "failed"
        assert call["endReason"] == "call gone after the control socket dropped"


async def test_session_cap_and_server_errors(conn: str) -> None:
    async with run_stack(conn, time_scale=40) as stack:
        capped = await stack.place("standard", faults={"session_cap_ms": 8000})
        errored = await stack.place("standard", faults={"server_error_after_ms": 5000, "slow_socket_ms": 20})
        await stack.wait_ended(capped, timeout=60)
        await stack.wait_ended(errored, timeout=60)
        assert (await stack.wait_call(capped))["status"] == "completed"
        call = await stack.wait_call(errored)
        assert call["status"] == "completed" and len(call["toolCalls"]) == 2, "a server error event is survivable"


async def test_dialect_auth_and_api_version(conn: str) -> None:
    async with run_stack(conn, dialect="azure") as stack:
        url = f"{stack.sim_url.replace('http', 'ws')}/openai/v1/realtime?call_id=rtc_x"
        key = stack.sim.config.api_key
        async with aiohttp.ClientSession() as http:
            async with http.get(url + "&api-version=2025-04-01-preview", headers={"api-key": key}) as resp:
                assert resp.status == 401
            async with http.get(url, headers={"Authorization": f"Bearer {key}"}) as resp:
                assert resp.status == 401, "azure dialect wants the api-key header"
            async with http.get(url, headers={"api-key": key}) as resp:
                assert resp.status == 404 and (await resp.json())["error"]["code"] == "call_id_not_found"
            base = f"{stack.sim_url}/openai/v1/realtime/calls/rtc_x"
            async with http.post(f"{base}/accept", json={"type": "realtime"}, headers={"api-key": key}) as resp:
                assert resp.status == 404 and (await resp.json())["error"]["code"] == "call_id_not_found"
            # Webhook endpoint registration, as the deploy hook will use it.
            ep = f"{stack.sim_url}/openai/v1/dashboard/webhook_endpoints"
            body = {
                "name": "realtime-incoming",
                "url": "https://fn.example/openai/webhook",
                "event_types": ["realtime.call.incoming"],
            }
            async with http.post(ep, json=body, headers={"api-key": key}) as resp:
                created = await resp.json()
                assert resp.status == 200 and created["signing_secret"].startswith("whsec_")
            async with http.get(ep, headers={"api-key": key}) as resp:
                listed = (await resp.json())["data"]
                assert [e["url"] for e in listed] == [body["url"]] and "signing_secret" not in listed[0]
            async with http.post(ep, json=body, headers={"api-key": "wrong"}) as resp:
                assert resp.status == 401


async def test_azure_rejects_transcription_config(conn: str) -> None:
    async with run_stack(conn, dialect="azure") as stack:
        call = stack.sim.new_call(load_scenario("greeting_only"))
        key = stack.sim.config.api_key
        body = {"type": "realtime", "audio": {"input": {"transcription": {"model": "whisper-1"}}}}
        async with stack.http.post(
            f"{stack.sim_url}/openai/v1/realtime/calls/{call.call_id}/accept", json=body, headers={"api-key": key}
        ) as resp:
            err = (await resp.json())["error"]
            assert resp.status == 400 and err["code"] == "unknown_parameter"
            assert err["param"] == "audio.input.transcription"


async def test_voice_rejected_entirely_goes_on_without_voice(conn: str) -> None:
    options = SessionOptions(reconnect_base_s=0.05, silence_timeout_s=60, wrap_up_s=1.0)
    async with run_stack(conn, dialect="azure", options=options) as stack:
        call_id = await stack.place("greeting_only", faults={"reject_voice": "both"})
        await stack.wait_ended(call_id)
        accept = stack.sim.calls[call_id].accept_body or {}
        assert "voice" not in accept and "output" not in accept["audio"]
        assert (await stack.wait_call(call_id))["status"] == "completed"


async def test_call_control_status_codes(conn: str) -> None:
    async with run_stack(conn) as stack:
        call = stack.sim.new_call(load_scenario("greeting_only").model_copy(update={"hangup": "wait"}))
        base = f"{stack.sim_url}/v1/realtime/calls/{call.call_id}"
        auth = {"Authorization": f"Bearer {stack.sim.config.api_key}"}
        async with stack.http.get(
            f"{stack.sim_url.replace('http', 'ws')}/v1/realtime?call_id={call.call_id}", headers=auth
        ) as resp:
            assert resp.status == 404, "no socket before the accept (strict: as for an unknown call)"
        async with stack.http.post(f"{base}/accept", data=b"{oops", headers=auth) as resp:
            assert resp.status == 400 and (await resp.json())["error"]["code"] == "invalid_json"
        async with stack.http.post(f"{base}/accept", json={"model": "x"}, headers=auth) as resp:
            assert resp.status == 400 and (await resp.json())["error"]["param"] == "type"
        async with stack.http.post(
            f"{base}/accept", json={"type": "realtime"}, headers={"Authorization": "Bearer no"}
        ) as resp:
            assert resp.status == 401
        async with stack.http.post(f"{base}/accept", json={"type": "realtime"}, headers=auth) as resp:
            assert resp.status == 200 and await resp.read() == b""
        async with stack.http.post(f"{base}/accept", json={"type": "realtime"}, headers=auth) as resp:
            assert resp.status == 400 and (await resp.json())["error"]["code"] == "call_already_accepted"
        async with stack.http.post(f"{base}/refer", json={}, headers=auth) as resp:
            assert resp.status == 400 and (await resp.json())["error"]["param"] == "target_uri"
        async with stack.http.post(f"{base}/refer", json={"target_uri": "tel:+1", "x": 1}, headers=auth) as resp:
            assert resp.status == 400 and (await resp.json())["error"]["code"] == "unknown_parameter"
        async with stack.http.post(f"{base}/hangup", headers=auth) as resp:
            assert resp.status == 200
        for action in ("accept", "hangup", "refer"):
            async with stack.http.post(
                f"{base}/{action}", json={"type": "realtime", "target_uri": "tel:+1"}, headers=auth
            ) as resp:
                assert resp.status == 404 and (await resp.json())["error"]["code"] == "call_id_not_found"
        async with stack.http.post(f"{stack.sim_url}/v1/realtime/calls/rtc_unknown/reject", headers=auth) as resp:
            assert resp.status == 404
