"""How a profile's agent behaves on a phone line, end to end (time-scaled): an opening disclosure
the caller cannot talk away, a silent caller asked again before the goodbye, a slow tool covered
by a filler, a tool past its timeout answered with an apology."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from callplane import tools as tool_library
from callplane.tools import TOOLS
from session_host.session import SessionOptions
from tests.stack import Stack, run_stack

LINE = "+18005550777"
BASE = {"instructions": "You are the Contoso line agent.", "tools": ["check_inventory"]}


@asynccontextmanager
async def line(conn: str, profile: dict[str, Any], time_scale: float = 20, **kw: Any) -> AsyncIterator[Stack]:
    async with run_stack(conn, time_scale=time_scale, **kw) as stack:
        async with stack.http.put(f"{stack.host_url}/api/profiles/line", json={**BASE, **profile}) as resp:
            assert resp.status == 201, await resp.text()
        async with stack.http.put(f"{stack.host_url}/api/routes/%2B18005550777", json={"profile": "line"}) as resp:
            assert resp.status == 201
        await stack.webhook_has_profile("line", 1, LINE)
        yield stack


@asynccontextmanager
async def slow_inventory(seconds: float) -> AsyncIterator[None]:
    """check_inventory answering after `seconds`: a slow back end, in the very process."""
    original = TOOLS["check_inventory"]

    async def slow(args: Any, ctx: Any) -> Any:
        await asyncio.sleep(seconds)
        return await original.handler(args, ctx)

    TOOLS["check_inventory"] = dataclasses.replace(original, handler=slow)
    try:
        yield
    finally:
        TOOLS["check_inventory"] = original
        assert tool_library.TOOLS["check_inventory"] is original


async def test_the_disclosure_plays_first_and_is_never_interrupted(conn: str) -> None:
    disclosure = "This call is recorded for quality and training."
    async with line(conn, {"disclosure": disclosure}) as stack:
        call_id = await stack.place("talk_over_disclosure", called=LINE)
        summary = await stack.wait_ended(call_id, timeout=60)
        sim_call = stack.sim.calls[call_id]
        assert disclosure in sim_call.response_instructions[0], "requested first, word for word"
        assert "greet" in sim_call.response_instructions[1].lower(), "the greeting follows it"
        first_said = summary["transcript"][0]
        assert first_said[0] == "assistant" and "[interrupted]" not in first_said[1], summary["transcript"]
        call = await stack.wait_call(call_id)
        assert call["userSpeechEvents"] >= 2, "the caller was heard over the disclosure"
        turns = (await stack.api(f"/api/calls/{call_id}/transcript"))["transcript"]
        assert turns[0]["speaker"] == "assistant" and turns[0]["interrupted"] is False, turns


async def test_a_silent_caller_is_asked_again_then_said_goodbye_to(conn: str) -> None:
    options = SessionOptions(reconnect_base_s=0.05, silence_timeout_s=60, wrap_up_s=0.5)
    async with line(
        conn, {"silence": {"repromptAfterS": 1, "maxReprompts": 2, "reprompt": "Are you still there?"}}, options=options
    ) as stack:
        call_id = await stack.place("silent_caller", called=LINE)
        summary = await stack.wait_ended(call_id, timeout=60)
        asks = stack.sim.calls[call_id].response_instructions
        assert asks.count("Are you still there?") == 2, asks
        assert "goodbye" in asks[-1].lower()
        assert summary["marks"].get("hangup") is not None
        call = await stack.wait_call(call_id)
        assert call["status"] == "completed" and call["endReason"].endswith("caller silent")


async def test_a_slow_tool_gets_a_filler_then_its_answer(conn: str) -> None:
    async with slow_inventory(1.2), line(conn, {"slowTools": {"fillerAfterMs": 300}}, time_scale=10) as stack:
        call_id = await stack.place("check_inventory", called=LINE)
        summary = await stack.wait_ended(call_id, timeout=60)
        said = [text for speaker, text in summary["transcript"] if speaker == "assistant"]
        marks = summary["marks"]
        gap_ms = marks["filler_requested"] - marks["function_call_sent"]
        assert gap_ms <= 300 + 250, f"silence before the filler: {gap_ms} ms (threshold 300 ms)"
        filler = next(i for i, t in enumerate(said) if t == "One moment while I check that.")
        answer = next(i for i, t in enumerate(said) if "twelve pairs" in t)
        assert filler < answer, said
        assert list(summary["toolOutputs"].values())[0]["in_stock"] == 12
        call = await stack.wait_call(call_id)
        assert call["toolCalls"][0]["success"] is True and call["toolCalls"][0]["duration"] >= 1000


async def test_a_tool_past_its_timeout_is_answered_with_an_apology(conn: str) -> None:
    async with slow_inventory(2.0), line(conn, {"toolTimeouts": {"check_inventory": 0.5}}, time_scale=10) as stack:
        call_id = await stack.place("check_inventory", called=LINE)
        summary = await stack.wait_ended(call_id, timeout=60)
        output = list(summary["toolOutputs"].values())[0]
        assert output["error"] == "timeout"
        assert any(
            i.startswith("Apologise") or "\nApologise" in i for i in stack.sim.calls[call_id].response_instructions
        )
        call = await stack.wait_call(call_id)
        assert call["toolCalls"][0]["success"] is False and call["toolCalls"][0]["error"] == "timeout"


async def test_a_setting_the_service_refuses_is_left_out_not_the_call(conn: str) -> None:
    """As with the voice: a profile setting a service version does not know (here noise
    reduction, refused with unknown_parameter) costs that setting, never the call."""
    async with line(conn, {"noiseReduction": "far_field"}) as stack:
        call_id = await stack.place(
            "check_inventory", called=LINE, faults={"reject_params": ["audio.input.noise_reduction"]}
        )
        summary = await stack.wait_ended(call_id, timeout=60)
        accepted = stack.sim.calls[call_id].accept_body or {}
        assert "noise_reduction" not in accepted["audio"]["input"] and accepted["audio"]["output"]["voice"] == "marin"
        # The session learns it from its own session.update (refused once), then resends without it.
        assert [e["param"] for e in summary["errorsSent"]] == ["session.audio.input.noise_reduction"]
        assert summary["clientEventTypes"].count("session.update") == 2
        call = await stack.wait_call(call_id)
        assert call["status"] == "completed" and call["toolCalls"][0]["success"] is True
