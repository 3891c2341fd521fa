"""Realtime wire events as typed models: the `openai` package's classes, looked up by `type`.

The SDK's unions carry a discriminator annotation that pydantic does not read, so validating
against a bare union tries every member (and reports errors for all of them). Looking the class
up by `type` first is both exact and cheap: `model_validate_json` on one class costs about as much
as `json.loads` (≈4 µs for a transcript delta here).
"""

from __future__ import annotations

from typing import Annotated, Any, get_args, get_origin

from openai.types.realtime import RealtimeClientEvent, RealtimeServerEvent
from pydantic import BaseModel


def by_type(union: Any) -> dict[str, type[BaseModel]]:
    members = get_args(get_args(union)[0]) if get_origin(union) is Annotated else get_args(union)
    table: dict[str, type[BaseModel]] = {}
    for model in members:
        for literal in get_args(model.model_fields["type"].annotation):
            table[literal] = model
    return table


SERVER_EVENTS: dict[str, type[BaseModel]] = by_type(RealtimeServerEvent)
CLIENT_EVENTS: dict[str, type[BaseModel]] = by_type(RealtimeClientEvent)
_PREFIX = '{"type":"'


def peek_type(raw: str) -> str | None:
    """The event's `type` without a full parse when it comes first (as the service sends it)."""
    if raw.startswith(_PREFIX):
        end = raw.find('"', len(_PREFIX))
        if end > 0:
            return raw[len(_PREFIX) : end]
    return None


def parse_server_event(raw: str, etype: str) -> BaseModel:
    """Validate `raw` as the server event `etype`; raises KeyError (unknown type) or ValidationError."""
    return SERVER_EVENTS[etype].model_validate_json(raw)
