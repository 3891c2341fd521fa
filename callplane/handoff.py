"""The hand-off from the Function App to a session host: `POST /internal/calls`, signed like a
webhook with HANDOFF_SECRET, carrying the W3C `traceparent`."""

from __future__ import annotations

import json
import re

from pydantic import BaseModel, Field

HANDOFF_PATH = "/internal/calls"


class SipHeader(BaseModel):
    name: str
    value: str


class HandoffRequest(BaseModel):
    callId: str = Field(min_length=1, max_length=200)
    callerPhone: str | None = None
    sipHeaders: list[SipHeader] = Field(default_factory=list)
    webhookId: str = Field(min_length=1, max_length=200)
    receivedAt: int = Field(description="epoch ms when the webhook arrived")

    def body(self) -> bytes:
        return json.dumps(self.model_dump(mode="json"), separators=(",", ":")).encode()


_URI_USER = re.compile(r"(?:sips?|tel):([^@;>\s]+)", re.IGNORECASE)


def caller_phone(sip_headers: list[SipHeader]) -> str | None:
    """The user part of the `From` URI (`"Ann" <sip:+1425...@host>;tag=x` → `+1425...`)."""
    for header in sip_headers:
        if header.name.lower() in ("from", "f"):
            match = _URI_USER.search(header.value)
            if match:
                return match.group(1)
    return None
