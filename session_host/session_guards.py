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
    from session_host.session import CallSession

log = logging.getLogger("session_host.session")


async def guards(s: CallSession) -> None:
    """Max duration, the session's own time cap and caller silence: end politely, never mid-word."""
    started = time.monotonic()
    while True:
        await asyncio.sleep(0.25 if s.opts.wrap_up_s < 5 else 1.0)
        now = time.monotonic()
        reason = None
        if now - started >= s.settings.max_call_seconds:
            reason = "max call duration reached"
        elif s._expires_at is not None and time.time() >= s._expires_at - s.opts.wrap_up_s * 3:
            reason = "realtime session time cap"
        elif silence_policy(s) is not None and not s._audio_playing:
            reason = await reprompt_or_goodbye(s, now)
        elif now - s._last_activity >= s.opts.silence_timeout_s and not s._audio_playing:
            reason = "caller silent"
        if reason and not s._wrapping_up:
            await wrap_up(s, reason)
            return


def silence_policy(s: CallSession) -> SilencePolicy | None:
    return s.chosen.profile.silence if s.chosen is not None else None


async def reprompt_or_goodbye(s: CallSession, now: float) -> str | None:
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
    await s._send({"type": "response.create", "response": {"instructions": policy.reprompt}})
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
