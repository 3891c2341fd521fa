"""The hand-off from the Function App to a session host: `POST /internal/calls`, signed like a
webhook with HANDOFF_SECRET, carrying the W3C `traceparent`.

Hand-offs (and accept outcomes) that the Function App sends at the same moment travel together:
`POST /internal/calls/batch` and `POST /internal/accept-outcomes` carry up to `MAX_BATCH` of them
in one signed request, each answered on its own (the status and body the single route would
give). In a burst of calls this spares a connection and a request per call on both sides."""

from __future__ import annotations

import json
import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, Field, PrivateAttr

from callplane.ids import CallId, WebhookId

HANDOFF_PATH = "/internal/calls"
# The Function App tells the owner how the accept went; only then does it open the socket.
OUTCOME_PATH = "/internal/calls/{call_id}/accept-outcome"
HANDOFF_BATCH_PATH = "/internal/calls/batch"
OUTCOME_BATCH_PATH = "/internal/accept-outcomes"
MAX_BATCH = 100
BATCH_BYTES = 1024 * 1024  # the senders' budget for a batch's bodies (a larger body goes alone)
MAX_BATCH_BODY = 2 * BATCH_BYTES  # what a session host reads of a batch (bodies plus their envelope)
# A batch is answered one JSON line per message, `{"i": index, "status": ..., "body": {...}}`, in
# the order the answers are decided.
BATCH_CONTENT_TYPE = "application/x-ndjson"


# The webhook's body limit plus room for the hand-off's own fields: whatever SIP headers the
# webhook accepted, the hand-off carries.
MAX_HANDOFF = 1024 * 1024 + 64 * 1024
STORED_HEADER_BYTES = 16 * 1024


def clean_text(value: str) -> str:
    """A lone surrogate (valid in a JSON escape, not in UTF-8) becomes U+FFFD, so the text can be
    encoded, stored and parsed again everywhere downstream."""
    return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


class SipHeader(BaseModel):
    name: Annotated[str, AfterValidator(clean_text)]
    value: Annotated[str, AfterValidator(clean_text)]


class HandoffRequest(BaseModel):
    callId: CallId
    callerPhone: str | None = None
    sipHeaders: list[SipHeader] = Field(default_factory=list)
    webhookId: WebhookId
    receivedAt: int = Field(description="epoch ms when the webhook arrived")
    # The agent profile the Function App chose and accepted the call with (callplane.profiles
    # ChosenProfile as JSON): the session uses the very same version for the whole call.
    profile: dict[str, Any] | None = None

    # Decided by the Function App on the number as dialled (not sent: the hand-off is only made
    # for admitted callers).
    _admitted: bool = PrivateAttr(default=True)

    def body(self) -> bytes:
        return json.dumps(self.model_dump(mode="json"), separators=(",", ":")).encode()

    def compact(self) -> HandoffRequest:
        """The request as stored with the call's lease (a table property holds 64 KiB): SIP
        headers cut to STORED_HEADER_BYTES in all, each value to 1 KiB. The session needs only
        the caller's number, which is already taken out."""
        if sum(len(h.name) + len(h.value) for h in self.sipHeaders) <= STORED_HEADER_BYTES and all(
            len(h.value) <= 1024 and len(h.name) <= 256 for h in self.sipHeaders
        ):
            return self  # nothing to cut (the usual case): no copy
        kept: list[SipHeader] = []
        budget = STORED_HEADER_BYTES
        for header in self.sipHeaders:
            value = header.value[:1024]
            budget -= len(header.name) + len(value)
            if budget < 0:
                break
            kept.append(SipHeader(name=header.name[:256], value=value))
        return self.model_copy(update={"sipHeaders": kept})


class AcceptOutcome(BaseModel):
    """What became of the accept of a reserved call. `retrying`: it failed in a way the service's
    retry of the webhook may fix (a 5xx), so the reservation stands a while longer."""

    callId: CallId
    accepted: bool
    retrying: bool = False
    error: str | None = Field(default=None, max_length=500)

    def body(self) -> bytes:
        return self.model_dump_json().encode()


class BatchItem(BaseModel):
    """One message of a batch: its body as the single route takes it (validated on its own, so
    one bad message is refused alone) and its W3C trace context."""

    body: dict[str, Any]
    traceparent: str | None = Field(default=None, max_length=128)
    tracestate: str | None = Field(default=None, max_length=512)

    def trace_headers(self) -> dict[str, str]:
        return {k: v for k, v in (("traceparent", self.traceparent), ("tracestate", self.tracestate)) if v}


class Batch(BaseModel):
    items: list[BatchItem] = Field(min_length=1, max_length=MAX_BATCH)


class BatchAnswer(BaseModel):
    """The answer to one message of a batch (line `i` of the answer): what its single route
    would have said."""

    i: int = Field(ge=0, lt=MAX_BATCH)
    status: int = Field(ge=100, le=599)
    body: dict[str, Any]


_URI_USER = re.compile(r"(?:sips?|tel):([^@;>\s]+)", re.IGNORECASE)


def caller_phone(sip_headers: list[SipHeader]) -> str | None:
    """The user part of the `From` URI (`"Ann" <sip:+1425...@host>;tag=x` → `+1425...`)."""
    for header in sip_headers:
        if header.name.lower() in ("from", "f"):
            match = _URI_USER.search(header.value)
            if match:
                return match.group(1)
    return None


_PHONE_PUNCTUATION = str.maketrans("", "", " -.()/\t")


def e164(number: str) -> str:
    """`+1 (425) 555-0123` → `+14255550123`: the form caller patterns are matched in, so a
    pattern cannot be dodged with punctuation. Anything that is not a phone number is kept."""
    bare = number.translate(_PHONE_PUNCTUATION)
    digits = bare.removeprefix("+")
    return bare if digits.replace("*", "").replace("?", "").isdigit() else number


# SIP headers that name a party; dropped from what is stored when numbers are kept only hashed.
IDENTITY_HEADERS = {"from", "f", "to", "t", "contact", "m", "p-asserted-identity", "remote-party-id", "diversion"}


def hash_number(key: str, number: str) -> str:
    """A caller's number as stored with HASH_CALLER_NUMBERS: a keyed hash of its E.164 form, so
    the same caller always maps to the same value (and can be found and deleted) but the number
    cannot be read back, nor guessed without the key."""
    import hashlib
    import hmac

    return "h:" + hmac.new(key.encode(), e164(number).encode(), hashlib.sha256).hexdigest()[:24]
