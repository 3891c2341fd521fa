from __future__ import annotations

from pydantic import BaseModel, Field

from callplane.tools import Action, Tool, ToolContext, ToolResult


class Args(BaseModel):
    reason: str = Field(default="conversation finished", max_length=200)


async def handle(args: Args, ctx: ToolContext) -> ToolResult:
    return ToolResult({"ending": True}, action=Action.END_CALL, action_arg=args.reason)


TOOL = Tool(
    "end_call",
    "Hang up after you have said goodbye and the caller has nothing more.",
    Args,
    handle,
    irreversible=True,
)
