"""Leases and heartbeats on Azurite: who may take a call, and what a slow owner finds out."""

from __future__ import annotations

import asyncio
from typing import Any

from callplane.clock import now_ms
from callplane.handoff import HandoffRequest
from callplane.settings import Settings
from callplane.store import leases
from callplane.store.calls import CallReader
from callplane.store.models import CallStatus
from callplane.store.records import RefusalRecorder, Unhandled
from callplane.store.rollups import read_stats
from callplane.store.tables import Tables, ensure_tables, open_tables
from session_host.ownership import Heartbeat, LeaseKeeper, LeaseTiming, Sweeper


def req(i: int) -> HandoffRequest:
    return HandoffRequest(callId=f"rtc_{i}", webhookId=f"wh_{i}", receivedAt=1)


async def test_a_live_owner_keeps_its_calls_and_a_dead_one_loses_them(tables: Tables) -> None:
    await leases.beat(tables, "a", 60_000, None)
    assert (await leases.acquire(tables, req(1), "a")) is not None
    assert await leases.acquire(tables, req(1), "b") is None, "a live owner's call is not taken"
    again = await leases.acquire(tables, req(1), "a")
    assert again is not None and again.owner == "a", "a duplicate hand-off to the owner is its own"

    await leases.beat(tables, "a", 0, None, expires_ms=1)  # a dies
    taken = await leases.acquire(tables, req(1), "b")
    assert taken is not None and taken.owner == "b"
    assert (await leases.get(tables, "rtc_1")).owner == "b"  # type: ignore[union-attr]


async def test_a_claim_fails_whole_when_the_owner_beats_in_between(tables: Tables) -> None:
    first = await leases.beat(tables, "a", 60_000, None)
    assert first is not None
    for i in range(5):
        await leases.acquire(tables, req(i), "a")
    dead = await leases.beat(tables, "a", 0, first.etag, expires_ms=1)
    assert dead is not None and not dead.alive
    seen = [b for b in await leases.beats(tables) if b.replica == "a"][0]
    found = await leases.owned_by(tables, "a")
    assert len(found) == 5
    # "a" was only slow: it beats again before "b" claims what it saw expired.
    back = await leases.beat(tables, "a", 60_000, dead.etag)
    assert back is not None
    assert await leases.claim(tables, seen, found, "b") == [], "the claim must fail as a whole"
    assert {lease.owner for lease in await leases.owned_by(tables, "a")} == {"a"}

    # This time "a" really is gone: one transaction takes all five and rewrites its heartbeat,
    # so "a"'s next guarded beat finds out.
    gone = await leases.beat(tables, "a", 0, back.etag, expires_ms=1)
    assert gone is not None
    seen = [b for b in await leases.beats(tables) if b.replica == "a"][0]
    got = await leases.claim(tables, seen, await leases.owned_by(tables, "a"), "b")
    assert sorted(lease.call_id for lease in got) == [f"rtc_{i}" for i in range(5)]
    assert await leases.owned_by(tables, "a") == []
    assert await leases.beat(tables, "a", 60_000, gone.etag) is None


async def test_a_replica_taken_for_dead_lets_go_of_the_calls_it_lost(tables: Tables) -> None:
    timing = LeaseTiming(ttl_s=0.4, sweep_s=0.1)
    keepers = {}
    for i in range(3):
        keepers[f"rtc_{i}"] = LeaseKeeper(tables, None, req(i))
    heart_a = Heartbeat(tables, "a", timing, lambda: keepers)
    assert await heart_a.beat()  # adopts the three calls taken while the store was "down"
    assert all(k.lease is not None and k.lease.owner == "a" for k in keepers.values())

    resumed: list[str] = []

    async def resume(lease: leases.Lease) -> None:
        resumed.append(lease.call_id)

    sweeper_b = Sweeper(tables, "b", lambda: 2, resume)  # room for two only
    assert await sweeper_b.sweep() == 0, "a live replica's calls are left alone"
    await asyncio.sleep(0.5)  # "a" stalls past its TTL
    assert await sweeper_b.sweep() == 2
    assert len(resumed) == 2
    assert await heart_a.beat()
    lost = sorted(cid for cid, k in keepers.items() if k.lost.is_set())
    assert lost == sorted(resumed), "exactly the calls b took are let go"
    assert await sweeper_b.sweep() == 0, "a is alive again: its last call stays"


async def test_offered_calls_are_taken_only_from_a_draining_peer(tables: Tables) -> None:
    timing = LeaseTiming(ttl_s=30, sweep_s=0.1)
    keeper = LeaseKeeper(tables, None, req(7))
    heart_a = Heartbeat(tables, "a", timing, lambda: {"rtc_7": keeper})
    await heart_a.beat()
    taken: list[leases.Lease] = []

    async def resume(lease: leases.Lease) -> None:
        taken.append(lease)
        await leases.update(tables, lease, attached=True)

    sweeper_b = Sweeper(tables, "b", lambda: 10, resume)
    await heart_a.announce_draining()
    handing = asyncio.create_task(keeper.hand_over(5.0))
    for _ in range(50):
        if await sweeper_b.sweep():
            break
        await asyncio.sleep(0.05)
    assert await handing is True and keeper.lost.is_set()
    assert [lease.call_id for lease in taken] == ["rtc_7"]
    assert (await leases.get(tables, "rtc_7")).owner == "b"  # type: ignore[union-attr]


async def test_inserts_that_arrive_together_share_transactions_and_each_gets_its_own_answer(tables: Tables) -> None:
    await leases.beat(tables, "a", 60_000, None)
    assert await leases.acquire(tables, req(5), "b") is not None  # taken before the burst
    before = tables.leases.requests
    got = await asyncio.gather(*(leases.acquire(tables, req(i), "a") for i in range(250)))
    # 249 new leases in a few transactions; the one "b" holds (alive? no beat: its lease ETag
    # guards it, so "a" takes it) is answered by itself, not by the failed batch.
    assert all(lease is not None and lease.owner == "a" for lease in got)
    assert {lease.call_id for lease in got if lease} == {f"rtc_{i}" for i in range(250)}
    assert tables.lease_writes.transactions >= 2
    assert tables.leases.requests - before < 60, "not one request per insert"
    for i in (0, 5, 249):
        stored = await leases.get(tables, f"rtc_{i}")
        assert stored is not None and stored.owner == "a"


async def test_a_burst_larger_than_a_transaction_goes_as_transactions_side_by_side(tables: Tables) -> None:
    """Four hundred inserts at once: several transactions, in flight together (the last caller
    of a burst waits about one round trip, not one per hundred callers before it)."""
    real = tables.leases.submit_transaction
    in_flight = peak = 0

    async def counted(operations: list[tuple[Any, ...]], **kw: Any) -> list[dict[str, Any]]:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        try:
            return await real(operations, **kw)
        finally:
            in_flight -= 1

    tables.leases.submit_transaction = counted  # type: ignore[method-assign]
    got = await asyncio.gather(*(leases.acquire(tables, req(1000 + i), "a") for i in range(400)))
    assert all(lease is not None and lease.owner == "a" for lease in got)
    assert tables.lease_writes.transactions >= 4
    assert peak >= 2, "the burst's transactions went one after another"
    for i in (1000, 1250, 1399):
        stored = await leases.get(tables, f"rtc_{i}")
        assert stored is not None and stored.owner == "a"


async def test_a_duplicate_in_a_burst_fails_alone(tables: Tables) -> None:
    await leases.beat(tables, "b", 60_000, None)
    assert await leases.acquire(tables, req(7), "b") is not None
    got = await asyncio.gather(*(leases.acquire(tables, req(i), "a") for i in range(20)))
    assert got[7] is None, "a live owner's call stays its own"
    assert all(lease is not None and lease.owner == "a" for i, lease in enumerate(got) if i != 7)


async def test_an_ended_call_leaves_a_tombstone_that_a_replay_finds(tables: Tables) -> None:
    await leases.beat(tables, "a", 60_000, None)
    lease = await leases.acquire(tables, req(1), "a")
    assert lease is not None and not lease.ended
    await leases.release(tables, lease)
    again = await leases.acquire(tables, req(1), "b")
    assert again is not None and again.ended, "the replay is told the call ended"
    assert await leases.owned_by(tables, "a") == []
    await leases.mark_refused(tables, req(2))
    refused = await leases.acquire(tables, req(2), "a")
    assert refused is not None and refused.ended
    # A refusal never overwrites a live lease.
    live = await leases.acquire(tables, req(3), "a")
    await leases.mark_refused(tables, req(3))
    still = await leases.get(tables, "rtc_3")
    assert live is not None and still is not None and still.owner == "a"

    assert await leases.drop_tombstones(tables, older_than_ms=60_000) == 0, "young tombstones stay"
    await asyncio.sleep(0.05)
    assert await leases.drop_tombstones(tables, older_than_ms=1) == 2
    assert await leases.get(tables, "rtc_1") is None and await leases.get(tables, "rtc_2") is None
    assert (await leases.get(tables, "rtc_3")) is not None


async def test_a_sweep_knows_whether_any_live_peer_has_room(tables: Tables) -> None:
    async def resume(_: leases.Lease) -> None:
        return None

    sweeper = Sweeper(tables, "c", lambda: 0, resume)
    await sweeper.sweep()
    assert sweeper.peers_full, "alone: no peer can take a call"
    await leases.beat(tables, "a", 60_000, None, room=0)
    await leases.beat(tables, "b", 60_000, None, room=3)
    await sweeper.sweep()
    assert not sweeper.peers_full and sweeper.peers == ["a", "b"]
    await leases.beat(tables, "b", 60_000, None, room=0)
    await sweeper.sweep()
    assert sweeper.peers_full
    await leases.beat(tables, "d", 60_000, None)  # a replica that does not say: assumed to have room
    await sweeper.sweep()
    assert not sweeper.peers_full
    await leases.beat(tables, "d", 60_000, None, draining=True, room=5)  # draining takes nothing
    await sweeper.sweep()
    assert sweeper.peers_full


async def test_a_burst_of_refusals_is_stored_together_and_whole(tables: Tables) -> None:
    recorder = RefusalRecorder(tables, window_s=0.05)
    requests = [HandoffRequest(callId=f"rtc_r{i}", webhookId=f"wh_r{i}", receivedAt=now_ms() - 100) for i in range(40)]
    before = sum(ops.requests for ops in tables.all())
    await asyncio.gather(*(recorder.record(Unhandled(r, CallStatus.REJECTED, "busy (486)")) for r in requests))
    made = sum(ops.requests for ops in tables.all()) - before
    assert made < 40 * 2, f"{made} requests for 40 refusals (was about 7 each)"
    reader = CallReader(tables)
    for r in (requests[0], requests[-1]):
        call = await reader.get_call(r.callId)
        assert call is not None and call.status is CallStatus.REJECTED and call.endReason == "busy (486)"
        tomb = await leases.get(tables, r.callId)
        assert tomb is not None and tomb.ended
    stats = await read_stats(tables)
    assert stats["totalCalls"] == stats["rejectedCalls"] == 40
    listed, _ = await reader.list_recent(50)
    assert len(listed) == 40


async def test_releases_that_arrive_together_share_transactions_and_a_moved_lease_is_left_alone(
    tables: Tables,
) -> None:
    """Calls that started together end together: their tombstones go in a few transactions, and
    a lease another replica took meanwhile (its ETag moved on) is not overwritten by the rest."""
    await leases.beat(tables, "a", 60_000, None)
    held = [await leases.acquire(tables, req(i), "a") for i in range(120)]
    assert all(lease is not None for lease in held)
    moved = await leases.update(tables, held[7], owner="b")  # "b" took call 7: a's ETag is stale
    assert moved is not None
    before, batched = tables.leases.requests, tables.lease_endings.transactions
    await asyncio.gather(*(leases.release(tables, lease) for lease in held if lease is not None))
    assert tables.lease_endings.transactions > batched
    assert tables.leases.requests - before < 20, "not one request per release"
    for i in (0, 6, 8, 119):
        stored = await leases.get(tables, f"rtc_{i}")
        assert stored is not None and stored.ended, i
    still = await leases.get(tables, "rtc_7")
    assert still is not None and still.owner == "b" and not still.ended


async def test_releases_that_trickle_in_still_share_requests(tables: Tables) -> None:
    """Calls end a few milliseconds apart, not in one loop turn: their tombstones still gather."""
    await leases.beat(tables, "a", 60_000, None)
    held = [await leases.acquire(tables, req(i), "a") for i in range(40)]

    async def end(i: int, lease: leases.Lease | None) -> None:
        assert lease is not None
        await asyncio.sleep(i * 0.004)  # 40 endings over 160 ms
        await leases.release(tables, lease)

    before = tables.leases.requests
    await asyncio.gather(*(end(i, lease) for i, lease in enumerate(held)))
    assert tables.leases.requests - before <= 3, tables.leases.requests - before
    for i in range(40):
        stored = await leases.get(tables, f"rtc_{i}")
        assert stored is not None and stored.ended, i


async def test_a_tombstone_still_gathering_is_written_before_the_store_closes(store_settings: Settings) -> None:
    """A call that ends as the replica shuts down: its tombstone waits to share a request, and
    closing the store sends it first instead of dropping it (a peer would take the ended call)."""
    first = open_tables(store_settings)
    await ensure_tables(first)
    await leases.beat(first, "a", 60_000, None)
    lease = await leases.acquire(first, req(1), "a")
    assert lease is not None
    ending = asyncio.ensure_future(leases.release(first, lease))
    await asyncio.sleep(0.01)  # queued, still gathering
    await first.close()
    await ending
    again = open_tables(store_settings)
    try:
        stored = await leases.get(again, "rtc_1")
        assert stored is not None and stored.ended
    finally:
        await again.close()
