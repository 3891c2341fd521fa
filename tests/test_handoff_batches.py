"""Hand-offs and accept outcomes sent together travel as one request: the session host answers each
message of a batch as its single route would, and the webhook app's batcher sends a burst of
calls in a few requests (or one per message to a session host without the batch route)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from aiohttp import web

from callplane import signing
from callplane.clock import now_ms
from callplane.handoff import (
    BATCH_BYTES,
    BATCH_CONTENT_TYPE,
    HANDOFF_BATCH_PATH,
    HANDOFF_PATH,
    MAX_BATCH,
    OUTCOME_BATCH_PATH,
    AcceptOutcome,
    HandoffRequest,
)
from callplane.settings import Role, build_settings
from callplane.telemetry import Telemetry
from function_app.session_host_client import Batcher
from session_host import keys
from tests.stack import Stack, make_env, run_stack


def batch_of(*bodies: bytes | dict[str, Any]) -> bytes:
    items = [{"body": json.loads(b) if isinstance(b, bytes) else b} for b in bodies]
    return json.dumps({"items": items}).encode()


async def post_signed(stack: Stack, path: str, body: bytes, secret: str | None = None) -> tuple[int, Any]:
    headers = {
        "content-type": "application/json",
        **signing.sign_headers(secret or stack.settings.handoff_secret, body),
    }
    async with stack.http.post(stack.host_url + path, data=body, headers=headers) as resp:
        if resp.content_type != BATCH_CONTENT_TYPE:
            return resp.status, await resp.json()
        # A batch's answer: one line per message, in the order decided; here in batch order.
        lines = [json.loads(line) for line in (await resp.text()).splitlines() if line]
        assert sorted(line["i"] for line in lines) == list(range(len(lines))), lines
        return resp.status, {"answers": sorted(lines, key=lambda line: line["i"])}


async def test_each_hand_off_in_a_batch_gets_the_answer_its_own_request_would(conn: str) -> None:
    async with run_stack(conn) as stack:
        ended = await stack.place("greeting_only")
        await stack.wait_call(ended)
        fresh = HandoffRequest(callId="rtc_batch_fresh", webhookId="wh_1", receivedAt=now_ms())
        stale = HandoffRequest(callId="rtc_batch_stale", webhookId="wh_2", receivedAt=now_ms() - 120_000)
        replay = HandoffRequest(callId=ended, webhookId="wh_3", receivedAt=now_ms())
        bad = {"callId": "rtc/../x", "webhookId": "wh_4", "receivedAt": now_ms()}
        status, doc = await post_signed(
            stack, HANDOFF_BATCH_PATH, batch_of(fresh.body(), fresh.body(), stale.body(), replay.body(), bad)
        )
        assert status == 200, doc
        answers = [(a["status"], a["body"]) for a in doc["answers"]]
        assert answers[0] == (202, {"callId": "rtc_batch_fresh", "status": "taken"})
        # The same call twice in one batch: the second delivery finds it reserved, as two requests would.
        assert answers[1] == (202, {"callId": "rtc_batch_fresh", "status": "reserved"})
        assert answers[2][0] == 409 and "stale" in answers[2][1]["error"]
        assert answers[3] == (200, {"callId": ended, "status": "already ended"})
        assert answers[4][0] == 400 and answers[4][1]["error"].startswith("invalid hand-off: callId"), answers[4]
        assert "rtc_batch_fresh" in stack.host_app[keys.REGISTRY].sessions
        # The single route answers the fresh call the same way now.
        status, single = await post_signed(stack, HANDOFF_PATH, fresh.body())
        assert (status, single) == (202, {"callId": "rtc_batch_fresh", "status": "reserved"})

        # Outcomes: one for the reserved call (delivered), one for a call elsewhere (left in the store).
        here = AcceptOutcome(callId="rtc_batch_fresh", accepted=False, error="test").body()
        away = AcceptOutcome(callId="rtc_batch_away", accepted=True).body()
        status, doc = await post_signed(stack, OUTCOME_BATCH_PATH, batch_of(here, away, {"callId": "rtc_x"}))
        assert status == 200, doc
        answers = [(a["status"], a["body"]) for a in doc["answers"]]
        assert answers[0] == (200, {"callId": "rtc_batch_fresh", "status": "delivered"})
        assert answers[1] == (202, {"callId": "rtc_batch_away", "status": "left for the owner"})
        assert answers[2][0] == 400 and "accepted" in answers[2][1]["error"]
        call = await stack.wait_call("rtc_batch_fresh")
        assert call["status"] == "failed" and "accept failed: test" in call["endReason"], call


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        (b"not json", 400, "invalid hand-off batch"),
        (json.dumps({"items": []}).encode(), 400, "items"),
        (batch_of(*[{"callId": f"rtc_{i}"} for i in range(MAX_BATCH + 1)]), 400, "items"),
        (json.dumps({"items": [{"body": "x"}]}).encode(), 400, "items.0.body"),
    ],
)
async def test_a_malformed_batch_is_refused_whole_and_touches_nothing(
    conn: str, body: bytes, status: int, words: str
) -> None:
    async with run_stack(conn) as stack:
        got, doc = await post_signed(stack, HANDOFF_BATCH_PATH, body)
        assert got == status and words in doc["error"], doc
        assert not stack.host_app[keys.REGISTRY].sessions


async def test_an_unsigned_or_forged_batch_is_refused(conn: str) -> None:
    async with run_stack(conn) as stack:
        body = batch_of(HandoffRequest(callId="rtc_forged", webhookId="wh_f", receivedAt=now_ms()).body())
        for path in (HANDOFF_BATCH_PATH, OUTCOME_BATCH_PATH):
            async with stack.http.post(stack.host_url + path, data=body) as resp:
                assert resp.status == 401, await resp.text()
            status, doc = await post_signed(stack, path, body, secret=signing.new_secret())
            assert status == 401 and "signature" in doc["error"], doc
        assert not stack.host_app[keys.REGISTRY].sessions


async def test_a_burst_of_calls_shares_its_hand_off_and_outcome_requests(conn: str) -> None:
    from function_app import runtime

    async with run_stack(conn, time_scale=40) as stack:
        ids = await asyncio.gather(*(stack.place("greeting_only") for _ in range(30)))
        for call_id in ids:
            assert (await stack.wait_call(call_id))["status"] == "completed"
        deps = runtime._holder.deps
        assert deps is not None
        for batcher in (deps.handoffs, deps.outcomes):
            assert batcher.messages == 30 and batcher.batched
            assert batcher.requests < batcher.messages, (batcher.requests, batcher.messages)


async def test_the_batcher_sends_one_request_per_message_to_a_host_without_the_batch_route(conn: str) -> None:
    """A session host from before the batch route (a rolling deploy) answers it 404."""
    seen: list[str] = []

    async def single(request: web.Request) -> web.Response:
        body = await request.read()
        signing.verify(secret, body, dict(request.headers))
        seen.append(request.headers.get("traceparent", "-"))
        await asyncio.sleep(0.05)  # slow enough that the messages pile up behind the lanes
        return web.json_response({"callId": json.loads(body)["callId"], "status": "taken"}, status=202)

    app = web.Application()
    app.router.add_post(HANDOFF_PATH, single)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    env = make_env(conn, sim_port=1, fn_port=2, host_port=3, dialect="openai")
    secret = env["HANDOFF_SECRET"]
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    env["SESSION_HOST_URL"] = f"http://127.0.0.1:{port}"
    from function_app.runtime import close_deps, open_deps

    deps = await open_deps(build_settings(Role.FUNCTION_APP, env), Telemetry())
    try:
        batcher = Batcher(HANDOFF_BATCH_PATH, lanes=1)
        bodies = [HandoffRequest(callId=f"rtc_old_{i}", webhookId="wh", receivedAt=now_ms()).body() for i in range(8)]
        answers = await asyncio.gather(*(batcher.send(deps, b, HANDOFF_PATH, 5.0) for b in bodies))
        assert [a[0] for a in answers] == [202] * 8
        assert [a[1]["callId"] for a in answers] == [f"rtc_old_{i}" for i in range(8)]
        assert not batcher.batched and len(seen) == 8
        # Once known, no batch is tried again: one request per message.
        before = batcher.requests
        await asyncio.gather(*(batcher.send(deps, b, HANDOFF_PATH, 5.0) for b in bodies[:3]))
        assert batcher.requests == before + 3
    finally:
        await close_deps(deps)
        await runner.cleanup()


async def test_a_batch_that_cannot_be_delivered_fails_each_sender(conn: str) -> None:
    env = make_env(conn, sim_port=1, fn_port=2, host_port=3, dialect="openai")
    env["SESSION_HOST_URL"] = "http://127.0.0.1:9"  # nothing listens
    from function_app.runtime import close_deps, open_deps

    deps = await open_deps(build_settings(Role.FUNCTION_APP, env), Telemetry())
    try:
        batcher = Batcher(HANDOFF_BATCH_PATH, lanes=1)
        bodies = [HandoffRequest(callId=f"rtc_lost_{i}", webhookId="wh", receivedAt=now_ms()).body() for i in range(5)]
        results = await asyncio.gather(
            *(batcher.send(deps, b, HANDOFF_PATH, 2.0) for b in bodies), return_exceptions=True
        )
        assert all(isinstance(r, OSError) for r in results), results
    finally:
        await close_deps(deps)


async def test_a_batch_stays_within_its_byte_budget_and_a_large_message_goes_alone(conn: str) -> None:
    """Hand-offs may carry up to ~1 MiB of SIP headers each: a batch holds at most BATCH_BYTES of
    bodies, so a session host never reads a giant one, and a message that large goes on its own."""
    seen: list[tuple[str, int, int]] = []  # path, messages, body bytes

    async def record(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        if request.path == HANDOFF_BATCH_PATH:
            items = json.loads(body)["items"]
            seen.append((request.path, len(items), len(body)))
            lines = [json.dumps({"i": i, "status": 202, "body": {}}) for i in range(len(items))]
            return web.Response(body="\n".join(lines) + "\n", content_type=BATCH_CONTENT_TYPE)
        seen.append((request.path, 1, len(body)))
        return web.json_response({}, status=202)

    app = web.Application(client_max_size=8 * 1024 * 1024)
    app.router.add_post(HANDOFF_PATH, record)
    app.router.add_post(HANDOFF_BATCH_PATH, record)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    env = make_env(conn, sim_port=1, fn_port=2, host_port=3, dialect="openai")
    env["SESSION_HOST_URL"] = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
    from function_app.runtime import close_deps, open_deps

    deps = await open_deps(build_settings(Role.FUNCTION_APP, env), Telemetry())
    try:
        huge = b'{"pad":"' + b"z" * (1536 * 1024) + b'"}'  # over the budget on its own
        big = b'{"pad":"' + b"x" * (600 * 1024) + b'"}'  # two of them are over it
        small = b'{"pad":"y"}'
        batcher = Batcher(HANDOFF_BATCH_PATH)
        bodies = [huge, big, big, big] + [small] * 5
        answers = await asyncio.gather(*(batcher.send(deps, b, HANDOFF_PATH, 5.0) for b in bodies))
        assert [status for status, _ in answers] == [202] * 9
        assert sum(n for _, n, _ in seen) == 9
        assert [(p, n) for p, n, size in seen if size > BATCH_BYTES] == [(HANDOFF_PATH, 1)], seen
        batches = [size for p, _, size in seen if p == HANDOFF_BATCH_PATH]
        assert batches and all(size <= BATCH_BYTES + 64 * 1024 for size in batches), seen
        assert len(seen) >= 3, "the three 600 KiB messages need at least two requests besides the huge one"
    finally:
        await close_deps(deps)
        await runner.cleanup()
