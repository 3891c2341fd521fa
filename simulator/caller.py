"""The scripted caller and the "model": drives one call's control socket through a scenario.

Events follow the service's typical flows (docs/realtime.md). The runner is one task per
call; the WebSocket handler feeds it client events through the call's queue and futures.
"""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

from simulator import protocol as p
from simulator.calls import CallState, SimCall, ms
from simulator.scenario import CallTool, Say, Scenario, Turn

CHUNK_CHARS = 12
_encode = json.JSONEncoder(separators=(",", ":"), check_circular=False).encode


class Runner:
    def __init__(self, call: SimCall, *, time_scale: float, dialect: str, end_call: Any) -> None:
        self.call = call
        self.sc: Scenario = call.scenario
        self.scale = time_scale
        self.dialect = dialect
        self._end_call = end_call  # async (call, reason) -> None
        self._debt = 0.0

    async def sleep(self, real_ms: float) -> None:
        # Pauses shorter than a few ms (high time scales) are accumulated and taken together:
        # the pacing stays right on average and the loop is not flooded with sub-ms timers.
        self._debt += max(0.0, real_ms) / 1000 / self.scale
        if self._debt >= 0.004:
            debt, self._debt = self._debt, 0.0
            await asyncio.sleep(debt)

    async def send(self, ev: p.Event) -> None:
        call = self.call
        if self.sc.faults.slow_socket_ms:
            await self.sleep(self.sc.faults.slow_socket_ms)
        # Every attached socket hears every event (several may attach to one call).
        data = _encode(ev)
        for ws in call.sockets:
            if ws.closed:
                continue
            try:
                await ws.send_str(data)
                call.events_sent += 1
            except (ConnectionError, RuntimeError):
                pass

    async def _response_done(self, response: dict[str, Any]) -> None:
        usage = response.get("usage") or {}
        flat = {
            "inputTokens": usage.get("input_tokens", 0),
            "outputTokens": usage.get("output_tokens", 0),
            "totalTokens": usage.get("total_tokens", 0),
            "inputTextTokens": (usage.get("input_token_details") or {}).get("text_tokens", 0),
            "inputAudioTokens": (usage.get("input_token_details") or {}).get("audio_tokens", 0),
            "cachedTokens": (usage.get("input_token_details") or {}).get("cached_tokens", 0),
            "outputTextTokens": (usage.get("output_token_details") or {}).get("text_tokens", 0),
            "outputAudioTokens": (usage.get("output_token_details") or {}).get("audio_tokens", 0),
        }
        for k, v in flat.items():
            self.call.usage_sent[k] = self.call.usage_sent.get(k, 0) + int(v or 0)
        await self.send(p.event("response.done", response=response))

    def _interruptible(self) -> bool:
        turn = ((self.call.session.get("audio") or {}).get("input") or {}).get("turn_detection") or {}
        return turn.get("interrupt_response", True) is not False

    def model_latency(self) -> float:
        lat = self.sc.latency
        return max(lat.min_ms, random.gauss(lat.mean_ms, lat.stdev_ms))

    # --- the script --------------------------------------------------------------------------
    async def run(self) -> None:
        call = self.call
        try:
            await asyncio.wait_for(call.ws_ready.wait(), timeout=30 / max(self.scale, 1) + 5)
        except TimeoutError:
            await self._end_call(call, "no control socket attached")
            return
        self._spawn_faults()
        # The greeting is whatever the client asks for first.
        req = await self._next_response_request(timeout_ms=10_000)
        if req is not None:
            await self.play_response(self.sc.greeting, interrupt_after_ms=self.sc.talk_over_greeting_ms)
        turns = self.sc.turns
        for i, turn in enumerate(turns):
            nxt = turns[i + 1] if i + 1 < len(turns) else None
            if turn.barge_in_after_ms is None:
                await self.sleep(turn.pause_ms)
            await self.caller_speaks(turn)
            await self.assistant_turn(turn, barge_in_after=nxt.barge_in_after_ms if nxt else None)
        if self.sc.hangup == "caller":
            await self.sleep(self.sc.hangup_after_ms)
            await self._end_call(call, "caller hung up")
        else:
            try:
                await asyncio.wait_for(call.ended.wait(), timeout=self.sc.wait_limit_ms / 1000 / self.scale)
            except TimeoutError:
                await self._end_call(call, "caller gave up waiting")

    async def _next_response_request(self, timeout_ms: float) -> dict[str, Any] | None:
        """Wait for the client's response.create. The client's speed is what is measured, so
        this wait is not time-scaled below a few real seconds."""
        self.call.awaiting_response = True
        try:
            timeout = max(timeout_ms / 1000 / self.scale, 5.0)
            return await asyncio.wait_for(self.call.response_requests.get(), timeout=timeout)
        except TimeoutError:
            return None
        finally:
            self.call.awaiting_response = False

    async def caller_speaks(self, turn: Turn) -> None:
        item_id = p.new_id("item")
        start = int(ms())
        if turn.barge_in_after_ms is None:  # a barge-in already sent speech_started mid-response
            await self.send(p.event("input_audio_buffer.speech_started", audio_start_ms=start % 10**7, item_id=item_id))
        await self.sleep(turn.speech_ms)
        await self.send(p.event("input_audio_buffer.speech_stopped", audio_end_ms=int(ms()) % 10**7, item_id=item_id))
        await self.send(p.event("input_audio_buffer.committed", item_id=item_id, previous_item_id=None))
        transcribe = self.dialect == "openai" and bool(
            ((self.call.session.get("audio") or {}).get("input") or {}).get("transcription")
        )
        await self.send(p.event("conversation.item.added", previous_item_id=None, item=p.user_item(item_id, None)))
        if turn.caller:
            self.call.transcript.append(("user", turn.caller))
        if transcribe and turn.caller:
            await self.send(
                p.event(
                    "conversation.item.input_audio_transcription.completed",
                    item_id=item_id,
                    content_index=0,
                    transcript=turn.caller,
                    usage={"type": "duration", "seconds": turn.speech_ms / 1000},
                )
            )

    async def assistant_turn(self, turn: Turn, barge_in_after: int | None) -> None:
        steps = turn.assistant or [Say(say="Sorry, could you say that again?")]
        for idx, step in enumerate(steps):
            last = idx == len(steps) - 1
            if isinstance(step, CallTool):
                asked = await self.tool_response(step)
                if asked and last:
                    # The client asked for a response after the tool and the script has no words
                    # left: the model still answers something.
                    await self.play_response("Is there anything else I can help you with?")
                continue
            interrupt = barge_in_after if last else None
            await self.play_response(step.say, interrupt_after_ms=interrupt)

    # --- responses ---------------------------------------------------------------------------
    async def play_response(self, text: str, interrupt_after_ms: int | None = None) -> bool:
        """Stream one spoken response; with `interrupt_after_ms` the caller barges in. True if completed."""
        call = self.call
        rid, item_id = p.new_id("resp"), p.new_id("item")
        call.active_response = rid
        await self.send(p.event("response.created", response=p.response_object(rid, "in_progress", [])))
        await self.sleep(self.model_latency())
        item = p.message_item(item_id, "", "in_progress")
        await self.send(p.event("response.output_item.added", response_id=rid, output_index=0, item=item))
        await self.send(p.event("conversation.item.added", previous_item_id=None, item=item))
        part = {"type": "audio", "transcript": ""}  # the GA type still names content parts "audio"
        await self.send(
            p.event(
                "response.content_part.added",
                response_id=rid,
                item_id=item_id,
                output_index=0,
                content_index=0,
                part=part,
            )
        )
        await self.send(p.event("output_audio_buffer.started", response_id=rid))
        spoken = ""
        elapsed = 0.0
        per_chunk_ms = CHUNK_CHARS / self.sc.chars_per_second * 1000
        for i in range(0, len(text), CHUNK_CHARS):
            if call.active_response != rid:  # cancelled by the client
                break
            if interrupt_after_ms is not None and elapsed >= interrupt_after_ms:
                if self._interruptible():
                    break
                # The session turned interrupt_response off: the caller's speech is heard (it
                # is reported) but the response plays on to its end.
                await self.send(
                    p.event(
                        "input_audio_buffer.speech_started", audio_start_ms=int(ms()) % 10**7, item_id=p.new_id("item")
                    )
                )
                interrupt_after_ms = None
            delta = text[i : i + CHUNK_CHARS]
            spoken += delta
            await self.send(
                p.event(
                    "response.output_audio_transcript.delta",
                    response_id=rid,
                    item_id=item_id,
                    output_index=0,
                    content_index=0,
                    delta=delta,
                )
            )
            await self.sleep(per_chunk_ms)
            elapsed += per_chunk_ms
        interrupted = spoken != text
        if interrupted:
            if interrupt_after_ms is not None:
                await self.send(
                    p.event(
                        "input_audio_buffer.speech_started", audio_start_ms=int(ms()) % 10**7, item_id=p.new_id("item")
                    )
                )
            await self._finish(
                rid,
                item_id,
                spoken,
                cancelled=True,
                reason="turn_detected" if interrupt_after_ms is not None else "client_cancelled",
            )
            await self.send(p.event("output_audio_buffer.cleared", response_id=rid))
            call.transcript.append(("assistant", spoken + " [interrupted]"))
            return False
        await self.send(
            p.event(
                "response.output_audio_transcript.done",
                response_id=rid,
                item_id=item_id,
                output_index=0,
                content_index=0,
                transcript=text,
            )
        )
        await self._finish(rid, item_id, text, cancelled=False)
        await self.send(p.event("output_audio_buffer.stopped", response_id=rid))
        call.transcript.append(("assistant", text))
        return True

    async def _finish(self, rid: str, item_id: str, text: str, *, cancelled: bool, reason: str = "") -> None:
        status = "cancelled" if cancelled else "completed"
        item = p.message_item(item_id, text, "incomplete" if cancelled else "completed")
        await self.send(
            p.event(
                "response.content_part.done",
                response_id=rid,
                item_id=item_id,
                output_index=0,
                content_index=0,
                part={"type": "audio", "transcript": text},
            )
        )
        await self.send(p.event("response.output_item.done", response_id=rid, output_index=0, item=item))
        await self.send(p.event("conversation.item.done", previous_item_id=None, item=item))
        details = {"type": "cancelled", "reason": reason} if cancelled else None
        await self._response_done(p.response_object(rid, status, [item], details))
        if self.call.active_response == rid:
            self.call.active_response = None

    async def tool_response(self, step: CallTool) -> bool:
        """Play a function call; True when the client answered it with output and response.create."""
        call = self.call
        rid, item_id, call_id = p.new_id("resp"), p.new_id("item"), p.new_id("call")
        args = step.arguments_json()
        call.active_response = rid
        await self.send(p.event("response.created", response=p.response_object(rid, "in_progress", [])))
        await self.sleep(self.model_latency())
        item = p.function_call_item(item_id, call_id, step.tool, "", "in_progress")
        await self.send(p.event("response.output_item.added", response_id=rid, output_index=0, item=item))
        await self.send(p.event("conversation.item.added", previous_item_id=None, item=item))
        await self.send(
            p.event(
                "response.function_call_arguments.delta",
                response_id=rid,
                item_id=item_id,
                output_index=0,
                call_id=call_id,
                delta=args,
            )
        )
        if step.hold:
            call.mark(f"tool_held_{step.hold}")
            await call.gate(step.hold).wait()
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[float] = loop.create_future()
        call.output_waiters[call_id] = waiter
        call.function_calls_emitted += 1
        call.function_call_times[call_id] = ms()
        call.mark("function_call_sent")
        # From here the client's next response.create belongs to this tool round trip, even when it
        # arrives in the same breath as the function_call_output.
        call.awaiting_response = True
        sent_at = ms()
        await self.send(
            p.event(
                "response.function_call_arguments.done",
                response_id=rid,
                item_id=item_id,
                output_index=0,
                call_id=call_id,
                name=step.tool,
                arguments=args,
            )
        )
        done_item = p.function_call_item(item_id, call_id, step.tool, args)
        await self.send(p.event("response.output_item.done", response_id=rid, output_index=0, item=done_item))
        await self.send(p.event("conversation.item.done", previous_item_id=None, item=done_item))
        await self._response_done(p.response_object(rid, "completed", [done_item]))
        if call.active_response == rid:
            call.active_response = None
        # The model waits: the client must send function_call_output and then response.create.
        try:
            await asyncio.wait_for(asyncio.shield(waiter), timeout=15 / self.scale + 2)
        except TimeoutError:
            call.output_waiters.pop(call_id, None)
            call.function_calls_unanswered += 1
            call.awaiting_response = False
            return False
        req = await self._next_response_request(timeout_ms=15_000)
        if req is not None:
            call.tool_round_trips.append(ms() - sent_at)
        return req is not None

    # --- faults ------------------------------------------------------------------------------
    def _spawn_faults(self) -> None:
        f = self.sc.faults
        if f.drop_socket_after_ms is not None:
            self._later(f.drop_socket_after_ms, self._drop_socket())
        if f.server_error_after_ms is not None:
            self._later(
                f.server_error_after_ms,
                self.send(
                    p.error_event(
                        "server_error", "The server had an error while processing your request.", etype="server_error"
                    )
                ),
            )
        if f.session_cap_ms is not None:
            self._later(f.session_cap_ms, self._session_cap())

    def _later(self, delay_ms: float, coro: Any) -> None:
        async def go() -> None:
            await self.sleep(delay_ms)
            await coro

        task = asyncio.ensure_future(go())
        self.call.extra_tasks.add(task)
        task.add_done_callback(self.call.extra_tasks.discard)

    async def _drop_socket(self) -> None:
        call = self.call
        if call.dropped_once:
            return
        call.dropped_once = True
        ws = call.live_socket
        if self.sc.faults.end_call_on_drop:
            call.state = CallState.ENDED
            call.end_reason = "call dropped"
            call.ended.set()
        if ws is not None:
            await ws.close(code=1011, message=b"simulated drop")
        if self.sc.faults.end_call_on_drop and self.call.runner is not None:
            self.call.runner.cancel()

    async def _session_cap(self) -> None:
        await self.send(p.error_event("session_expired", "Your session hit the maximum duration of 60 minutes."))
        await self._end_call(self.call, "session expired")
