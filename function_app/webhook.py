"""The webhook's logic, free of any host: verify → parse → admit → hand off (dedupes) → accept.

`handle_webhook` takes the raw body and headers and returns a `Reply`; the Azure Functions
binding (`function_app/__init__.py`) and the local aiohttp adapter (`__main__.py`) only
translate requests and responses. The order of checks is part of the contract
(docs/realtime.md): size → signature → parse → type → ids → admission → hand-off (which dedupes) → accept.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from azure.core.exceptions import AzureError
from openai.types.webhooks import RealtimeCallIncomingWebhookEvent
from opentelemetry.trace import SpanKind
from pydantic import ValidationError

from callplane import signing
from callplane.call_control import CallControl, CallControlError
from callplane.clock import now_ms
from callplane.handoff import (
    HANDOFF_BATCH_PATH,
    IDENTITY_HEADERS,
    OUTCOME_BATCH_PATH,
    AcceptOutcome,
    HandoffRequest,
    SipHeader,
    caller_phone,
    clean_text,
    e164,
    hash_number,
)
from callplane.ids import BadId, check_id
from callplane.profiles import ChosenProfile, chosen_of
from callplane.session_config import VoiceMode, accept_body, without
from callplane.settings import Settings
from callplane.store.models import CallStatus
from callplane.store.profile_store import ProfileCache
from callplane.store.records import RefusalRecorder, Unhandled
from callplane.store.tables import Tables
from callplane.telemetry import Telemetry
from callplane.validation import first_error
from function_app.session_host_client import Batcher, Handoff, hand_off, tell_owner

log = logging.getLogger("function_app.webhook")

MAX_BODY = 1024 * 1024
HANDLED_TYPE = "realtime.call.incoming"


@dataclass(slots=True)
class Reply:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class WebhookDeps:
    settings: Settings
    http: aiohttp.ClientSession
    control: CallControl
    tables: Tables
    telemetry: Telemetry
    refusals: RefusalRecorder
    profiles: ProfileCache | None = None  # None: the built-in agent for every call
    # Reads the webhook secret again (Key Vault): a re-registered endpoint has a new one.
    reread_secret: Callable[[], Awaitable[str | None]] | None = None
    secret_checked_at: float = 0.0
    # Until then (monotonic) every replica answered "at capacity": new calls are refused at once
    # rather than each asking again while the fleet is full (overload refused fast, not slowly).
    full_until: float = 0.0
    accept_bodies: dict[tuple[Any, ...], bytes] = field(default_factory=dict)
    # Hand-offs and accept outcomes sent at the same moment travel together (one request each).
    handoffs: Batcher = field(default_factory=lambda: Batcher(HANDOFF_BATCH_PATH))
    outcomes: Batcher = field(default_factory=lambda: Batcher(OUTCOME_BATCH_PATH))


def _matches(patterns: str, phone: str | None) -> bool:
    items = [p.strip() for p in patterns.split(",") if p.strip()]
    number = e164(phone or "")
    return any(fnmatch.fnmatchcase(number, e164(p)) for p in items)


def admitted(settings: Settings, phone: str | None) -> bool:
    if settings.caller_deny and _matches(settings.caller_deny, phone):
        return False
    if settings.caller_allow and not _matches(settings.caller_allow, phone):
        return False
    return True


async def handle_webhook(body: bytes, headers: Mapping[str, str], deps: WebhookDeps) -> Reply:
    tel = deps.telemetry
    with tel.tracer.start_as_current_span("webhook", kind=SpanKind.SERVER) as span:
        reply = await _handle(body, headers, deps)
        span.set_attribute("http.status_code", reply.status)
        outcome = next(iter(reply.body), "ok")
        span.set_attribute("webhook.outcome", outcome)
        if "callId" in reply.body:
            span.set_attribute("call.id", str(reply.body["callId"]))
        tel.webhook_outcomes.add(1, {"status": reply.status, "outcome": outcome})
        if reply.status >= 500:
            tel.errors.add(1, {"where": "webhook"})
        return reply


async def _handle(body: bytes, headers: Mapping[str, str], deps: WebhookDeps) -> Reply:
    received_ms = now_ms()
    lower = {k.lower(): v for k, v in headers.items()}
    parsed = _parse(body, lower, deps.settings, received_ms, deps.profiles)
    if isinstance(parsed, Reply) and parsed.status == 401 and await _fresh_secret(deps):
        parsed = _parse(body, lower, deps.settings, received_ms, deps.profiles)
    if isinstance(parsed, Reply):
        return parsed
    if deps.profiles is not None and await deps.profiles.current():
        # The profiles changed since this call was routed: route it again with the new ones.
        routed = _parse(body, lower, deps.settings, received_ms, deps.profiles)
        parsed = routed if isinstance(routed, HandoffRequest) else parsed
    extra = {"cat": "CALL", "call_id": parsed.callId}
    log.info("webhook verified: %s", HANDLED_TYPE, extra=extra)
    try:
        return await _run_call(deps, parsed, extra)
    except Exception:
        log.exception("webhook failed; asking for a retry", extra=extra)
        return Reply(500, {"error": "internal error; retry the delivery"})


SECRET_RECHECK_S = 60.0


async def _fresh_secret(deps: WebhookDeps) -> bool:
    """After a signature failure, at most once a minute: has the webhook secret changed in the
    vault (the endpoint was registered again)? True when it has and the settings now hold it."""
    if deps.reread_secret is None or time.monotonic() - deps.secret_checked_at < SECRET_RECHECK_S:
        return False
    deps.secret_checked_at = time.monotonic()
    try:
        fresh = await deps.reread_secret()
    except Exception as exc:  # the vault's SDK errors share no narrower base
        log.warning("could not re-read the webhook secret: %s", type(exc).__name__)
        return False
    if not fresh or fresh == deps.settings.openai_webhook_secret:
        return False
    deps.settings = deps.settings.model_copy(update={"openai_webhook_secret": fresh})
    deps.accept_bodies.clear()
    log.warning("the webhook secret changed in Key Vault; using the new one")
    return True


def _parse(
    body: bytes, lower: dict[str, str], settings: Settings, received_ms: int, profiles: ProfileCache | None = None
) -> HandoffRequest | Reply:
    """Everything that can be refused without touching the store, in the documented order:
    size, signature, JSON, type, event shape, identifiers. The result is the hand-off to send."""
    refused = _verified(body, lower, settings)
    if refused is not None:
        return refused
    try:
        doc = _scrub(json.loads(body))
    except (ValueError, UnicodeDecodeError):
        return Reply(400, {"error": "body is not JSON"})
    if not isinstance(doc, dict) or not isinstance(doc.get("type"), str):
        return Reply(400, {"error": "body is not a webhook event: no string 'type'"})
    if doc["type"] != HANDLED_TYPE:
        log.info("ignored webhook event type %s", doc["type"][:80])
        return Reply(200, {"ignored": doc["type"][:80]})
    try:
        event = RealtimeCallIncomingWebhookEvent.model_validate(doc)
    except ValidationError as exc:
        return Reply(400, {"error": f"invalid {HANDLED_TYPE} event: {first_error(exc)}"})
    try:
        call_id = check_id("call id", event.data.call_id)
        webhook_id = check_id("webhook-id", lower.get("webhook-id") or event.id)
    except BadId as exc:
        log.warning("webhook refused: %s", exc, extra={"cat": "WARNING"})
        return Reply(400, {"error": f"invalid {HANDLED_TYPE} event: {exc}"})
    return _handoff_for(settings, call_id, webhook_id, list(event.data.sip_headers), received_ms, profiles)


def _verified(body: bytes, lower: dict[str, str], settings: Settings) -> Reply | None:
    if len(body) > MAX_BODY:
        return Reply(413, {"error": f"body larger than {MAX_BODY} bytes"})
    if settings.test_mode:
        return None
    try:
        signing.verify(settings.openai_webhook_secret, body, lower)
    except signing.SignatureError as exc:
        log.warning("webhook refused: %s", exc, extra={"cat": "WARNING"})
        return Reply(401, {"error": f"invalid webhook signature: {exc}"})
    return None


def _handoff_for(
    settings: Settings,
    call_id: str,
    webhook_id: str,
    headers: list[Any],
    received_ms: int,
    profiles: ProfileCache | None = None,
) -> HandoffRequest:
    """The hand-off, with the admission decided on the number as dialled; with
    HASH_CALLER_NUMBERS only the number's keyed hash and no identifying SIP header go further."""
    sip = [SipHeader(name=h.name, value=h.value) for h in headers]
    phone = caller_phone(sip)
    allowed = admitted(settings, phone)
    # The agent for this call, by the number dialled (routing reads only the in-memory cache).
    chosen = profiles.choose(sip, None if settings.hash_caller_numbers else phone) if profiles else None
    if settings.hash_caller_numbers:
        phone = hash_number(settings.caller_hash_key, phone) if phone else None
        sip = [h for h in sip if h.name.lower() not in IDENTITY_HEADERS]
    req = HandoffRequest(
        callId=call_id,
        callerPhone=phone,
        sipHeaders=sip,
        webhookId=webhook_id,
        receivedAt=received_ms,
        profile=chosen.model_dump(mode="json") if chosen is not None else None,
    )
    req._admitted = allowed
    return req


def _scrub(value: Any) -> Any:
    """JSON may carry a lone surrogate (`\\ud800`) that no UTF-8 encoder or validator takes:
    replaced (U+FFFD) everywhere, so a SIP header holding one cannot fail the call."""
    if isinstance(value, str):
        try:
            value.encode()
        except UnicodeEncodeError:
            return clean_text(value)
        return value
    if isinstance(value, dict):
        return {_scrub(k): _scrub(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    return value


async def _run_call(deps: WebhookDeps, handoff: HandoffRequest, extra: dict[str, Any]) -> Reply:
    call_id = handoff.callId
    if not handoff._admitted:
        await _refuse(deps, handoff, 603, "caller not admitted", overflow=False)
        return Reply(200, {"rejected": True, "callId": call_id})
    # The hand-off comes before the accept: it is the admission, and its lease (an atomic insert
    # keyed by the call id) is the dedupe. A replica that takes the call holds the lease and opens
    # the control socket as soon as the accept lands; when none can, the caller hears busy (SIP
    # 486) or goes to the overflow target instead of a silent line.
    taken = await hand_off(deps, handoff, extra)
    if taken is Handoff.DUPLICATE:
        log.info("duplicate delivery of %s: the call already runs (or ended)", handoff.webhookId, extra=extra)
        return Reply(200, {"duplicate": True, "callId": call_id})
    if taken is not Handoff.TAKEN:
        reason = taken if isinstance(taken, str) else "no capacity; rejected busy (486)"
        sip = 486 if taken is Handoff.BUSY else 480
        await _refuse(deps, handoff, sip, reason, overflow=True)
        return Reply(200, {"rejected": True, "callId": call_id})
    refused = await _accept(deps, call_id, handoff.webhookId, extra, chosen_of(handoff))
    # Two-phase hand-off: the owner holds the reservation and opens the control socket only once
    # it hears the accept landed (or releases it and records the failure).
    await tell_owner(deps, _outcome_of(call_id, refused), extra)
    if refused is not None:
        return refused
    return Reply(200, {"accepted": True, "callId": call_id})


def _outcome_of(call_id: str, refused: Reply | None) -> AcceptOutcome:
    if refused is None:
        return AcceptOutcome(callId=call_id, accepted=True)
    error = str(refused.body.get("error") or refused.body.get("reason") or "accept failed")
    return AcceptOutcome(callId=call_id, accepted=False, retrying=refused.status == 503, error=error)


async def _refuse(deps: WebhookDeps, handoff: HandoffRequest, sip_status: int, reason: str, *, overflow: bool) -> None:
    """End a call we will not run: to the overflow target (accept, then REFER) when allowed and
    configured, else a SIP rejection; recorded as rejected with the reason."""
    call_id = handoff.callId
    extra = {"cat": "CALL", "call_id": call_id}
    target = deps.settings.overflow_target_uri if overflow else ""
    try:
        if target:
            await deps.control.accept(call_id, accept_body(deps.settings))
            await deps.control.refer(call_id, target)
            reason = "no capacity; referred to overflow"
        else:
            await deps.control.reject(call_id, sip_status)
    except CallControlError as exc:
        reason = f"{reason}; could not refuse cleanly ({exc.status})"
    log.warning("call rejected: %s", reason, extra=extra)
    await _record(deps, handoff, CallStatus.REJECTED, reason)


async def _accept(
    deps: WebhookDeps, call_id: str, webhook_id: str, extra: dict[str, Any], chosen: ChosenProfile | None = None
) -> Reply | None:
    """Accept with the voice fallback chain; a Reply means "stop here and answer this"."""
    with deps.telemetry.tracer.start_as_current_span("accept"):
        return await _accept_with_fallback(deps, call_id, webhook_id, extra, chosen)


async def _accept_with_fallback(
    deps: WebhookDeps, call_id: str, webhook_id: str, extra: dict[str, Any], chosen: ChosenProfile | None = None
) -> Reply | None:
    mode: VoiceMode | None = VoiceMode.AUDIO_OUTPUT
    dropped: set[str] = set()
    while mode is not None:
        try:
            await deps.control.accept(call_id, _accept_bytes(deps, mode, chosen, dropped))
            log.info("call accepted", extra=extra)
            return None
        except CallControlError as exc:
            if exc.code == "unknown_parameter" and exc.param and "voice" in exc.param:
                nxt = mode.next()
                log.warning("accept refused %s; retrying with voice mode %s", exc.param, nxt, extra=extra)
                mode = nxt
                continue
            if exc.code == "unknown_parameter" and exc.param and exc.param not in dropped and len(dropped) < 5:
                log.warning("accept refused %s; retrying without it", exc.param, extra=extra)
                dropped.add(exc.param)
                continue
            if exc.call_gone:
                # The replica that took the call sees the same (its upgrade gets 404) and records it.
                log.warning("call ended before the accept (%s)", exc.code, extra=extra)
                return Reply(200, {"accepted": False, "reason": "the call ended before the accept (call_id_not_found)"})
            if exc.status == 409 or (exc.code or "").endswith("already_accepted"):
                return None
            log.error("accept failed: %s", exc, extra=extra)
            status = 503 if exc.retryable else 502
            return Reply(status, {"error": f"accept failed: {exc.status} {exc.code or ''}".strip()})
    return None


def warm(deps: WebhookDeps) -> None:
    """Encode the built-in agent's accept body now, at start-up: generating its tool schemas
    takes ~15 ms of CPU, which the first caller's accept would otherwise wait for."""
    _accept_bytes(deps, VoiceMode.AUDIO_OUTPUT, None, set())


def _accept_bytes(deps: WebhookDeps, mode: VoiceMode, chosen: ChosenProfile | None, dropped: set[str]) -> bytes:
    """The accept body, encoded once per distinct configuration (a burst of calls to the same
    agent shares it): voice mode, profile version and caller variables, and the parameters the
    service refused. Cleared whenever the settings are replaced."""
    key = (
        mode,
        chosen.name if chosen else None,
        chosen.version if chosen else None,
        tuple(sorted(chosen.variables.items())) if chosen else (),
        tuple(sorted(dropped)),
    )
    body = deps.accept_bodies.get(key)
    if body is None:
        if len(deps.accept_bodies) >= 256:
            deps.accept_bodies.clear()
        body = json.dumps(without(accept_body(deps.settings, mode, chosen), dropped), separators=(",", ":")).encode()
        deps.accept_bodies[key] = body
    return body


async def _record(deps: WebhookDeps, handoff: HandoffRequest, status: CallStatus, reason: str) -> None:
    """The refused call's record and its lease tombstone, stored with the other refusals of the
    moment (a full fleet refuses in bursts)."""
    try:
        await deps.refusals.record(Unhandled(handoff, status, reason))
    except (AzureError, OSError) as exc:
        log.error("could not store the %s call: %s", status.value, type(exc).__name__)
