"""The tool runner: validation errors, timeouts and exceptions all become outputs the model can
act on, every call is timed, and schemas come from the argument models."""

from __future__ import annotations

import asyncio
import json

import pytest
from pydantic import BaseModel

from callplane.tools import TOOLS, Tool, ToolContext, ToolResult, schemas
from session_host import tools_runner
from session_host.tools_runner import run_tool

CTX = ToolContext(call_id="rtc_t", caller_phone="+14255550100", handoff_target="")


class Empty(BaseModel):
    pass


async def slow(_: Empty, __: ToolContext) -> ToolResult:
    await asyncio.sleep(5)
    return ToolResult({"never": True})


async def broken(_: Empty, __: ToolContext) -> ToolResult:
    raise RuntimeError("database on fire")


@pytest.fixture
def extra_tools(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(TOOLS, "slow_tool", Tool("slow_tool", "slow", Empty, slow, timeout_s=0.05))
    monkeypatch.setitem(TOOLS, "broken_tool", Tool("broken_tool", "broken", Empty, broken))


async def test_timeout_and_exception_become_outputs(extra_tools: None) -> None:
    timed_out = await run_tool("slow_tool", "{}", CTX)
    assert timed_out.success is False and timed_out.error == "timeout"
    assert timed_out.output["error"] == "timeout" and "hint" in timed_out.output
    assert 40 <= timed_out.duration_ms < 1000
    failed = await run_tool("broken_tool", "{}", CTX)
    assert failed.success is False and failed.error == "RuntimeError"
    assert failed.output == {
        "error": "tool_failed",
        "tool": "broken_tool",
        "hint": "Apologise and offer another way to help.",
    }
    assert "fire" not in json.dumps(failed.output), "internal errors are not shown to the model"


async def test_bad_arguments_and_unknown_tools() -> None:
    not_json = await run_tool("lookup_order", "{oops", CTX)
    assert not_json.output["problems"][0]["problem"] == "arguments are not valid JSON"
    wrong = await run_tool("lookup_order", json.dumps({"order_id": "12"}), CTX)
    assert wrong.output["error"] == "invalid_arguments" and wrong.output["problems"][0]["field"] == "order_id"
    extra = await run_tool("get_weather", json.dumps({"location": "Denver", "units": "F"}), CTX)
    assert extra.success, "unknown extra fields are ignored by the model's arguments class"
    unknown = await run_tool("teleport", "{}", CTX)
    assert unknown.output["error"] == "unknown_tool" and "lookup_order" in unknown.output["available"]
    assert tools_runner.TOOLS is TOOLS


def test_schemas_come_from_the_models() -> None:
    by_name = {s["name"]: s for s in schemas()}
    assert set(by_name) == {
        "handoff_human",
        "lookup_order",
        "check_inventory",
        "schedule_callback",
        "get_weather",
        "check_company_hours",
        "search_products",
        "find_store_location",
        "end_call",
    }
    order = by_name["lookup_order"]["parameters"]
    assert order["required"] == ["order_id"] and order["additionalProperties"] is False
    assert order["properties"]["order_id"]["pattern"]
    assert TOOLS["end_call"].irreversible and TOOLS["handoff_human"].irreversible
    assert not TOOLS["lookup_order"].irreversible


async def test_callback_uses_the_callers_number_and_handoff_without_target() -> None:
    booked = await run_tool(
        "schedule_callback", json.dumps({"preferred_time": "tomorrow 3pm", "reason": "return"}), CTX
    )
    assert booked.output["scheduled"] is True and booked.output["reference"].startswith("CB-")
    nobody = await run_tool("handoff_human", json.dumps({"reason": "wants a person"}), CTX)
    assert nobody.output == {"transferred": False, "error": "no human available"}
    assert nobody.action.value == "none"
