from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from callplane.tools import Tool, ToolContext, ToolResult
from callplane.tools._data import load


class Args(BaseModel):
    product: str = Field(min_length=2, max_length=80, description="Product name or SKU")
    store: str | None = Field(default=None, description="Store city, e.g. Seattle; all stores when omitted")


async def handle(args: Args, ctx: ToolContext) -> ToolResult:
    query = args.product.lower()
    products: list[dict[str, Any]] = load("products")
    match = next((p for p in products if query in p["name"].lower() or query == p["sku"].lower()), None)
    if match is None:
        return ToolResult({"found": False, "product": args.product}, follow_up="Offer to search the catalogue.")
    stock: dict[str, int] = match["stock"]
    if args.store:
        city = args.store.lower()
        if city not in stock:
            return ToolResult({"found": True, "product": match["name"], "error": f"no store in {args.store}"})
        return ToolResult({"found": True, "product": match["name"], "store": city, "in_stock": stock[city]})
    return ToolResult({"found": True, "product": match["name"], "in_stock_by_store": stock})


TOOL = Tool("check_inventory", "Check whether a product is in stock, optionally at one store.", Args, handle)
