"""The server events of one call and what each does to the session's state: responses, turns,
barge-ins, latency, usage. Called through the session's event table; nothing here waits.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import TYPE_CHECKING, Any, Literal

from openai.types.realtime import (
    ConversationItemAdded,
    ConversationItemCreatedEvent,
    ConversationItemDone,
    ConversationItemInputAudioTranscriptionCompletedEvent,
    InputAudioBufferSpeechStartedEvent,
    InputAudioBufferSpeechStoppedEvent,
    RealtimeConversationItemAssistantMessage,
    RealtimeConversationItemFunctionCall,
    RealtimeConversationItemFunctionCallOutput,
    RealtimeErrorEvent,
    RealtimeResponseUsage,
    ResponseAudioTranscriptDeltaEvent,
    ResponseAudioTranscriptDoneEvent,
    ResponseFunctionCallArgumentsDoneEvent,
    ResponseTextDeltaEvent,
)
from openai.types.realtime.realtime_server_event import (
    OutputAudioBufferCleared,
    OutputAudioBufferStarted,
    OutputAudioBufferStopped,
)
from pydantic import ValidationError

from callplane.clock import now_ms
from callplane.pricing import usage_cost
from callplane.realtime_events import (
    ResponseCreatedView,
    ResponseDoneView,
    SessionEventView,
    output_items,
    parse_server_event,
    peek_type,
)
from callplane.store.models import TranscriptTurn
from session_host import insights, session_record, session_tools
from session_host.call_state import DISCLOSING, PendingResponse

if TYPE_CHECKING:
    from session_host.session import CallSession

log = logging.getLogger("session_host.session")


def take_output(resp: PendingResponse, output: list[Any]) -> None:
    """Function calls and text from a response's final output that the deltas did not carry
    (a socket attached mid-response sees only the end)."""
    for item in output:
        if isinstance(item, RealtimeConversationItemFunctionCall):
            if item.call_id and not any(c[0] == item.call_id for c in resp.calls):
                resp.calls.append((item.call_id, item.name, item.arguments or ""))
        elif isinstance(item, RealtimeConversationItemAssistantMessage) and not resp.text:
            for part in item.content:
                resp.text += part.transcript or part.text or ""


def dispatch(s: CallSession, raw: str) -> None:
    """Parse once into the `openai` event class for its type, then one table lookup."""
    s.opts.counters.server_events += 1
    if s.settings.debug_logging:
        log.debug("event %s", raw[:2000], extra={"call_id": s.req.callId})
    etype = peek_type(raw)
    if etype is None:
        try:
            etype = str(json.loads(raw)["type"])
        except (ValueError, KeyError, TypeError):
            log.warning("malformed server event ignored", extra=s.extra)
            return
    handler = s._handlers.get(etype)
    if handler is None:
        log.debug("unhandled event type %s", etype, extra={"call_id": s.req.callId})
        return
    try:
        event = parse_server_event(raw, etype)
    except (KeyError, ValidationError) as exc:
        log.warning("invalid %s event ignored: %s", etype, type(exc).__name__, extra=s.extra)
        return
    handler(event)


def on_session(s: CallSession, event: SessionEventView) -> None:
    expires = event.session.expires_at
    if expires is not None and expires > 0:
        s._expires_at = float(expires)


def on_error(s: CallSession, event: RealtimeErrorEvent) -> None:
    err = event.error
    code, param = err.code, err.param or ""
    if code == "unknown_parameter" and "voice" in param:
        nxt = s._voice_mode.next()
        if nxt is not None:
            s._voice_mode = nxt
            log.warning("voice refused at %s; retrying with %s", param, nxt.value, extra=s.extra)
            s._spawn(s._send(s._session_update_text()), "voice-retry")
            return
    if code == "unknown_parameter" and param.startswith("session.") and param[8:] not in s._dropped:
        # A setting this service does not know (a profile's): leave it out, keep the rest.
        s._dropped.add(param[8:])
        log.warning("session.update refused %s; resending without it", param, extra=s.extra)
        s._spawn(s._send(s._session_update_text()), "param-retry")
        return
    if code == "response_cancel_not_active":
        return
    log.warning("server error %s: %s", code, str(err.message)[:200], extra=s.extra)


def on_response_created(s: CallSession, event: ResponseCreatedView) -> None:
    rid = event.response.id or ""
    if s._disclosure == DISCLOSING:
        s._disclosure = rid  # this response is the disclosure
    resp = PendingResponse(rid)
    s._responses[rid] = resp
    s._current = resp
    s.call.responseCount += 1


def response_of(s: CallSession, rid: str) -> PendingResponse:
    resp = s._responses.get(rid)
    if resp is None:
        resp = s._responses[rid] = PendingResponse(rid)  # begun before this socket attached
    return resp


def first_output(s: CallSession, resp: PendingResponse) -> None:
    if resp.first_output:
        return
    resp.first_output = True
    if s._speech_stopped_at is not None and not s.following:
        latency = round((time.monotonic() - s._speech_stopped_at) * 1000, 1)
        s._speech_stopped_at = None
        s.call.latencies.append(latency)
        s.observers.latency(s.call, latency)


def on_transcript_delta(s: CallSession, event: ResponseAudioTranscriptDeltaEvent | ResponseTextDeltaEvent) -> None:
    resp = response_of(s, event.response_id)
    first_output(s, resp)
    resp.text += event.delta
    s._last_activity = time.monotonic()


def on_audio_started(s: CallSession, event: OutputAudioBufferStarted) -> None:
    s._audio_playing = True
    first_output(s, response_of(s, event.response_id))


def on_audio_stopped(s: CallSession, event: OutputAudioBufferStopped | OutputAudioBufferCleared) -> None:
    s._audio_playing = False


def on_transcript_done(s: CallSession, event: ResponseAudioTranscriptDoneEvent) -> None:
    resp = response_of(s, event.response_id)
    text = event.transcript or resp.text
    resp.text = text
    if not resp.interrupted:
        write_assistant_turn(s, resp)


def write_assistant_turn(s: CallSession, resp: PendingResponse) -> None:
    if resp.turn_written or not resp.text.strip():
        return
    resp.turn_written = True
    add_turn(s, "assistant", resp.text, interrupted=resp.interrupted, turn_id=resp.id or None)


def add_turn(
    s: CallSession,
    speaker: Literal["user", "assistant"],
    text: str,
    interrupted: bool = False,
    turn_id: str | None = None,
) -> None:
    if s.following or s.keeper is not None and s.keeper.lost.is_set():
        return  # the call's owner records it
    s._seq += 1
    sentiment = insights.text_sentiment(text) if speaker == "user" else "neutral"
    turn = TranscriptTurn(
        seq=s._seq,
        timestamp=now_ms(),
        speaker=speaker,
        text=text,
        sentiment=sentiment,
        interrupted=interrupted,
        turnId=turn_id,
    )
    s.call.messageCount = s._seq
    if s.settings.summary_model:
        s._lines.append((speaker, text))
    s.observers.turn(s.call, turn)
    session_record.publish(s)


def on_speech_started(s: CallSession, event: InputAudioBufferSpeechStartedEvent) -> None:
    s.call.userSpeechEvents += 1
    s._last_activity = time.monotonic()
    s._reprompts = 0
    cur = s._current
    if s._disclosure is not None and (cur is None or cur.id == s._disclosure):
        return  # over the disclosure: it goes on (interrupt_response is off); not a barge-in
    if cur is not None and not cur.done or s._audio_playing:
        # The caller talks over the assistant: the server cancels the response; what we
        # received so far is the best estimate of what the caller heard.
        s.call.bargeInEvents += 1
        if cur is not None and not cur.done:
            cur.interrupted = True
        log.info("barge-in", extra={"cat": "CALL", "call_id": s.req.callId})
        session_record.publish(s)


def on_speech_stopped(s: CallSession, event: InputAudioBufferSpeechStoppedEvent) -> None:
    s._speech_stopped_at = time.monotonic()
    s._last_activity = s._speech_stopped_at


def on_user_transcript(s: CallSession, event: ConversationItemInputAudioTranscriptionCompletedEvent) -> None:
    text = event.transcript.strip()
    if text:
        s._user_texts.append(text)
        add_turn(s, "user", text, turn_id=event.item_id)


def on_function_args_done(s: CallSession, event: ResponseFunctionCallArgumentsDoneEvent) -> None:
    resp = response_of(s, event.response_id)
    resp.calls.append((event.call_id, event.name, event.arguments or ""))


def count_usage(s: CallSession, usage: RealtimeResponseUsage) -> None:
    if s.following:
        return  # counted by the owner, whose record this replica takes on if it takes the call
    s.call.usage.add(usage)
    cost = usage_cost(s._price, usage)
    s.call.cost = round(s.call.cost + cost, 8)
    s.observers.usage(s.call, usage.total_tokens or 0, cost)


def on_response_done(s: CallSession, event: ResponseDoneView) -> None:
    response = event.response
    try:
        items = output_items(response.output)
    except ValidationError as exc:
        log.warning("invalid response.done output ignored: %s", type(exc).__name__, extra=s.extra)
        items = []
    if response.usage is not None:
        count_usage(s, response.usage)
    resp = response_of(s, response.id or "")
    resp.done = True
    if response.status == "cancelled":
        resp.interrupted = True
    take_output(resp, items)
    write_assistant_turn(s, resp)
    if s._disclosure is not None and resp.id == s._disclosure:
        s._spawn(s._after_disclosure(), "greeting")
    if s._current is resp:
        s._current = None
    s._responses.pop(resp.id, None)
    if resp.calls and s.following:
        heard(s, resp)
    elif resp.calls:
        s._spawn(session_tools.run_tools(s, resp), "tools")
    elif s._after_response is not None:
        s._spawn(session_tools.do_after_response(s), "after-response")
    session_record.publish(s)


def heard(s: CallSession, resp: PendingResponse) -> None:
    """A follower heard function calls: the owner should answer them at once. If it has not
    within the deadline, this replica looks at the owner (`on_overdue`)."""
    now = time.monotonic()
    for call_id, name, arguments in resp.calls:
        s.unanswered[call_id] = (name, arguments, now)
    if s.on_overdue is not None:
        ids = [c[0] for c in resp.calls]

        def check() -> None:
            if s.following and s.on_overdue is not None and any(i in s.unanswered for i in ids):
                s.on_overdue()

        asyncio.get_running_loop().call_later(s.opts.lease.quick_beat_s, check)


def on_item_seen(
    s: CallSession, event: ConversationItemAdded | ConversationItemDone | ConversationItemCreatedEvent
) -> None:
    """A follower sees the owner's answers go by: a function call with an output is answered."""
    if isinstance(event.item, RealtimeConversationItemFunctionCallOutput):
        s.unanswered.pop(event.item.call_id, None)
