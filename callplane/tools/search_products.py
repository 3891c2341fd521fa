from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from callplane.tools import Tool, ToolContext, ToolResult
from callplane.tools._data import load


class Args(BaseModel):
    query: str = Field(min_length=2, max_length=80, description="What the caller is looking for")
    max_price: float | None = Field(default=None, gt=0, description="Upper price limit in dollars")
    limit: int = Field(default=3, ge=1, le=5)


async def handle(args: Args, ctx: ToolContext) -> ToolResult:
    words = args.query.lower().split()
    products: list[dict[str, Any]] = load("products")
    hits = [
        {"name": p["name"], "price": p["price"], "sku": p["sku"]}
        for p in products
        if any(w.rstrip("s") in (p["name"] + " " + p["category"]).lower() for w in words)
        and (args.max_price is None or p["price"] <= args.max_price)
    ]
    return ToolResult({"results": hits[: args.limit], "total": len(hits)})


TOOL = Tool("search_products", "Search the product catalogue.", Args, handle)
