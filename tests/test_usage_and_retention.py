"""What calls cost and how long their data lives, through real sockets, HTTP and Azurite: usage
summed from `response.done`, cost from the price table, rollups, deletion on request (nothing
left that names the call or the number, an audit row instead), the retention purge."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from callplane.clock import now_ms
from callplane.pricing import DEFAULT_PRICES
from callplane.store import lifecycle
from callplane.store.models import CallRecord, CallStatus, TranscriptTurn
from callplane.store.writer import StoreWriter
from session_host import keys
from tests.stack import Stack, run_stack

USAGE_KEYS = {
    "inputTokens",
    "outputTokens",
    "totalTokens",
    "inputTextTokens",
    "inputAudioTokens",
    "cachedTokens",
    "outputTextTokens",
    "outputAudioTokens",
}


def expected_cost(sent: dict[str, int]) -> float:
    """The simulator's responses each cache 200 text and 100 audio input tokens."""
    price = DEFAULT_PRICES["gpt-realtime"]
    responses = sent["inputTokens"] // 900
    cached_text, cached_audio = 200 * responses, 100 * responses
    return (
        (sent["inputTextTokens"] - cached_text) * price.textIn
        + cached_text * price.textInCached
        + (sent["inputAudioTokens"] - cached_audio) * price.audioIn
        + cached_audio * price.audioInCached
        + sent["outputTextTokens"] * price.textOut
        + sent["outputAudioTokens"] * price.audioOut
    ) / 1_000_000


async def every_row(stack: Stack) -> list[tuple[str, dict[str, Any]]]:
    tables = stack.host_app[keys.TABLES]
    rows: list[tuple[str, dict[str, Any]]] = []
    for ops in tables.all():
        rows += [(ops.table_name, row) for row in await ops.query("PartitionKey ne @x", {"x": "\x00"}, parse=dict)]
    return rows


async def test_usage_and_cost_per_call_and_in_the_rollups(conn: str) -> None:
    async with run_stack(conn, time_scale=40) as stack:
        ids = [await stack.place("standard", caller=f"+1425555000{i}") for i in range(3)]
        calls = [await stack.wait_call(c, timeout=60) for c in ids]
        for call_id, call in zip(ids, calls, strict=True):
            sent = stack.sim.calls[call_id].usage_sent
            assert set(call["usage"]) == USAGE_KEYS
            assert call["usage"] == sent, (call["usage"], sent)
            assert call["cost"] == pytest.approx(expected_cost(sent), rel=1e-6)
        await asyncio.sleep(1.5)
        stats = await stack.api("/api/stats")
        assert stats["totalTokens"] == sum(c["usage"]["totalTokens"] for c in calls)
        assert stats["totalCost"] == pytest.approx(sum(c["cost"] for c in calls), abs=1e-5)
        assert stats["costToday"] == pytest.approx(stats["totalCost"], abs=1e-5)
        assert stats["callsEndedToday"] == 3 and stats["tokensToday"] == stats["totalTokens"]
        minutes = sum(c["duration"] for c in calls) / 60_000
        assert stats["costPerCallMinute"] == pytest.approx(stats["totalCost"] / minutes, rel=1e-3)
        assert stats["usageByDay"][-1]["calls"] == 3 and stats["usageByHour"][-1]["calls"] == 3
        assert [(p["period"], p["calls"]) for p in stats["usageByProfile"]] == [("default", 3)]
        info = await stack.api("/")
        assert info["controlPlane"]["callsEndedHere"] == 3 and info["controlPlane"]["tableRequestsPerCall"] > 0


async def test_deleting_a_call_leaves_nothing_that_names_it(conn: str) -> None:
    async with run_stack(conn, time_scale=40) as stack:
        keep, gone = await stack.place("standard"), await stack.place("standard")
        for c in (keep, gone):
            await stack.wait_call(c, timeout=60)
        await asyncio.sleep(1.5)  # the final writes are in
        async with stack.http.delete(f"{stack.host_url}/api/calls/{gone}") as resp:
            assert resp.status == 204
        await stack.api(f"/api/calls/{gone}", status=404)
        await stack.api(f"/api/calls/{gone}/transcript", status=404)
        assert all(gone not in json.dumps(row, default=str) for _, row in await every_row(stack))
        assert (await stack.api(f"/api/calls/{keep}"))["status"] == "completed"
        listed = [c["callId"] for c in (await stack.api("/api/calls?limit=50"))["calls"]]
        assert listed == [keep]
        audit = [row for table, row in await every_row(stack) if row.get("PartitionKey") == lifecycle.AUDIT_PK]
        assert [(a["action"], a["calls"]) for a in audit] == [("delete call", 1)] and audit[0]["rows"] >= 3
        async with stack.http.delete(f"{stack.host_url}/api/calls/{gone}") as resp:
            assert resp.status == 404


@pytest.mark.parametrize("hashed", [False, True])
async def test_deleting_a_caller_removes_every_row_holding_the_number(conn: str, hashed: bool) -> None:
    env = {"HASH_CALLER_NUMBERS": "1", "CALLER_HASH_KEY": "k" * 32} if hashed else {}
    async with run_stack(conn, time_scale=40, **env) as stack:
        theirs = [await stack.place("standard", caller="+14255550111") for _ in range(2)]
        other = await stack.place("standard", caller="+14255550222")
        for c in [*theirs, other]:
            await stack.wait_call(c, timeout=60)
        await asyncio.sleep(1.5)
        rows = await every_row(stack)
        if hashed:  # never stored in clear, not even in the SIP headers kept with the lease
            assert all("4255550111" not in json.dumps(r, default=str) for _, r in rows)
        else:
            assert any("4255550111" in json.dumps(r, default=str) for _, r in rows)
        async with stack.http.delete(f"{stack.host_url}/api/callers/%2B1%20425-555-0111") as resp:
            assert resp.status == 200
            doc = await resp.json()
        assert doc["deleted"] == 2 and doc["rows"] > 0
        rows = await every_row(stack)
        text = [json.dumps(r, default=str) for _, r in rows]
        assert all("4255550111" not in t and not any(c in t for c in theirs) for t in text)
        assert (await stack.api(f"/api/calls/{other}"))["status"] == "completed"
        audit = [r for _, r in rows if r.get("PartitionKey") == lifecycle.AUDIT_PK]
        assert audit[0]["action"] == "delete caller" and audit[0]["calls"] == 2
        assert "0111" not in json.dumps(audit, default=str), "the audit never holds the number"
        async with stack.http.delete(f"{stack.host_url}/api/callers/not-a-number") as resp:
            assert resp.status == 400


async def test_the_purge_removes_exactly_what_is_past_retention(conn: str) -> None:
    async with run_stack(conn) as stack:
        tables = stack.host_app[keys.TABLES]
        writer = StoreWriter(tables)
        now = now_ms()
        day = 24 * 3_600_000
        old = [
            CallRecord(
                callId=f"rtc_old{i}",
                startTime=now - 40 * day - i * 3_600_000,
                endTime=now - 40 * day,
                duration=1,
                status=CallStatus.COMPLETED,
                updatedAt=now,
            )
            for i in range(3)
        ]
        recent = [
            CallRecord(
                callId=f"rtc_new{i}",
                startTime=now - 2 * day - i * 1000,
                endTime=now - 2 * day,
                duration=1,
                status=CallStatus.COMPLETED,
                updatedAt=now,
            )
            for i in range(2)
        ]
        for call in old + recent:
            writer.put_call(call, urgent=True)
            writer.put_turn(
                call.callId, TranscriptTurn(seq=1, timestamp=call.startTime, speaker="assistant", text="hi")
            )
        assert await writer.flush(force=True)
        live = await stack.place("standard")  # a call in progress while the purge runs
        await stack.wait_call(live, final=False)
        await tables.webhooks.upsert_entity(
            {"PartitionKey": "wh_ancient", "RowKey": "", "callId": "rtc_old0", "receivedAt": str(now - 5 * day)}
        )
        result = await lifecycle.purge(tables, retention_days=30, replica="test-replica")
        assert result is not None and result.calls == 3 and result.dedupe_rows == 1
        assert await lifecycle.purge(tables, retention_days=30, replica="another") is None, "one replica at a time"
        for call in old:
            await stack.api(f"/api/calls/{call.callId}", status=404)
        for call in recent:
            assert (await stack.api(f"/api/calls/{call.callId}"))["status"] == "completed"
            assert (await stack.api(f"/api/calls/{call.callId}/transcript"))["count"] == 1
        listed = {c["callId"] for c in (await stack.api("/api/calls?limit=50"))["calls"]}
        assert listed == {c.callId for c in recent} | {live}
        done = await stack.wait_call(live, timeout=60)
        assert done["status"] == "completed" and len(done["toolCalls"]) == 2
