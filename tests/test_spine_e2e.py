"""One simulated phone call end to end through real HTTP and WebSocket paths, no mocks."""

from __future__ import annotations

import pytest

from tests.stack import run_stack


@pytest.mark.parametrize("dialect", ["openai", "azure"])
async def test_greeting_call_is_stored_and_listed(conn: str, dialect: str) -> None:
    async with run_stack(conn, dialect=dialect) as stack:
        call_id = await stack.place("greeting_only", caller="+14255550199")
        summary = await stack.wait_ended(call_id)
        assert summary["webhookStatuses"] == [200]
        assert summary["socketOpens"] == 1
        assert "session.update" in summary["clientEventTypes"]
        assert summary["clientEventTypes"][:2] == ["session.update", "response.create"]
        assert summary["errorsSent"] == []

        call = await stack.wait_call(call_id)
        assert call["status"] == "completed"
        assert call["callerPhone"] == "•••••••0199", "numbers leave the API masked by default"
        assert call["endTime"] >= call["startTime"]
        assert call["duration"] == call["endTime"] - call["startTime"]
        assert call["responseCount"] == 1
        assert call["greetingDelayMs"] is not None and call["greetingDelayMs"] >= 0

        listed = await stack.api("/api/calls")
        assert [c["callId"] for c in listed["calls"]] == [call_id]
        transcript = await stack.api(f"/api/calls/{call_id}/transcript")
        assert transcript["count"] == 1
        turn = transcript["transcript"][0]
        assert turn["speaker"] == "assistant"
        assert turn["text"] == stack.sim.calls[call_id].scenario.greeting
        if dialect == "azure":
            # No caller transcription config may reach Azure, in the accept or in session.update.
            accept = stack.sim.calls[call_id].accept_body or {}
            assert "transcription" not in accept["audio"]["input"]
