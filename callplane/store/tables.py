"""Table clients: one code path for Azurite (connection string) and Azure (endpoint + identity).

The Azure Tables SDK spends milliseconds of CPU per request, all of it without yielding
(transactions, which it frames with the stdlib `email` package at ~45 ms per 100 entities, are
framed by `transactions.py` instead, ~5 ms). Run on the loop that carries live calls, that
stalls every call on the replica. So the session host gives the SDK an event loop of its own on
a thread (`StoreLoop`), and every table operation goes through `TableOps`, which runs it there
and awaits the result; callers' code is the same either way. With the GIL switch interval
lowered (session_host/__main__.py), a busy store thread delays the call loop by about a
millisecond at a time instead of the whole request.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

from azure.core.exceptions import HttpResponseError, ResourceExistsError
from azure.core.pipeline.transport import AioHttpTransport
from azure.data.tables.aio import TableClient, TableServiceClient

from callplane.settings import Settings
from callplane.store import transactions
from callplane.store.coalesce import WriteBatcher
from callplane.store.direct import DirectTables

_DIRECT_OPTIONS = frozenset({"mode", "etag", "match_condition"})  # what a direct write understands
TABLES = ("calls", "callindex", "rollups", "webhooks", "leases", "adminsessions", "profiles")
ENDINGS_LINGER_S = 0.25  # how long a tombstone waits for others to share its request
log = logging.getLogger("callplane.store")


def table_missing(exc: HttpResponseError) -> bool:
    code = getattr(exc, "error_code", None) or ""
    return code == "TableNotFound" or (exc.status_code == 404 and "TableNotFound" in str(exc))


T = TypeVar("T")
Entity = dict[str, Any]


class StoreLoop:
    """An event loop on its own daemon thread, for the table SDK's CPU-heavy requests."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="table-store", daemon=True)
        self._thread.start()

    async def run(self, work: Awaitable[T]) -> T:
        async def there() -> T:
            return await work

        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(there(), self.loop))

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        if not self._thread.is_alive():
            self.loop.close()


class TableOps:
    """The operations we use on one table, run on the store loop when there is one. Queries
    return whole lists (materialised there too), so no SDK pager crosses threads. Writes and
    whole-result queries go through `direct` when given (see direct.py), everything else
    through the SDK."""

    def __init__(self, client: TableClient, store: StoreLoop | None, direct: DirectTables | None = None) -> None:
        self.client = client
        self._store = store
        self.direct = direct
        self._url = transactions.table_url(client)
        self.on_recreated: Callable[[str], None] | None = None
        self.requests = 0  # every operation through this table (a transaction or a query is one)

    @property
    def table_name(self) -> str:
        return str(self.client.table_name)

    async def _run(self, make: Callable[[], Awaitable[T]]) -> T:
        self.requests += 1

        async def attempt() -> T:
            try:
                return await make()
            except HttpResponseError as exc:
                if not table_missing(exc):
                    raise
            # The table is gone (deleted, or the store came back empty): create it and try once
            # more. Readers and writers repair the store on first use instead of failing until a
            # restart; `reset` tells the writer its "already written" markers are void.
            await self._recreate()
            return await make()

        return await (attempt() if self._store is None else self._store.run(attempt()))

    async def _recreate(self) -> None:
        try:
            await self.client.create_table()
            log.warning("table %s was missing: created it", self.table_name)
        except ResourceExistsError:
            pass
        if self.on_recreated is not None:
            self.on_recreated(self.table_name)

    def _direct_write(self, kind: str, entity: Entity, kw: dict[str, Any]) -> Callable[[], Awaitable[Any]] | None:
        """The write as a direct request, when it is one this table can send that way."""
        direct = self.direct
        if direct is None or kw.keys() - _DIRECT_OPTIONS:
            return None
        return lambda: direct.write((kind, entity, kw), self._url)

    async def create_entity(self, entity: Entity, **kw: Any) -> dict[str, Any]:
        send = self._direct_write("create", entity, kw)
        return dict(await self._run(send or (lambda: self.client.create_entity(entity, **kw))))

    async def upsert_entity(self, entity: Entity, **kw: Any) -> dict[str, Any]:
        send = self._direct_write("upsert", entity, kw)
        return dict(await self._run(send or (lambda: self.client.upsert_entity(entity, **kw))))

    async def update_entity(self, entity: Entity, **kw: Any) -> dict[str, Any]:
        send = self._direct_write("update", entity, kw)
        return dict(await self._run(send or (lambda: self.client.update_entity(entity, **kw))))

    async def delete_entity(self, partition_key: str, row_key: str, **kw: Any) -> None:
        send = self._direct_write("delete", {"PartitionKey": partition_key, "RowKey": row_key}, kw)
        await self._run(send or (lambda: self.client.delete_entity(partition_key, row_key, **kw)))

    async def get_entity(self, partition_key: str, row_key: str, **kw: Any) -> Any:
        direct = self.direct
        if direct is not None and not kw:
            return await self._run(lambda: direct.read(self._url, partition_key, row_key))
        return await self._run(lambda: self.client.get_entity(partition_key, row_key, **kw))

    async def submit_transaction(self, operations: list[tuple[Any, ...]], **kw: Any) -> list[dict[str, Any]]:
        """Apply `operations` as one transaction; each one's metadata (its ETag), in order. `kw`
        goes to the request pipeline (`read_timeout`, ...)."""
        if self.client._cosmos_endpoint:  # Cosmos wants its own framing: the SDK's
            results: list[Any] = await self._run(lambda: self.client.submit_transaction(operations, **kw))
            return [dict(m) for m in results]
        return await self._run(lambda: transactions.submit(self.client, operations, self.direct, **kw))

    async def query(
        self,
        query_filter: str,
        parameters: dict[str, Any],
        *,
        select: list[str] | None = None,
        parse: Callable[[Any], T],
    ) -> list[T]:
        """Every matching entity, each passed through `parse` on the store thread."""
        direct = self.direct

        async def collect() -> list[T]:
            if direct is not None:
                return [parse(e) for e in await direct.query(self._url, query_filter, parameters, select)]
            pager = self.client.query_entities(query_filter, parameters=parameters, select=select)
            return [parse(e) async for e in pager]

        return await self._run(collect)

    async def query_page(
        self, query_filter: str, parameters: dict[str, Any], *, limit: int, token: Any, parse: Callable[[Any], T]
    ) -> tuple[list[T], Any]:
        """One page of at most `limit` entities and the continuation token after it."""

        async def one_page() -> tuple[list[T], Any]:
            pager: Any = self.client.query_entities(
                query_filter, parameters=parameters, results_per_page=limit
            ).by_page(continuation_token=token)
            rows: list[T] = []
            async for page in pager:
                rows.extend([parse(e) async for e in page])
                break
            return rows, pager.continuation_token

        return await self._run(one_page)

    async def close(self) -> None:
        await self._run(self.client.close)


@dataclass(slots=True)
class Tables:
    service: TableServiceClient
    calls: TableOps
    callindex: TableOps
    rollups: TableOps
    webhooks: TableOps
    leases: TableOps
    sessions: TableOps
    profiles: TableOps
    store: StoreLoop | None = None
    direct: DirectTables | None = None
    # Bumped whenever a table had to be created again: whatever a writer cached as "already in
    # the store" (index buckets, live rows, rollup ETags) may be gone. Per table name.
    generations: dict[str, int] = field(default_factory=dict)
    # Lease writes arrive in bursts (an insert per new call on the caller's path, a tombstone per
    # ended call): those of a moment go together. Tombstones have their own batcher, which waits a
    # little to gather more: no caller waits on them, and calls that started together end spread
    # over a second or two (one request each, ~1-3 ms of CPU, when sent as they came).
    lease_writes: WriteBatcher = field(init=False)
    lease_endings: WriteBatcher = field(init=False)

    @property
    def generation(self) -> int:
        return sum(self.generations.values())

    def __post_init__(self) -> None:
        for ops in self.all():
            ops.on_recreated = self._bump
        self.lease_writes = WriteBatcher(self.leases)
        self.lease_endings = WriteBatcher(self.leases, linger_s=ENDINGS_LINGER_S)

    def all(self) -> tuple[TableOps, ...]:
        return (self.calls, self.callindex, self.rollups, self.webhooks, self.leases, self.sessions, self.profiles)

    def requests(self) -> int:
        """Table requests this process made, of every kind (heartbeats and leases included)."""
        return sum(ops.requests for ops in self.all())

    def _bump(self, table_name: str) -> None:
        self.generations[table_name] = self.generations.get(table_name, 0) + 1

    @property
    def endpoint(self) -> str:
        """The table endpoint for messages: scheme, host and path, never a SAS query."""
        url = urlsplit(str(self.service.url))
        return f"{url.scheme}://{url.netloc}{url.path}".rstrip("/")

    async def run(self, coro_factory: Callable[[], Awaitable[T]]) -> T:
        return await (coro_factory() if self.store is None else self.store.run(coro_factory()))

    async def compute(self, fn: Callable[[], T]) -> T:
        """Run CPU-only work (building entities) on the store thread too, off the calls' loop."""

        async def there() -> T:
            return fn()

        return await self.run(there)

    async def close(self) -> None:
        for batcher in (self.lease_writes, self.lease_endings):
            await batcher.drain()
        for ops in self.all():
            await ops.close()
        await self.run(self.service.close)
        if self.direct is not None:
            await self.run(self.direct.close)
        if self.store is not None:
            self.store.stop()


def _service(settings: Settings) -> TableServiceClient:
    # Bounded retries: the write-behind layer owns long retry loops, so a stuck request must not
    # sit inside the SDK for minutes (its default is 10 tries with up to 120 s backoff).
    # trust_env off: with it, aiohttp reads ~/.netrc and the proxy variables on a worker thread
    # for every single request (Container Apps has neither).
    kwargs: dict[str, Any] = {
        "retry_total": 2,
        "retry_backoff_factor": 0.2,
        "retry_backoff_max": 2,
        "connection_timeout": 5,
        "read_timeout": 10,
        "transport": AioHttpTransport(use_env_settings=False),
    }
    if settings.storage_connection_string:
        return TableServiceClient.from_connection_string(settings.storage_connection_string, **kwargs)
    from azure.identity.aio import DefaultAzureCredential

    return TableServiceClient(settings.storage_table_endpoint, credential=DefaultAzureCredential(), **kwargs)


def open_tables(settings: Settings, *, own_thread: bool = False) -> Tables:
    """Construct clients (no I/O); call `ensure_tables` once at start-up. `own_thread`: run every
    request on a store thread (the session host), not on the caller's loop."""
    service = _service(settings)
    store = StoreLoop() if own_thread else None
    names = [f"{settings.table_prefix}{name}" for name in TABLES]
    direct = DirectTables.for_client(service) if settings.direct_table_writes else None
    ops = [TableOps(service.get_table_client(name), store, direct) for name in names]
    calls, callindex, rollups, webhooks, leases, sessions, profiles = ops
    return Tables(service, calls, callindex, rollups, webhooks, leases, sessions, profiles, store=store, direct=direct)


async def ensure_tables(tables: Tables) -> None:
    async def create(name: str) -> None:
        try:
            await tables.service.create_table(name)
        except ResourceExistsError:
            pass

    for ops in tables.all():
        await tables.run(lambda name=ops.table_name: create(name))  # type: ignore[misc]
