from __future__ import annotations

from pydantic import BaseModel, Field

from callplane.tools import Tool, ToolContext, ToolResult
from callplane.tools._data import load


class Args(BaseModel):
    order_id: str = Field(
        pattern=r"^[A-Za-z]{4}-?\d{5}$", description="Order number as the caller says it, e.g. ACME-12345"
    )


async def handle(args: Args, ctx: ToolContext) -> ToolResult:
    order_id = args.order_id.upper()
    if "-" not in order_id:
        order_id = f"{order_id[:4]}-{order_id[4:]}"
    order = load("orders").get(order_id)
    if order is None:
        return ToolResult(
            {"found": False, "order_id": order_id},
            follow_up="Tell the caller you could not find that order and ask them to repeat the number.",
        )
    return ToolResult({"found": True, "order_id": order_id, **order})


TOOL = Tool("lookup_order", "Look up the status of an order by its order number.", Args, handle)
