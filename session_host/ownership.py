"""Ownership of live calls across replicas (ARCHITECTURE.md, "Ownership"): this replica's
heartbeat, each call's lease, hand-over, and the sweeper that resumes calls whose owner stopped
(hand-over) or died (heartbeat expired). callplane/store/leases.py holds the storage side."""

from __future__ import annotations

import asyncio
import logging
import zlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from azure.core.exceptions import AzureError, ResourceNotFoundError

from callplane.clock import now_ms
from callplane.handoff import HandoffRequest
from callplane.logs import Throttle
from callplane.store import leases
from callplane.store.leases import Beat, Lease
from callplane.store.tables import Tables

log = logging.getLogger("session_host.ownership")
FORGET_AFTER_MS = 15 * 60 * 1000  # a dead replica's heartbeat is dropped this long after it owned nothing
# While a standby follows one of its calls, a replica beats at least this often, so the standby can
# tell a dead owner from a live one within a second (three missed beats) instead of a whole TTL.
QUICK_BEAT_S = 0.2
TOMBSTONE_SWEEP_MS = 60_000  # finished calls' tombstones are dropped about this often (by any replica)


@dataclass(slots=True)
class LeaseTiming:
    ttl_s: float = 6.0  # a dead replica's calls are picked up within this plus one sweep
    sweep_s: float = 1.0

    @property
    def ttl_ms(self) -> int:
        return int(self.ttl_s * 1000)

    @property
    def beat_s(self) -> float:
        # Four beats a TTL: a beat delayed by a busy loop or one failed request is not a death.
        return self.ttl_s / 4

    @property
    def quick_beat_s(self) -> float:
        return min(QUICK_BEAT_S, self.beat_s)

    @property
    def stale_ms(self) -> int:
        """A standby may take a call whose function call waits unanswered once the owner's
        heartbeat is this old."""
        return int(3 * self.quick_beat_s * 1000)

    @property
    def fence_ms(self) -> int:
        """An owner whose own last beat is this old holds its answers until it beats again:
        before a standby may take the call, the owner has stopped (never both answer)."""
        return int(2 * self.quick_beat_s * 1000)


class LeaseKeeper:
    """One call's lease on this replica. `lost` is set when another replica owns the call, after
    which this replica must stop acting on it (no tools, no hang-up)."""

    def __init__(self, tables: Tables, lease: Lease | None, req: HandoffRequest) -> None:
        self.tables = tables
        self.lease = lease
        self.req = req
        self.lost = asyncio.Event()
        self.socket_up = False  # this replica's control socket is attached (a standby may follow)
        # One lease operation at a time: each uses the ETag the previous one returned.
        self._lock = asyncio.Lock()

    @property
    def followed(self) -> bool:
        """A standby follows the call (and may take it over when our heartbeat looks stale)."""
        return self.lease is not None and bool(self.lease.standby)

    async def _update(self, **changes: object) -> Lease | None:
        if self.lease is None:
            return None
        try:
            return await leases.update(self.tables, self.lease, **changes)  # type: ignore[arg-type]
        except AzureError as exc:
            log.warning("lease update failed: %s", type(exc).__name__, extra={"call_id": self.req.callId})
            return self.lease  # unknown: keep going; the heartbeat's re-check settles it

    def _settle(self, lease: Lease | None) -> None:
        """The store's answer to a lease change: the lease as it now is, or None when another
        replica has the call."""
        if lease is None:
            self.lost.set()
        else:
            self.lease = lease

    async def attached(self) -> None:
        """Our control socket is up: tell the replica that handed the call to us, so it can close
        its own. Nobody waits on a new call or one taken from a dead replica: no write then."""
        async with self._lock:
            if self.lease is None or self.lease.attached or not self.lease.offered:
                return
            self._settle(await self._update(attached=True))

    async def name_standby(self, standby: str) -> None:
        """Name (or replace, or with "" drop) the replica that follows this call."""
        async with self._lock:
            if self.lease is None or self.lost.is_set() or self.lease.standby == standby:
                return
            self._settle(await self._update(standby=standby))

    async def adopt(self, me: str) -> None:
        """Take the lease of a call started while the store was down."""
        async with self._lock:
            if self.lease is not None:
                return
            try:
                got = await leases.acquire(self.tables, self.req, me)
            except AzureError:
                return
            self._settle(None if got is not None and got.ended else got)

    async def hand_over(self, wait_s: float) -> bool:
        """Offer the call to a peer and wait until the peer's socket is up. True when it is."""
        async with self._lock:
            offered = await self._update(handover=True)
            if offered is None or self.lease is None or not offered.handover:
                return False
            self.lease = offered
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        while loop.time() < deadline:
            await asyncio.sleep(0.1)
            try:
                now = await leases.get(self.tables, self.req.callId)
            except AzureError:
                continue
            if now is not None and now.owner != offered.owner and now.attached:
                self.lost.set()
                return True
        # Nobody took it: take it back and carry on here.
        async with self._lock:
            reclaimed = await self._update(handover=False)
            if reclaimed is None:
                self.lost.set()  # someone took it at the last moment
                return True
            self.lease = reclaimed
        return False

    async def release(self) -> None:
        async with self._lock:
            if self.lease is not None and not self.lost.is_set():
                try:
                    await leases.release(self.tables, self.lease)
                except AzureError:
                    pass


@dataclass(slots=True)
class Heartbeat:
    """This replica's heartbeat, which keeps all its leases live at once."""

    tables: Tables
    replica: str
    timing: LeaseTiming
    local: Callable[[], Mapping[str, LeaseKeeper]]
    room: Callable[[], int] = lambda: -1  # calls this replica could still take, told to peers
    draining: bool = False
    last_ok_ms: int = 0  # when a beat last reached the store
    last_beat_at_ms: int = 0  # the time written in that beat, which standbys compare with
    _etag: str | None = None
    _throttle: Throttle = field(default_factory=Throttle)

    def current(self) -> bool:
        """The last beat is younger than the TTL: peers see this replica alive."""
        return now_ms() - self.last_ok_ms < self.timing.ttl_ms

    def fenced(self) -> bool:
        """Our last beat is old enough that a standby may soon take our calls: hold answers."""
        return now_ms() - self.last_beat_at_ms >= self.timing.fence_ms

    def _quick(self) -> bool:
        return any(k.followed for k in self.local().values())

    async def beat(self) -> bool:
        try:
            try:
                fresh = await leases.beat(
                    self.tables, self.replica, self.timing.ttl_ms, self._etag, draining=self.draining, room=self.room()
                )
            except ResourceNotFoundError:
                # Our heartbeat is gone, so the store lost its leases (it came back empty): beat
                # afresh and take every local call's lease again. Acquiring is guarded, so a call
                # a peer holds meanwhile is let go of, not doubled.
                log.warning("the heartbeat was missing from the store; re-taking this replica's leases")
                fresh = await leases.beat(
                    self.tables, self.replica, self.timing.ttl_ms, None, draining=self.draining, room=self.room()
                )
                assert fresh is not None
                for keeper in self.local().values():
                    keeper.lease = None
            if fresh is None:
                # A peer found us expired and took some calls. Beat unconditionally first (no
                # further claim can succeed), then let go of whatever is no longer ours.
                log.warning("this replica was taken for dead; re-checking its calls", extra={"cat": "WARNING"})
                fresh = await leases.beat(
                    self.tables, self.replica, self.timing.ttl_ms, None, draining=self.draining, room=self.room()
                )
                assert fresh is not None
                self._etag = fresh.etag
                await self._let_go_of_lost_calls()
            self._etag = fresh.etag
            self.last_ok_ms = now_ms()
            self.last_beat_at_ms = fresh.beat_at_ms
        except AzureError as exc:
            if (skipped := self._throttle.due("beat")) is not None:
                log.warning(
                    "heartbeat failed at %s: %s (%d more since the last line)",
                    self.tables.endpoint,
                    type(exc).__name__,
                    skipped,
                )
            return False
        for keeper in list(self.local().values()):
            if keeper.lease is None:
                await keeper.adopt(self.replica)
        return True

    async def _let_go_of_lost_calls(self) -> None:
        mine = {lease.call_id for lease in await leases.owned_by(self.tables, self.replica)}
        for call_id, keeper in list(self.local().items()):
            if keeper.lease is not None and call_id not in mine:
                keeper.lost.set()

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.timing.quick_beat_s if self._quick() else self.timing.beat_s)
            await self.beat()

    async def announce_draining(self) -> None:
        """Peers look for offered calls only on draining replicas: say we are one before offering."""
        self.draining = True
        await self.beat()

    async def stop(self) -> None:
        """Clean exit: expire now, so any call still leased to us is taken at once."""
        try:
            await leases.beat(self.tables, self.replica, 0, None, draining=True, expires_ms=now_ms() - 1)
        except AzureError:
            pass


@dataclass(slots=True)
class Standbys:
    """What the sweeper needs from this replica to keep a standby beside every live call: its
    owned calls (to name their standbys), and the calls it follows for peers."""

    timing: LeaseTiming
    local: Callable[[], Mapping[str, LeaseKeeper]]
    follow: Callable[[list[Lease]], Awaitable[None]]  # the calls that name this replica as their standby
    overdue: Callable[[str], bool]  # a followed call of this owner has a function call waiting
    enabled: bool = True


@dataclass(slots=True)
class Sweeper:
    """Takes over calls from peers that are handing over or dead, while there is room. A dead
    replica's calls all wait in silence together, so they are claimed in batches and resumed at
    once. With `standbys`, also keeps a standby replica beside each local call and follows the
    calls that name this replica; a followed call whose function call waits unanswered while its
    owner's heartbeat is stale is taken without waiting for the whole TTL."""

    tables: Tables
    replica: str
    room: Callable[[], int]
    resume: Callable[[Lease], Awaitable[None]]
    standbys: Standbys | None = None
    peers: list[str] = field(default_factory=list)  # alive, not draining, not us
    peers_full: bool = True  # no such peer said it had room at its last beat
    _cleared: dict[str, str] = field(default_factory=dict)  # dead replica -> heartbeat ETag seen owning nothing
    _tombstones_swept_ms: int = 0

    async def sweep(self, *, quick: bool = False) -> int:
        """One pass. `quick`: only look for dead or stale owners (a followed call waits for an
        answer, so this runs many times a second until the owner answers or is taken over)."""
        taken = 0
        beats = await leases.beats(self.tables)
        live = [b for b in beats if b.alive and not b.draining and b.replica != self.replica]
        self.peers = sorted(b.replica for b in live)
        self.peers_full = all(b.room == 0 for b in live)
        sb = self.standbys if self.standbys is not None and self.standbys.enabled else None
        if sb is not None and not quick:
            # Only a live peer can name us its standby: alone, skip the query (idle cost).
            alone = not any(b.alive and b.replica != self.replica for b in beats)
            await sb.follow([] if alone else await leases.standing_by(self.tables, self.replica))
        for peer in beats:
            if peer.replica == self.replica:
                continue
            if self.room() <= 0:
                break
            taken += await self._sweep_peer(peer, sb)
        if sb is not None and not quick:
            await self._name_standbys(sb)
        if not quick and now_ms() - self._tombstones_swept_ms > TOMBSTONE_SWEEP_MS:
            self._tombstones_swept_ms = now_ms()
            await leases.drop_tombstones(self.tables)
        return taken

    async def _sweep_peer(self, peer: Beat, sb: Standbys | None) -> int:
        early = sb is not None and peer.alive and peer.stale(sb.timing.stale_ms) and sb.overdue(peer.replica)
        if peer.alive and not peer.draining and not early:
            return 0
        if not peer.alive and self._cleared.get(peer.replica) == peer.etag:
            if now_ms() - peer.expires_ms > FORGET_AFTER_MS:
                await leases.forget(self.tables, peer)
            return 0
        taken = await self._take_offered(peer) if peer.alive and peer.draining else 0
        if early or not peer.alive:
            taken += await self._take_from_dead(peer, standing_only=early)
        return taken

    async def _name_standbys(self, sb: Standbys) -> None:
        """Every local call with its socket up gets a live peer as its standby; a standby that
        stopped or is draining is replaced; with no peer, none is named."""
        work = []
        for call_id, keeper in sb.local().items():
            lease = keeper.lease
            if lease is None or not keeper.socket_up or keeper.lost.is_set() or lease.owner != self.replica:
                continue
            if lease.standby in self.peers or (not lease.standby and not self.peers):
                continue
            # Spread a replica's calls over its peers, the same call always to the same peer.
            choice = self.peers[zlib.crc32(call_id.encode()) % len(self.peers)] if self.peers else ""
            work.append(keeper.name_standby(choice))
        if work:
            await asyncio.gather(*work, return_exceptions=True)

    async def _take_offered(self, peer: Beat) -> int:
        offered = (await leases.owned_by(self.tables, peer.replica, offered_only=True))[: max(0, self.room())]
        got = await asyncio.gather(
            *(leases.take_offered(self.tables, lease, self.replica) for lease in offered), return_exceptions=True
        )
        return await self._resume_all([g for g in got if isinstance(g, Lease)], peer.replica)

    async def _take_from_dead(self, peer: Beat, *, standing_only: bool = False) -> int:
        found = await leases.owned_by(self.tables, peer.replica)
        if standing_only:
            # The owner only looks dead: take just the calls we follow, which need us now.
            found = [lease for lease in found if lease.standby == self.replica]
        elif not found:
            self._cleared[peer.replica] = peer.etag
            return 0
        taken = 0
        while found and self.room() > taken:
            size = min(leases.MAX_CLAIM, self.room() - taken)
            batch, found = found[:size], found[size:]
            got = await leases.claim(self.tables, peer, batch, self.replica)
            if not got:
                break  # the owner came back, or a peer claimed first: look again next sweep
            taken += await self._resume_all(got, peer.replica)
        return taken

    async def _resume_all(self, got: list[Lease], source: str) -> int:
        for lease in got:
            log.info("taking over a call from %s", source, extra={"cat": "CALL", "call_id": lease.call_id})
        results = await asyncio.gather(*(self.resume(lease) for lease in got), return_exceptions=True)
        for lease, result in zip(got, results, strict=True):
            if isinstance(result, BaseException):
                log.error("resume failed: %s", type(result).__name__, extra={"call_id": lease.call_id})
        return len(got)
