from __future__ import annotations

from pydantic import BaseModel, Field

from callplane.tools import Tool, ToolContext, ToolResult
from callplane.tools._data import load


class Args(BaseModel):
    date: str | None = Field(
        default=None, pattern=r"^\d{4}-\d{2}-\d{2}$", description="A date (YYYY-MM-DD) to check for holiday hours"
    )


async def handle(args: Args, ctx: ToolContext) -> ToolResult:
    hours = load("hours")
    out = {k: hours[k] for k in ("timezone", "weekdays", "saturday", "sunday", "support_line")}
    if args.date:
        out["on_date"] = hours["holidays"].get(args.date, "regular hours")
    return ToolResult(out)


TOOL = Tool("check_company_hours", "Opening hours of the stores and the support line.", Args, handle)
