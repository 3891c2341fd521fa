"""Runs one function call: validate arguments, run the handler with a timeout, shape the output.

Every failure becomes an output the model can act on (never an exception into the session), and
every call is timed for the call record.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from callplane.clock import now_ms
from callplane.tools import TOOLS, Action, ToolContext, ToolResult

log = logging.getLogger("session_host.tools")


@dataclass(slots=True)
class ToolOutcome:
    name: str
    output: dict[str, Any]
    follow_up: str | None
    action: Action
    action_arg: str | None
    success: bool
    error: str | None
    duration_ms: float
    started_ms: int


def _validation_output(name: str, exc: ValidationError) -> dict[str, Any]:
    problems = [
        {"field": ".".join(str(p) for p in e["loc"]) or "(arguments)", "problem": e["msg"]} for e in exc.errors()
    ]
    return {
        "error": "invalid_arguments",
        "tool": name,
        "problems": problems,
        "hint": "Ask the caller for the missing or corrected details, then call the tool again.",
    }


TIMEOUT_APOLOGY = (
    "Apologise in one short sentence: looking that up is taking too long right now. "
    "Offer to try again or to arrange a callback."
)


async def run_tool(
    name: str, raw_arguments: str, ctx: ToolContext, timeout_s: float | None = None, allowed: bool = True
) -> ToolOutcome:
    """Run one function call. `timeout_s` overrides the tool's own (a profile's per-tool
    timeout); `allowed=False` answers that the call's profile does not offer the tool."""
    started = time.perf_counter()
    started_ms = now_ms()
    tool = TOOLS.get(name)

    def done(result: ToolResult | None, output: dict[str, Any], error: str | None) -> ToolOutcome:
        return ToolOutcome(
            name=name,
            output=output,
            follow_up=result.follow_up if result else None,
            action=result.action if result else Action.NONE,
            action_arg=result.action_arg if result else None,
            success=error is None,
            error=error,
            duration_ms=round((time.perf_counter() - started) * 1000, 3),
            started_ms=started_ms,
        )

    if tool is None:
        return done(None, {"error": "unknown_tool", "tool": name, "available": sorted(TOOLS)}, "unknown tool")
    if not allowed:  # a tool of the library that this call's profile does not offer
        return done(
            None,
            {"error": "unknown_tool", "tool": name, "hint": "This tool is not available on this line."},
            "unknown tool",
        )
    try:
        parsed = json.loads(raw_arguments or "{}")
        args = tool.args.model_validate(parsed)
    except ValueError as exc:
        if isinstance(exc, ValidationError):
            return done(None, _validation_output(name, exc), "invalid arguments")
        return done(
            None,
            {
                "error": "invalid_arguments",
                "tool": name,
                "problems": [{"field": "(arguments)", "problem": "arguments are not valid JSON"}],
            },
            "invalid arguments",
        )
    try:
        # A timeout scope, not wait_for: no extra task, so a burst of tool calls does not wait
        # an extra turn of the loop each.
        async with asyncio.timeout(timeout_s or tool.timeout_s):
            result = await tool.handler(args, ctx)
    except TimeoutError:
        log.warning("tool %s timed out", name, extra={"cat": "TOOL", "call_id": ctx.call_id})
        outcome = done(
            None,
            {"error": "timeout", "tool": name, "hint": "Tell the caller the system is slow and offer a callback."},
            "timeout",
        )
        # Never silence: the next response opens with an apology.
        outcome.follow_up = TIMEOUT_APOLOGY
        return outcome
    except Exception as exc:  # a tool's bug must not end the call
        log.exception("tool %s raised", name, extra={"cat": "TOOL", "call_id": ctx.call_id})
        return done(
            None,
            {"error": "tool_failed", "tool": name, "hint": "Apologise and offer another way to help."},
            type(exc).__name__,
        )
    return done(result, result.output, None)
