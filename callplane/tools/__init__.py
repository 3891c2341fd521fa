"""Tools the assistant can call: one module per tool, each exporting `TOOL`.

A tool is a pydantic arguments model plus an async handler. The JSON schema sent in the accept
and in `session.update` is generated from the model, so the schema and the validation can never
disagree. The Function App only reads `schemas()`; the session host runs the handlers.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from typing import Any

from pydantic import BaseModel


class Action(StrEnum):
    """What the session must do after a tool returns, beyond sending its output."""

    NONE = "none"
    HANDOFF = "handoff"
    END_CALL = "end_call"


@dataclass(frozen=True, slots=True)
class ToolContext:
    call_id: str
    caller_phone: str | None
    handoff_target: str  # empty when no human is reachable


@dataclass(slots=True)
class ToolResult:
    output: dict[str, Any]
    follow_up: str | None = None
    action: Action = Action.NONE
    action_arg: str | None = None


Handler = Callable[[Any, ToolContext], Awaitable[ToolResult]]


@dataclass(frozen=True, slots=True)
class Tool:
    name: str
    description: str
    args: type[BaseModel]
    handler: Handler
    timeout_s: float = 5.0
    # Irreversible: never run for a response the caller interrupted (a hallucinated hang-up
    # must not cut off a live caller).
    irreversible: bool = False

    def schema(self) -> dict[str, Any]:
        params = self.args.model_json_schema()
        params.pop("title", None)
        for prop in params.get("properties", {}).values():
            prop.pop("title", None)
        params.setdefault("properties", {})
        params["additionalProperties"] = False
        return {"type": "function", "name": self.name, "description": self.description, "parameters": params}


def _discover() -> dict[str, Tool]:
    found: dict[str, Tool] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        tool = getattr(module, "TOOL", None)
        if isinstance(tool, Tool):
            if tool.name in found:
                raise RuntimeError(f"two tools are named {tool.name}")
            found[tool.name] = tool
    return found


TOOLS: dict[str, Tool] = _discover()


def schemas(names: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
    """The JSON schemas of `names` (default: every tool), built once per set: generating them
    costs ~15 ms, once per call otherwise. The list is the caller's; the schemas in it are
    shared and must not be changed (a deep copy per accept cost ~1 ms of CPU per call)."""
    return list(_schemas(tuple(TOOLS) if names is None else names))


@cache
def _schemas(names: tuple[str, ...]) -> list[dict[str, Any]]:
    return [TOOLS[name].schema() for name in names]
