"""Wire shapes of the Realtime control plane: server events built as the real service sends them,
client events validated against the `openai` package's types, and the REST error envelope."""

from __future__ import annotations

import itertools
import json
import time
import uuid
from typing import Any

from openai.types.realtime import RealtimeClientEvent
from pydantic import TypeAdapter, ValidationError

CLIENT_EVENTS: TypeAdapter[Any] = TypeAdapter(RealtimeClientEvent)
_ids = itertools.count(1)

Event = dict[str, Any]


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:20]}"


def event(etype: str, **fields: Any) -> Event:
    return {"type": etype, "event_id": f"event_{next(_ids):08d}", **fields}


def rest_error(message: str, code: str | None, etype: str = "invalid_request_error",
               param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": etype, "param": param, "code": code}}


def error_event(code: str, message: str, *, param: str | None = None, client_event_id: str | None = None,
                etype: str = "invalid_request_error") -> Event:
    return event("error", error={"type": etype, "code": code, "message": message, "param": param,
                                 "event_id": client_event_id})


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
    try:
        CLIENT_EVENTS.validate_python(doc)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = [str(p) for p in first["loc"]]
        # Drop the discriminator tag pydantic puts first, keeping the field path.
        if loc and loc[0] == doc.get("type"):
            loc = loc[1:]
        param = ".".join(loc) or None
        code = "invalid_value" if first["type"] not in ("missing", "union_tag_invalid") else "invalid_event"
        if first["type"] == "union_tag_invalid":
            msg = f"Invalid value: '{doc.get('type')}'. Supported values are the Realtime client events."
            param = "type"
        else:
            msg = f"Invalid '{param}': {first['msg']}."
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


def response_object(rid: str, status: str, output: list[dict[str, Any]],
                    status_details: dict[str, Any] | None = None) -> dict[str, Any]:
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
        "usage": {"total_tokens": 120, "input_tokens": 80, "output_tokens": 40,
                  "input_token_details": {"text_tokens": 60, "audio_tokens": 20, "image_tokens": 0,
                                          "cached_tokens": 0},
                  "output_token_details": {"text_tokens": 10, "audio_tokens": 30}} if done else None,
        "metadata": None,
    }


def message_item(item_id: str, text: str, status: str = "completed") -> dict[str, Any]:
    return {"id": item_id, "object": "realtime.item", "type": "message", "status": status, "role": "assistant",
            "content": [{"type": "output_audio", "transcript": text}]}


def function_call_item(
    item_id: str, call_id: str, name: str, arguments: str, status: str = "completed"
) -> dict[str, Any]:
    return {"id": item_id, "object": "realtime.item", "type": "function_call", "status": status,
            "call_id": call_id, "name": name, "arguments": arguments}


def user_item(item_id: str, transcript: str | None) -> dict[str, Any]:
    return {"id": item_id, "object": "realtime.item", "type": "message", "status": "completed", "role": "user",
            "content": [{"type": "input_audio", "transcript": transcript}]}


def now_s() -> int:
    return int(time.time())
