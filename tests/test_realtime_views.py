"""The slim views of large server events (callplane/realtime_events.py) against the `openai`
package's classes for the same events: same names, same values, and the same events refused."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from callplane.realtime_events import SERVER_EVENTS, VIEWS, output_items, parse_server_event
from simulator import protocol as p


def sample(etype: str) -> dict[str, Any]:
    if etype.startswith("session."):
        config = {
            "instructions": "Be brief. " * 200,
            "tools": [
                {
                    "type": "function",
                    "name": "get_weather",
                    "description": "Weather",
                    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
                }
            ],
        }
        return p.event(etype, session=p.session_object(config, 1_796_000_000))
    if etype == "response.done":
        output = [
            p.user_item("item_u", "hello"),
            p.function_call_item("item_f", "call_1", "get_weather", '{"city": "Seattle"}'),
            p.message_item("item_m", "It is sunny."),
            p.output_item("item_o", "call_0", "{}"),
        ]
        return p.event(etype, response=p.response_object("resp_1", "cancelled", output))
    return p.event(etype, response=p.response_object("resp_1", "in_progress", []))


def declared(model: type[BaseModel], name: str) -> bool:
    return name in model.model_fields


@pytest.mark.parametrize("etype", sorted(VIEWS))
def test_a_view_reads_what_the_sdk_class_reads(etype: str) -> None:
    ev = sample(etype)
    full = SERVER_EVENTS[etype].model_validate(ev)
    view = parse_server_event(json.dumps(ev), etype)
    assert type(view) is VIEWS[etype]
    for name in type(view).model_fields:
        assert declared(SERVER_EVENTS[etype], name), f"{etype}: the SDK has no field {name}"
        if name in ("session", "response"):
            inner_view, inner_full = getattr(view, name), getattr(full, name)
            for inner in type(inner_view).model_fields:
                # `expires_at` is sent but undeclared by the SDK's session types: it is an extra there.
                theirs = getattr(inner_full, inner, None) or (inner_full.model_extra or {}).get(inner)
                if inner == "output":  # read through output_items: the SDK's classes, the ones acted on
                    acted = [i for i in theirs if i.type == "function_call" or getattr(i, "role", "") == "assistant"]
                    assert output_items(getattr(inner_view, inner)) == acted
                    assert [i.type for i in acted] == ["function_call", "message"]
                    continue
                assert getattr(inner_view, inner) == theirs, f"{etype}.{name}.{inner}"
        else:
            assert getattr(view, name) == getattr(full, name)


@pytest.mark.parametrize("etype", sorted(VIEWS))
def test_a_view_refuses_what_breaks_the_fields_it_reads(etype: str) -> None:
    ev = sample(etype)
    del ev["event_id"]
    with pytest.raises(ValidationError):
        parse_server_event(json.dumps(ev), etype)
    ev = sample(etype)
    ev["session" if etype.startswith("session.") else "response"] = "not an object"
    for model in (VIEWS[etype], SERVER_EVENTS[etype]):
        with pytest.raises(ValidationError):
            model.model_validate_json(json.dumps(ev))
    with pytest.raises(ValidationError):
        other = "response.created" if etype == "response.done" else "response.done"
        parse_server_event(json.dumps({**sample(etype), "type": other}), etype)


def test_events_without_a_view_are_the_sdk_classes() -> None:
    etype = "response.output_audio_transcript.delta"
    ev = p.event(etype, response_id="resp_1", item_id="item_1", output_index=0, content_index=0, delta="Hi")
    assert type(parse_server_event(json.dumps(ev), etype)) is SERVER_EVENTS[etype]


def test_a_malformed_output_item_is_refused_as_the_sdk_refuses_it() -> None:
    item = p.function_call_item("item_f", "call_1", "get_weather", "{}")
    item["arguments"] = {"not": "a string"}
    with pytest.raises(ValidationError):
        output_items([item])
    with pytest.raises(ValidationError):
        SERVER_EVENTS["response.done"].model_validate(
            p.event("response.done", response=p.response_object("resp_1", "completed", [item]))
        )


def test_a_response_seen_only_at_its_end_yields_its_calls_and_text() -> None:
    """A socket that attaches mid-response (a takeover) sees no deltas, only `response.done`: its
    function calls and the assistant's words come from the output items."""
    from session_host.call_state import PendingResponse
    from session_host.session_events import take_output

    view = parse_server_event(json.dumps(sample("response.done")), "response.done")
    assert isinstance(view, VIEWS["response.done"])
    resp = PendingResponse("resp_1")
    take_output(resp, output_items(view.response.output))  # type: ignore[attr-defined]
    take_output(resp, output_items(view.response.output))  # type: ignore[attr-defined]
    assert resp.calls == [("call_1", "get_weather", '{"city": "Seattle"}')], "each call once"
    assert resp.text == "It is sunny."
