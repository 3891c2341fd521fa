"""Ownership of live calls across replicas: keeping a call's lease, handing it over, and the
sweeper that resumes calls whose owner stopped or died (DESIGN.md "Ownership and resume")."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from azure.core.exceptions import AzureError

from callplane.store import leases
from callplane.store.leases import Lease
from callplane.store.tables import Tables

log = logging.getLogger("session_host.ownership")


@dataclass(slots=True)
class LeaseTiming:
    ttl_s: float = 6.0  # a dead owner's calls are picked up within this plus one sweep
    sweep_s: float = 1.0

    @property
    def ttl_ms(self) -> int:
        return int(self.ttl_s * 1000)


class LeaseKeeper:
    """One call's lease on this replica: renewed every ttl/3; `lost` is set when another replica
    owns the call, after which this replica must stop acting on it (no tools, no hang-up)."""

    def __init__(self, tables: Tables, lease: Lease | None, timing: LeaseTiming) -> None:
        self.tables = tables
        self.lease = lease
        self.timing = timing
        self.lost = asyncio.Event()
        self._attached = False
        self._handing_over = False
        # One lease operation at a time: each uses the ETag the previous one returned.
        self._lock = asyncio.Lock()

    async def run(self) -> None:
        while not self.lost.is_set():
            await asyncio.sleep(self.timing.ttl_s / 3)
            if not self._handing_over:
                await self.renew()

    async def renew(self) -> None:
        async with self._lock:
            await self._renew()

    async def _renew(self) -> None:
        if self.lease is None:
            return
        try:
            renewed = await leases.renew(self.tables, self.lease, self.timing.ttl_ms, attached=self._attached)
        except AzureError as exc:  # the store is down: keep the call; the lease is re-checked next time
            log.warning("lease renewal failed: %s", type(exc).__name__)
            return
        if renewed is None:
            self.lost.set()
        else:
            self.lease = renewed

    async def attached(self) -> None:
        """Our control socket is up: say so, so a replica handing over to us can close its own."""
        self._attached = True
        await self.renew()

    async def hand_over(self, wait_s: float) -> bool:
        """Offer the call to a peer and wait until the peer's socket is up. True when it is."""
        if self.lease is None:
            return False
        self._handing_over = True
        async with self._lock:
            try:
                offered = await leases.renew(self.tables, self.lease, self.timing.ttl_ms, handover=True)
            except AzureError:
                offered = None
        if offered is None:
            self._handing_over = False
            return False
        self.lease = offered
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        while loop.time() < deadline:
            await asyncio.sleep(0.1)
            try:
                now = await leases.get(self.tables, self.lease.call_id)
            except AzureError:
                continue
            if now is not None and now.owner != self.lease.owner and now.attached:
                self.lost.set()
                return True
        # Nobody took it: take it back and carry on here.
        async with self._lock:
            try:
                reclaimed = await leases.renew(self.tables, self.lease, self.timing.ttl_ms)
            except AzureError:
                reclaimed = None
        if reclaimed is None:
            self.lost.set()  # someone took it at the last moment
            return True
        self.lease = reclaimed
        self._handing_over = False
        return False

    async def release(self) -> None:
        if self.lease is not None and not self.lost.is_set():
            try:
                await leases.release(self.tables, self.lease)
            except AzureError:
                pass


async def sweep(tables: Tables, me: str, timing: LeaseTiming, room: Callable[[], int],
                resume: Callable[[Lease], Awaitable[None]]) -> int:
    """Take over claimable calls while there is room, several at once (a dead replica's calls
    all become claimable together, and each waits in silence until it is resumed)."""
    candidates = [lease for lease in await leases.claimable(tables)
                  if not (lease.owner == me and not lease.handover)]  # our own: its session renews it
    candidates = candidates[:max(0, room())]
    limit = asyncio.Semaphore(16)

    async def take(lease: Lease) -> bool:
        async with limit:
            got = await leases.acquire(tables, lease.request, me, timing.ttl_ms)
            if got is None:
                return False
            log.info("taking over a call from %s", lease.owner, extra={"cat": "CALL", "call_id": lease.call_id})
            await resume(got)
            return True

    results = await asyncio.gather(*(take(lease) for lease in candidates), return_exceptions=True)
    return sum(1 for r in results if r is True)
