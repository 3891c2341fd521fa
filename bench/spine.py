"""Spine benchmark: N concurrent calls through the whole system (simulator → webhook app →
session host → Azurite), using the simulator's measurements.

    .venv/bin/python -m bench.spine --calls 50 --concurrency 25 --scenario greeting_only
    .venv/bin/python -m bench.spine --routes 1 1000        # what profile routing adds

Prints one table per run. Each latency is also given as a ratio to a baseline measured in the
same run (the p50 of a bare HTTP round trip to the session host's /healthz), since this machine
is noisy. With --routes, each count gets its own run: N numbers routed to a profile (the calls'
own number among them), and the choice of a profile is also timed on its own (in-memory, per call).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from callplane.clock import percentile
from callplane.handoff import SipHeader
from callplane.profiles import Profile
from callplane.store import profile_store
from function_app import runtime
from simulator.azurite import start_azurite
from simulator.load import place_and_wait, summarize
from tests.stack import Stack, run_stack

CALLED = "+18005551212"  # the number the simulator's calls dial


async def seed_routes(stack: Stack, n: int) -> None:
    table = stack.host_app[stack_keys().TABLES].profiles
    await profile_store.put_profile(table, "bench", Profile(instructions="Bench agent for {called_number}."), "bench")
    numbers = [CALLED] + [f"+1800{7_000_000 + i:07d}" for i in range(n - 1)]
    for number in numbers:
        await table.upsert_entity({"PartitionKey": profile_store.ROUTE_PK, "RowKey": number, "profile": "bench"})
    await profile_store._bump(table)


def stack_keys() -> Any:
    from session_host import keys

    return keys


async def one_run(args: argparse.Namespace, routes: int) -> dict[str, Any]:
    azurite = start_azurite()
    try:
        async with run_stack(azurite.connection_string, dialect=args.dialect, time_scale=args.time_scale) as stack:
            if routes:
                await seed_routes(stack, routes)
                deps = runtime._holder.deps
                assert deps is not None and deps.profiles is not None
                await deps.profiles.refresh()
                assert len(deps.profiles.routes) == routes
            rtts = []
            for _ in range(50):
                t0 = time.perf_counter()
                async with stack.http.get(f"{stack.host_url}/healthz") as resp:
                    await resp.read()
                rtts.append((time.perf_counter() - t0) * 1000)
            base = percentile(rtts, 50) or 1.0
            choose_us: list[float] = []
            deps = runtime._holder.deps
            if deps is not None and deps.profiles is not None:
                headers = [
                    SipHeader(name="From", value="<sip:+14255550100@x>"),
                    SipHeader(name="To", value=f"<sip:{CALLED}@x>"),
                ]
                for _ in range(2000):
                    t0 = time.perf_counter()
                    deps.profiles.choose(headers, "+14255550100")
                    choose_us.append((time.perf_counter() - t0) * 1e6)
            calls, wall = await place_and_wait(stack.sim, args.scenario, args.calls, args.concurrency, 120)
            s = summarize(calls, wall)
            if routes:
                chosen = {c.accept_body["instructions"] for c in calls if c.accept_body}
                assert chosen == {f"Bench agent for {CALLED}."}, chosen
    finally:
        azurite.stop()
    return {"routes": routes, "base": base, "summary": s, "choose_us": choose_us}


def print_run(run: dict[str, Any], args: argparse.Namespace) -> None:
    s, base = run["summary"], run["base"]
    rows = [("baseline: /healthz round trip p50 (ms)", base, 1.0)]
    for key in ("webhook_to_accept_ms", "webhook_to_greeting_ms", "tool_round_trip_ms"):
        for q in ("p50", "p95", "p99"):
            v = s[key].get(q)
            if v is not None:
                rows.append((f"{key} {q}", v, v / base))
    if run["choose_us"]:
        for q in (50, 95):
            v = percentile(run["choose_us"], q) or 0.0
            rows.append((f"profile choice p{q} (ms, in memory)", v / 1000, v / 1000 / base))
    print(
        f"\nroutes={run['routes']} calls={s['calls']} concurrency={args.concurrency} scenario={args.scenario} "
        f"dialect={args.dialect} outcomes={s['outcomes']} wall={s['wall_s']}s"
    )
    print(f"{'metric':45} | {'value':>10} | {'x baseline':>10}")
    print("-" * 72)
    for name, value, ratio in rows:
        print(f"{name:45} | {value:10.3f} | {ratio:10.2f}")


async def main(args: argparse.Namespace) -> None:
    for routes in args.routes or [0]:
        print_run(await one_run(args, routes), args)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=25)
    parser.add_argument("--scenario", default="greeting_only")
    parser.add_argument("--dialect", default="openai", choices=["openai", "azure"])
    parser.add_argument("--time-scale", type=float, default=20.0)
    parser.add_argument("--routes", type=int, nargs="*", default=[], help="route counts to compare, e.g. 1 1000")
    asyncio.run(main(parser.parse_args()))
