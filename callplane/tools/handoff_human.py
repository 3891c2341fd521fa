from __future__ import annotations

from pydantic import BaseModel, Field

from callplane.prompts import HANDOFF_GOODBYE
from callplane.tools import Action, Tool, ToolContext, ToolResult


class Args(BaseModel):
    reason: str = Field(min_length=2, max_length=200, description="Why the caller needs a person")


async def handle(args: Args, ctx: ToolContext) -> ToolResult:
    if not ctx.handoff_target:
        return ToolResult(
            {"transferred": False, "error": "no human available"},
            follow_up="Apologise that no colleague is available right now and offer a callback instead.",
        )
    return ToolResult({"transferred": True}, follow_up=HANDOFF_GOODBYE, action=Action.HANDOFF, action_arg=args.reason)


TOOL = Tool(
    "handoff_human",
    "Transfer the caller to a human agent.",
    Args,
    handle,
    irreversible=True,
)
