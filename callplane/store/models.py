"""Call and transcript models: API JSON (camelCase, epoch ms) and their Table entities."""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Any, Literal

from azure.data.tables import EdmType, EntityProperty
from pydantic import BaseModel, ConfigDict, Field

from callplane.redact import mask_phone


class CallStatus(StrEnum):
    ACTIVE = "active"
    COMPLETED = "completed"
    FAILED = "failed"
    TRANSFERRED = "transferred"
    REJECTED = "rejected"


class ToolCallRecord(BaseModel):
    name: str
    timestamp: int
    duration: float
    success: bool
    error: str | None = None


class CallUsage(BaseModel):
    """Token sums over a call's `response.done` events (the GA usage fields, camelCase)."""

    inputTokens: int = 0
    outputTokens: int = 0
    totalTokens: int = 0
    inputTextTokens: int = 0
    inputAudioTokens: int = 0
    cachedTokens: int = 0
    outputTextTokens: int = 0
    outputAudioTokens: int = 0

    def add(self, usage: Any) -> None:
        inp, out = usage.input_token_details, usage.output_token_details
        self.inputTokens += usage.input_tokens or 0
        self.outputTokens += usage.output_tokens or 0
        self.totalTokens += usage.total_tokens or 0
        if inp is not None:
            self.inputTextTokens += inp.text_tokens or 0
            self.inputAudioTokens += inp.audio_tokens or 0
            self.cachedTokens += inp.cached_tokens or 0
        if out is not None:
            self.outputTextTokens += out.text_tokens or 0
            self.outputAudioTokens += out.audio_tokens or 0


class CallRecord(BaseModel):
    """The admin API's `call` object (docs/api.md); also what is stored."""

    model_config = ConfigDict(validate_assignment=False)

    callId: str
    startTime: int
    endTime: int | None = None
    duration: int | None = None
    status: CallStatus = CallStatus.ACTIVE
    endReason: str | None = None
    transferReason: str | None = None
    callerPhone: str | None = None
    toolCalls: list[ToolCallRecord] = Field(default_factory=list)
    responseCount: int = 0
    userSpeechEvents: int = 0
    bargeInEvents: int = 0
    latencies: list[float] = Field(default_factory=list)
    sentiment: Literal["positive", "neutral", "negative"] = "neutral"
    summary: str | None = None
    messageCount: int = 0
    updatedAt: int = 0
    replica: str | None = None
    # Webhook received → greeting requested, the first-greeting figure (ms).
    greetingDelayMs: float | None = None
    usage: CallUsage = Field(default_factory=CallUsage)
    cost: float = 0.0  # USD: the model's tokens at the configured prices (callplane/pricing.py)
    summaryTokens: int = 0  # the optional model summary's tokens, counted apart from the call's
    profile: str | None = None  # the agent profile the call was accepted with, and its version
    profileVersion: int | None = None

    @property
    def final(self) -> bool:
        return self.status is not CallStatus.ACTIVE


class TranscriptTurn(BaseModel):
    seq: int = Field(exclude=True)
    timestamp: int
    speaker: Literal["user", "assistant"]
    text: str
    sentiment: Literal["positive", "neutral", "negative"] = "neutral"
    interrupted: bool = False
    # The Realtime response or item id: two replicas that both saw a turn around a hand-over
    # write it twice, and readers keep the first.
    turnId: str | None = None


_JSON_FIELDS = ("toolCalls", "latencies", "usage")
_INT64_FIELDS = ("startTime", "endTime", "duration", "updatedAt", "timestamp", "expiresAt", "beatAt", "endedAt")
# Edm.String holds 64 KiB (32K UTF-16 units); keep well under it.
MAX_TEXT = 30_000


def _int64(value: int) -> EntityProperty:
    return EntityProperty(value, EdmType.INT64)


def to_entity(pk: str, rk: str, data: dict[str, Any]) -> dict[str, Any]:
    entity: dict[str, Any] = {"PartitionKey": pk, "RowKey": rk}
    for key, value in data.items():
        if value is None:
            continue
        if key in _JSON_FIELDS:
            entity[key] = json.dumps(value, separators=(",", ":"))
        elif key in _INT64_FIELDS and isinstance(value, int):
            entity[key] = _int64(value)
        elif isinstance(value, str) and len(value) > MAX_TEXT:
            entity[key] = value[:MAX_TEXT]
        else:
            entity[key] = value
    return entity


def from_entity(entity: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in entity.items():
        if key in ("PartitionKey", "RowKey", "Timestamp", "etag"):
            continue
        if isinstance(value, EntityProperty):
            value = value.value
        if key in _JSON_FIELDS and isinstance(value, str):
            value = json.loads(value)
        out[key] = value
    return out


def call_entity(pk: str, rk: str, call: CallRecord) -> dict[str, Any]:
    return to_entity(pk, rk, call.model_dump(mode="json"))


def call_from_entity(entity: dict[str, Any]) -> CallRecord:
    return CallRecord.model_validate(from_entity(entity))


def call_out(call: CallRecord, show_numbers: bool = False) -> dict[str, Any]:
    """A call as the API and the live feed send it: the caller's number masked unless the
    deployment asked for full numbers (SHOW_CALLER_NUMBERS)."""
    doc = call.model_dump(mode="json")
    if not show_numbers and doc.get("callerPhone"):
        doc["callerPhone"] = mask_phone(doc["callerPhone"])
    return doc
