"""Dashboard fan-out: N SSE clients on one replica while M simulated calls run.

    .venv/bin/python -m bench.dashboard_sse --clients 200 --calls 100

The webhook app and the session host run as their own processes; the simulator drives them from
this process and the SSE clients listen from another. Delivery lag = receive time - the event's id (its change time in epoch ms), for every snapshot
every client receives. Poller load is table polls per second, measured with one client and then
with N clients: it must not grow with N (with none it is zero: the poller sleeps). Target (issue 7): lag p95 <= 2 s.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import time

import aiohttp

from bench.procs import deployed
from callplane.clock import now_ms, percentile
from simulator.azurite import start_azurite
from simulator.load import place_and_wait


async def client(http: aiohttp.ClientSession, url: str, lags: list[float], stop: asyncio.Event) -> None:
    async with http.get(url, timeout=aiohttp.ClientTimeout(total=None)) as resp:
        event_id = None
        async for raw in resp.content:
            if stop.is_set():
                return
            if raw.startswith(b"id: "):
                event_id = int(raw[4:])
            elif raw.startswith(b"data: ") and event_id:
                lags.append(now_ms() - event_id)


def clients_process(url: str, n: int, seconds: float, out: multiprocessing.Queue[list[float]]) -> None:
    """The browsers live in their own process, as they would: their parsing must not slow the replica."""

    async def run() -> list[float]:
        lags: list[float] = []
        stop = asyncio.Event()
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
            tasks = [asyncio.create_task(client(http, url, lags, stop)) for _ in range(n)]
            await asyncio.sleep(1.0)
            lags.clear()  # the snapshot each client gets on connect is not a change
            await asyncio.sleep(seconds)
            stop.set()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        return lags

    out.put(asyncio.run(run()))


async def polls_per_s(http: aiohttp.ClientSession, host: str, seconds: float) -> float:
    async def polls() -> int:
        async with http.get(f"{host}/") as resp:
            return int((await resp.json())["liveFeed"]["polls"])

    p0, t0 = await polls(), time.perf_counter()
    await asyncio.sleep(seconds)
    return (await polls() - p0) / (time.perf_counter() - t0)


async def main(args: argparse.Namespace) -> None:
    azurite = start_azurite()
    try:
        async with deployed(azurite.connection_string, time_scale=args.time_scale) as stack:
            http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
            lags: list[float] = []
            stop = asyncio.Event()
            nobody = await polls_per_s(http, stack.host_url, 2.0)
            one = asyncio.create_task(client(http, f"{stack.host_url}/api/events", [], stop))
            idle = await polls_per_s(http, stack.host_url, 3.0)
            one.cancel()
            readers = [
                asyncio.create_task(client(http, f"{stack.host_url}/api/events", lags, stop))
                for _ in range(args.clients)
            ]
            await asyncio.sleep(1.0)
            lags.clear()  # the initial snapshot each client gets on connect is not a change
            load_task = asyncio.create_task(
                place_and_wait(stack.sim, "standard", args.calls, args.calls, 300, ramp_s=args.ramp)
            )
            busy = await polls_per_s(http, stack.host_url, 3.0)
            _, wall = await load_task
            await asyncio.sleep(2.0)
            stop.set()
            for r in readers:
                r.cancel()
            await asyncio.gather(*readers, return_exceptions=True)
            await http.close()
    finally:
        azurite.stop()
    p50, p95, p99 = (percentile(lags, q) for q in (50, 95, 99))
    if args.verbose:
        print("lag deciles:", [percentile(lags, q) for q in range(10, 100, 10)])
    print(
        f"clients={args.clients} calls={args.calls} (arriving over {args.ramp}s, all live together) "
        f"time_scale={args.time_scale} wall={wall:.1f}s "
        f"snapshots_received={len(lags)}"
    )
    print(f"{'metric':44} | {'value':>10} | {'target':>10} | {'x baseline':>10}")
    print("-" * 84)
    print(f"{'delivery lag p50 (ms)':44} | {p50:10.0f} | {'':>10} | {'':>10}")
    print(f"{'delivery lag p95 (ms)':44} | {p95:10.0f} | {'<= 2000':>10} | {'':>10}")
    print(f"{'delivery lag p99 (ms)':44} | {p99:10.0f} | {'':>10} | {'':>10}")
    print(f"{'table polls/s with 0 clients':44} | {nobody:10.2f} | {'0':>10} | {'':>10}")
    print(f"{'table polls/s with 1 client (baseline)':44} | {idle:10.2f} | {'':>10} | {1.0:10.2f}")
    print(f"{'table polls/s with clients, during calls':44} | {busy:10.2f} | {'no growth':>10} | {busy / idle:10.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--time-scale", type=float, default=5.0)
    parser.add_argument("--seconds", type=float, default=20.0, help="how long the clients listen")
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument("--ramp", type=float, default=5.0, help="seconds over which the calls arrive")
    asyncio.run(main(parser.parse_args()))
