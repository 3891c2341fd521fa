"""Ending a call politely: the maximum duration, the service's session time cap, and a silent
caller (the profile's re-prompts, then a goodbye).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from callplane import prompts
from callplane.profiles import SilencePolicy
from callplane.tools import Action
from session_host import session_tools

if TYPE_CHECKING:
    from session_host.call_state import SessionOptions
    from session_host.session import CallSession

log = logging.getLogger("session_host.session")


class GuardClock:
    """One timer for the guards of every call acting on this replica: each call is looked at once
    a tick. A loop per call cost a timer and a task wake-up per call per tick, and with 1,000
    calls their timers made the loop's timer heap a cost of its own."""

    def __init__(self, tick_s: float) -> None:
        self.tick_s = tick_s
        self._calls: dict[CallSession, float] = {}  # watched since (monotonic)
        self._task: asyncio.Task[None] | None = None

    def watch(self, s: CallSession) -> None:
        """Guard `s` from now on (again after a reconnect: its clock starts over, as before)."""
        self._calls[s] = time.monotonic()
        task, loop = self._task, asyncio.get_running_loop()
        if task is None or task.done() or task.get_loop() is not loop:  # (options outlive a loop in tests)
            self._task = loop.create_task(self._run(), name="guard-clock")

    def forget(self, s: CallSession) -> None:
        self._calls.pop(s, None)

    async def _run(self) -> None:
        while self._calls:
            await asyncio.sleep(self.tick_s)
            now = time.monotonic()
            for s, started in list(self._calls.items()):
                try:
                    reason = due(s, started, now)
                except Exception:  # one call's guard must not stop the others'
                    log.exception("guard check failed", extra=s.extra)
                    continue
                if reason and not s._wrapping_up:
                    self.forget(s)
                    s._spawn(wrap_up(s, reason), "wrap-up")


def clock_of(opts: SessionOptions) -> GuardClock:
    """The replica's guard clock (one per set of session options, which the app owns)."""
    if opts.guard_clock is None:
        opts.guard_clock = GuardClock(0.25 if opts.wrap_up_s < 5 else 1.0)
    return opts.guard_clock


def due(s: CallSession, started: float, now: float) -> str | None:
    """Why `s` should end now (max duration, the session's own time cap, caller silence), if it
    should; a silence that calls for a re-prompt sends it."""
    if now - started >= s.settings.max_call_seconds:
        return "max call duration reached"
    if s._expires_at is not None and time.time() >= s._expires_at - s.opts.wrap_up_s * 3:
        return "realtime session time cap"
    if silence_policy(s) is not None and not s._audio_playing:
        return reprompt_or_goodbye(s, now)
    if now - s._last_activity >= s.opts.silence_timeout_s and not s._audio_playing:
        return "caller silent"
    return None


def silence_policy(s: CallSession) -> SilencePolicy | None:
    return s.chosen.profile.silence if s.chosen is not None else None


def reprompt_or_goodbye(s: CallSession, now: float) -> str | None:
    """The profile's silence policy: ask again after `repromptAfterS`, up to `maxReprompts`
    times; one more silence and the call ends with a goodbye."""
    policy = silence_policy(s)
    if policy is None or s._current is not None or now - s._last_activity < policy.repromptAfterS:
        return None
    if s._reprompts >= policy.maxReprompts:
        return "caller silent"
    s._reprompts += 1
    s._last_activity = now
    log.info("caller silent: re-prompt %d of %d", s._reprompts, policy.maxReprompts, extra=s.extra)
    s._spawn(s._send({"type": "response.create", "response": {"instructions": policy.reprompt}}), "re-prompt")
    return None


async def wrap_up(s: CallSession, reason: str) -> None:
    """Say goodbye, then hang up once the goodbye has played (or after wrap_up_s)."""
    if s._wrapping_up:
        return
    s._wrapping_up = True
    log.info("wrapping up: %s", reason, extra=s.extra)
    if s._transfer_to and reason == "realtime session time cap":
        s._after_response = ("guard", Action.HANDOFF, reason)
    else:
        s._after_response = ("guard", Action.END_CALL, reason)
    await s._send({"type": "response.create", "response": {"instructions": prompts.WRAP_UP}})
    await asyncio.sleep(s.opts.wrap_up_s)
    if s._after_response is not None:
        await session_tools.do_after_response(s)
