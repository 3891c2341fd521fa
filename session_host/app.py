"""The session host's aiohttp application: wiring only. Each long-lived resource is one
cleanup_ctx generator, created and closed side by side."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web
from azure.core.exceptions import AzureError

from callplane.call_control import CallControl
from callplane.clock import now_ms
from callplane.handoff import HANDOFF_BATCH_PATH, HANDOFF_PATH, OUTCOME_BATCH_PATH, OUTCOME_PATH
from callplane.http_server import json_errors
from callplane.logs import Throttle
from callplane.settings import Settings
from callplane.store import leases, lifecycle
from callplane.store.calls import CallReader
from callplane.store.leases import Lease
from callplane.store.models import CallRecord
from callplane.store.profile_store import ProfileCache
from callplane.store.rollups import call_started
from callplane.store.tables import ensure_tables, open_tables
from callplane.store.writer import StoreWriter
from callplane.supervise import supervised
from callplane.telemetry import Telemetry
from session_host import api, auth, call_observers, dashboard, keys, profiles_api, session_accept, session_standby
from session_host.handoff_routes import accept_outcome, accept_outcomes, session_for, take_call, take_calls
from session_host.health import LoopMonitor
from session_host.live import LiveFeed
from session_host.ownership import Heartbeat, LeaseKeeper, LeaseTiming, Standbys, Sweeper
from session_host.registry import CallRegistry
from session_host.session import SessionOptions
from session_host.sign_in import SignInLimiter

log = logging.getLogger("session_host")
SUSPICION_POLL_S = 0.05


async def _sweep_forever(app: web.Application) -> None:
    """Resume calls whose owner stopped (hand-over) or died (heartbeat expired); keep a standby
    beside every local call and follow the peers' calls that name this replica."""
    registry, timing, settings = app[keys.REGISTRY], app[keys.OPTIONS].lease, app[keys.SETTINGS]
    wake = app[keys.SWEEP_NOW]
    standbys = Standbys(
        timing,
        local=registry.keepers,
        follow=lambda standing: _follow(app, standing),
        overdue=lambda owner: any(
            f.followed_owner == owner and session_standby.overdue(f) for f in registry.followers.values()
        ),
        enabled=settings.standby,
    )
    sweeper = Sweeper(
        app[keys.LANE],
        app[keys.REPLICA],
        lambda: registry.capacity - registry.live,
        lambda lease: _resume(app, lease),
        standbys,
    )
    loop = asyncio.get_running_loop()
    last_full = 0.0
    while True:
        # While a followed call waits for its owner's answer, look at the owners every 50 ms: a
        # dead one is then taken over as soon as its heartbeat is stale, not a sweep later.
        suspicious = any(session_standby.overdue(f) for f in registry.followers.values())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), SUSPICION_POLL_S if suspicious else timing.sweep_s)
        wake.clear()
        if not registry.accepting:
            continue
        quick = loop.time() - last_full < timing.sweep_s
        last_full = last_full if quick else loop.time()
        try:
            await sweeper.sweep(quick=quick)
            registry.peers_full = sweeper.peers_full
        except Exception as exc:  # the store may be down; try again next sweep
            if (skipped := app[keys.THROTTLE].due("sweep")) is not None:
                log.warning(
                    "lease sweep failed: %s at %s (%d more since the last line)",
                    type(exc).__name__,
                    app[keys.TABLES].endpoint,
                    skipped,
                )


async def _follow(app: web.Application, standing: list[Lease]) -> None:
    """Follow every call that names this replica as its standby; stop following the rest."""
    registry, me, wake = app[keys.REGISTRY], app[keys.REPLICA], app[keys.SWEEP_NOW]
    wanted = {lease.call_id for lease in standing if lease.owner != me}
    await registry.stop_following(set(registry.followers) - wanted)
    for lease in standing:
        follower = registry.followers.get(lease.call_id)
        if follower is not None:
            follower.followed_owner = lease.owner
            continue
        if lease.call_id not in wanted or lease.call_id in registry.sessions:
            continue
        follower = session_for(app, lease.request, None, following=True, on_overdue=wake.set)
        follower.followed_owner = lease.owner
        registry.start(follower)


async def _resume(app: web.Application, lease: Lease) -> None:
    reader, writer = app[keys.READER], app[keys.WRITER]
    registry = app[keys.REGISTRY]
    follower = registry.promote(lease.call_id)
    # The active row is the newest state, with the turns the last owner had not yet written to
    # the call's partition; carry those on, or the next active-row write would drop them.
    live = await reader.live_state(lease.call_id)
    record = live[0] if live is not None else await reader.get_call(lease.call_id)
    if record is None:
        record = CallRecord(
            callId=lease.call_id, startTime=lease.request.receivedAt, callerPhone=lease.request.callerPhone
        )
    for turn in live[1] if live is not None else []:
        writer.put_turn(lease.call_id, turn)
        record.messageCount = max(record.messageCount, turn.seq)
    keeper = LeaseKeeper(app[keys.LANE], lease, lease.request)
    if follower is not None:
        # Its socket has heard everything: nothing to re-engage, and it answers at once what the
        # previous owner left unanswered.
        session_standby.promote(follower, keeper, record, record.messageCount, offered=lease.offered)
        return
    session = session_for(
        app,
        lease.request,
        keeper,
        resumed=record,
        resumed_turns=record.messageCount,
        # Taken from a dead replica (not offered by a live one): nobody listened for a while.
        reengage=not lease.offered,
    )
    registry.start(session)


async def _purge_forever(app: web.Application, every_s: float = 3600.0) -> None:
    """Retention: one replica at a time (a lease), hourly, off the calls' path."""
    days = app[keys.SETTINGS].retention_days
    if not days:
        return
    while True:
        await asyncio.sleep(min(every_s, 60.0) if not app.get(keys.PURGED) else every_s)
        app[keys.PURGED] = True
        try:
            await lifecycle.purge(app[keys.TABLES], days, app[keys.REPLICA], every_ms=int(every_s * 1000))
        except AzureError as exc:
            log.warning("retention purge failed: %s; next time", type(exc).__name__)


async def _end_streams(app: web.Application) -> None:
    if keys.LIVE in app:
        app[keys.LIVE].end_streams()


async def _peers_alive(app: web.Application) -> bool:
    """Another replica that beats and is not draining: someone live calls can be handed to."""
    try:
        beats = await leases.beats(app[keys.LANE])
    except AzureError:
        return True  # cannot tell: offer anyway; the call stays here unless a peer takes it
    me = app[keys.REPLICA]
    return any(b.alive and not b.draining and b.replica != me for b in beats)


def _put_live_calls_again(app: web.Application, counts_lost_before: int) -> None:
    """The store came back without its tables: this replica's live calls are put again so they
    are listed, and, when the rollups went too, the "started" counts written before the loss."""
    writer = app[keys.WRITER]
    for session in list(app[keys.REGISTRY].sessions.values()):
        if session.counted_at_ms and session.counted_at_ms < counts_lost_before:
            writer.put_rollup(call_started())
        writer.put_call(session.call, urgent=True)


async def http_ctx(app: web.Application) -> AsyncIterator[None]:
    # No pool limit: every live call holds one connection (its control socket) for its whole
    # life, and aiohttp's default of 100 would make call 101 wait for a hang-up.
    http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    app[keys.HTTP] = http
    app[keys.CONTROL] = CallControl(http, app[keys.SETTINGS])
    yield
    await app[keys.CONTROL].auth.close()
    await http.close()


async def store_ctx(app: web.Application) -> AsyncIterator[None]:
    tables = open_tables(app[keys.SETTINGS], own_thread=True)  # the SDK's CPU off the calls' loop
    try:
        await ensure_tables(tables)
    except Exception as exc:  # start anyway: writes are buffered and retried
        log.error("table store unreachable at start-up (%s); buffering writes", type(exc).__name__)
    writer = StoreWriter(tables)
    writer.start()
    app[keys.TABLES], app[keys.WRITER], app[keys.READER] = tables, writer, CallReader(tables)
    app[keys.OBSERVERS] = call_observers.standard(writer, app[keys.TELEMETRY])
    # Ownership (leases, heartbeats, admission) gets its own lane: its requests never queue on
    # the store thread behind the write-behind batches, and the caller waits on some of them.
    # The lane has a thread of its own too, though its requests are direct (cheap): on this loop
    # an idle replica spent a fifth less CPU (no hop per beat and sweep), but in a burst the
    # reservations queued behind the calls' events and greetings came 15-30 ms later (p50, three
    # interleaved 200-call runs each way); with the 1 ms switch interval a thread gets its turn.
    app[keys.LANE] = open_tables(app[keys.SETTINGS], own_thread=True)
    settings = app[keys.SETTINGS]
    # Read by the admin API only, which refreshes it on each request (one read of the generation):
    # no background poll here. Calls get their profile with the hand-off.
    app[keys.PROFILES] = ProfileCache(tables.profiles, settings.realtime_voice, settings.profile_header)
    yield
    await writer.close()
    await tables.close()
    await app[keys.LANE].close()


async def live_ctx(app: web.Application) -> AsyncIterator[None]:
    feed = LiveFeed(
        app[keys.TABLES], app[keys.READER], app[keys.STARTED], show_numbers=app[keys.SETTINGS].show_caller_numbers
    )
    feed.start()
    app[keys.LIVE] = feed
    yield
    await feed.close()


async def loop_ctx(app: web.Application) -> AsyncIterator[None]:
    registry = app[keys.REGISTRY]
    monitor = app[keys.LOOP] = LoopMonitor(busy=lambda: len(registry) > 0 or bool(registry.taking))
    task = asyncio.create_task(monitor.run(), name="loop-monitor")
    yield
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def calls_ctx(app: web.Application) -> AsyncIterator[None]:
    registry = app[keys.REGISTRY]
    heartbeat = Heartbeat(
        app[keys.LANE],
        app[keys.REPLICA],
        app[keys.OPTIONS].lease,
        registry.keepers,
        registry.room,
    )
    app[keys.HEARTBEAT] = heartbeat
    app[keys.OPTIONS].fenced = heartbeat.fenced
    registry.before_handover = heartbeat.announce_draining
    registry.peers_alive = lambda: _peers_alive(app)
    app[keys.WRITER].busy = registry.setting_up
    app[keys.WRITER].on_store_reset = lambda lost_before: _put_live_calls_again(app, lost_before)
    await heartbeat.beat()  # before any lease names this replica, so peers never see an owner with no heartbeat
    restarts = app[keys.RESTARTS]
    tasks = [
        asyncio.create_task(supervised("heartbeat", heartbeat.run, restarts), name="heartbeat"),
        asyncio.create_task(supervised("lease-sweeper", lambda: _sweep_forever(app), restarts), name="lease-sweeper"),
        asyncio.create_task(supervised("retention", lambda: _purge_forever(app), restarts), name="retention"),
        asyncio.create_task(
            supervised(
                "accept-outcomes",
                lambda: session_accept.watch_outcomes(
                    app[keys.LANE],
                    lambda: {k: v for k, v in registry.sessions.items() if v.awaiting_accept},
                    registry.started,
                ),
                restarts,
            ),
            name="accept-outcomes",
        ),
    ]
    yield
    for task in tasks[1:]:
        task.cancel()
    await asyncio.gather(*tasks[1:], return_exceptions=True)
    await registry.close()
    tasks[0].cancel()
    await asyncio.gather(tasks[0], return_exceptions=True)
    await heartbeat.stop()


def create_app(
    settings: Settings,
    options: SessionOptions | None = None,
    replica: str | None = None,
    telemetry: Telemetry | None = None,
) -> web.Application:
    app = web.Application(
        middlewares=[json_errors, auth.security_headers, auth.admin_auth, api.store_unavailable],
        client_max_size=1024 * 1024,
    )
    app[keys.THROTTLE] = Throttle()
    app[keys.RESTARTS] = {}
    app[keys.SIGN_IN] = SignInLimiter()
    app[keys.SETTINGS] = settings
    app[keys.OPTIONS] = options or SessionOptions(
        # A sweep reads every heartbeat (one query): once a second at most by default, the TTL
        # (6 s) being what a takeover waits for anyway.
        lease=LeaseTiming(ttl_s=settings.lease_ttl_seconds, sweep_s=min(1.0, settings.lease_ttl_seconds / 6))
    )
    # One identity per process, not per container: a container restarted after a crash keeps its
    # replica name, and its heartbeat must not keep the dead process's calls looking owned.
    base = os.environ.get("CONTAINER_APP_REPLICA_NAME") or socket.gethostname()
    app[keys.REPLICA] = replica or f"{base}-{uuid.uuid4().hex[:6]}"
    app[keys.STARTED] = now_ms()
    app[keys.SWEEP_NOW] = asyncio.Event()
    registry = app[keys.REGISTRY] = CallRegistry(settings.max_calls_per_replica)
    app[keys.TELEMETRY] = telemetry or Telemetry()
    app[keys.TELEMETRY].observe_active_calls(lambda: len(registry))

    # SSE streams end first on shutdown: aiohttp waits for open requests before the cleanup, and a
    # dashboard's stream would otherwise hold the grace period until it times out.
    app.on_shutdown.append(_end_streams)
    # Order matters on the way out (reverse): calls stop, then the store flushes, then HTTP closes.
    app.cleanup_ctx.extend([loop_ctx, http_ctx, store_ctx, live_ctx, calls_ctx])
    app.router.add_post(HANDOFF_PATH, take_call)
    app.router.add_post(HANDOFF_BATCH_PATH, take_calls)
    app.router.add_post(OUTCOME_PATH, accept_outcome)
    app.router.add_post(OUTCOME_BATCH_PATH, accept_outcomes)
    app.router.add_post("/api/session", auth.create_session)
    app.router.add_delete("/api/session", auth.delete_session)
    api.add_routes(app)
    profiles_api.add_routes(app)
    dashboard.add_routes(app)
    if not settings.admin_token:
        log.warning("ADMIN_TOKEN is not set: the admin API and dashboard are OPEN to anyone who can reach them")
    return app
