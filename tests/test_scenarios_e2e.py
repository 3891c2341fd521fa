"""Every shipped scenario against the real system, end to end (simulator → webhook app →
session host → Azurite), time-scaled."""

from __future__ import annotations

from typing import Any

import pytest

from session_host.session import SessionOptions
from simulator.scenario import scenario_names
from tests.stack import run_stack

TOOL_SCENARIOS = {
    "lookup_order": {"found": True, "status": "processing"},
    "check_inventory": {"in_stock": 12},
    "schedule_callback": {"scheduled": True},
    "get_weather": {"condition": "sunny"},
    "check_company_hours": {"on_date": "10:00-15:00"},
    "search_products": {"total": 1},
    "find_store_location": {"found": True, "name": "Contoso Portland"},
}
# greeting_only runs in tests/test_spine_e2e.py, standard in tests/test_conversation_e2e.py.
COVERED = set(TOOL_SCENARIOS) | {
    "standard",
    "greeting_only",
    "handoff_human",
    "end_call",
    "bad_tool_args",
    "barge_in",
    "silent_caller",
    "angry_caller",
    "blocked_caller",
    "talk_over_disclosure",  # tests/test_profile_line.py
    "tool_at_stop",  # tests/test_standby.py
    "versus",
}


def test_every_shipped_scenario_has_an_end_to_end_test() -> None:
    assert set(scenario_names()) == COVERED


async def run(
    conn: str, scenario: str, options: SessionOptions | None = None, **env: str
) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    async with run_stack(conn, time_scale=40, options=options, **env) as stack:
        call_id = await stack.place(scenario)
        summary = await stack.wait_ended(call_id, timeout=60)
        call = await stack.wait_call(call_id, timeout=20)
        transcript = (await stack.api(f"/api/calls/{call_id}/transcript"))["transcript"]
        return summary, call, transcript


@pytest.mark.parametrize("scenario", sorted(TOOL_SCENARIOS))
async def test_tool_scenarios(conn: str, scenario: str) -> None:
    summary, call, transcript = await run(conn, scenario)
    assert summary["errorsSent"] == []
    output = next(iter(summary["toolOutputs"].values()))
    for key, value in TOOL_SCENARIOS[scenario].items():
        assert output[key] == value, (key, output)
    assert [t["name"] for t in call["toolCalls"]] == [scenario]
    assert call["toolCalls"][0]["success"] is True and call["toolCalls"][0]["duration"] >= 0
    assert call["status"] == "completed"
    assert len(summary["toolRoundTripsMs"]) == 1
    assert any(t["speaker"] == "assistant" and t["text"] for t in transcript)


async def test_versus_scenario_runs_both_tools(conn: str) -> None:
    """The side-by-side benchmark's scenario: tools and arguments the original also takes."""
    summary, call, _ = await run(conn, "versus")
    assert summary["errorsSent"] == [] and len(summary["toolRoundTripsMs"]) == 2
    assert [t["name"] for t in call["toolCalls"]] == ["get_weather", "search_products"]
    assert all(t["success"] for t in call["toolCalls"]) and call["status"] == "completed"


async def test_handoff_with_target_refers_and_marks_transferred(conn: str) -> None:
    summary, call, _ = await run(conn, "handoff_human", SIP_TARGET_URI="tel:+14155550123")
    assert summary["referredTo"] == "tel:+14155550123"
    assert call["status"] == "transferred"
    assert call["transferReason"] == "caller asked for a person"
    # The goodbye was spoken before the REFER.
    assert "transferring" in summary["transcript"][-1][1]


async def test_handoff_without_target_says_no_human_and_goes_on(conn: str) -> None:
    summary, call, _ = await run(conn, "handoff_human")
    output = next(iter(summary["toolOutputs"].values()))
    assert output == {"transferred": False, "error": "no human available"}
    assert summary["referredTo"] is None
    assert call["status"] == "completed"


async def test_end_call_hangs_up_from_our_side(conn: str) -> None:
    summary, call, _ = await run(conn, "end_call")
    assert summary["marks"].get("hangup") is not None
    assert summary["endReason"] == "hung up by the server"
    assert call["status"] == "completed" and call["endReason"].startswith("assistant ended the call")


async def test_bad_tool_arguments_get_a_structured_error(conn: str) -> None:
    summary, call, _ = await run(conn, "bad_tool_args")
    first, second = list(summary["toolOutputs"].values())
    assert first["error"] == "invalid_arguments" and first["problems"][0]["field"] == "order_id"
    assert "hint" in first
    assert second["found"] is True and second["status"] == "delivered"
    assert [t["success"] for t in call["toolCalls"]] == [False, True]
    assert call["toolCalls"][0]["error"] == "invalid arguments"
    assert call["status"] == "completed"


async def test_barge_in_is_counted_and_the_turn_marked(conn: str) -> None:
    summary, call, transcript = await run(conn, "barge_in")
    context = (call, transcript, summary["transcript"])
    assert call["bargeInEvents"] == 1, context
    assert call["userSpeechEvents"] == 3, context
    interrupted = [t for t in transcript if t["interrupted"]]
    assert len(interrupted) == 1, context
    full = "We have the Summit Jacket, which is our warmest winter shell"
    assert interrupted[0]["text"] and full.startswith(interrupted[0]["text"][:20])
    assert len(interrupted[0]["text"]) < 190  # only what was streamed before the barge-in


async def test_silent_caller_is_ended_politely_by_the_guard(conn: str) -> None:
    options = SessionOptions(silence_timeout_s=0.8, wrap_up_s=0.4, reconnect_base_s=0.05)
    summary, call, transcript = await run(conn, "silent_caller", options)
    assert call["status"] == "completed" and "caller silent" in call["endReason"]
    assert summary["marks"].get("hangup") is not None
    assert transcript[-1]["speaker"] == "assistant" and "goodbye" in transcript[-1]["text"].lower()


async def test_angry_caller_is_negative_and_transferred(conn: str) -> None:
    summary, call, transcript = await run(conn, "angry_caller", SIP_TARGET_URI="sip:agents@pbx.example.com")
    assert call["sentiment"] == "negative"
    assert call["status"] == "transferred"
    assert [t["sentiment"] for t in transcript if t["speaker"] == "user"] == ["negative", "negative"]


@pytest.mark.parametrize("pattern", ["+1900*", "+1 900*", "+1-900-*"])
async def test_blocked_caller_is_rejected_before_the_accept(conn: str, pattern: str) -> None:
    """The local demo's deny list; a pattern written with punctuation matches the E.164 number."""
    async with run_stack(conn, time_scale=40, CALLER_DENY=pattern) as stack:
        call_id = await stack.place("blocked_caller")
        summary = await stack.wait_ended(call_id, timeout=30)
        call = await stack.wait_call(call_id, timeout=20)
    assert summary["rejectedWith"] == 603 and summary["marks"].get("accept") is None
    assert call["status"] == "rejected" and call["endReason"] == "caller not admitted"


async def test_a_punctuated_caller_number_cannot_dodge_the_deny_list(conn: str) -> None:
    async with run_stack(conn, time_scale=40, CALLER_DENY="+1425*") as stack:
        call_id = await stack.place("greeting_only", caller="+1-425-555-0199")
        call = await stack.wait_call(call_id, timeout=20)
    assert call["status"] == "rejected", call
