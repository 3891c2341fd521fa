"""Admin API inputs and auth, on real HTTP against Azurite."""

from __future__ import annotations

import asyncio

from callplane.clock import now_ms
from callplane.store.models import CallRecord, CallStatus
from callplane.store.writer import StoreWriter
from session_host import keys
from tests.stack import run_stack


async def test_paging_limits_and_unknown_ids(conn: str) -> None:
    async with run_stack(conn) as stack:
        ids = [await stack.place("greeting_only") for _ in range(3)]
        for call_id in ids:
            await stack.wait_call(call_id)
        page1 = await stack.api("/api/calls?limit=2")
        assert page1["count"] == 2 and page1["next"]
        page2 = await stack.api(f"/api/calls?limit=2&next={page1['next']}")
        seen = [c["callId"] for c in page1["calls"] + page2["calls"]]
        assert sorted(seen) == sorted(ids) and len(set(seen)) == 3
        assert page2["next"] is None, "the last page says so"
        exact = await stack.api("/api/calls?limit=3")
        assert exact["count"] == 3 and exact["next"] is None, "a page ending at the last call has no next"
        starts = [c["startTime"] for c in page1["calls"] + page2["calls"]]
        assert starts == sorted(starts, reverse=True), "newest first"
        for bad in ("0", "201", "abc", "-1"):
            doc = await stack.api(f"/api/calls?limit={bad}", status=400)
            assert "limit" in doc["error"]
        assert "next" in (await stack.api("/api/calls?next=%%%", status=400))["error"]
        assert await stack.api("/api/calls/rtc_nope", status=404) == {"error": "Call not found"}
        await stack.api("/api/calls/rtc_nope/transcript", status=404)
        assert (await stack.api("/api/calls/active"))["count"] == 0


async def test_admin_token_guards_api_not_health(conn: str) -> None:
    async with run_stack(conn, ADMIN_TOKEN="s3cret-token") as stack:
        await stack.api("/api/calls", status=401)
        await stack.api("/api/calls", status=401, headers={"Authorization": "Bearer wrong"})
        await stack.api("/api/calls", headers={"Authorization": "Bearer s3cret-token"})
        await stack.api("/healthz")
        await stack.api("/")
        async with stack.http.post(f"{stack.host_url}/api/session", json={"token": "nope"}) as resp:
            assert resp.status == 401
        async with stack.http.post(f"{stack.host_url}/api/session", json={"token": "s3cret-token"}) as resp:
            assert resp.status == 200
            cookie = resp.headers["Set-Cookie"]
            assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "s3cret-token" not in cookie
        # aiohttp's client jar ignores cookies from IP hosts, so send it as a browser would.
        pair = cookie.split(";")[0]
        await stack.api("/api/calls", headers={"Cookie": pair})
        await stack.api("/api/calls", status=401, headers={"Cookie": pair.split("=")[0] + "=forged"})


async def test_denied_caller_is_rejected_and_recorded(conn: str) -> None:
    async with run_stack(conn, CALLER_DENY="+1900*") as stack:
        call_id = await stack.place("greeting_only", caller="+19005550100")
        summary = await stack.wait_ended(call_id)
        assert summary["rejectedWith"] == 603 and summary["socketOpens"] == 0
        call = await stack.wait_call(call_id)
        assert call["status"] == "rejected" and call["endReason"] == "caller not admitted"
        await asyncio.sleep(0)


async def test_responses_match_the_openapi_models(conn: str) -> None:
    from session_host import openapi

    async with run_stack(conn, time_scale=40) as stack:
        call_id = await stack.place("standard")
        await stack.wait_call(call_id, timeout=60)
        doc = await stack.api("/api/openapi.json")
        assert set(doc["paths"]) == {r.path for r in openapi.ROUTES}
        for name in ("Stats", "CallList", "CallOut", "Transcript", "ActiveCalls"):
            assert name in doc["components"]["schemas"]
        # Unknown fields are forbidden in these models: a renamed or extra field fails here.
        openapi.Stats.model_validate(await stack.api("/api/stats"))
        listed = openapi.CallList.model_validate(await stack.api("/api/calls?limit=5"))
        assert listed.calls[0].toolCalls
        openapi.ActiveCalls.model_validate(await stack.api("/api/calls/active"))
        openapi.CallOut.model_validate(await stack.api(f"/api/calls/{call_id}"))
        openapi.Transcript.model_validate(await stack.api(f"/api/calls/{call_id}/transcript"))
        openapi.Error.model_validate(await stack.api("/api/calls/nope", status=404))


async def test_paging_walks_hour_buckets_newest_first_across_gaps(conn: str) -> None:
    """The newest-first index is one partition per hour; pages must cross buckets (and empty
    hours between them) without skipping or repeating a call, and end with no `next`."""
    async with run_stack(conn) as stack:
        now = now_ms()
        hours = [0, 0, 0, 1, 5, 5, 30, 31, 31, 31, 200]  # hours ago: gaps, uneven buckets
        calls = [
            CallRecord(
                callId=f"rtc_h{i:02d}",
                startTime=now - h * 3_600_000 - i * 1000,
                endTime=now,
                duration=1,
                status=CallStatus.COMPLETED,
                updatedAt=now,
            )
            for i, h in enumerate(hours)
        ]
        writer = StoreWriter(stack.host_app[keys.TABLES])
        for call in calls:
            writer.put_call(call)
        assert await writer.flush(force=True)
        expected = [c.callId for c in sorted(calls, key=lambda c: c.startTime, reverse=True)]
        for limit in (1, 2, 3, 4, 11, 50):
            seen: list[str] = []
            url = f"/api/calls?limit={limit}"
            for _ in range(20):
                page = await stack.api(url)
                assert page["count"] <= limit
                seen += [c["callId"] for c in page["calls"]]
                if not page.get("next"):
                    break
                url = f"/api/calls?limit={limit}&next={page['next']}"
            assert seen == expected, (limit, seen)


def test_the_latency_chart_places_each_call_at_its_start() -> None:
    from callplane.clock import percentile
    from session_host.live import _latency_series

    calls = [
        {"callId": "a", "startTime": 1_000, "endTime": 9_000, "latencies": [100.0, 300.0]},
        {"callId": "b", "startTime": 5_000, "endTime": None, "latencies": [200.0]},
        {"callId": "c", "startTime": 2_000, "endTime": 3_000, "latencies": []},
    ]
    points = _latency_series(calls)
    assert [(p["callId"], p["t"]) for p in points] == [("a", 1_000), ("b", 5_000)], points
    assert points[0]["p50"] == percentile([100.0, 300.0], 50) and points[0]["max"] == 300.0
