"""Call ownership: one lease entity per live call, and one heartbeat per replica.

`leases` PK="lease":
- RK=<callId>          the call's lease: owner replica, hand-over offer, attached flag, the
                       standby replica that follows the call, and the hand-off request, so any
                       replica can resume the call from the store alone.
- RK="~beat:<replica>" the replica's heartbeat: when it was written, its expiry and a draining flag.

When a call ends its lease is not deleted but becomes a tombstone (owner `~ended`) for
TOMBSTONE_KEEP_MS, and the Function App writes one for each call it refuses: a replayed or
duplicate delivery of a finished call then fails the lease insert it makes anyway, so "has this
call already ended?" costs nothing on the caller's path (it used to be a read of the call's
record before every accept). Sweepers drop old tombstones in batches.

A lease is live while its owner's heartbeat is. Renewing one heartbeat per replica instead of
every lease keeps the steady-state cost at one request per replica per beat, not one per call.
Both kinds share a partition so that taking a dead replica's calls is one table transaction that
also rewrites its heartbeat under the ETag the claimer saw expired: if the owner beat again in
between, the whole claim fails, so a replica that was only slow never loses a call without
finding out (its next beat fails on the changed ETag and it re-checks what it still owns).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableTransactionError, UpdateMode

from callplane.clock import now_ms
from callplane.handoff import AcceptOutcome, HandoffRequest
from callplane.store.models import to_entity
from callplane.store.tables import Tables

PK = "lease"
ENDED = "~ended"  # the owner of a finished call's lease (never a replica's name)
# Longer than the signed webhook's replay window (5 min) plus the service's retries of a delivery.
TOMBSTONE_KEEP_MS = 15 * 60 * 1000
BEAT_PREFIX = "~beat:"  # "~" sorts after every call id, so the beats are one key range
MAX_CLAIM = 99  # a transaction holds 100 operations: the heartbeat and 99 leases


@dataclass(slots=True)
class Beat:
    replica: str
    expires_ms: int
    draining: bool
    etag: str
    beat_at_ms: int = 0  # when the owner wrote it (its own clock)
    room: int = -1  # calls it could still take when it beat (-1: not said)

    @property
    def alive(self) -> bool:
        return self.expires_ms > now_ms()

    def stale(self, after_ms: int) -> bool:
        """Not renewed for `after_ms`: several beats missed, though the TTL has not run out."""
        return now_ms() - self.beat_at_ms > after_ms


@dataclass(slots=True)
class Lease:
    call_id: str
    owner: str
    handover: bool
    attached: bool  # the owner's control socket is up (a hand-over waits for this)
    request: HandoffRequest
    etag: str
    offered: bool = False  # not stored: taken from a peer that waits for our `attached`
    standby: str = ""  # the replica whose socket follows the call, ready to take it over

    @property
    def ended(self) -> bool:
        """A tombstone: the call ended (or was refused) and must not run again."""
        return self.owner == ENDED


def _int(value: object) -> int:
    return int(getattr(value, "value", value))  # type: ignore[call-overload,no-any-return]


def _beat_entity(
    replica: str, expires_ms: int, draining: bool, beat_at_ms: int | None = None, room: int = -1
) -> dict[str, object]:
    fields = {
        "replica": replica,
        "expiresAt": expires_ms,
        "draining": draining,
        "beatAt": beat_at_ms or now_ms(),
        "room": room,
    }
    return to_entity(PK, BEAT_PREFIX + replica, fields)


def _beat(entity: dict[str, object], etag: str) -> Beat:
    return Beat(
        replica=str(entity["replica"]),
        expires_ms=_int(entity["expiresAt"]),
        draining=bool(entity.get("draining")),
        etag=etag,
        beat_at_ms=_int(entity.get("beatAt") or 0),
        room=_int(entity["room"]) if entity.get("room") is not None else -1,
    )


def _entity(
    req: HandoffRequest, owner: str, handover: bool = False, attached: bool = False, standby: str = ""
) -> dict[str, object]:
    fields = {
        "owner": owner,
        "handover": handover,
        "attached": attached,
        "standby": standby,
        "request": req.compact().model_dump_json(),
    }
    return to_entity(PK, req.callId, fields)


def _lease(entity: dict[str, object], etag: str, request: HandoffRequest | None = None) -> Lease:
    """The lease `entity` holds; `request`: the one it was just written from (not parsed again)."""
    return Lease(
        call_id=str(entity["RowKey"]),
        owner=str(entity["owner"]),
        handover=bool(entity.get("handover")),
        attached=bool(entity.get("attached")),
        request=request or HandoffRequest.model_validate_json(str(entity["request"])),
        etag=etag,
        standby=str(entity.get("standby") or ""),
    )


def _guarded(etag: str) -> dict[str, Any]:
    return {"mode": UpdateMode.REPLACE, "etag": etag, "match_condition": MatchConditions.IfNotModified}


# --- heartbeats ---------------------------------------------------------------------------------


async def beat(
    tables: Tables,
    replica: str,
    ttl_ms: int,
    etag: str | None,
    *,
    draining: bool = False,
    expires_ms: int | None = None,
    room: int = -1,
) -> Beat | None:
    """Renew our heartbeat. With `etag`, None when it changed since: a peer declared us dead and
    took some of our calls; ResourceNotFoundError when it is gone (the store lost it: no peer
    deletes a heartbeat that owns calls). Without it, (re)start the heartbeat unconditionally."""
    entity = _beat_entity(replica, now_ms() + ttl_ms if expires_ms is None else expires_ms, draining, room=room)
    if etag is None:
        meta = await tables.leases.upsert_entity(entity, mode=UpdateMode.REPLACE)
        return _beat(entity, meta["etag"])
    try:
        meta = await tables.leases.update_entity(entity, **_guarded(etag))
    except ResourceModifiedError:
        return None
    return _beat(entity, meta["etag"])


async def beats(tables: Tables) -> list[Beat]:
    query = "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi"
    params = {"pk": PK, "lo": BEAT_PREFIX, "hi": BEAT_PREFIX[:-1] + ";"}
    return await tables.leases.query(query, params, parse=lambda e: _beat(dict(e), str(e.metadata["etag"])))


async def get_beat(tables: Tables, replica: str) -> Beat | None:
    try:
        entity = await tables.leases.get_entity(PK, BEAT_PREFIX + replica)
    except ResourceNotFoundError:
        return None
    return _beat(dict(entity), str(entity.metadata["etag"]))


async def forget(tables: Tables, dead: Beat) -> None:
    """Drop a long-dead replica's heartbeat once it owns nothing (only if unchanged)."""
    try:
        await tables.leases.delete_entity(
            PK, BEAT_PREFIX + dead.replica, etag=dead.etag, match_condition=MatchConditions.IfNotModified
        )
    except (ResourceModifiedError, ResourceNotFoundError):
        pass


# --- leases -------------------------------------------------------------------------------------


async def get(tables: Tables, call_id: str) -> Lease | None:
    try:
        entity = await tables.leases.get_entity(PK, call_id)
    except ResourceNotFoundError:
        return None
    return _lease(dict(entity), str(entity.metadata["etag"]))


async def owned_by(tables: Tables, owner: str, *, offered_only: bool = False) -> list[Lease]:
    query = "PartitionKey eq @pk and owner eq @owner" + (" and handover eq true" if offered_only else "")
    return await tables.leases.query(
        query, {"pk": PK, "owner": owner}, parse=lambda e: _lease(dict(e), str(e.metadata["etag"]))
    )


async def standing_by(tables: Tables, replica: str) -> list[Lease]:
    """The live calls this replica follows as their standby."""
    return await tables.leases.query(
        "PartitionKey eq @pk and standby eq @me",
        {"pk": PK, "me": replica},
        parse=lambda e: _lease(dict(e), str(e.metadata["etag"])),
    )


async def acquire(tables: Tables, req: HandoffRequest, owner: str) -> Lease | None:
    """Take a freshly handed-off call's lease: new, ours already, offered for hand-over, or its
    owner is dead. None when a live replica owns it (or another replica won the race); the
    tombstone (`ended`) when the call already ended. Inserts that arrive together share one
    transaction (`Tables.lease_writes`)."""
    entity = _entity(req, owner)
    try:
        meta = await tables.lease_writes.create(entity)
        return _lease(entity, meta["etag"], req)
    except ResourceExistsError:
        pass
    current = await get(tables, req.callId)
    if current is None:
        return await acquire(tables, req, owner)
    if current.ended:
        return current
    if current.owner == owner or current.handover:
        return await update(tables, current, owner=owner, request=req if current.owner == owner else None)
    holder = await get_beat(tables, current.owner)
    if holder is None:  # an owner that never beat: the lease's own ETag is the only guard
        return await update(tables, current, owner=owner)
    if holder.alive:
        return None
    taken = await claim(tables, holder, [current], owner)
    return taken[0] if taken else None


async def take_offered(tables: Tables, lease: Lease, owner: str) -> Lease | None:
    """Take a lease its live owner offered for hand-over."""
    taken = await update(tables, lease, owner=owner)
    if taken is not None:
        taken.offered = True
    return taken


async def claim(tables: Tables, dead: Beat, taken: list[Lease], owner: str) -> list[Lease]:
    """Take up to MAX_CLAIM of a dead replica's leases in one transaction that also rewrites its
    heartbeat under the ETag seen expired. Empty when the owner beat again or a peer was faster;
    `dead.etag` is moved on when it succeeds, so the caller can claim the next batch."""
    taken = taken[:MAX_CLAIM]
    if not taken:
        return []
    entities = [_entity(lease.request, owner) for lease in taken]
    ops: list[tuple[Any, ...]] = [
        (
            "update",
            _beat_entity(dead.replica, dead.expires_ms, dead.draining, dead.beat_at_ms, dead.room),
            _guarded(dead.etag),
        )
    ]
    ops += [("update", entity, _guarded(lease.etag)) for lease, entity in zip(taken, entities, strict=True)]
    try:
        results = await tables.leases.submit_transaction(ops)
    except (TableTransactionError, ResourceModifiedError, ResourceNotFoundError):
        return []
    dead.etag = str(results[0]["etag"])
    return [_lease(entity, str(meta["etag"])) for entity, meta in zip(entities, results[1:], strict=True)]


async def update(
    tables: Tables,
    lease: Lease,
    *,
    owner: str | None = None,
    handover: bool = False,
    attached: bool | None = None,
    request: HandoffRequest | None = None,
    standby: str | None = None,
) -> Lease | None:
    """Rewrite a lease under its ETag (take it, offer it, mark it attached, name its standby).
    None when it changed. A new owner starts without a standby: it names its own."""
    new_owner = owner or lease.owner
    same = new_owner == lease.owner
    keep = (lease.attached and same) if attached is None else attached
    follower = standby if standby is not None else (lease.standby if same else "")
    req = request or lease.request
    entity = _entity(req, new_owner, handover, keep, follower)
    try:
        meta = await tables.lease_writes.update(entity, **_guarded(lease.etag))
    except (ResourceModifiedError, ResourceNotFoundError):
        return None
    return _lease(entity, meta["etag"], req)


def _tombstone(req: HandoffRequest) -> dict[str, object]:
    return {**_entity(req, ENDED), **to_entity(PK, req.callId, {"endedAt": now_ms()})}


async def release(tables: Tables, lease: Lease) -> None:
    """The call ended: its lease becomes a tombstone (only if it is still ours)."""
    try:
        await tables.lease_endings.update(_tombstone(lease.request), **_guarded(lease.etag))
    except (ResourceModifiedError, ResourceNotFoundError):
        pass


async def mark_refused(tables: Tables, req: HandoffRequest) -> None:
    """A call the Function App refused: a tombstone, unless a replica holds its lease."""
    try:
        await tables.lease_writes.create(_tombstone(req))
    except ResourceExistsError:
        pass


async def drop_tombstones(tables: Tables, older_than_ms: int = TOMBSTONE_KEEP_MS) -> int:
    """Delete tombstones older than `older_than_ms`, a transaction per 100; how many went."""
    cutoff = now_ms() - older_than_ms
    old = await tables.leases.query(
        "PartitionKey eq @pk and owner eq @ended and endedAt lt @cutoff",
        {"pk": PK, "ended": ENDED, "cutoff": cutoff},
        select=["PartitionKey", "RowKey"],
        parse=lambda e: str(e["RowKey"]),
    )
    for start in range(0, len(old), 100):
        ops: list[tuple[Any, ...]] = [("delete", {"PartitionKey": PK, "RowKey": rk}) for rk in old[start : start + 100]]
        try:
            await tables.leases.submit_transaction(ops)
        except (TableTransactionError, ResourceNotFoundError):
            # One was gone already (another sweeper): the rest one by one.
            for op in ops:
                try:
                    await tables.leases.delete_entity(PK, op[1]["RowKey"])
                except ResourceNotFoundError:
                    pass
    return len(old)


# --- accept outcomes that reached a replica other than the owner ---------------------------------
OUTCOME_PK = "outcome"


async def put_outcome(tables: Tables, outcome: AcceptOutcome) -> None:
    """Left for the owner, which looks here when the Function App's word did not reach it."""
    await tables.leases.upsert_entity(
        {"PartitionKey": OUTCOME_PK, "RowKey": outcome.callId, "outcome": outcome.model_dump_json()}
    )


async def take_outcomes(tables: Tables, wanted: set[str]) -> list[AcceptOutcome]:
    """The outcomes left for any of `wanted` (one query for them all, however many wait), each
    deleted from the store once read."""
    rows = await tables.leases.query(
        "PartitionKey eq @pk", {"pk": OUTCOME_PK}, parse=lambda e: (str(e["RowKey"]), str(e["outcome"]))
    )
    found = []
    for call_id, body in rows:
        if call_id not in wanted:
            continue  # another replica's call
        try:
            await tables.leases.delete_entity(OUTCOME_PK, call_id)
        except ResourceNotFoundError:
            continue  # another replica's copy of the same call took it
        found.append(AcceptOutcome.model_validate_json(body))
    return found


# --- exactly-once answers to function calls around a change of owner ---------------------------
ANSWER_PK = "answer"


async def claim_answer(tables: Tables, call_id: str, function_call_id: str, replica: str) -> bool:
    """While two replicas may both hear a call (a hand-over in progress, the first seconds after a
    takeover), each claims a function call before answering it: an atomic insert keyed by the
    function call's id, so exactly one of them answers. False: the other one has it."""
    try:
        await tables.leases.create_entity(
            {"PartitionKey": ANSWER_PK, "RowKey": f"{call_id}:{function_call_id}"[:512], "replica": replica}
        )
    except ResourceExistsError:
        return False
    return True
