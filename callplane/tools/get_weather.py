from __future__ import annotations

from pydantic import BaseModel, Field

from callplane.tools import Tool, ToolContext, ToolResult
from callplane.tools._data import load


class Args(BaseModel):
    location: str = Field(min_length=2, max_length=80, description="City name")


async def handle(args: Args, ctx: ToolContext) -> ToolResult:
    report = load("weather").get(args.location.strip().lower())
    if report is None:
        return ToolResult({"found": False, "location": args.location}, follow_up="Say you have no forecast there.")
    return ToolResult({"found": True, "location": args.location, **report})


TOOL = Tool("get_weather", "Get the current weather for a city.", Args, handle)
