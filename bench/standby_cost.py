"""What the hot standby costs: the same calls with STANDBY on and off, two session-host processes.

    .venv/bin/python -m bench.standby_cost --calls 100

All calls are handed to replica A; with the standby on, replica B follows each of them on a second
control socket. Per call-minute of real-pacing conversation (standard scenario): control sockets,
CPU seconds of both hosts together, and table requests of both hosts together (every request:
writes, heartbeats, lease and standby sweeps). The "off" run is the in-run baseline (ratio 1).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
from typing import Any

import aiohttp

from bench.failover import Replica
from bench.procs import NO_WEBHOOKS, serve_simulator
from bench.session_host import info, run_calls
from bench.store import real_minutes
from callplane.clock import percentile
from simulator.azurite import free_port, start_azurite
from tests.stack import make_env


async def measure(conn: str, n: int, standby: bool, time_scale: float) -> dict[str, Any]:
    sim_port = free_port()
    env = {
        **os.environ,
        **make_env(conn, sim_port=sim_port, fn_port=free_port(), host_port=free_port(), dialect="azure"),
        "LOG_FORMAT": "json",
        "MAX_CALLS_PER_REPLICA": str(n + 10),
        "STANDBY": "true" if standby else "false",
    }
    # The benchmark hands calls to the session hosts itself: no Function App, so webhooks go nowhere.
    runner, sim = await serve_simulator(env, time_scale=time_scale, webhook_url=NO_WEBHOOKS)
    a, b = Replica(env, "cost-a"), Replica(env, "cost-b")
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
            await a.start(http)
            await b.start(http)
            await asyncio.sleep(1.0)
            before = [await info(http, r.url) for r in (a, b)]
            calls = await run_calls(sim, http, env, n, 2.0, f"{a.url}/internal/calls")
            await asyncio.wait_for(asyncio.gather(*(c.ended.wait() for c in calls)), 300)
            await asyncio.sleep(2.0)
            after = [await info(http, r.url) for r in (a, b)]
            minutes = sum(real_minutes(c.marks, time_scale) for c in calls)
            cpu = sum(
                x["process"]["cpuSeconds"] - y["process"]["cpuSeconds"] for x, y in zip(after, before, strict=True)
            )
            reqs = sum(
                x["controlPlane"]["allTableRequests"] - y["controlPlane"]["allTableRequests"]
                for x, y in zip(after, before, strict=True)
            )
            tools = [t for c in calls for t in c.tool_round_trips]
            return {
                "calls": n,
                "completed": sum(1 for c in calls if c.end_reason == "caller hung up"),
                "call_minutes": minutes,
                "sockets_per_call": sum(c.socket_opens for c in calls) / n,
                "cpu_s_per_call_min": cpu / minutes,
                "table_req_per_call_min": reqs / minutes,
                "tool_p99_ms": percentile(tools, 99) or 0.0,
            }
    finally:
        for r in (a, b):
            if r.proc is not None and r.proc.poll() is None:
                await r.stop(signal.SIGTERM)
        await runner.cleanup()


async def main(args: argparse.Namespace) -> None:
    azurite = start_azurite()
    try:
        off = await measure(azurite.connection_string, args.calls, False, args.time_scale)
        on = await measure(azurite.connection_string, args.calls, True, args.time_scale)
    finally:
        azurite.stop()
    print(f"standard scenario, {args.calls} calls on replica A, time scale {args.time_scale}, two replicas")
    print("| figure | standby off (baseline) | standby on | ratio |")
    print("|---|---|---|---|")
    for key in ("completed", "sockets_per_call", "cpu_s_per_call_min", "table_req_per_call_min", "tool_p99_ms"):
        x, y = off[key], on[key]
        ratio = f"{y / x:.2f}" if isinstance(x, float) and x else ""
        print(f"| {key} | {x:.3f} | {y:.3f} | {ratio} |" if isinstance(x, float) else f"| {key} | {x} | {y} | |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--time-scale", type=float, default=2.0)
    asyncio.run(main(parser.parse_args()))
