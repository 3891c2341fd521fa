"""Spine benchmark: N concurrent calls through the whole system (simulator → webhook app →
session host → Azurite), using the simulator's measurements.

    .venv/bin/python -m bench.spine --calls 50 --concurrency 25 --scenario greeting_only

Prints one table. Each latency is also given as a ratio to a baseline measured in the same run
(the p50 of a bare HTTP round trip to the session host's /healthz), since this machine is noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from callplane.clock import percentile
from simulator.azurite import start_azurite
from simulator.load import place_and_wait, summarize
from tests.stack import run_stack


async def main(args: argparse.Namespace) -> None:
    azurite = start_azurite()
    try:
        async with run_stack(azurite.connection_string, dialect=args.dialect, time_scale=args.time_scale) as stack:
            rtts = []
            for _ in range(50):
                t0 = time.perf_counter()
                async with stack.http.get(f"{stack.host_url}/healthz") as resp:
                    await resp.read()
                rtts.append((time.perf_counter() - t0) * 1000)
            base = percentile(rtts, 50) or 1.0
            calls, wall = await place_and_wait(stack.sim, args.scenario, args.calls, args.concurrency, 120)
            s = summarize(calls, wall)
    finally:
        azurite.stop()
    rows = [("baseline: /healthz round trip p50 (ms)", base, 1.0)]
    for key in ("webhook_to_accept_ms", "webhook_to_greeting_ms", "tool_round_trip_ms"):
        for q in ("p50", "p95", "p99"):
            v = s[key].get(q)
            if v is not None:
                rows.append((f"{key} {q}", v, v / base))
    print(
        f"calls={s['calls']} concurrency={args.concurrency} scenario={args.scenario} "
        f"dialect={args.dialect} outcomes={s['outcomes']} wall={s['wall_s']}s"
    )
    print(f"{'metric':45} | {'value':>10} | {'x baseline':>10}")
    print("-" * 72)
    for name, value, ratio in rows:
        print(f"{name:45} | {value:10.2f} | {ratio:10.1f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=25)
    parser.add_argument("--scenario", default="greeting_only")
    parser.add_argument("--dialect", default="openai", choices=["openai", "azure"])
    parser.add_argument("--time-scale", type=float, default=20.0)
    asyncio.run(main(parser.parse_args()))
