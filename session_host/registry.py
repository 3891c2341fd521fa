"""Live calls on this replica, keyed by call id. Owns every session task and cancels-and-awaits
them on the way out; the key makes a duplicate hand-off harmless."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from session_host.ownership import LeaseKeeper
from session_host.session import CallSession
from session_host.session_guards import wrap_up

log = logging.getLogger("session_host.registry")


class CallRegistry:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.sessions: dict[str, CallSession] = {}
        # Peers' calls this replica follows as their standby (not counted against capacity: a
        # follower only listens; it joins `sessions` when it takes the call over).
        self.followers: dict[str, CallSession] = {}
        self.taking: set[str] = set()  # hand-offs between the capacity check and their session
        # Calls that ended here and are still storing their end (the lease tombstone gathers
        # with others for a moment; a slow store takes longer). They still answer a duplicate
        # hand-off ("already running here") but no longer take room: the next caller is admitted.
        self.ending: set[str] = set()
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self.accepting = True
        self.before_handover: Callable[[], Awaitable[object]] | None = None
        self.peers_alive: Callable[[], Awaitable[bool]] | None = None
        self.finished = 0  # sessions that ended here (for control-plane cost per call)
        # No live peer said it had room at its last heartbeat (set by the sweeper): when this
        # replica is full too, the whole fleet is, and the Function App need not ask again.
        self.peers_full = False
        # Set whenever a session starts: background work that matters only while calls are
        # being set up (outcomes left in the store) sleeps on it instead of polling.
        self.started = asyncio.Event()

    def __len__(self) -> int:
        return len(self.sessions)

    def __contains__(self, call_id: object) -> bool:
        return call_id in self.sessions or call_id in self.followers

    @property
    def live(self) -> int:
        """This replica's own calls that have not ended."""
        return len(self.sessions) - len(self.ending)

    @property
    def full(self) -> bool:
        return self.live + len(self.taking) >= self.capacity

    def setting_up(self) -> bool:
        """Callers are being answered here: hand-offs, accepts or greetings under way."""
        return bool(self.taking) or any(s.setting_up for s in self.sessions.values())

    def room(self) -> int:
        """Calls this replica could still take (told to peers in its heartbeat)."""
        return max(0, self.capacity - self.live - len(self.taking)) if self.accepting else 0

    def start(self, session: CallSession) -> None:
        call_id = session.req.callId
        (self.followers if session.following else self.sessions)[call_id] = session
        session.on_ending = self._ending
        task = asyncio.create_task(session.run(), name=f"call:{call_id}")
        self._tasks[call_id] = task
        task.add_done_callback(self._reaper(call_id))
        self.started.set()

    def _reaper(self, call_id: str) -> Callable[[asyncio.Task[None]], None]:
        def done(task: asyncio.Task[None]) -> None:
            if self.sessions.pop(call_id, None) is not None:
                self.finished += 1
            self.ending.discard(call_id)
            self.followers.pop(call_id, None)
            self._tasks.pop(call_id, None)
            if not task.cancelled() and task.exception() is not None:
                log.error("session crashed", exc_info=task.exception(), extra={"call_id": call_id})

        return done

    def _ending(self, session: CallSession) -> None:
        if self.sessions.get(session.req.callId) is session:
            self.ending.add(session.req.callId)

    def keepers(self) -> dict[str, LeaseKeeper]:
        """The leases of this replica's own calls (followers hold none)."""
        return {cid: s.keeper for cid, s in self.sessions.items() if s.keeper is not None}

    def promote(self, call_id: str) -> CallSession | None:
        """The follower of `call_id`, moved among this replica's own calls; None if there is none."""
        session = self.followers.pop(call_id, None)
        if session is not None:
            self.sessions[call_id] = session
        return session

    async def stop_following(self, call_ids: set[str] | None = None) -> None:
        """Close the followers of `call_ids` (all with None): their calls go on with their owners."""
        stopping = [s for cid, s in self.followers.items() if call_ids is None or cid in call_ids]
        await asyncio.gather(*(s.close() for s in stopping), return_exceptions=True)

    async def wait_idle(self, timeout: float) -> bool:
        tasks = list(self._tasks.values())
        if not tasks:
            return True
        _, pending = await asyncio.wait(tasks, timeout=timeout)
        return not pending

    async def drain(self, grace: float, wrap_up_before: float, handover_wait: float = 20.0) -> None:
        """SIGTERM: take no new calls; hand live calls to peers; let the ones no peer took run,
        and wrap those up politely near the end of the grace period."""
        self.accepting = False
        await self.stop_following()  # their owners name standbys on replicas that stay
        sessions = list(self.sessions.values())
        if sessions and self.peers_alive is not None and not await self.peers_alive():
            # Nobody to hand to: the calls go on here, fully served, until they end or the grace
            # period nearly runs out (a deploy of a single replica must not cut its callers).
            log.info("no peer to hand %d live calls to; serving them here", len(sessions), extra={"cat": "CALL"})
            sessions = []
        if sessions:
            if self.before_handover is not None:
                await self.before_handover()
            handed = await asyncio.gather(
                *(s.hand_over(min(handover_wait, grace / 2)) for s in sessions), return_exceptions=True
            )
            n = sum(1 for h in handed if h is True)
            log.info("handed %d of %d live calls to peers", n, len(sessions), extra={"cat": "CALL"})
        if await self.wait_idle(max(0.0, grace - wrap_up_before)):
            return
        await asyncio.gather(
            *(wrap_up(s, "replica shutting down") for s in list(self.sessions.values())), return_exceptions=True
        )
        await self.wait_idle(wrap_up_before)

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
