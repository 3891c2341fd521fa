"""Answering a call's function calls: exactly once around a change of owner, with the profile's
timeouts and slow-tool filler, then what a tool asks for afterwards (a transfer, a hang-up).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import TYPE_CHECKING, Any

from azure.core.exceptions import AzureError
from opentelemetry.trace import Status, StatusCode

from callplane import prompts
from callplane.call_control import CallControlError
from callplane.profiles import Profile
from callplane.store import leases
from callplane.store.models import CallStatus, ToolCallRecord
from callplane.tools import TOOLS, Action, ToolContext
from session_host import session_record
from session_host.call_state import (
    Event,
    PendingResponse,
)
from session_host.tools_runner import ToolOutcome, run_tool

if TYPE_CHECKING:
    from session_host.session import CallSession

log = logging.getLogger("session_host.session")


async def run_tools(s: CallSession, resp: PendingResponse) -> None:
    if s.keeper is not None and s.keeper.lost.is_set():
        return  # the call's next owner answers these: exactly one replica runs a call's tools
    outcomes, follow_ups, answered = await answer_calls(s, resp)
    try:
        if s._after_response is not None and s._after_response[1] is Action.END_CALL:
            # The goodbye was said before the model called end_call: hang up, no new response.
            await do_after_response(s)
            return
        if not answered:
            return  # every call was answered by the other replica, which also asks for the response
        body: Event = {"type": "response.create"}
        if follow_ups:
            body["response"] = {"instructions": prompts.INSTRUCTIONS + "\n" + " ".join(follow_ups)}
        await s._send(body)
    finally:
        # Bookkeeping (the record, its observers) after the caller's answer is on its way: the
        # round trip is what the caller waits through.
        for outcome in outcomes:
            record_tool(s, outcome)


async def answer_calls(s: CallSession, resp: PendingResponse) -> tuple[list[ToolOutcome], list[str], int]:
    """Answer this response's function calls: (tool outcomes, follow-up instructions, how many
    calls this replica answered, skipped ones included)."""
    ctx = ToolContext(s.req.callId, s.req.callerPhone, s._transfer_to)
    profile = s.chosen.profile if s.chosen is not None else None
    follow_ups: list[str] = []
    outcomes: list[ToolOutcome] = []
    answered = 0
    for call_id, name, arguments in resp.calls:
        claimed = await may_answer(s, call_id)
        if claimed is None:
            log.info("%s answered by the other replica", name, extra={"cat": "TOOL", "call_id": s.req.callId})
            continue
        answered += 1
        tool = TOOLS.get(name)
        if resp.interrupted and tool is not None and tool.irreversible:
            log.warning("skipped %s from an interrupted response", name, extra={"cat": "TOOL", "call_id": s.req.callId})
            await send_output(
                s,
                call_id,
                {"error": "not_executed", "reason": "the caller interrupted; confirm before retrying"},
                claimed=claimed,
            )
            continue
        with s.telemetry.tracer.start_as_current_span("tool", attributes={"tool.name": name}) as span:
            running = run_tool(
                name,
                arguments,
                ctx,
                timeout_s=profile.toolTimeouts.get(name) if profile else None,
                allowed=profile is None or name in profile.tools,
            )
            # Only a profile with slow-tool filler needs the tool as a task it can wait beside.
            outcome = await (with_filler(s, asyncio.ensure_future(running), profile) if profile else running)
            span.set_attribute("tool.success", outcome.success)
            if not outcome.success:
                span.set_status(Status(StatusCode.ERROR, outcome.error or "error"))
        await send_output(s, call_id, outcome.output, claimed=claimed)
        outcomes.append(outcome)
        if outcome.follow_up:
            follow_ups.append(outcome.follow_up)
        if outcome.action is not Action.NONE:
            s._after_response = (name, outcome.action, outcome.action_arg)
    return outcomes, follow_ups, answered


async def with_filler(s: CallSession, running: asyncio.Future[ToolOutcome], profile: Profile | None) -> ToolOutcome:
    """A slow tool: past the profile's threshold the agent says a short filler while it runs;
    its answer waits for the filler to finish (one response at a time)."""
    slow = profile.slowTools if profile is not None else None
    if slow is None:
        return await running
    done, _ = await asyncio.wait({running}, timeout=slow.fillerAfterMs / 1000)
    if done:
        return running.result()
    log.info("tool is slow: filler", extra={"cat": "TOOL", "call_id": s.req.callId})
    await s._send(
        {
            "type": "response.create",
            "response": {"instructions": f"Say only this, briefly: {slow.filler}", "tool_choice": "none"},
        }
    )
    outcome = await running
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10.0
    while s._current is not None and loop.time() < deadline:  # the filler is still playing
        await asyncio.sleep(0.02)
    return outcome


async def may_answer(s: CallSession, function_call_id: str) -> bool | None:
    """Whether this replica answers the function call. None: it does not (another replica
    has the call, or won the claim). True: it answers on a claim it won in the store (around a
    change of owner; exactly once). False: it answers unclaimed (it alone hears the call)."""
    if not await still_ours(s):
        return None
    if s.keeper is None or time.monotonic() >= s._claim_until:
        return False
    try:
        won = await leases.claim_answer(s.keeper.tables, s.req.callId, function_call_id, s.replica)
    except AzureError:
        return False  # the store is down: an answer twice beats a caller left waiting
    return True if won else None


async def still_ours(s: CallSession) -> bool:
    """False once another replica owns the call. While a standby follows it, a stale heartbeat
    is first waited out (the fence), so a frozen owner never answers after it was replaced."""
    keeper = s.keeper
    if keeper is None:
        return True
    if keeper.followed and not keeper.lost.is_set():
        await fence(s)
    return not keeper.lost.is_set()


async def fence(s: CallSession) -> None:
    """A standby may take the call once our heartbeat looks stale, and it answers what waits: so
    while ours is old (a frozen loop, a slow store) wait for a fresh beat, or for the news that
    the call is gone. A store that stays down cannot let the standby claim either: then answer."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + s.opts.lease.stale_ms / 1000 * 2
    while s.opts.fenced() and loop.time() < deadline and s.keeper is not None and not s.keeper.lost.is_set():
        await asyncio.sleep(0.02)


async def send_output(s: CallSession, call_id: str, output: dict[str, Any], *, claimed: bool = False) -> None:
    """An answer this replica won a claim for is sent whatever happened since: the other replica
    lost that claim and will not answer. An unclaimed one is looked at again (the tool may have
    run through a freeze, and a standby that took the call answers unclaimed calls itself)."""
    if not claimed and s.keeper is not None and s.keeper.followed and not await still_ours(s):
        return
    await s._send(
        {
            "type": "conversation.item.create",
            "item": {"type": "function_call_output", "call_id": call_id, "output": json.dumps(output)},
        }
    )


def record_tool(s: CallSession, outcome: ToolOutcome) -> None:
    s.call.toolCalls.append(
        ToolCallRecord(
            name=outcome.name,
            timestamp=outcome.started_ms,
            duration=outcome.duration_ms,
            success=outcome.success,
            error=outcome.error,
        )
    )
    s.observers.tool(s.call, outcome)
    session_record.publish(s)


async def do_after_response(s: CallSession) -> None:
    pending, s._after_response = s._after_response, None
    if pending is None:
        return
    name, action, arg = pending
    if action is Action.HANDOFF:
        try:
            target = s.chosen.profile.transfer_target(arg, s._transfer_to) if s.chosen else s._transfer_to
            await s.control.refer(s.req.callId, target)
            s.call.transferReason = arg
            s._end = (CallStatus.TRANSFERRED, "transferred to a human")
            log.info("transferred to a human", extra={"cat": "SUCCESS", "call_id": s.req.callId})
        except CallControlError as exc:
            log.error("REFER failed: %s", exc, extra=s.extra)
            await s._send(
                {
                    "type": "response.create",
                    "response": {
                        "instructions": "The transfer failed. Apologise, offer a callback, and continue helping."
                    },
                }
            )
    elif action is Action.END_CALL:
        s._end = (CallStatus.COMPLETED, f"assistant ended the call: {arg or 'done'}")
        await hangup_quietly(s)


async def hangup_quietly(s: CallSession) -> None:
    try:
        await s.control.hangup(s.req.callId)
    except CallControlError as exc:
        if not exc.call_gone:
            log.warning("hangup failed: %s", exc, extra=s.extra)
