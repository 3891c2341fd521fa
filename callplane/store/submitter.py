"""Writing a batch of operations to one table: in transactions of at most 100, entities the
store refuses for what they hold set aside (never retried, never holding up the others), and a
store that cannot be reached reported once in a while, not per request. The write-behind
(`writer.py`) decides what to write and when; this decides how, and counts it."""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass
from typing import Any

from azure.core.exceptions import AzureError, HttpResponseError

from callplane.logs import Throttle
from callplane.store.refusals import SetAside, key_problem, refused_as_invalid
from callplane.store.tables import TableOps

log = logging.getLogger("callplane.store.writer")
_BATCH = 100  # table transactions hold at most 100 operations


@dataclass(slots=True)
class WriterStats:
    requests: int = 0
    failures: int = 0
    dropped_turns: int = 0
    flushes: int = 0
    rollup_conflicts: int = 0
    transactions: int = 0  # of `requests`: multipart batches
    entities: int = 0  # entities written by batches and upserts
    set_aside: int = 0  # entities the store refused as invalid (never retried)
    store_resets: int = 0  # times the store was found to have lost tables


class Submitter:
    def __init__(self, endpoint: str, stats: WriterStats) -> None:
        self._endpoint = endpoint  # for messages: never a SAS query
        self.stats = stats
        self._throttle = Throttle()
        self.set_aside: deque[SetAside] = deque(maxlen=50)  # the newest entities the store refused

    async def submit(self, client: TableOps, ops: list[tuple[Any, ...]]) -> bool:
        """Write `ops` in transactions. False when the store could not be reached (retry later).
        An entity the store refuses as invalid is set aside, never retried, and never holds up
        the others: a refused transaction is split and its entities written one by one."""
        for start in range(0, len(ops), _BATCH):
            chunk = [op for op in ops[start : start + _BATCH] if self._valid(op)]
            if not chunk:
                continue
            self.stats.requests += 1
            self.stats.entities += len(chunk)
            try:
                if len(chunk) == 1 and chunk[0][0] == "upsert":
                    # One entity: a plain upsert, no changeset to frame or to parse.
                    await client.upsert_entity(chunk[0][1], **chunk[0][2])
                else:
                    self.stats.transactions += 1
                    await client.submit_transaction(chunk)
            except HttpResponseError as exc:
                if not refused_as_invalid(exc):
                    return self.failed(exc)
                if len(chunk) == 1:
                    self._set_aside(chunk[0], f"{exc.status_code} {getattr(exc, 'error_code', '') or ''}".strip())
                    continue
                for op in chunk:
                    if not await self.submit(client, [op]):
                        return False
            except (TimeoutError, AzureError, OSError) as exc:
                return self.failed(exc)
        return True

    def failed(self, exc: BaseException) -> bool:
        """Count a write the store did not take (it is retried later), and say so now and then."""
        self.stats.failures += 1
        if (skipped := self._throttle.due("write")) is not None:
            log.warning(
                "table write failed at %s, will retry: %s (%d more since the last line)",
                self._endpoint,
                type(exc).__name__,
                skipped,
            )
        return False

    def _valid(self, op: tuple[Any, ...]) -> bool:
        problem = key_problem(op[1])
        if problem is not None:
            self._set_aside(op, problem)
        return problem is None

    def _set_aside(self, op: tuple[Any, ...], reason: str) -> None:
        entity = op[1]
        self.stats.set_aside += 1
        self.set_aside.append(SetAside(str(entity.get("PartitionKey"))[:80], str(entity.get("RowKey"))[:80], reason))
        log.error(
            "the store refused an entity (%s); set aside, the rest written",
            reason,
            extra={"partition": str(entity.get("PartitionKey"))[:80]},
        )
