"""Writes into one partition that arrive together go to the store as one table transaction.

A burst of calls makes a burst of lease inserts, all on the caller's path, and calls that
started together end together, each turning its lease into a tombstone (a guarded update). One
request per write costs the table SDK about a millisecond of CPU and the store a round trip each;
a transaction of up to 99 costs a small part of that per entity and one round trip for them all.
Nothing waits for a batch to fill: a write goes out at once when none is in flight, and the ones
that arrive meanwhile go together in the next request. More than one transaction's worth (a
burst of hundreds of calls) goes as several transactions side by side, not one after another:
the last caller of a burst waits about one round trip, not one per hundred callers before it.
A transaction is all or nothing: when one write fails it (an entity that already exists, an
ETag that moved on), that write is made alone and the rest go together again; when the request
itself fails, each is made alone. Every caller gets its own entity's answer, exactly as from
`create_entity` or `update_entity`.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from azure.data.tables import TableTransactionError

if TYPE_CHECKING:
    from callplane.store.tables import TableOps

Entity = dict[str, Any]

MAX_BATCH = 99  # a transaction holds 100 operations; one is kept free for a caller that adds one
PARALLEL = 4  # transactions in flight at once when more than one transaction's worth is waiting


Operation = tuple[Any, ...]  # ("create", entity) or ("update", entity, update_entity's options)
Pending = tuple[Operation, "asyncio.Future[dict[str, Any]]"]


class WriteBatcher:
    def __init__(
        self, ops: TableOps, max_batch: int = MAX_BATCH, linger_s: float = 0.0, parallel: int = PARALLEL
    ) -> None:
        self._ops = ops
        self._max = max_batch
        self._parallel = parallel
        # For writes nobody is waiting on: gather for this long before sending, so writes that
        # come a few at a time (calls ending over a second or two) still share requests.
        self._linger_s = linger_s
        self._queue: list[Pending] = []
        self._sender: asyncio.Task[None] | None = None
        self.transactions = 0  # requests that carried more than one write

    async def create(self, entity: Entity) -> dict[str, Any]:
        """Insert `entity` (its partition must be the same for every caller); the store's metadata
        (etag). Raises what `create_entity` raises, ResourceExistsError included."""
        return await self._submit(("create", entity))

    async def update(self, entity: Entity, **options: Any) -> dict[str, Any]:
        """`update_entity(entity, **options)` (mode, etag, match_condition), in a transaction with
        the writes of the moment; raises what it raises (ResourceModifiedError, ...)."""
        return await self._submit(("update", entity, options))

    async def drain(self) -> None:
        """Wait until what is queued now has been sent (a lingering batch included): the store
        is about to close, and a tombstone still gathering would otherwise be lost with it."""
        if self._sender is not None and not self._sender.done():
            await asyncio.wait({self._sender})  # its outcome goes to the writers' futures

    async def _submit(self, op: Operation) -> dict[str, Any]:
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._queue.append((op, future))
        if self._sender is None or self._sender.done():
            self._sender = asyncio.ensure_future(self._send_all())
        return await asyncio.shield(future)  # a caller that gives up does not cancel the others

    async def _send_all(self) -> None:
        taken: list[Pending] = []
        try:
            if self._linger_s:
                await asyncio.sleep(self._linger_s)
            while self._queue:
                size = self._max * self._parallel
                taken, self._queue = self._queue[:size], self._queue[size:]
                batches = [taken[i : i + self._max] for i in range(0, len(taken), self._max)]
                await asyncio.gather(*(self._send(batch) for batch in batches))
        except BaseException as exc:  # cancelled at shutdown: nobody is left waiting forever
            for _, future in taken + self._queue:
                if not future.done():
                    future.set_exception(exc if isinstance(exc, Exception) else ConnectionError("store closed"))
            self._queue = []
            raise

    async def _send(self, batch: list[Pending]) -> None:
        while len(batch) > 1:
            try:
                results = await self._ops.submit_transaction([op for op, _ in batch])
            except TableTransactionError as exc:
                # The store names the write that failed the transaction (a duplicate, a moved
                # ETag, two writes of one entity): that one alone gets its own answer; the rest go
                # together again.
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
        await asyncio.gather(*(self._one(op, future) for op, future in batch))

    async def _one(self, op: Operation, future: asyncio.Future[dict[str, Any]]) -> None:
        try:
            if op[0] == "create":
                meta = await self._ops.create_entity(op[1])
            else:
                meta = await self._ops.update_entity(op[1], **op[2])
        except Exception as exc:  # handed to the caller, whatever it is
            if not future.done():
                future.set_exception(exc)
        else:
            if not future.done():
                future.set_result(meta)
