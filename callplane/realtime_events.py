"""Realtime wire events as typed models: the `openai` package's classes, looked up by `type`.

The SDK's unions carry a discriminator annotation that pydantic does not read, so validating
against a bare union tries every member (and reports errors for all of them). Looking the class
up by `type` first is both exact and cheap: `model_validate_json` on one class costs about as much
as `json.loads` (≈4 µs for a transcript delta here).

Four events are large and read for a few fields: `session.created`/`session.updated` carry the whole
session (instructions, every tool's schema; ~5 KB, 200-400 µs to build as the SDK's models) and
are read for `expires_at`; `response.created` is read for the response id; `response.done` for
its id, status, usage and the function calls and assistant text in its output, where the SDK's
item union (nine classes, tried one after another) is most of the cost. For those the session
parses a *view*: the same event with only the fields it reads, under the SDK's names and types
(tests hold each view to the SDK's class for its type), in a few microseconds.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args, get_origin

from openai.types.realtime import (
    RealtimeClientEvent,
    RealtimeConversationItemAssistantMessage,
    RealtimeConversationItemFunctionCall,
    RealtimeResponseUsage,
    RealtimeServerEvent,
)
from pydantic import BaseModel, ConfigDict


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


class _View(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class SessionRef(_View):
    # Sent by the service, not declared by the SDK's session types (there it lands in extras).
    expires_at: float | None = None


class SessionEventView(_View):
    """`session.created` / `session.updated`, for the session's expiry."""

    type: Literal["session.created", "session.updated"]
    event_id: str
    session: SessionRef


class ResponseRef(_View):
    id: str | None = None


class ResponseCreatedView(_View):
    """`response.created`, for the response's id."""

    type: Literal["response.created"]
    event_id: str
    response: ResponseRef


class ResponseDoneRef(_View):
    id: str | None = None
    status: Literal["completed", "cancelled", "failed", "incomplete", "in_progress"] | None = None
    usage: RealtimeResponseUsage | None = None
    output: list[dict[str, Any]] | None = None  # read through `output_items`


class ResponseDoneView(_View):
    """`response.done`, for what the response left: its status, usage and output items."""

    type: Literal["response.done"]
    event_id: str
    response: ResponseDoneRef


# The output items the session acts on, by `type` (and `role`): each as the SDK's own class.
_OUTPUT_ITEMS: dict[tuple[str, str | None], type[BaseModel]] = {
    ("function_call", None): RealtimeConversationItemFunctionCall,
    ("message", "assistant"): RealtimeConversationItemAssistantMessage,
}


def output_items(output: list[dict[str, Any]] | None) -> list[BaseModel]:
    """A response's function calls and assistant messages, in order, validated as the SDK's
    classes (others are skipped unread); raises ValidationError for a malformed one."""
    found: list[BaseModel] = []
    for item in output or []:
        kind = str(item.get("type"))
        model = _OUTPUT_ITEMS.get((kind, None)) or _OUTPUT_ITEMS.get((kind, str(item.get("role"))))
        if model is not None:
            found.append(model.model_validate(item))
    return found


VIEWS: dict[str, type[BaseModel]] = {
    "response.done": ResponseDoneView,
    "session.created": SessionEventView,
    "session.updated": SessionEventView,
    "response.created": ResponseCreatedView,
}


def parse_server_event(raw: str, etype: str) -> BaseModel:
    """Validate `raw` as the server event `etype` (its view, when the session reads only part of
    it); raises KeyError (unknown type) or ValidationError."""
    return (VIEWS.get(etype) or SERVER_EVENTS[etype]).model_validate_json(raw)
