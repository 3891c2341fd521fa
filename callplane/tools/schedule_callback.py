from __future__ import annotations

import hashlib

from pydantic import BaseModel, Field

from callplane.tools import Tool, ToolContext, ToolResult


class Args(BaseModel):
    preferred_time: str = Field(min_length=2, max_length=60, description="When to call back, e.g. 'tomorrow 3pm'")
    reason: str = Field(min_length=2, max_length=200, description="What the callback is about")
    phone: str | None = Field(
        default=None, pattern=r"^\+?[0-9 ()-]{7,20}$", description="Number to call; the caller's own when omitted"
    )


async def handle(args: Args, ctx: ToolContext) -> ToolResult:
    number = args.phone or ctx.caller_phone
    if not number:
        return ToolResult(
            {"scheduled": False, "error": "no phone number"},
            follow_up="Ask the caller which number we should call back.",
        )
    ref = "CB-" + hashlib.sha256(f"{ctx.call_id}{args.preferred_time}".encode()).hexdigest()[:6].upper()
    return ToolResult({"scheduled": True, "reference": ref, "when": args.preferred_time})


TOOL = Tool("schedule_callback", "Book a callback from a human agent at a time the caller prefers.", Args, handle)
