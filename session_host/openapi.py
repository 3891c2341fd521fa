"""The admin API's contract: response models and the OpenAPI document built from them.

One source: the models below produce `/api/openapi.json`, and the tests validate every live
response against the same models with unknown fields forbidden, so the document cannot drift
from what the routes send.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from callplane.store.models import CallRecord


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CallOut(CallRecord):
    model_config = ConfigDict(extra="forbid")


class CallList(_Strict):
    calls: list[CallOut]
    count: int
    next: str | None = Field(description="opaque token for the next page, or null")


class ActiveCalls(_Strict):
    calls: list[CallOut]
    count: int


class Turn(_Strict):
    timestamp: int
    speaker: Literal["user", "assistant"]
    text: str
    sentiment: Literal["positive", "neutral", "negative"]
    interrupted: bool


class Transcript(_Strict):
    callId: str
    transcript: list[Turn]
    count: int


class LatencyBuckets(_Strict):
    edgesMs: list[float]
    counts: list[int]


class Stats(_Strict):
    totalCalls: int
    activeCalls: int
    completedCalls: int
    failedCalls: int
    transferredCalls: int
    rejectedCalls: int
    averageCallDuration: int
    totalToolCalls: int
    toolCallsByType: dict[str, int]
    averageLatencyMs: float
    totalLatencyMs: float
    latencySamples: int
    p50LatencyMs: float | None
    p95LatencyMs: float | None
    p99LatencyMs: float | None
    bargeInEvents: int
    latencyBuckets: LatencyBuckets
    uptime: int
    startTime: int


class Error(_Strict):
    error: str


ROUTES: list[tuple[str, str, type[BaseModel], str, list[dict[str, Any]]]] = [
    ("/api/stats", "get", Stats, "Rollup statistics across all replicas", []),
    ("/api/calls", "get", CallList, "Recent calls, newest first", [
        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 200, "default": 10}},
        {"name": "next", "in": "query", "schema": {"type": "string"}},
    ]),
    ("/api/calls/active", "get", ActiveCalls, "Live calls", []),
    ("/api/calls/{callId}", "get", CallOut, "One call", [
        {"name": "callId", "in": "path", "required": True, "schema": {"type": "string"}}]),
    ("/api/calls/{callId}/transcript", "get", Transcript, "One call's transcript in order", [
        {"name": "callId", "in": "path", "required": True, "schema": {"type": "string"}}]),
]


def document() -> dict[str, Any]:
    schemas: dict[str, Any] = {}
    paths: dict[str, Any] = {}
    for model in {r[2] for r in ROUTES} | {Error}:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    for path, method, model, summary, params in ROUTES:
        responses: dict[str, Any] = {
            "200": {"description": "OK", "content": {"application/json": {
                "schema": {"$ref": f"#/components/schemas/{model.__name__}"}}}},
            "401": {"description": "ADMIN_TOKEN set and no valid bearer token or session cookie",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
        }
        if params:
            responses["400" if path == "/api/calls" else "404"] = {
                "description": "bad limit/next" if path == "/api/calls" else "Call not found",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
        paths[path] = {method: {"summary": summary, "parameters": params, "responses": responses}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "Voice agent admin API", "version": "1",
                 "description": "Times are epoch milliseconds, durations milliseconds."},
        "components": {"schemas": schemas, "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer"},
            "cookie": {"type": "apiKey", "in": "cookie", "name": "va_session"}}},
        "security": [{"bearer": []}, {"cookie": []}],
        "paths": paths,
    }
