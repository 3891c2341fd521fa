"""Simulator capacity: concurrent open call sockets and server events per second.

    .venv/bin/python -m bench.simulator_capacity --calls 2000 --time-scale 50

The simulator runs as its own process (as in a load test); this process is a bare client that
accepts each call, opens its control socket, answers the greeting and tool calls, and counts what
arrives. Targets (issue 4): >= 2,000 concurrent open sockets, >= 20,000 events/s. The baseline
ratio compares events/s with a bare aiohttp echo of the same message size measured in this run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
from aiohttp import web

from bench.bare_client import play_script
from callplane.signing import new_secret
from simulator.azurite import free_port

ROOT = Path(__file__).resolve().parent.parent
KEY = "sk-bench"


async def drive(
    http: aiohttp.ClientSession,
    base: str,
    scenario: str,
    opened: asyncio.Event,
    counts: dict[str, int],
    hold: asyncio.Event,
) -> None:
    async with http.post(f"{base}/sim/calls", json={"scenario": scenario, "deliver": False}) as resp:
        call_id = (await resp.json())["callId"]
    headers = {"Authorization": f"Bearer {KEY}"}
    async with http.post(
        f"{base}/v1/realtime/calls/{call_id}/accept",
        json={"type": "realtime", "model": "gpt-realtime"},
        headers=headers,
    ) as resp:
        assert resp.status == 200, await resp.text()
    async with http.ws_connect(
        f"{base.replace('http', 'ws')}/v1/realtime?call_id={call_id}", headers=headers, max_msg_size=0
    ) as ws:
        counts["open"] += 1
        if counts["open"] >= counts["target"]:
            opened.set()
        await hold.wait()  # every socket open at once before the conversation starts
        await ws.send_str('{"type":"response.create"}')
        await play_script(ws, counts)
    counts["open"] -= 1


async def echo_baseline(n_msgs: int, payload: str) -> float:
    """Messages/s of a bare aiohttp server sending `payload` to one client: the yardstick."""

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        for _ in range(n_msgs):
            await ws.send_str(payload)
        await ws.close()
        return ws

    app = web.Application()
    app.router.add_get("/", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    got = 0
    t0 = time.perf_counter()
    async with aiohttp.ClientSession() as http, http.ws_connect(f"ws://127.0.0.1:{port}/") as ws:
        async for _ in ws:
            got += 1
    rate = got / (time.perf_counter() - t0)
    await runner.cleanup()
    return rate


async def main(args: argparse.Namespace) -> None:
    port = free_port()
    env = {**os.environ, "OPENAI_WEBHOOK_SECRET": new_secret(), "OPENAI_API_KEY": KEY, "LOG_FORMAT": "json"}
    profile = os.environ.get("BENCH_PROFILE")  # a path: profile the simulator with cProfile
    prefix = ["-m", "cProfile", "-o", profile] if profile else []
    proc = subprocess.Popen(
        [
            sys.executable,
            *prefix,
            "-m",
            "simulator",
            "--port",
            str(port),
            "--time-scale",
            str(args.time_scale),
            "--webhook-url",
            "http://127.0.0.1:9/none",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        conn = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=conn) as http:
            for _ in range(100):
                try:
                    async with http.get(f"{base}/healthz"):
                        break
                except aiohttp.ClientError:
                    await asyncio.sleep(0.1)
            counts = {"open": 0, "events": 0, "target": args.calls}
            opened, hold = asyncio.Event(), asyncio.Event()
            t_open = time.perf_counter()
            sem = asyncio.Semaphore(200)  # connection set-up in waves; the sockets then stay open

            async def one() -> None:
                async with sem:
                    pass
                await drive(http, base, args.scenario, opened, counts, hold)

            tasks = [asyncio.create_task(one()) for _ in range(args.calls)]
            await asyncio.wait_for(opened.wait(), timeout=300)
            open_s = time.perf_counter() - t_open
            async with http.get(f"{base}/sim/totals") as resp:
                server_open = (await resp.json())["openSockets"]
            t0 = time.perf_counter()
            hold.set()
            await asyncio.gather(*tasks)
            wall = time.perf_counter() - t0
            async with http.get(f"{base}/sim/totals") as resp:
                totals = await resp.json()
        client_cpu = time.process_time()
    finally:
        proc.terminate()
        _, _, usage = os.wait4(proc.pid, 0)
    sim_cpu = usage.ru_utime + usage.ru_stime
    rate = totals["eventsSent"] / wall
    baseline = await echo_baseline(
        50_000,
        json.dumps(
            {
                "type": "response.output_audio_transcript.delta",
                "event_id": "event_00000001",
                "response_id": "resp_x" * 3,
                "item_id": "item_x" * 3,
                "output_index": 0,
                "content_index": 0,
                "delta": "Hello, how c",
            }
        ),
    )
    print(f"scenario={args.scenario} calls={args.calls} time_scale={args.time_scale}")
    print(f"{'metric':44} | {'value':>12} | {'target':>10} | {'x baseline':>10}")
    print("-" * 86)
    print(f"{'concurrent open sockets (simulator side)':44} | {server_open:12d} | {'>= 2000':>10} | {'':>10}")
    print(f"{'time to open them all (s)':44} | {open_s:12.2f} | {'':>10} | {'':>10}")
    print(f"{'events sent by the simulator':44} | {totals['eventsSent']:12d} | {'':>10} | {'':>10}")
    print(f"{'events received by the client':44} | {counts['events']:12d} | {'':>10} | {'':>10}")
    print(f"{'events/s (simulator, whole run)':44} | {rate:12.0f} | {'>= 20000':>10} | {rate / baseline:10.2f}")
    print(
        f"{'simulator CPU busy during the run (%)':44} | {100 * sim_cpu / (wall + open_s):12.0f} | {'':>10} | {'':>10}"
    )
    print(f"{'client CPU (s) / simulator CPU (s)':44} | {client_cpu:6.1f}/{sim_cpu:5.1f} | {'':>10} | {'':>10}")
    print(f"{'baseline: bare aiohttp send loop msgs/s':44} | {baseline:12.0f} | {'':>10} | {1.0:10.2f}")


if __name__ == "__main__":
    import uvloop

    uvloop.install()
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--scenario", default="standard")
    parser.add_argument("--time-scale", type=float, default=50.0)
    asyncio.run(main(parser.parse_args()))
