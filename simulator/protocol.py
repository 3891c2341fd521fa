"""Wire shapes of the Realtime control plane: server events built as the real service sends them,
client events validated against the `openai` package's types, and the REST error envelope."""

from __future__ import annotations

import itertools
import json
import time
import uuid
from typing import Any

from pydantic import ValidationError

from callplane.realtime_events import CLIENT_EVENTS, SERVER_EVENTS


def check_server_event(ev: Event) -> None:
    """Raise ValidationError unless `ev` has the shape of the `openai` server event of its type."""
    SERVER_EVENTS[ev["type"]].model_validate(ev)


_ids = itertools.count(1)

Event = dict[str, Any]


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:20]}"


def event(etype: str, **fields: Any) -> Event:
    return {"type": etype, "event_id": f"event_{next(_ids):08d}", **fields}


def rest_error(
    message: str, code: str | None, etype: str = "invalid_request_error", param: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": etype, "param": param, "code": code}}


def error_event(
    code: str,
    message: str,
    *,
    param: str | None = None,
    client_event_id: str | None = None,
    etype: str = "invalid_request_error",
) -> Event:
    return event(
        "error", error={"type": etype, "code": code, "message": message, "param": param, "event_id": client_event_id}
    )


def validate_client_event(raw: str) -> tuple[Event | None, Event | None]:
    """(parsed event, None) or (None, error event) the way the real service answers bad input."""
    try:
        doc = json.loads(raw)
    except ValueError:
        return None, error_event("invalid_json", "The event is not valid JSON.")
    if not isinstance(doc, dict):
        return None, error_event("invalid_event", "The event must be a JSON object.")
    client_id = doc.get("event_id") if isinstance(doc.get("event_id"), str) else None
    if "type" not in doc:
        return None, error_event("invalid_event", "The 'type' field is missing.", client_event_id=client_id)
    model = CLIENT_EVENTS.get(doc["type"]) if isinstance(doc["type"], str) else None
    if model is None:
        return None, error_event(
            "invalid_value",
            f"Invalid value: '{doc['type']}'. Supported values are the Realtime client events.",
            param="type",
            client_event_id=client_id,
        )
    try:
        model.model_validate(doc)
    except ValidationError as exc:
        first = exc.errors()[0]
        # Union members appear in the path as class names; the service names only fields.
        param = ".".join(str(p) for p in first["loc"] if not str(p)[:1].isupper()) or None
        if first["type"] == "missing":
            code, msg = "missing_required_parameter", f"Missing required parameter: '{param}'."
        else:
            code, msg = "invalid_value", f"Invalid value for '{param}': {first['msg']}."
        return None, error_event(code, msg, param=param, client_event_id=client_id)
    return doc, None


def session_object(config: dict[str, Any], expires_at: int) -> dict[str, Any]:
    audio = config.get("audio") or {}
    out_cfg = audio.get("output") or {}
    in_cfg = audio.get("input") or {}
    return {
        "type": "realtime",
        "object": "realtime.session",
        "id": config.get("_session_id") or new_id("sess"),
        "model": config.get("model", "gpt-realtime"),
        "output_modalities": config.get("output_modalities", ["audio"]),
        "instructions": config.get("instructions", ""),
        "tools": config.get("tools", []),
        "tool_choice": config.get("tool_choice", "auto"),
        "max_output_tokens": "inf",
        "tracing": None,
        "prompt": None,
        "expires_at": expires_at,
        "audio": {
            "input": {
                "format": {"type": "audio/pcmu"},
                "transcription": in_cfg.get("transcription"),
                "noise_reduction": None,
                "turn_detection": in_cfg.get("turn_detection", {"type": "server_vad"}),
            },
            "output": {
                "format": {"type": "audio/pcmu"},
                "voice": out_cfg.get("voice") or config.get("voice") or "alloy",
                "speed": 1.0,
            },
        },
        "include": None,
    }


def response_object(
    rid: str, status: str, output: list[dict[str, Any]], status_details: dict[str, Any] | None = None
) -> dict[str, Any]:
    done = status != "in_progress"
    return {
        "object": "realtime.response",
        "id": rid,
        "status": status,
        "status_details": status_details,
        "output": output,
        "conversation_id": "conv_sim",
        "output_modalities": ["audio"],
        "max_output_tokens": "inf",
        "audio": {"output": {"format": {"type": "audio/pcmu"}, "voice": "alloy"}},
        # Shaped like the service's; sized from the output so calls differ (tests read the sums
        # the caller harness kept and compare them with what was stored).
        "usage": _usage(output) if done else None,
        "metadata": None,
    }


def _usage(output: list[dict[str, Any]]) -> dict[str, Any]:
    spoken = sum(len(str(c.get("transcript") or "")) for item in output for c in item.get("content") or [])
    audio_out = 40 + spoken // 2
    text_out = 10 + spoken // 8
    return {
        "total_tokens": 900 + audio_out + text_out,
        "input_tokens": 900,
        "output_tokens": audio_out + text_out,
        "input_token_details": {
            "text_tokens": 500,
            "audio_tokens": 400,
            "image_tokens": 0,
            "cached_tokens": 300,
            "cached_tokens_details": {"text_tokens": 200, "audio_tokens": 100, "image_tokens": 0},
        },
        "output_token_details": {"text_tokens": text_out, "audio_tokens": audio_out},
    }


def message_item(item_id: str, text: str, status: str = "completed") -> dict[str, Any]:
    return {
        "id": item_id,
        "object": "realtime.item",
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": [{"type": "output_audio", "transcript": text}],
    }


def function_call_item(
    item_id: str, call_id: str, name: str, arguments: str, status: str = "completed"
) -> dict[str, Any]:
    return {
        "id": item_id,
        "object": "realtime.item",
        "type": "function_call",
        "status": status,
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
    }


def output_item(item_id: str, call_id: str, output: str) -> dict[str, Any]:
    """A client's function_call_output as the server echoes it in conversation.item events."""
    return {
        "id": item_id,
        "type": "function_call_output",
        "object": "realtime.item",
        "status": "completed",
        "call_id": call_id,
        "output": output,
    }


def user_item(item_id: str, transcript: str | None) -> dict[str, Any]:
    return {
        "id": item_id,
        "object": "realtime.item",
        "type": "message",
        "status": "completed",
        "role": "user",
        "content": [{"type": "input_audio", "transcript": transcript}],
    }


def now_s() -> int:
    return int(time.time())
