"""One phone call's control session: the socket, the event table, tools, barge-in, end of call.

One `CallSession` per call, owned by the registry. The receive loop only updates state and
starts tracked tasks (tools, hang-ups); it never waits on storage, which is write-behind.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind, Status, StatusCode

from callplane import prompts
from callplane.call_control import CallControl, socket_url
from callplane.clock import now_ms
from callplane.handoff import AcceptOutcome, HandoffRequest
from callplane.profiles import ChosenProfile, chosen_of
from callplane.session_config import (
    VoiceMode,
    disclosure_request,
    greeting_request,
    interruptible,
    session_update,
    without,
)
from callplane.settings import Settings
from callplane.store.models import CallRecord, CallStatus
from callplane.store.writer import StoreWriter
from callplane.telemetry import Telemetry
from callplane.tools import Action
from session_host import session_accept, session_events, session_guards, session_record, session_tools
from session_host.call_observers import CallObserver, standard
from session_host.call_state import DISCLOSING, Event, PendingResponse, SessionOptions
from session_host.ownership import LeaseKeeper
from session_host.session_standby import FOLLOWER_EVENTS

__all__ = ["CallGone", "CallSession", "NotYetAccepted", "SessionOptions"]
log = logging.getLogger("session_host.session")

CLAIM_WINDOW_S = 10.0  # after a takeover: long enough for the previous owner to notice it lost the call


class CallGone(Exception):
    """The control socket was refused with 404: the call no longer exists."""


class NotYetAccepted(Exception):
    """The upgrade was refused because the accept has not landed yet (the hand-off comes first)."""


def default_transfer(chosen: ChosenProfile | None, settings: Settings) -> str:
    return chosen.profile.transfer_target(None, settings.sip_target_uri) if chosen else settings.sip_target_uri


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
        following: bool = False,
        on_overdue: Callable[[], None] | None = None,
        observers: CallObserver | None = None,
    ) -> None:
        self._init_following(following, on_overdue)
        self._init_observed(writer, telemetry, observers)
        self.keeper = keeper
        self.resumed = resumed
        self.trace_context = trace_context
        self.req = req
        self.settings = settings
        self.http = http
        self.control = control
        self.opts = options or SessionOptions()
        self.on_finish = on_finish
        # Told when this call has ended here, before its end is stored (the registry frees its room).
        self.on_ending: Callable[[CallSession], None] | None = None
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
        self._responses: dict[str, PendingResponse] = {}
        self._current: PendingResponse | None = None
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
        self._transfer_to = default_transfer(self.chosen, settings)
        self._outcome_changed = asyncio.Event()
        self._disclosure: str | None = None  # DISCLOSING, then the disclosure's response id
        self._dropped: set[str] = set()  # session parameters this service refused
        self._reprompts = 0
        if resumed is not None:
            self._go_on_from(resumed, resumed_turns)
        self._handlers = self._event_table()

    def _init_following(self, following: bool, on_overdue: Callable[[], None] | None) -> None:
        # A follower is a peer's standby for this call: it hears every event and keeps the same
        # state, but sends nothing, runs no tool and writes nothing until it is promoted.
        self.following = following
        self.on_overdue = on_overdue  # a function call waits unanswered: look at the owner now
        # Function calls heard while following and not yet answered:
        # call_id -> (name, arguments, when heard (monotonic)).
        self.unanswered: dict[str, tuple[str, str, float]] = {}
        self.followed_owner = ""  # the owner whose call this follower shadows

    def _init_observed(self, writer: StoreWriter, telemetry: Telemetry | None, observers: CallObserver | None) -> None:
        self.telemetry = telemetry or Telemetry()  # its tracer spans the call and its tools
        self.writer = writer  # only to flush before a hand-over; the store otherwise observes
        # What happens on the call goes to these (store, metrics, log); the session only says it.
        self.observers = observers or standard(writer, self.telemetry)

    def _go_on_from(self, resumed: CallRecord, turns: int) -> None:
        """Taking over from a replica that stopped or died: go on from the stored state."""
        self._claim_until = float("inf")  # until this socket is up (then a few seconds more)
        self.call = resumed.model_copy(update={"replica": self.replica, "status": CallStatus.ACTIVE})
        self._seq = turns
        self._greeted = True

    def _event_table(self) -> dict[str, Callable[[Any], None]]:
        """Server event type -> handler (one lookup per event)."""
        table: dict[str, Callable[[Any], None]] = {
            "session.created": functools.partial(session_events.on_session, self),
            "session.updated": functools.partial(session_events.on_session, self),
            "error": functools.partial(session_events.on_error, self),
            "response.created": functools.partial(session_events.on_response_created, self),
            "response.output_audio_transcript.delta": functools.partial(session_events.on_transcript_delta, self),
            "response.output_text.delta": functools.partial(session_events.on_transcript_delta, self),
            "output_audio_buffer.started": functools.partial(session_events.on_audio_started, self),
            "output_audio_buffer.stopped": functools.partial(session_events.on_audio_stopped, self),
            "output_audio_buffer.cleared": functools.partial(session_events.on_audio_stopped, self),
            "response.output_audio_transcript.done": functools.partial(session_events.on_transcript_done, self),
            "response.function_call_arguments.done": functools.partial(session_events.on_function_args_done, self),
            "response.done": functools.partial(session_events.on_response_done, self),
            "input_audio_buffer.speech_started": functools.partial(session_events.on_speech_started, self),
            "input_audio_buffer.speech_stopped": functools.partial(session_events.on_speech_stopped, self),
            "conversation.item.input_audio_transcription.completed": functools.partial(
                session_events.on_user_transcript, self
            ),
        }
        if self.following:
            # Only a follower needs to see the owner's answers go by.
            for etype in FOLLOWER_EVENTS:
                table[etype] = functools.partial(session_events.on_item_seen, self)
        return table

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
        if self.following:
            await self._follow()
            return
        if self.resumed is None:
            self.counted_at_ms = now_ms()
        self.observers.started(self.call, new=self.resumed is None)
        # What a session cancelled from outside (the process closing) is recorded as: never
        # "completed", which would claim the caller hung up.
        status, reason = CallStatus.FAILED, "session host stopped before the call ended"
        try:
            refused = None if self.resumed is not None else await session_accept.wait_for_accept(self)
            status, reason = refused or await self._connect_until_end()
        finally:
            await self._finish(status, reason)

    async def _follow(self) -> None:
        """Follow the call until it ends; when this replica takes it over meanwhile (`promote`),
        the same socket goes on and the call is recorded here at its end."""
        status, reason = CallStatus.FAILED, "session host stopped before the call ended"
        try:
            status, reason = await self._connect_until_end()
        finally:
            if self.following:  # never took over: the owner records the call
                await self._cancel_tasks()
                if self.on_finish is not None:
                    await self.on_finish(self)
            else:
                await self._finish(status, reason)

    async def _finish(self, status: CallStatus, reason: str) -> None:
        if self.on_ending is not None:
            self.on_ending(self)
        await self._cancel_tasks()
        if self._yielded:
            log.info("call handed over to another replica", extra=self.extra)
        else:
            session_record.finalize(self, status, reason)
            await session_record.write_model_summary(self)
            if self.keeper is not None:
                await self.keeper.release()
        if self.on_finish is not None:
            await self.on_finish(self)

    @property
    def setting_up(self) -> bool:
        """A new call not greeted yet (its caller is waiting to hear the agent)."""
        return not self.following and self.resumed is None and not self._greeted and self._end is None

    @property
    def awaiting_accept(self) -> bool:
        """Reserved here, and the accept has not landed (nor failed for good) yet."""
        if self.following or self.resumed is not None or self._connected_once:
            return False
        return self._outcome is None or self._outcome.retrying

    def accept_outcome(self, outcome: AcceptOutcome) -> None:
        """The Function App's word on the accept (delivered by the hand-off route)."""
        self._outcome = outcome
        self._outcome_changed.set()

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
                return session_accept.gone_outcome(self)
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                attempt += 1
                log.warning("control socket failed (%s), attempt %d", type(exc).__name__, attempt, extra=self.extra)
                if attempt > self.opts.reconnect_attempts:
                    if not self.following:
                        await session_tools.hangup_quietly(self)
                    return CallStatus.FAILED, "control socket unreachable"
                await asyncio.sleep(self.opts.reconnect_base_s * 2 ** (attempt - 1))
                continue
            if self.keeper is not None and self.keeper.lost.is_set():
                self._yielded = True
                return CallStatus.ACTIVE, "handed over"
            if clean:
                return self._end or (CallStatus.COMPLETED, "caller hung up")
            log.warning("control socket dropped; reconnecting", extra=self.extra)

    async def hand_over(self, wait_s: float) -> bool:
        """SIGTERM path: store everything, offer the call to a peer, and let go once the peer's
        socket is up. False when no peer took it (the call stays here)."""
        if self.keeper is None or self._ws is None:
            return False
        self._handing_over = True
        self._claim_until = float("inf")  # both replicas may hear the call until the peer is up
        session_record.publish(self)
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
        await self._send(self._session_update_text())
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
                self._disclosure = DISCLOSING
                await self._send(self._session_update_text(interrupt=False))
                await self._send(disclosure)
                log.info("disclosure requested", extra=self.extra)
                return
            await self._send(greeting_request(self.chosen))
            log.info("greeting requested %.0f ms after the webhook", self.call.greetingDelayMs, extra=self.extra)

    def _session_update(self) -> Event:
        update = session_update(self.settings, self._voice_mode, self.chosen)
        without(update["session"], self._dropped)
        return update

    def _session_update_text(self, interrupt: bool | None = None) -> str:
        """The session.update for this call, encoded; shared by every call with the same
        settings, agent version and variables, voice mode, refused parameters and `interrupt`
        (a published profile version is never rewritten: its name and number name its content)."""
        chosen = self.chosen
        agent = None if chosen is None else (chosen.name, chosen.version, tuple(sorted(chosen.variables.items())))
        key = (agent, self._voice_mode, frozenset(self._dropped), interrupt)
        cache = self.opts.encoded_updates
        hit = cache.get(key)
        if hit is not None and hit[0] is self.settings:
            return hit[1]
        update = self._session_update()
        text = json.dumps(update if interrupt is None else interruptible(update, interrupt), separators=(",", ":"))
        if len(cache) >= 256:
            cache.clear()
        cache[key] = (self.settings, text)
        return text

    async def _after_disclosure(self) -> None:
        self._disclosure = None
        await self._send(self._session_update_text())
        await self._send(greeting_request(self.chosen))

    async def _connect_and_pump(self) -> bool:
        """One socket's life. True when the far side ended the call cleanly."""
        ws = await self._open_socket()
        self._ws = ws
        self._connected_once = True
        if self.following:
            log.info("following the call as its standby", extra=self.extra)
        else:
            log.info("control socket open", extra=self.extra)
            self._start_acting(ws)
        try:
            if not self.following:
                await self._on_open()
            async for msg in ws:
                if msg.type is aiohttp.WSMsgType.TEXT:
                    session_events.dispatch(self, msg.data)
                elif msg.type in (aiohttp.WSMsgType.ERROR, aiohttp.WSMsgType.CLOSED):
                    break
        finally:
            session_guards.clock_of(self.opts).forget(self)
            if self.keeper is not None:
                self.keeper.socket_up = False
            self._ws = None
        return ws.close_code == 1000 or self._end is not None

    def _start_acting(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """This replica acts on the call from now on: guards, lease, claims around a change of owner."""
        session_guards.clock_of(self.opts).watch(self)
        if self.keeper is not None:
            self.keeper.socket_up = True
            self._spawn(self.keeper.attached(), "attached")
            self._spawn(self._close_when_lost(ws, self.keeper), "lost-watch")
        if self.resumed is not None and self._claim_until == float("inf"):
            self._claim_until = time.monotonic() + CLAIM_WINDOW_S

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

    async def _send(self, event: Event | str) -> None:
        """Send a client event (or one already encoded)."""
        ws = self._ws
        if ws is None or ws.closed or self.following:
            return
        async with self._send_lock:
            await ws.send_str(event if isinstance(event, str) else json.dumps(event, separators=(",", ":")))

    async def close(self) -> None:
        """Stop this replica's session without touching the call (shutdown path)."""
        if self._ws is not None:
            await self._ws.close()
