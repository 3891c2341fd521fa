"""The admin API's contract: response models and the OpenAPI document built from them.

One source: the models below produce `/api/openapi.json`, and the tests validate every live
response against the same models with unknown fields forbidden, so the document cannot drift
from what the routes send.
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field as dataclass_field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from callplane.profiles import Profile
from callplane.store.models import CallRecord, CallStatus


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


class UsagePeriod(_Strict):
    period: str = Field(description="YYYY-MM-DD or YYYY-MM-DDTHH (UTC), or a profile's name")
    calls: int
    tokens: int
    cost: float
    minutes: float


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
    totalTokens: int
    totalCost: float = Field(description="USD: model tokens at the configured prices")
    costToday: float = Field(description="USD, calls that ended today (UTC)")
    tokensToday: int
    callsEndedToday: int
    costPerCallMinute: float
    usageByDay: list[UsagePeriod] = Field(description="the last 62 days with calls, UTC")
    usageByHour: list[UsagePeriod] = Field(description="the last 48 hours with calls, UTC")
    usageByProfile: list[UsagePeriod] = Field(description="per agent profile (period = its name), all time")


class Error(_Strict):
    error: str
    status: int | None = None


class ProfileOut(Profile):
    """A stored profile: the profile itself plus its name and version (who and when)."""

    name: str
    version: int = Field(description="0: the built-in default, never stored")
    updatedBy: str
    updatedAt: int
    builtIn: bool | None = None


class ProfileList(_Strict):
    profiles: list[ProfileOut]
    count: int


class ProfileVersion(_Strict):
    version: int
    updatedBy: str | None
    updatedAt: int


class ProfileVersions(_Strict):
    name: str
    versions: list[ProfileVersion]


class RouteOut(_Strict):
    number: str
    profile: str


class RouteList(_Strict):
    routes: list[RouteOut]
    count: int


class DryRun(_Strict):
    profile: str
    version: int
    accept: dict[str, Any] = Field(description="the body the accept would send")


class DeletedOut(_Strict):
    deleted: int = Field(description="calls deleted")
    rows: int = Field(description="table rows deleted")


class Health(_Strict):
    ok: bool


class Readiness(_Strict):
    ready: bool
    checks: dict[str, str] = Field(description="each check's state: ok, or what is wrong")


class SessionOut(_Strict):
    ok: bool
    auth: Literal["disabled"] | None = None


class ServiceInfo(BaseModel):
    service: str
    replica: str | None = Field(default=None, description="only for admin callers, with model, capacity and load")
    endpoints: list[str]


_CALL_ID = {"name": "callId", "in": "path", "required": True, "schema": {"type": "string"}}
_NAME = {
    "name": "name",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^[a-z0-9][a-z0-9-]{0,62}$"},
}
_NUMBER = {"name": "number", "in": "path", "required": True, "schema": {"type": "string"}}


class RouteBody(_Strict):
    profile: str


_LIMIT = {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 200, "default": 10}}


@dataclass(frozen=True)
class Route:
    path: str
    method: str
    summary: str
    model: type[BaseModel] | None  # None: not JSON (see `media`)
    params: list[dict[str, Any]] = dataclass_field(default_factory=list)
    errors: dict[str, str] = dataclass_field(default_factory=dict)
    public: bool = False  # answers without the admin token
    media: str = "application/json"
    body: type[BaseModel] | None = None  # the JSON request body's model


ROUTES: list[Route] = [
    Route("/api/stats", "get", "Rollup statistics across all replicas", Stats, errors={"503": "store unavailable"}),
    Route(
        "/api/calls",
        "get",
        "Recent calls, newest first",
        CallList,
        [
            _LIMIT,
            {"name": "next", "in": "query", "schema": {"type": "string"}},
            {"name": "status", "in": "query", "schema": {"type": "string", "enum": [s.value for s in CallStatus]}},
        ],
        {"400": "bad limit, next or status", "503": "store unavailable"},
    ),
    Route(
        "/api/calls/active",
        "get",
        "Live calls, newest first",
        ActiveCalls,
        [_LIMIT],
        {"400": "bad limit", "503": "store unavailable"},
    ),
    Route(
        "/api/calls/{callId}",
        "get",
        "One call",
        CallOut,
        [_CALL_ID],
        {"400": "not a valid call id", "404": "Call not found", "503": "store unavailable"},
    ),
    Route(
        "/api/calls/{callId}/transcript",
        "get",
        "One call's transcript in order",
        Transcript,
        [_CALL_ID],
        {"400": "not a valid call id", "404": "Call not found", "503": "store unavailable"},
    ),
    Route(
        "/api/calls/{callId}",
        "delete",
        "Delete the call, its transcript and every row naming it (audited)",
        None,
        [_CALL_ID],
        {"404": "Call not found", "409": "the call is live"},
        media="none",
    ),
    Route(
        "/api/callers/{number}",
        "delete",
        "Delete every call from a number (audited); answers {deleted, rows}",
        DeletedOut,
        [{"name": "number", "in": "path", "required": True, "schema": {"type": "string"}}],
        {"400": "not a phone number"},
    ),
    Route("/api/profiles", "get", "Agent profiles (the built-in default when none is stored)", ProfileList),
    Route(
        "/api/profiles/{name}",
        "get",
        "One profile (?version=N for an earlier one)",
        ProfileOut,
        [_NAME],
        {"404": "Profile not found"},
    ),
    Route(
        "/api/profiles/{name}",
        "put",
        "Create or change a profile: a new version (201 when new)",
        ProfileOut,
        [_NAME],
        {"400": "invalid profile: {error, field} names the field"},
        body=Profile,
    ),
    Route(
        "/api/profiles/{name}",
        "delete",
        "Delete a profile (its versions stay for the calls that used them)",
        None,
        [_NAME],
        {"404": "Profile not found", "409": "numbers still route to it"},
        media="none",
    ),
    Route(
        "/api/profiles/{name}/versions",
        "get",
        "A profile's versions, newest first",
        ProfileVersions,
        [_NAME],
        {"404": "Profile not found"},
    ),
    Route("/api/routes", "get", "Which profile each called number gets", RouteList),
    Route(
        "/api/routes/{number}",
        "put",
        "Route a number (E.164, + as %2B) to a profile (201 when new)",
        RouteOut,
        [_NUMBER],
        {"400": "bad number or unknown profile: {error, field}"},
        body=RouteBody,
    ),
    Route(
        "/api/routes/{number}",
        "delete",
        "Remove a number's route",
        None,
        [_NUMBER],
        {"404": "Route not found"},
        media="none",
    ),
    Route(
        "/api/routes/{number}/dry-run",
        "get",
        "What a call to the number would be accepted with",
        DryRun,
        [_NUMBER],
        {"400": "bad number"},
    ),
    Route(
        "/api/events",
        "get",
        "Live dashboard feed (Server-Sent Events: `snapshot` events; Last-Event-ID resumes)",
        None,
        media="text/event-stream",
    ),
    Route(
        "/api/session",
        "post",
        'Sign in to the dashboard: body {"token": ADMIN_TOKEN}; sets an HttpOnly session cookie',
        SessionOut,
        errors={"400": 'body is not {"token": string}', "401": "wrong token", "429": "too many attempts"},
        public=True,
    ),
    Route("/api/session", "delete", "Sign out: ends the session on every replica", SessionOut, public=True),
    Route("/api/openapi.json", "get", "This document", None),
    Route("/healthz", "get", "Liveness: the process answers", Health, public=True),
    Route(
        "/readyz",
        "get",
        "Readiness: store reachable and heartbeat current; 503 when not",
        Readiness,
        errors={"503": "not ready (the body says which check failed)"},
        public=True,
    ),
    Route(
        "/",
        "get",
        "Service name and the list of endpoints (host, model and load for admin callers)",
        ServiceInfo,
        public=True,
    ),
]


def _content(route: Route) -> dict[str, Any]:
    if route.media == "none":
        return {}
    if route.model is None:
        schema: dict[str, Any] = {"type": "string"} if route.media != "application/json" else {"type": "object"}
        return {route.media: {"schema": schema}}
    return {"application/json": {"schema": {"$ref": f"#/components/schemas/{route.model.__name__}"}}}


def document() -> dict[str, Any]:
    schemas: dict[str, Any] = {}
    paths: dict[str, Any] = {}
    error_ref = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    for model in {r.model for r in ROUTES if r.model is not None} | {r.body for r in ROUTES if r.body} | {Error}:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    for route in ROUTES:
        ok = "204" if route.media == "none" else "200"
        responses: dict[str, Any] = {ok: {"description": "OK" if ok == "200" else "Done", "content": _content(route)}}
        if not route.public:
            responses["401"] = {
                "description": "ADMIN_TOKEN set and no valid bearer token or session cookie",
                "content": error_ref,
            }
        for status, description in route.errors.items():
            responses[status] = {"description": description, "content": error_ref}
        operation: dict[str, Any] = {"summary": route.summary, "parameters": route.params, "responses": responses}
        if route.body is not None:
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{route.body.__name__}"}}},
            }
        if route.public:
            operation["security"] = []
        paths.setdefault(route.path, {})[route.method] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Voice agent admin API",
            "version": "1",
            "description": "Times are epoch milliseconds, durations milliseconds. Every answer under /api "
            'is JSON, errors included: {"error": "..."}.',
        },
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "cookie": {"type": "apiKey", "in": "cookie", "name": "va_session"},
            },
        },
        "security": [{"bearer": []}, {"cookie": []}],
        "paths": paths,
    }


def endpoints() -> list[str]:
    """The documented paths, for `/`."""
    return list(dict.fromkeys(["/dashboard", *(r.path for r in ROUTES)]))
