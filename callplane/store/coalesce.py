"""Inserts into one partition that arrive together go to the store as one table transaction.

A burst of calls makes a burst of lease inserts, all on the caller's path. One request per
insert costs the table SDK most of a millisecond of CPU and the store a round trip each; a
transaction of up to 99 costs about half as much per entity and one round trip for them all.
Nothing waits for a batch to fill: an insert goes out at once when none is in flight, and the
ones that arrive meanwhile go together in the next request. A transaction is all or nothing: when
one insert fails it (an entity that already exists: a duplicate delivery), that insert is made
alone and the rest go together again; when the request itself fails, each is made alone. Every
caller gets its own entity's answer, exactly as from `create_entity`.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from azure.data.tables import TableTransactionError

if TYPE_CHECKING:
    from callplane.store.tables import TableOps

Entity = dict[str, Any]

MAX_BATCH = 99  # a transaction holds 100 operations; one is kept free for a caller that adds one


class InsertBatcher:
    def __init__(self, ops: TableOps, max_batch: int = MAX_BATCH) -> None:
        self._ops = ops
        self._max = max_batch
        self._queue: list[tuple[Entity, asyncio.Future[dict[str, Any]]]] = []
        self._sender: asyncio.Task[None] | None = None
        self.transactions = 0  # requests that carried more than one insert

    async def create(self, entity: Entity) -> dict[str, Any]:
        """Insert `entity` (its partition must be the same for every caller); the store's metadata
        (etag). Raises what `create_entity` raises, ResourceExistsError included."""
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._queue.append((entity, future))
        if self._sender is None or self._sender.done():
            self._sender = asyncio.ensure_future(self._send_all())
        return await asyncio.shield(future)  # a caller that gives up does not cancel the others

    async def _send_all(self) -> None:
        batch: list[tuple[Entity, asyncio.Future[dict[str, Any]]]] = []
        try:
            while self._queue:
                batch, self._queue = self._queue[: self._max], self._queue[self._max :]
                await self._send(batch)
        except BaseException as exc:  # cancelled at shutdown: nobody is left waiting forever
            for _, future in batch + self._queue:
                if not future.done():
                    future.set_exception(exc if isinstance(exc, Exception) else ConnectionError("store closed"))
            self._queue = []
            raise

    async def _send(self, batch: list[tuple[Entity, asyncio.Future[dict[str, Any]]]]) -> None:
        while len(batch) > 1:
            try:
                results = await self._ops.submit_transaction([("create", entity) for entity, _ in batch])
            except TableTransactionError as exc:
                # The store names the insert that failed the transaction (a duplicate): that one
                # alone gets its own answer; the rest go together again.
                at = exc.index if 0 <= exc.index < len(batch) else 0
                await self._one(*batch[at])
                batch = batch[:at] + batch[at + 1 :]
                continue
            except Exception:
                break  # the request itself failed: each alone, for its own answer
            self.transactions += 1
            for (_, future), meta in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(meta)
            return
        await asyncio.gather(*(self._one(entity, future) for entity, future in batch))

    async def _one(self, entity: Entity, future: asyncio.Future[dict[str, Any]]) -> None:
        try:
            meta = await self._ops.create_entity(entity)
        except Exception as exc:  # handed to the caller, whatever it is
            if not future.done():
                future.set_exception(exc)
        else:
            if not future.done():
                future.set_result(meta)
