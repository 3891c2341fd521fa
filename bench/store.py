"""Call store at scale: 100,000 stored calls, admin API latency, table requests per call-minute.

    .venv/bin/python -m bench.store --seed 100000 --calls 50

1. Seeds N calls into a fresh Azurite: every call's full row in the newest-first index (which is
   what `/api/calls` reads), the rollup (what `/api/stats` reads), and the own record of the newest
   `--records` calls. Azurite takes ~12 ms per single-entity write, so 100k own records alone
   would take ~20 minutes; the measured routes never read them.
2. Times `GET /api/stats` and `GET /api/calls?limit=50` against the session host process
   (p50/p95 over 200 requests each), with a bare `GET /healthz` as the in-run baseline.
3. Runs M standard-scenario calls (real pacing x time scale) through webhook app + session host
   and counts the session host's table requests (a batch is one) per call-minute of real-pacing
   conversation.
Targets (issue 6): stats p95 <= 50 ms, calls?limit=50 p95 <= 100 ms, <= 10 requests/call-minute.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import aiohttp
from azure.core.exceptions import AzureError

from bench.procs import deployed
from callplane.clock import now_ms, percentile
from callplane.settings import Role, build_settings
from callplane.store.calls import by_partition, call_operation, index_upserts
from callplane.store.models import CallRecord, CallStatus, ToolCallRecord
from callplane.store.rollups import apply_delta, call_finished, merge_all
from callplane.store.tables import TableOps, ensure_tables, open_tables
from simulator.azurite import start_azurite
from simulator.load import place_and_wait
from simulator.scenario import load_scenario


def fake_call(i: int, base_ms: int) -> CallRecord:
    start = base_ms - i * 7_000
    return CallRecord(
        callId=f"rtc_seed{i:07d}",
        startTime=start,
        endTime=start + 60_000,
        duration=60_000,
        status=[CallStatus.COMPLETED, CallStatus.COMPLETED, CallStatus.TRANSFERRED, CallStatus.FAILED][i % 4],
        endReason="caller hung up",
        callerPhone=f"+1425{i:07d}",
        responseCount=4,
        userSpeechEvents=3,
        toolCalls=[ToolCallRecord(name="lookup_order", timestamp=start + 5000, duration=0.4, success=True)],
        latencies=[420.0, 515.5, 610.0],
        sentiment="positive",
        summary="Caller asked about an order. Used lookup_order. 7 turns over 60s, 0 barge-ins.",
        messageCount=7,
        updatedAt=start + 60_000,
    )


async def seed(env: dict[str, str], n: int, records: int) -> float:
    settings = build_settings(Role.SESSION_HOST, env)
    tables = open_tables(settings)
    t0 = time.perf_counter()
    try:
        await ensure_tables(tables)
        base = now_ms() - 3_600_000
        calls = [fake_call(i, base) for i in range(n)]
        sem = asyncio.Semaphore(4)

        async def submit(client: TableOps, ops: list[tuple[Any, ...]]) -> None:
            async with sem:
                # Seeding batches into a growing partition are slow on Azurite: wait for them, and
                # retry (upserts are idempotent) when Azurite drops an idle keep-alive connection.
                for attempt in range(5):
                    try:
                        await client.submit_transaction(ops, read_timeout=300)
                        return
                    except AzureError:
                        if attempt == 4:
                            raise
                        await asyncio.sleep(0.5 * (attempt + 1))

        jobs = [
            submit(tables.callindex, ops[i : i + 100])
            for ops in by_partition([pair for c in calls for pair in index_upserts(c)]).values()
            for i in range(0, len(ops), 100)
        ]
        jobs += [submit(tables.calls, [call_operation(c)]) for c in calls[:records]]
        await asyncio.gather(*jobs)
        await apply_delta(tables, merge_all(call_finished(c, counted_start=False) for c in calls))
    finally:
        await tables.close()
    return time.perf_counter() - t0


async def timed(http: aiohttp.ClientSession, url: str, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        async with http.get(url) as resp:
            await resp.read()
            assert resp.status == 200, resp.status
        out.append((time.perf_counter() - t0) * 1000)
    return out


async def main(args: argparse.Namespace) -> None:
    azurite = start_azurite()
    rows: list[tuple[str, float, str, float | None]] = []
    try:
        seed_s = 0.0

        async def prepare(env: dict[str, str]) -> None:
            nonlocal seed_s
            seed_s = await seed(env, args.seed, args.records)

        async with deployed(azurite.connection_string, time_scale=args.time_scale, prepare=prepare) as sut:
            async with aiohttp.ClientSession() as http:
                await timed(http, f"{sut.host_url}/api/stats", 20)  # warm up
                base = timed(http, f"{sut.host_url}/healthz", 200)
                base_ms = percentile(await base, 50) or 1.0
                stats = await timed(http, f"{sut.host_url}/api/stats", 200)
                page = await timed(http, f"{sut.host_url}/api/calls?limit=50", 200)
                async with http.get(f"{sut.host_url}/api/calls?limit=50") as resp:
                    assert (await resp.json())["count"] == 50
                async with http.get(f"{sut.host_url}/") as resp:
                    store0 = (await resp.json())["store"]
                async with http.get(f"{sut.host_url}/api/stats") as resp:
                    cost0 = (await resp.json())["totalCost"]
                calls, wall = await place_and_wait(sut.sim, "standard", args.calls, args.calls, 600, ramp_s=args.ramp)
                await asyncio.sleep(3.0)  # final flushes
                async with http.get(f"{sut.host_url}/") as resp:
                    store1 = (await resp.json())["store"]
                async with http.get(f"{sut.host_url}/api/stats") as resp:
                    cost1 = (await resp.json())["totalCost"]
                before, after = store0["requests"], store1["requests"]
                print("writer:", {k: store1[k] - store0[k] for k in store1 if isinstance(store1[k], int)})
            scenario = load_scenario("standard")
            # Real-pacing length of one call: what the scenario scripts, measured at this time scale.
            call_minutes = sum(real_minutes(c.marks, args.time_scale) for c in calls)
            rows += [
                ("baseline: GET /healthz p50 (ms)", base_ms, "", 1.0),
                ("GET /api/stats p50 (ms)", percentile(stats, 50) or 0, "", None),
                ("GET /api/stats p95 (ms)", percentile(stats, 95) or 0, "<= 50", None),
                ("GET /api/calls?limit=50 p50 (ms)", percentile(page, 50) or 0, "", None),
                ("GET /api/calls?limit=50 p95 (ms)", percentile(page, 95) or 0, "<= 100", None),
                ("table requests per call-minute", (after - before) / call_minutes, "<= 10", None),
                (
                    "webhook deliveries (Function executions) per call",
                    sum(len(c.webhook_statuses) for c in calls) / len(calls),
                    "",
                    None,
                ),
                (
                    "model tokens per call-minute (simulator's usage)",
                    sum(c.usage_sent.get("totalTokens", 0) for c in calls) / call_minutes,
                    "",
                    None,
                ),
                ("model cost per call-minute, USD (default prices)", (cost1 - cost0) / call_minutes, "", None),
            ]
            per_min = {
                "requests": (after - before) / call_minutes,
                "cost": (cost1 - cost0) / call_minutes,
                "tokens": sum(c.usage_sent.get("totalTokens", 0) for c in calls) / call_minutes,
            }
            print(
                "projection, 1,000 calls of 3 minutes: "
                f"{per_min['tokens'] * 3000:,.0f} model tokens (${per_min['cost'] * 3000:,.2f} at the default prices), "
                f"{per_min['requests'] * 3000:,.0f} table requests, "
                f"{1000 * sum(len(c.webhook_statuses) for c in calls) / len(calls):,.0f} Function executions"
            )
            print(
                f"seeded {args.seed} calls in {seed_s:.1f}s; then {args.calls} '{scenario.name}' calls "
                f"({call_minutes:.1f} call-minutes at real pacing, run x{args.time_scale}) in {wall:.1f}s, "
                f"{after - before} table requests"
            )
    finally:
        azurite.stop()
    print(f"{'metric':40} | {'value':>9} | {'target':>8} | {'x baseline':>10}")
    print("-" * 76)
    for name, value, target, _ in rows:
        ratio = value / rows[0][1] if "(ms)" in name else None
        print(f"{name:40} | {value:9.2f} | {target:>8} | {'' if ratio is None else f'{ratio:10.1f}':>10}")


def real_minutes(marks: dict[str, float], scale: float) -> float:
    start, end = marks.get("accept"), marks.get("ended")
    if start is None or end is None:
        return 0.0
    return (end - start) * scale / 60_000


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=100_000)
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--records", type=int, default=1000)
    parser.add_argument(
        "--time-scale",
        type=float,
        default=1.0,
        help="1 = real pacing, so per-second costs are counted against real call-minutes",
    )
    parser.add_argument("--ramp", type=float, default=3.0)
    asyncio.run(main(parser.parse_args()))
