from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, model_validator

from callplane.tools import Tool, ToolContext, ToolResult
from callplane.tools._data import load


class Args(BaseModel):
    city: str | None = Field(default=None, min_length=2, max_length=80)
    zip_code: str | None = Field(default=None, pattern=r"^\d{5}$")

    @model_validator(mode="after")
    def _one(self) -> Args:
        if not (self.city or self.zip_code):
            raise ValueError("give a city or a zip_code")
        return self


async def handle(args: Args, ctx: ToolContext) -> ToolResult:
    stores: list[dict[str, Any]] = load("stores")
    for store in stores:
        if (args.city and args.city.strip().lower() == store["city"]) or (
            args.zip_code and args.zip_code[:3] in store["zip_prefixes"]
        ):
            return ToolResult({"found": True, "name": store["name"], "address": store["address"]})
    return ToolResult(
        {"found": False, "nearest_options": [s["name"] for s in stores]},
        follow_up="Say there is no store there and name the closest cities we have.",
    )


TOOL = Tool("find_store_location", "Find the nearest store by city or zip code.", Args, handle)
