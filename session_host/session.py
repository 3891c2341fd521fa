"""One phone call's control session: the socket, the event table, tools, barge-in, end of call.

One `CallSession` per call, owned by the registry. The receive loop only updates state and
starts tracked tasks (tools, hang-ups); it never waits on storage, which is write-behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import aiohttp
from azure.core.exceptions import AzureError
from openai.types.realtime import (
    ConversationItemInputAudioTranscriptionCompletedEvent,
    InputAudioBufferSpeechStartedEvent,
    InputAudioBufferSpeechStoppedEvent,
    RealtimeConversationItemAssistantMessage,
    RealtimeConversationItemFunctionCall,
    RealtimeErrorEvent,
    RealtimeResponseUsage,
    ResponseAudioTranscriptDeltaEvent,
    ResponseAudioTranscriptDoneEvent,
    ResponseCreatedEvent,
    ResponseDoneEvent,
    ResponseFunctionCallArgumentsDoneEvent,
    ResponseTextDeltaEvent,
    SessionCreatedEvent,
    SessionUpdatedEvent,
)
from openai.types.realtime.realtime_server_event import (
    OutputAudioBufferCleared,
    OutputAudioBufferStarted,
    OutputAudioBufferStopped,
)
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind, Status, StatusCode
from pydantic import ValidationError

from callplane import prompts
from callplane.call_control import CallControl, CallControlError, socket_url
from callplane.clock import now_ms, percentile
from callplane.handoff import AcceptOutcome, HandoffRequest
from callplane.logs import SUMMARY_FIELD
from callplane.model_summary import model_summary
from callplane.pricing import usage_cost
from callplane.profiles import ChosenProfile, Profile, SilencePolicy, chosen_of
from callplane.realtime_events import parse_server_event, peek_type
from callplane.session_config import VoiceMode, disclosure_request, greeting_request, session_update, without
from callplane.settings import Settings
from callplane.store import leases
from callplane.store.models import CallRecord, CallStatus, ToolCallRecord, TranscriptTurn
from callplane.store.rollups import call_finished, call_started
from callplane.store.writer import StoreWriter
from callplane.telemetry import Telemetry
from callplane.tools import TOOLS, Action, ToolContext
from session_host import insights
from session_host.health import HostCounters
from session_host.ownership import LeaseKeeper, LeaseTiming
from session_host.tools_runner import ToolOutcome, run_tool

log = logging.getLogger("session_host.session")
_DISCLOSING = "(requested)"


def _interruptible(update: Event, on: bool) -> Event:
    """`update` with the caller's speech allowed (or not) to cut the assistant's response."""
    turn = update["session"]["audio"]["input"]["turn_detection"]
    turn["interrupt_response"] = on
    return update


CLAIM_WINDOW_S = 10.0
# Behind an ingress the Function App's word on the accept reaches the owner only sometimes (with
# two replicas, half the time); otherwise the owner finds it in the store within this long.
OUTCOME_POLL_S = 0.2  # after a takeover: long enough for the previous owner to notice it lost the call
Event = dict[str, Any]


class CallGone(Exception):
    """The control socket was refused with 404: the call no longer exists."""


class NotYetAccepted(Exception):
    """The upgrade was refused because the accept has not landed yet (the hand-off comes first)."""


@dataclass(slots=True)
class _Response:
    id: str
    text: str = ""
    first_output: bool = False
    interrupted: bool = False
    done: bool = False
    turn_written: bool = False
    calls: list[tuple[str, str, str]] = field(default_factory=list)  # (call_id, name, arguments)


@dataclass(slots=True)
class SessionOptions:
    reconnect_attempts: int = 5
    reconnect_base_s: float = 0.2
    silence_timeout_s: float = 120.0
    wrap_up_s: float = 10.0
    counters: HostCounters = field(default_factory=HostCounters)
    lease: LeaseTiming = field(default_factory=LeaseTiming)
    accept_wait_s: float = 8.0  # how long a reserved call waits for the Function App's word on the accept
    accept_retry_wait_s: float = 60.0  # after a retryable accept failure: the service's retry may come


def _default_transfer(chosen: ChosenProfile | None, settings: Settings) -> str:
    return chosen.profile.transfer_target(None, settings.sip_target_uri) if chosen else settings.sip_target_uri


def _take_output(resp: _Response, output: list[Any]) -> None:
    """Function calls and text from a response's final output that the deltas did not carry
    (a socket attached mid-response sees only the end)."""
    for item in output:
        if isinstance(item, RealtimeConversationItemFunctionCall):
            if item.call_id and not any(c[0] == item.call_id for c in resp.calls):
                resp.calls.append((item.call_id, item.name, item.arguments or ""))
        elif isinstance(item, RealtimeConversationItemAssistantMessage) and not resp.text:
            for part in item.content:
                resp.text += part.transcript or part.text or ""


class CallSession:
    def __init__(
        self,
        req: HandoffRequest,
        *,
        settings: Settings,
        http: aiohttp.ClientSession,
        control: CallControl,
        writer: StoreWriter,
        replica: str,
        options: SessionOptions | None = None,
        on_finish: Callable[[CallSession], Awaitable[None]] | None = None,
        telemetry: Telemetry | None = None,
        trace_context: Context | None = None,
        keeper: LeaseKeeper | None = None,
        resumed: CallRecord | None = None,
        resumed_turns: int = 0,
        reengage: bool = False,
    ) -> None:
        self.keeper = keeper
        self.resumed = resumed
        self.telemetry = telemetry or Telemetry()
        self.trace_context = trace_context
        self.req = req
        self.settings = settings
        self.http = http
        self.control = control
        self.writer = writer
        self.opts = options or SessionOptions()
        self.on_finish = on_finish
        self.call = CallRecord(
            callId=req.callId,
            startTime=req.receivedAt,
            callerPhone=req.callerPhone,
            replica=replica,
            updatedAt=now_ms(),
            profile=str(req.profile.get("name")) if req.profile else None,
            profileVersion=int(req.profile.get("version") or 0) if req.profile else None,
        )
        self.extra = {"cat": "CALL", "call_id": req.callId}
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._send_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._responses: dict[str, _Response] = {}
        self._current: _Response | None = None
        self._audio_playing = False
        self._speech_stopped_at: float | None = None
        self._last_activity = time.monotonic()
        self._seq = 0
        self._voice_mode = VoiceMode.AUDIO_OUTPUT
        self._user_texts: list[str] = []
        self._lines: list[tuple[str, str]] = []  # kept only for a model summary (SUMMARY_MODEL)
        self._end: tuple[CallStatus, str] | None = None  # decided by us (hang-up, transfer)
        self._after_response: tuple[str, Action, str | None] | None = None
        self._expires_at: float | None = None
        self._wrapping_up = False
        self._greeted = False
        self._yielded = False  # another replica owns the call now: stop without touching it
        self._handing_over = False
        self._connected_once = False
        self.counted_at_ms = 0  # when this replica put the call's "started" count (0: a peer did)
        self._outcome: AcceptOutcome | None = None
        self._reengage = reengage  # resumed after a crash: the caller may be waiting in silence
        # Until then (monotonic), answers to function calls are claimed in the store first: the
        # previous owner may still hear the call (see leases.claim_answer).
        self._claim_until = 0.0
        self.replica = replica
        self._price = settings.price
        # The agent profile chosen (and accepted) by the Function App; None: the built-in agent.
        self.chosen = chosen_of(req)
        self._transfer_to = _default_transfer(self.chosen, settings)
        self._outcome_changed = asyncio.Event()
        self._disclosure: str | None = None  # _DISCLOSING, then the disclosure's response id
        self._dropped: set[str] = set()  # session parameters this service refused
        self._reprompts = 0
        if resumed is not None:
            self._go_on_from(resumed, resumed_turns)
        self._handlers = self._event_table()

    def _go_on_from(self, resumed: CallRecord, turns: int) -> None:
        """Taking over from a replica that stopped or died: go on from the stored state."""
        self._claim_until = float("inf")  # until this socket is up (then a few seconds more)
        self.call = resumed.model_copy(update={"replica": self.replica, "status": CallStatus.ACTIVE})
        self._seq = turns
        self._greeted = True

    def _event_table(self) -> dict[str, Callable[[Any], None]]:
        """Server event type -> handler (one lookup per event)."""
        return {
            "session.created": self._on_session,
            "session.updated": self._on_session,
            "error": self._on_error,
            "response.created": self._on_response_created,
            "response.output_audio_transcript.delta": self._on_transcript_delta,
            "response.output_text.delta": self._on_transcript_delta,
            "output_audio_buffer.started": self._on_audio_started,
            "output_audio_buffer.stopped": self._on_audio_stopped,
            "output_audio_buffer.cleared": self._on_audio_stopped,
            "response.output_audio_transcript.done": self._on_transcript_done,
            "response.function_call_arguments.done": self._on_function_args_done,
            "response.done": self._on_response_done,
            "input_audio_buffer.speech_started": self._on_speech_started,
            "input_audio_buffer.speech_stopped": self._on_speech_stopped,
            "conversation.item.input_audio_transcription.completed": self._on_user_transcript,
        }

    # --- lifecycle ---------------------------------------------------------------------------
    async def run(self) -> None:
        tracer = self.telemetry.tracer
        with tracer.start_as_current_span(
            "call", context=self.trace_context, kind=SpanKind.SERVER, attributes={"call.id": self.req.callId}
        ) as span:
            await self._run()
            span.set_attribute("call.status", self.call.status.value)
            span.set_attribute("call.end_reason", self.call.endReason or "")
            if self.call.status is CallStatus.FAILED:
                span.set_status(Status(StatusCode.ERROR, self.call.endReason or "failed"))

    async def _run(self) -> None:
        if self.resumed is None:
            self.telemetry.calls_started.add(1)
            self.writer.put_rollup(call_started())
            self.counted_at_ms = now_ms()
        self.writer.put_live(self.call)
        # What a session cancelled from outside (the process closing) is recorded as: never
        # "completed", which would claim the caller hung up.
        status, reason = CallStatus.FAILED, "session host stopped before the call ended"
        try:
            refused = None if self.resumed is not None else await self._wait_for_accept()
            status, reason = refused or await self._connect_until_end()
        finally:
            await self._cancel_tasks()
            if self._yielded:
                log.info("call handed over to another replica", extra=self.extra)
            else:
                self._finalize(status, reason)
                await self._model_summary()
                if self.keeper is not None:
                    await self.keeper.release()
            if self.on_finish is not None:
                await self.on_finish(self)

    def accept_outcome(self, outcome: AcceptOutcome) -> None:
        """The Function App's word on the accept (delivered by the hand-off route)."""
        self._outcome = outcome
        self._outcome_changed.set()

    async def _wait_for_accept(self) -> tuple[CallStatus, str] | None:
        """A reserved call opens its socket only once the accept has landed: None then. A refused
        accept ends the reservation here: its status and reason. When no word comes (the
        Function App died, or its word went to another replica and the store cannot say), the
        socket is tried once the wait runs out: the service's answer settles it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.opts.accept_wait_s
        while loop.time() < deadline:
            try:
                await asyncio.wait_for(
                    self._outcome_changed.wait(), min(OUTCOME_POLL_S, max(0.0, deadline - loop.time()))
                )
            except TimeoutError:
                if self.keeper is not None:  # the word may have reached another replica
                    with contextlib.suppress(AzureError):
                        stored = await leases.take_outcome(self.keeper.tables, self.req.callId)
                        if stored is not None:
                            self.accept_outcome(stored)
            self._outcome_changed.clear()
            outcome = self._outcome
            if outcome is None:
                continue
            if outcome.accepted:
                return None
            if outcome.retrying:  # the service retries the webhook: hold the reservation longer
                self._outcome = None
                deadline = loop.time() + self.opts.accept_retry_wait_s
                continue
            log.warning("the accept failed: %s", outcome.error, extra=self.extra)
            return CallStatus.FAILED, f"accept failed: {outcome.error or 'unknown'}"
        log.warning("no word on the accept; trying the control socket", extra=self.extra)
        return None

    async def _connect_until_end(self) -> tuple[CallStatus, str]:
        """(Re)connect the control socket until the call ends; its final status and reason."""
        attempt = 0
        loop = asyncio.get_running_loop()
        accept_deadline = loop.time() + self.opts.accept_wait_s
        while True:
            try:
                clean = await self._connect_and_pump()
                attempt = 0
            except NotYetAccepted:
                if loop.time() < accept_deadline:
                    await asyncio.sleep(0.03)
                    continue
                return CallStatus.FAILED, "the call was never accepted"
            except CallGone:
                return self._gone_outcome()
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                attempt += 1
                log.warning("control socket failed (%s), attempt %d", type(exc).__name__, attempt, extra=self.extra)
                if attempt > self.opts.reconnect_attempts:
                    await self._hangup_quietly()
                    return CallStatus.FAILED, "control socket unreachable"
                await asyncio.sleep(self.opts.reconnect_base_s * 2 ** (attempt - 1))
                continue
            if self.keeper is not None and self.keeper.lost.is_set():
                self._yielded = True
                return CallStatus.ACTIVE, "handed over"
            if clean:
                return self._end or (CallStatus.COMPLETED, "caller hung up")
            log.warning("control socket dropped; reconnecting", extra=self.extra)

    def _gone_outcome(self) -> tuple[CallStatus, str]:
        if self._end:
            return self._end
        if self.resumed is not None and not self._connected_once:
            return CallStatus.FAILED, "call gone while its replica was away"
        if self._greeted:
            return CallStatus.FAILED, "call gone after the control socket dropped"
        if self._outcome is None or not self._outcome.accepted:
            return CallStatus.FAILED, "the call was never accepted"
        return CallStatus.FAILED, "call gone before the control socket opened"

    async def hand_over(self, wait_s: float) -> bool:
        """SIGTERM path: store everything, offer the call to a peer, and let go once the peer's
        socket is up. False when no peer took it (the call stays here)."""
        if self.keeper is None or self._ws is None:
            return False
        self._handing_over = True
        self._claim_until = float("inf")  # both replicas may hear the call until the peer is up
        self._publish()
        await self.writer.flush(force=True)
        taken = await self.keeper.hand_over(wait_s)
        if not taken:
            self._handing_over = False
            self._claim_until = 0.0
        return taken

    async def _open_socket(self) -> aiohttp.ClientWebSocketResponse:
        try:
            return await self.http.ws_connect(
                socket_url(self.settings, self.req.callId),
                headers=await self.control.auth.headers(),
                heartbeat=20.0,
                max_msg_size=16 * 1024 * 1024,
                timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=5.0),
            )
        except aiohttp.WSServerHandshakeError as exc:
            if exc.status == 404:
                raise CallGone() from None
            if exc.status == 400 and not self._connected_once:
                raise NotYetAccepted() from None
            raise

    async def _on_open(self) -> None:
        """What goes out first on a new socket: the session, then a greeting or a re-engagement."""
        await self._send(self._session_update())
        if self._reengage:
            # Nobody listened for a while (the previous owner died): whatever the caller said
            # meanwhile is unanswered. Ask the model to pick the conversation up at once.
            self._reengage = False
            await self._send({"type": "response.create", "response": {"instructions": prompts.RE_ENGAGE}})
            log.info("re-engaged the caller after a takeover", extra=self.extra)
        if not self._greeted:
            self._greeted = True
            self.call.greetingDelayMs = float(now_ms() - self.req.receivedAt)
            disclosure = disclosure_request(self.chosen) if self.chosen is not None else None
            if disclosure is not None:
                # Spoken before anything else, and the caller cannot talk it away: the server
                # must not cut the response on speech until it has played. The greeting follows.
                self._disclosure = _DISCLOSING
                await self._send(_interruptible(self._session_update(), False))
                await self._send(disclosure)
                log.info("disclosure requested", extra=self.extra)
                return
            await self._send(greeting_request(self.chosen))
            log.info("greeting requested %.0f ms after the webhook", self.call.greetingDelayMs, extra=self.extra)

    def _session_update(self) -> Event:
        update = session_update(self.settings, self._voice_mode, self.chosen)
        without(update["session"], self._dropped)
        return update

    async def _after_disclosure(self) -> None:
        self._disclosure = None
        await self._send(self._session_update())
        await self._send(greeting_request(self.chosen))

    async def _connect_and_pump(self) -> bool:
        """One socket's life. True when the far side ended the call cleanly."""
        ws = await self._open_socket()
        self._ws = ws
        self._connected_once = True
        log.info("control socket open", extra=self.extra)
        guard = self._spawn(self._guards(), "guards")
        if self.keeper is not None:
            self._spawn(self.keeper.attached(), "attached")
            self._spawn(self._close_when_lost(ws, self.keeper), "lost-watch")
        if self.resumed is not None and self._claim_until == float("inf"):
            self._claim_until = time.monotonic() + CLAIM_WINDOW_S
        try:
            await self._on_open()
            async for msg in ws:
                if msg.type is aiohttp.WSMsgType.TEXT:
                    self._dispatch(msg.data)
                elif msg.type in (aiohttp.WSMsgType.ERROR, aiohttp.WSMsgType.CLOSED):
                    break
        finally:
            guard.cancel()
            self._ws = None
        return ws.close_code == 1000 or self._end is not None

    async def _close_when_lost(self, ws: aiohttp.ClientWebSocketResponse, keeper: LeaseKeeper) -> None:
        await keeper.lost.wait()
        await ws.close()  # a plain close: the call itself goes on with its new owner

    def _spawn(self, coro: Awaitable[Any], name: str) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        task.set_name(f"{self.req.callId}:{name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _cancel_tasks(self) -> None:
        tasks = [t for t in self._tasks if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _send(self, event: Event) -> None:
        ws = self._ws
        if ws is None or ws.closed:
            return
        async with self._send_lock:
            await ws.send_str(json.dumps(event, separators=(",", ":")))

    async def close(self) -> None:
        """Stop this replica's session without touching the call (shutdown path)."""
        if self._ws is not None:
            await self._ws.close()

    # --- event table -------------------------------------------------------------------------
    def _dispatch(self, raw: str) -> None:
        """Parse once into the `openai` event class for its type, then one table lookup."""
        self.opts.counters.server_events += 1
        if self.settings.debug_logging:
            log.debug("event %s", raw[:2000], extra={"call_id": self.req.callId})
        etype = peek_type(raw)
        if etype is None:
            try:
                etype = str(json.loads(raw)["type"])
            except (ValueError, KeyError, TypeError):
                log.warning("malformed server event ignored", extra=self.extra)
                return
        handler = self._handlers.get(etype)
        if handler is None:
            log.debug("unhandled event type %s", etype, extra={"call_id": self.req.callId})
            return
        try:
            event = parse_server_event(raw, etype)
        except (KeyError, ValidationError) as exc:
            log.warning("invalid %s event ignored: %s", etype, type(exc).__name__, extra=self.extra)
            return
        handler(event)

    def _on_session(self, event: SessionCreatedEvent | SessionUpdatedEvent) -> None:
        # `expires_at` is sent but not declared in the SDK's session type (it lands in extras).
        expires = getattr(event.session, "expires_at", None) or (event.session.model_extra or {}).get("expires_at")
        if isinstance(expires, int | float) and expires > 0:
            self._expires_at = float(expires)

    def _on_error(self, event: RealtimeErrorEvent) -> None:
        err = event.error
        code, param = err.code, err.param or ""
        if code == "unknown_parameter" and "voice" in param:
            nxt = self._voice_mode.next()
            if nxt is not None:
                self._voice_mode = nxt
                log.warning("voice refused at %s; retrying with %s", param, nxt.value, extra=self.extra)
                self._spawn(self._send(self._session_update()), "voice-retry")
                return
        if code == "unknown_parameter" and param.startswith("session.") and param[8:] not in self._dropped:
            # A setting this service does not know (a profile's): leave it out, keep the rest.
            self._dropped.add(param[8:])
            log.warning("session.update refused %s; resending without it", param, extra=self.extra)
            self._spawn(self._send(self._session_update()), "param-retry")
            return
        if code == "response_cancel_not_active":
            return
        log.warning("server error %s: %s", code, str(err.message)[:200], extra=self.extra)

    def _on_response_created(self, event: ResponseCreatedEvent) -> None:
        rid = event.response.id or ""
        if self._disclosure == _DISCLOSING:
            self._disclosure = rid  # this response is the disclosure
        resp = _Response(rid)
        self._responses[rid] = resp
        self._current = resp
        self.call.responseCount += 1

    def _response(self, rid: str) -> _Response:
        resp = self._responses.get(rid)
        if resp is None:
            resp = self._responses[rid] = _Response(rid)  # begun before this socket attached
        return resp

    def _first_output(self, resp: _Response) -> None:
        if resp.first_output:
            return
        resp.first_output = True
        if self._speech_stopped_at is not None:
            latency = round((time.monotonic() - self._speech_stopped_at) * 1000, 1)
            self._speech_stopped_at = None
            self.call.latencies.append(latency)
            self.telemetry.turn_latency.record(latency)
            log.info("turn latency %.0f ms", latency, extra={"cat": "INFO", "call_id": self.req.callId})

    def _on_transcript_delta(self, event: ResponseAudioTranscriptDeltaEvent | ResponseTextDeltaEvent) -> None:
        resp = self._response(event.response_id)
        self._first_output(resp)
        resp.text += event.delta
        self._last_activity = time.monotonic()

    def _on_audio_started(self, event: OutputAudioBufferStarted) -> None:
        self._audio_playing = True
        self._first_output(self._response(event.response_id))

    def _on_audio_stopped(self, event: OutputAudioBufferStopped | OutputAudioBufferCleared) -> None:
        self._audio_playing = False

    def _on_transcript_done(self, event: ResponseAudioTranscriptDoneEvent) -> None:
        resp = self._response(event.response_id)
        text = event.transcript or resp.text
        resp.text = text
        if not resp.interrupted:
            self._write_assistant_turn(resp)

    def _write_assistant_turn(self, resp: _Response) -> None:
        if resp.turn_written or not resp.text.strip():
            return
        resp.turn_written = True
        self._add_turn("assistant", resp.text, interrupted=resp.interrupted, turn_id=resp.id or None)
        log.info("ASSISTANT: %s", resp.text[:300], extra={"cat": "TRANSCRIPT", "call_id": self.req.callId})

    def _add_turn(
        self, speaker: Literal["user", "assistant"], text: str, interrupted: bool = False, turn_id: str | None = None
    ) -> None:
        if self.keeper is not None and self.keeper.lost.is_set():
            return  # the call's new owner records from here on
        self._seq += 1
        sentiment = insights.text_sentiment(text) if speaker == "user" else "neutral"
        turn = TranscriptTurn(
            seq=self._seq,
            timestamp=now_ms(),
            speaker=speaker,
            text=text,
            sentiment=sentiment,
            interrupted=interrupted,
            turnId=turn_id,
        )
        self.call.messageCount = self._seq
        if self.settings.summary_model:
            self._lines.append((speaker, text))
        self.writer.put_turn(self.req.callId, turn)
        self._publish()

    def _on_speech_started(self, event: InputAudioBufferSpeechStartedEvent) -> None:
        self.call.userSpeechEvents += 1
        self._last_activity = time.monotonic()
        self._reprompts = 0
        cur = self._current
        if self._disclosure is not None and (cur is None or cur.id == self._disclosure):
            return  # over the disclosure: it goes on (interrupt_response is off); not a barge-in
        if cur is not None and not cur.done or self._audio_playing:
            # The caller talks over the assistant: the server cancels the response; what we
            # received so far is the best estimate of what the caller heard.
            self.call.bargeInEvents += 1
            if cur is not None and not cur.done:
                cur.interrupted = True
            log.info("barge-in", extra={"cat": "CALL", "call_id": self.req.callId})
            self._publish()

    def _on_speech_stopped(self, event: InputAudioBufferSpeechStoppedEvent) -> None:
        self._speech_stopped_at = time.monotonic()
        self._last_activity = self._speech_stopped_at

    def _on_user_transcript(self, event: ConversationItemInputAudioTranscriptionCompletedEvent) -> None:
        text = event.transcript.strip()
        if text:
            self._user_texts.append(text)
            self._add_turn("user", text, turn_id=event.item_id)
            log.info("USER: %s", text[:300], extra={"cat": "TRANSCRIPT", "call_id": self.req.callId})

    def _on_function_args_done(self, event: ResponseFunctionCallArgumentsDoneEvent) -> None:
        resp = self._response(event.response_id)
        resp.calls.append((event.call_id, event.name, event.arguments or ""))

    def _count_usage(self, usage: RealtimeResponseUsage) -> None:
        self.call.usage.add(usage)
        cost = usage_cost(self._price, usage)
        self.call.cost = round(self.call.cost + cost, 8)
        self.telemetry.tokens.add(usage.total_tokens or 0)
        self.telemetry.cost.add(cost)

    def _on_response_done(self, event: ResponseDoneEvent) -> None:
        response = event.response
        if response.usage is not None:
            self._count_usage(response.usage)
        resp = self._response(response.id or "")
        resp.done = True
        if response.status == "cancelled":
            resp.interrupted = True
        _take_output(resp, response.output or [])
        self._write_assistant_turn(resp)
        if self._disclosure is not None and resp.id == self._disclosure:
            self._spawn(self._after_disclosure(), "greeting")
        if self._current is resp:
            self._current = None
        self._responses.pop(resp.id, None)
        if resp.calls:
            self._spawn(self._run_tools(resp), "tools")
        elif self._after_response is not None:
            self._spawn(self._do_after_response(), "after-response")
        self._publish()

    # --- tools -------------------------------------------------------------------------------
    async def _run_tools(self, resp: _Response) -> None:
        if self.keeper is not None and self.keeper.lost.is_set():
            return  # the call's next owner answers these: exactly one replica runs a call's tools
        outcomes, follow_ups, answered = await self._answer_calls(resp)
        try:
            if self._after_response is not None and self._after_response[1] is Action.END_CALL:
                # The goodbye was said before the model called end_call: hang up, no new response.
                await self._do_after_response()
                return
            if not answered:
                return  # every call was answered by the other replica, which also asks for the response
            body: Event = {"type": "response.create"}
            if follow_ups:
                body["response"] = {"instructions": prompts.INSTRUCTIONS + "\n" + " ".join(follow_ups)}
            await self._send(body)
        finally:
            # Bookkeeping (log line, metrics, the record copy for the store) after the caller's
            # answer is on its way: the round trip is what the caller waits through.
            for outcome in outcomes:
                self.telemetry.tool_duration.record(
                    outcome.duration_ms, {"tool": outcome.name, "success": outcome.success}
                )
                self._record_tool(outcome)

    async def _answer_calls(self, resp: _Response) -> tuple[list[ToolOutcome], list[str], int]:
        """Answer this response's function calls: (tool outcomes, follow-up instructions, how many
        calls this replica answered, skipped ones included)."""
        ctx = ToolContext(self.req.callId, self.req.callerPhone, self._transfer_to)
        profile = self.chosen.profile if self.chosen is not None else None
        follow_ups: list[str] = []
        outcomes: list[ToolOutcome] = []
        answered = 0
        for call_id, name, arguments in resp.calls:
            if not await self._may_answer(call_id):
                log.info("%s answered by the other replica", name, extra={"cat": "TOOL", "call_id": self.req.callId})
                continue
            answered += 1
            tool = TOOLS.get(name)
            if resp.interrupted and tool is not None and tool.irreversible:
                log.warning(
                    "skipped %s from an interrupted response", name, extra={"cat": "TOOL", "call_id": self.req.callId}
                )
                await self._send_output(
                    call_id, {"error": "not_executed", "reason": "the caller interrupted; confirm before retrying"}
                )
                continue
            with self.telemetry.tracer.start_as_current_span("tool", attributes={"tool.name": name}) as span:
                running = asyncio.ensure_future(
                    run_tool(
                        name,
                        arguments,
                        ctx,
                        timeout_s=profile.toolTimeouts.get(name) if profile else None,
                        allowed=profile is None or name in profile.tools,
                    )
                )
                outcome = await self._with_filler(running, profile)
                span.set_attribute("tool.success", outcome.success)
                if not outcome.success:
                    span.set_status(Status(StatusCode.ERROR, outcome.error or "error"))
            await self._send_output(call_id, outcome.output)
            outcomes.append(outcome)
            if outcome.follow_up:
                follow_ups.append(outcome.follow_up)
            if outcome.action is not Action.NONE:
                self._after_response = (name, outcome.action, outcome.action_arg)
        return outcomes, follow_ups, answered

    async def _with_filler(self, running: asyncio.Future[ToolOutcome], profile: Profile | None) -> ToolOutcome:
        """A slow tool: past the profile's threshold the agent says a short filler while it runs;
        its answer waits for the filler to finish (one response at a time)."""
        slow = profile.slowTools if profile is not None else None
        if slow is None:
            return await running
        done, _ = await asyncio.wait({running}, timeout=slow.fillerAfterMs / 1000)
        if done:
            return running.result()
        log.info("tool is slow: filler", extra={"cat": "TOOL", "call_id": self.req.callId})
        await self._send(
            {
                "type": "response.create",
                "response": {"instructions": f"Say only this, briefly: {slow.filler}", "tool_choice": "none"},
            }
        )
        outcome = await running
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10.0
        while self._current is not None and loop.time() < deadline:  # the filler is still playing
            await asyncio.sleep(0.02)
        return outcome

    async def _may_answer(self, function_call_id: str) -> bool:
        """Whether this replica answers the function call: always when it alone hears the call;
        around a change of owner, only if its claim in the store wins (exactly once)."""
        if self.keeper is not None and self.keeper.lost.is_set():
            return False
        if time.monotonic() >= self._claim_until or self.keeper is None:
            return True
        try:
            return await leases.claim_answer(self.keeper.tables, self.req.callId, function_call_id, self.replica)
        except AzureError:
            return True  # the store is down: an answer twice beats a caller left waiting

    async def _send_output(self, call_id: str, output: dict[str, Any]) -> None:
        await self._send(
            {
                "type": "conversation.item.create",
                "item": {"type": "function_call_output", "call_id": call_id, "output": json.dumps(output)},
            }
        )

    def _record_tool(self, outcome: ToolOutcome) -> None:
        self.call.toolCalls.append(
            ToolCallRecord(
                name=outcome.name,
                timestamp=outcome.started_ms,
                duration=outcome.duration_ms,
                success=outcome.success,
                error=outcome.error,
            )
        )
        level = logging.INFO if outcome.success else logging.WARNING
        log.log(
            level,
            "%s %s in %.1f ms",
            outcome.name,
            "ok" if outcome.success else f"failed: {outcome.error}",
            outcome.duration_ms,
            extra={"cat": "TOOL", "call_id": self.req.callId},
        )
        self._publish()

    async def _do_after_response(self) -> None:
        pending, self._after_response = self._after_response, None
        if pending is None:
            return
        name, action, arg = pending
        if action is Action.HANDOFF:
            try:
                target = (
                    self.chosen.profile.transfer_target(arg, self._transfer_to) if self.chosen else self._transfer_to
                )
                await self.control.refer(self.req.callId, target)
                self.call.transferReason = arg
                self._end = (CallStatus.TRANSFERRED, "transferred to a human")
                log.info("transferred to a human", extra={"cat": "SUCCESS", "call_id": self.req.callId})
            except CallControlError as exc:
                log.error("REFER failed: %s", exc, extra=self.extra)
                await self._send(
                    {
                        "type": "response.create",
                        "response": {
                            "instructions": "The transfer failed. Apologise, offer a callback, and continue helping."
                        },
                    }
                )
        elif action is Action.END_CALL:
            self._end = (CallStatus.COMPLETED, f"assistant ended the call: {arg or 'done'}")
            await self._hangup_quietly()

    async def _hangup_quietly(self) -> None:
        try:
            await self.control.hangup(self.req.callId)
        except CallControlError as exc:
            if not exc.call_gone:
                log.warning("hangup failed: %s", exc, extra=self.extra)

    # --- guards ------------------------------------------------------------------------------
    async def _guards(self) -> None:
        """Max duration, the session's own time cap and caller silence: end politely, never mid-word."""
        started = time.monotonic()
        while True:
            await asyncio.sleep(0.25 if self.opts.wrap_up_s < 5 else 1.0)
            now = time.monotonic()
            reason = None
            if now - started >= self.settings.max_call_seconds:
                reason = "max call duration reached"
            elif self._expires_at is not None and time.time() >= self._expires_at - self.opts.wrap_up_s * 3:
                reason = "realtime session time cap"
            elif self._silence_policy() is not None and not self._audio_playing:
                reason = await self._reprompt_or_goodbye(now)
            elif now - self._last_activity >= self.opts.silence_timeout_s and not self._audio_playing:
                reason = "caller silent"
            if reason and not self._wrapping_up:
                await self.wrap_up(reason)
                return

    def _silence_policy(self) -> SilencePolicy | None:
        return self.chosen.profile.silence if self.chosen is not None else None

    async def _reprompt_or_goodbye(self, now: float) -> str | None:
        """The profile's silence policy: ask again after `repromptAfterS`, up to `maxReprompts`
        times; one more silence and the call ends with a goodbye."""
        policy = self._silence_policy()
        if policy is None or self._current is not None or now - self._last_activity < policy.repromptAfterS:
            return None
        if self._reprompts >= policy.maxReprompts:
            return "caller silent"
        self._reprompts += 1
        self._last_activity = now
        log.info("caller silent: re-prompt %d of %d", self._reprompts, policy.maxReprompts, extra=self.extra)
        await self._send({"type": "response.create", "response": {"instructions": policy.reprompt}})
        return None

    async def wrap_up(self, reason: str) -> None:
        """Say goodbye, then hang up once the goodbye has played (or after wrap_up_s)."""
        if self._wrapping_up:
            return
        self._wrapping_up = True
        log.info("wrapping up: %s", reason, extra=self.extra)
        if self._transfer_to and reason == "realtime session time cap":
            self._after_response = ("guard", Action.HANDOFF, reason)
        else:
            self._after_response = ("guard", Action.END_CALL, reason)
        await self._send({"type": "response.create", "response": {"instructions": prompts.WRAP_UP}})
        await asyncio.sleep(self.opts.wrap_up_s)
        if self._after_response is not None:
            await self._do_after_response()

    # --- store -------------------------------------------------------------------------------
    def _publish(self) -> None:
        self.call.updatedAt = now_ms()
        self.writer.put_call(self.call, index=True)

    async def _model_summary(self) -> None:
        """With SUMMARY_MODEL, replace the offline summary (already stored) with the model's."""
        if not self.settings.summary_model:
            return
        c = self.call
        written = await model_summary(
            self.http,
            self.settings,
            await self.control.auth.headers(),
            self._lines,
            f"{c.status.value} ({c.endReason})",
        )
        if written is not None:
            c.summary, c.summaryTokens = written
            c.updatedAt = now_ms()
            self.writer.put_call(c, urgent=True)

    def _finalize(self, status: CallStatus, reason: str) -> None:
        end = now_ms()
        c = self.call
        c.status, c.endReason, c.endTime = status, reason, end
        c.duration = end - c.startTime
        wanted_human = any(t.name == "handoff_human" for t in c.toolCalls)
        c.sentiment = insights.call_sentiment(self._user_texts, c.bargeInEvents, wanted_human)
        c.summary = insights.summarize(
            status.value,
            reason,
            c.duration,
            [t.name for t in c.toolCalls],
            self._seq,
            c.bargeInEvents,
            self._user_texts[0] if self._user_texts else None,
        )
        c.updatedAt = end
        self.writer.put_call(c, urgent=True)
        self.writer.put_rollup(call_finished(c))
        p50 = percentile(c.latencies, 50)
        summary = {
            "status": status.value,
            "reason": reason,
            "durationMs": c.duration or 0,
            "tools": [t.name for t in c.toolCalls],
            "turns": self._seq,
            "bargeIns": c.bargeInEvents,
            "latencyP50Ms": round(p50) if p50 is not None else None,
            "sentiment": c.sentiment,
        }
        # Structured for queries (JSON logs, Application Insights); the pretty formatter draws the box.
        log.info(
            "call summary",
            extra={
                "cat": "SUCCESS" if status is not CallStatus.FAILED else "ERROR",
                "call_id": c.callId,
                SUMMARY_FIELD: summary,
            },
        )
