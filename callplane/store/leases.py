"""Call ownership: one lease entity per live call, so exactly one replica runs a call's tools.

`leases` PK="lease", RK=<callId> (one partition: a bounded set, the live calls, that a sweeper
can query in one request). The entity holds the owner replica, its expiry (renewed every few
seconds) and the hand-off request, so any replica can resume the call from `callId` + the store.
Every change is ETag-guarded: two replicas racing for an expired lease cannot both win.
"""

from __future__ import annotations

from dataclasses import dataclass

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import UpdateMode

from callplane.clock import now_ms
from callplane.handoff import HandoffRequest
from callplane.store.models import to_entity
from callplane.store.tables import Tables

PK = "lease"


@dataclass(slots=True)
class Lease:
    call_id: str
    owner: str
    expires_ms: int
    handover: bool
    attached: bool  # the owner's control socket is up (a hand-over waits for this)
    request: HandoffRequest
    etag: str

    @property
    def live(self) -> bool:
        return not self.handover and self.expires_ms > now_ms()


def _entity(req: HandoffRequest, owner: str, ttl_ms: int, handover: bool = False,
            attached: bool = False) -> dict[str, object]:
    return to_entity(PK, req.callId, {"owner": owner, "expiresAt": now_ms() + ttl_ms, "handover": handover,
                                      "attached": attached, "request": req.model_dump_json()})


def _lease(entity: dict[str, object], etag: str) -> Lease:
    expires = entity["expiresAt"]
    return Lease(
        call_id=str(entity["RowKey"]), owner=str(entity["owner"]),
        expires_ms=int(getattr(expires, "value", expires)),  # type: ignore[call-overload]
        handover=bool(entity.get("handover")), attached=bool(entity.get("attached")),
        request=HandoffRequest.model_validate_json(str(entity["request"])),
        etag=etag,
    )


async def get(tables: Tables, call_id: str) -> Lease | None:
    try:
        entity = await tables.leases.get_entity(PK, call_id)
    except ResourceNotFoundError:
        return None
    return _lease(dict(entity), str(entity.metadata["etag"]))


async def acquire(tables: Tables, req: HandoffRequest, owner: str, ttl_ms: int) -> Lease | None:
    """Take the call's lease: new, ours already, expired, or offered for hand-over. None when a
    live lease belongs to another replica (or another replica won the race)."""
    entity = _entity(req, owner, ttl_ms)
    try:
        meta = await tables.leases.create_entity(entity)
        return _lease(entity, meta["etag"])
    except ResourceExistsError:
        pass
    current = await get(tables, req.callId)
    if current is None:
        return await acquire(tables, req, owner, ttl_ms)
    if current.owner != owner and current.live:
        return None
    stored = current.request if current.owner != owner else req
    return await _replace(tables, current, _entity(stored, owner, ttl_ms))


async def _replace(tables: Tables, current: Lease, entity: dict[str, object]) -> Lease | None:
    try:
        meta = await tables.leases.update_entity(entity, mode=UpdateMode.REPLACE, etag=current.etag,
                                                 match_condition=MatchConditions.IfNotModified)
    except (ResourceModifiedError, ResourceNotFoundError):
        return None
    return _lease(entity, meta["etag"])


async def renew(tables: Tables, lease: Lease, ttl_ms: int, *, handover: bool = False,
                attached: bool | None = None) -> Lease | None:
    """Extend our lease (or offer it for hand-over). None when it is no longer ours."""
    keep = lease.attached if attached is None else attached
    return await _replace(tables, lease, _entity(lease.request, lease.owner, ttl_ms, handover, keep))


async def release(tables: Tables, lease: Lease) -> None:
    """The call ended: drop the lease (only if it is still ours)."""
    try:
        await tables.leases.delete_entity(PK, lease.call_id, etag=lease.etag,
                                          match_condition=MatchConditions.IfNotModified)
    except (ResourceModifiedError, ResourceNotFoundError):
        pass


async def claimable(tables: Tables) -> list[Lease]:
    """Leases a replica may take over now: expired (their owner died) or offered for hand-over."""
    now = now_ms()
    out = []
    async for entity in tables.leases.query_entities("PartitionKey eq @pk", parameters={"pk": PK}):
        lease = _lease(dict(entity), str(entity.metadata["etag"]))
        if lease.handover or lease.expires_ms <= now:
            out.append(lease)
    return out
