"""The webhook app's side of the conversation with the session hosts: the signed hand-off (the
admission: a replica reserves the call, or says it is full, or that the call is a duplicate) and
the accept's outcome told to the replica that reserved the call.

Both go through a `Batcher`: the messages of one turn of the event loop go out together at the
end of it, as one request on the batch route (a message alone: on its own route), each answered
as its own route would answer it, line by line as the session host decides. A burst of calls
then costs the session host a few requests instead of two per call (and no connection per
call), and a lone call the same single request as before. A session host without the batch
route (one from before it, during a rolling deploy) answers 404 there: the batcher goes back to
single requests."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any

import aiohttp
from pydantic import ValidationError

from callplane import signing
from callplane.handoff import (
    BATCH_BYTES,
    HANDOFF_PATH,
    MAX_BATCH,
    OUTCOME_PATH,
    AcceptOutcome,
    BatchAnswer,
    HandoffRequest,
)

if TYPE_CHECKING:
    from function_app.webhook import WebhookDeps

log = logging.getLogger("function_app.webhook")

HANDOFF_DEADLINE_S = 4.0  # no replica reachable for this long: the caller is refused, not left ringing
FULL_ANSWERS = 3  # this many 503s in a row: every replica behind the URL is at capacity
FULL_MEMO_S = 0.25  # after that, how long new calls are refused busy without asking


Answer = tuple[int, dict[str, Any]]  # status, JSON object (empty when the body was not one)


@dataclass(slots=True)
class _Message:
    body: bytes
    path: str  # its single route
    trace: dict[str, str]
    deadline: float  # loop time
    answer: asyncio.Future[Answer]


@dataclass(slots=True)
class Batcher:
    """Messages to one session-host route sent at the same moment, as one signed request."""

    batch_path: str
    lanes: int = 32  # requests in flight at most; beyond that, messages wait and go together
    batched: bool = True  # False once the session host did not know the batch route
    requests: int = 0  # requests made (a batch is one)
    messages: int = 0
    _queue: list[_Message] = field(default_factory=list)
    _busy: int = 0
    _flush_due: bool = False
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def send(self, deps: WebhookDeps, body: bytes, path: str, timeout: float) -> Answer:
        """The session host's answer to `body` (as its route `path` gives it). Raises TimeoutError
        after `timeout` seconds, or aiohttp.ClientError when the request failed."""
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[Answer] = loop.create_future()
        # A sender that gave up does not leave an exception nobody reads.
        answer.add_done_callback(lambda f: f.cancelled() or f.exception())
        trace = deps.telemetry.inject({})  # the caller's span, not the sender task's
        self._queue.append(_Message(body, path, trace, loop.time() + timeout, answer))
        self.messages += 1
        self._pump(deps)
        return await asyncio.wait_for(asyncio.shield(answer), timeout)

    def _pump(self, deps: WebhookDeps) -> None:
        # The messages of one turn of the event loop (a burst's webhooks are taken in many per
        # turn) go together at the end of it: a lone call waits for nothing.
        if not self._flush_due:
            self._flush_due = True
            asyncio.get_running_loop().call_soon(self._flush, deps)

    def _flush(self, deps: WebhookDeps) -> None:
        self._flush_due = False
        while self._queue and self._busy < self.lanes:
            # Up to MAX_BATCH messages and BATCH_BYTES of them; one larger goes alone.
            size, count = 0, 0
            for message in self._queue[:MAX_BATCH]:
                size += len(message.body)
                if count and size > BATCH_BYTES:
                    break
                count += 1
            batch, self._queue = self._queue[:count], self._queue[count:]
            self._busy += 1
            task = asyncio.ensure_future(self._post(deps, batch))
            self._tasks.add(task)
            task.add_done_callback(lambda t: self._done(deps, t))

    def _done(self, deps: WebhookDeps, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._busy -= 1
        if self._queue:
            self._pump(deps)

    async def _post(self, deps: WebhookDeps, batch: list[_Message]) -> None:
        try:
            if len(batch) > 1 and self.batched:
                if await self._batch(deps, batch):
                    return
                log.warning("the session host has no batch route %s; one request per message", self.batch_path)
                self.batched = False
            await asyncio.gather(*(self._single(deps, m) for m in batch))
        except Exception as exc:  # the request failed: every message still unanswered sees why
            for message in batch:
                if not message.answer.done():
                    message.answer.set_exception(exc)

    async def _single(self, deps: WebhookDeps, message: _Message) -> None:
        try:
            async with self._request(deps, message.path, message.body, message.trace, message.deadline) as resp:
                _settle(message.answer, (resp.status, _json_object(await resp.read())))
        except Exception as exc:
            if not message.answer.done():
                message.answer.set_exception(exc)

    async def _batch(self, deps: WebhookDeps, batch: list[_Message]) -> bool:
        """Send `batch` as one request and settle each message as its answer line arrives.
        False when the session host does not know the batch route (nothing settled)."""
        items = b",".join(
            b'{"body":' + m.body + (b"," + json.dumps(m.trace)[1:].encode() if m.trace else b"}") for m in batch
        )
        body = b'{"items":[' + items + b"]}"
        async with self._request(deps, self.batch_path, body, {}, max(m.deadline for m in batch)) as resp:
            if resp.status in (404, 405):
                return False
            if resp.status != 200:  # refused as a whole (signature, size, an ingress's 503): so is each message
                whole = (resp.status, _json_object(await resp.read()))
                for message in batch:
                    _settle(message.answer, whole)
                return True
            async for line in resp.content:
                if not line.strip():
                    continue
                try:
                    answer = BatchAnswer.model_validate_json(line)
                except ValidationError:
                    log.warning("malformed line in the session host's batch answer; ignored")
                    continue
                if answer.i < len(batch):
                    _settle(batch[answer.i].answer, (answer.status, answer.body))
        unanswered = [m for m in batch if not m.answer.done()]
        if unanswered:
            error = aiohttp.ClientPayloadError(f"the batch answer ended with {len(unanswered)} message(s) unanswered")
            for message in unanswered:
                message.answer.set_exception(error)
        return True

    def _request(
        self, deps: WebhookDeps, path: str, body: bytes, trace: dict[str, str], deadline: float
    ) -> aiohttp.client._RequestContextManager:
        self.requests += 1
        settings = deps.settings
        url = settings.session_host_url.rstrip("/") + path
        headers = {"content-type": "application/json", **signing.sign_headers(settings.handoff_secret, body), **trace}
        timeout = aiohttp.ClientTimeout(total=max(0.5, deadline - asyncio.get_running_loop().time()))
        return deps.http.post(url, data=body, headers=headers, timeout=timeout)


def _settle(future: asyncio.Future[Answer], answer: Answer) -> None:
    if not future.done():
        future.set_result(answer)


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(raw)
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


class Handoff(Enum):
    TAKEN = "taken"  # reserved for this delivery (202), or owned by a peer that may await it (409)
    DUPLICATE = "duplicate"  # already running (or ended): this delivery is a duplicate (200)
    BUSY = "busy"  # no replica could take it


async def hand_off(deps: WebhookDeps, req: HandoffRequest, extra: dict[str, Any]) -> Handoff | str:
    """What became of the hand-off; a string: it was refused for what it is (a 4xx other than
    409), which no retry changes."""
    with deps.telemetry.tracer.start_as_current_span("handoff") as span:
        taken = await _post_handoff(deps, req, extra)
        span.set_attribute("handoff.taken", taken is Handoff.TAKEN)
        return taken


async def _post_handoff(deps: WebhookDeps, req: HandoffRequest, extra: dict[str, Any]) -> Handoff | str:
    if time.monotonic() < deps.full_until:
        log.warning("every replica was at capacity a moment ago; refused busy", extra=extra)
        return Handoff.BUSY
    body = req.body()
    deadline = time.monotonic() + HANDOFF_DEADLINE_S
    attempt = full = 0
    while time.monotonic() < deadline and full < FULL_ANSWERS:
        attempt += 1
        try:
            status, said = await deps.handoffs.send(deps, body, HANDOFF_PATH, max(0.5, deadline - time.monotonic()))
            if status == 200:
                return Handoff.DUPLICATE
            if status in (202, 409):
                # 409: a peer owns the call; it may be waiting for this very accept (the
                # service's retry after a failed one), and a second accept changes nothing.
                log.info("handed off to session host (%s)", status, extra=extra)
                deps.full_until = 0.0
                return Handoff.TAKEN
            if 400 <= status < 500 and status != 429:
                log.error("hand-off refused (%s); not retried", status, extra=extra)
                return f"hand-off refused by the session host ({status})"
            # 503 = that replica is full (or cannot beat); the next try may reach another one
            # behind the URL, so try again at once: overload is refused fast, not slowly.
            log.warning("hand-off answered %s (attempt %d)", status, attempt, extra=extra)
            if status == 503:
                full += 1
                if said.get("fleetFull") is True:
                    full = FULL_ANSWERS  # that replica knows its peers are full too
                if full >= FULL_ANSWERS and "capacity" in str(said.get("error")):
                    deps.full_until = time.monotonic() + FULL_MEMO_S
                continue
            full = 0
        except (TimeoutError, aiohttp.ClientError) as exc:
            log.warning("hand-off failed: %s (attempt %d)", type(exc).__name__, attempt, extra=extra)
        await asyncio.sleep(min(0.05 * attempt, max(0.0, deadline - time.monotonic())))
    return Handoff.BUSY


async def tell_owner(deps: WebhookDeps, outcome: AcceptOutcome, extra: dict[str, Any]) -> None:
    """Best effort, twice: an owner that never hears tries its socket once its wait runs out."""
    path = OUTCOME_PATH.format(call_id=outcome.callId)
    body = outcome.body()
    for attempt in (1, 2):
        try:
            status, _ = await deps.outcomes.send(deps, body, path, 2.0)
            if status < 500:
                return
        except (TimeoutError, aiohttp.ClientError) as exc:
            log.warning("accept outcome not delivered: %s (attempt %d)", type(exc).__name__, attempt, extra=extra)
