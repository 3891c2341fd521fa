"""Session host under load: N concurrent standard-scenario calls through the real session host.

    .venv/bin/python -m bench.session_host --calls 100 200 500 1000

For each N: a fresh session-host process on Azurite; the simulator (this process) accepts each
call and hands it to the host with a signed `POST /internal/calls`, as the Function App does.
Figures:
- overhead ratio: the host's CPU per server event / a bare aiohttp receive loop's CPU per event on
  the same kind of stream (bench/bare_client.py, same N, same scenario) — target <= 2;
- tool round trip p50/p95/p99 (simulator: function call sent -> output and response.create back)
  — target p99 <= 5 ms at 200 calls;
- event-loop lag p99 of the host (a 50 ms timer's lateness) — target <= 25 ms at 1,000 calls;
- RSS per call: (peak RSS - idle RSS) / N — target <= 150 KB at 1,000 calls.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench.procs import NO_WEBHOOKS, serve_simulator, tell_accepted, tune_harness_gc, usage
from callplane import signing
from callplane.clock import now_ms, percentile
from callplane.handoff import HandoffRequest
from callplane.session_config import accept_body
from callplane.settings import Role, build_settings
from simulator.azurite import free_port, start_azurite
from simulator.calls import SimCall
from simulator.readiness import wait_healthy
from simulator.scenario import load_scenario
from simulator.server import Simulator
from tests.stack import make_env

ROOT = Path(__file__).resolve().parent.parent


async def info(http: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    async with http.get(f"{url}/") as resp:
        return dict(await resp.json())


async def run_calls(
    sim: Simulator, http: aiohttp.ClientSession, env: dict[str, str], n: int, ramp: float, handoff_url: str | None
) -> list[SimCall]:
    settings = build_settings(Role.SESSION_HOST, env)
    scenario = load_scenario("standard")
    body = accept_body(settings)
    base = env["OPENAI_BASE"]
    calls: list[SimCall] = []

    async def one(i: int) -> None:
        await asyncio.sleep(ramp * i / n)
        call = sim.new_call(scenario)
        calls.append(call)
        call.mark("webhook_sent")
        async with http.post(
            f"{base}/v1/realtime/calls/{call.call_id}/accept", json=body, headers={"api-key": env["OPENAI_API_KEY"]}
        ) as resp:
            assert resp.status == 200, await resp.text()
        if handoff_url:
            req = HandoffRequest(
                callId=call.call_id, callerPhone=call.caller, webhookId=f"wh_{i}", receivedAt=now_ms()
            ).body()
            headers = {"content-type": "application/json", **signing.sign_headers(env["HANDOFF_SECRET"], req)}
            async with http.post(handoff_url, data=req, headers=headers) as resp:
                assert resp.status == 202, await resp.text()
            await tell_accepted(http, handoff_url.rsplit("/internal/calls", 1)[0], env["HANDOFF_SECRET"], call.call_id)

    await asyncio.gather(*(one(i) for i in range(n)))
    return calls


async def measure(n: int, conn: str, args: argparse.Namespace) -> dict[str, Any]:
    sim_port, host_port = free_port(), free_port()
    env = {
        **os.environ,
        **make_env(conn, sim_port=sim_port, fn_port=free_port(), host_port=host_port, dialect="azure"),
        "LOG_FORMAT": "json",
        "SHUTDOWN_GRACE_SECONDS": "1",
        "MAX_CALLS_PER_REPLICA": str(n + 10),
    }
    # The benchmark hands calls to the session hosts itself: no Function App, so webhooks go nowhere.
    runner, sim = await serve_simulator(env, time_scale=args.time_scale, webhook_url=NO_WEBHOOKS)
    profile = ["-m", "cProfile", "-o", os.environ["BENCH_PROFILE"]] if os.environ.get("BENCH_PROFILE") else []
    log = open(os.environ.get("BENCH_HOST_LOG", os.devnull), "wb")  # noqa: SIM115
    host = subprocess.Popen(
        [sys.executable, *profile, "-m", "session_host"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    host_url = f"http://127.0.0.1:{host_port}"
    out: dict[str, Any] = {"calls": n}
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
            await wait_healthy(http, host_url)
            await asyncio.sleep(1.0)
            before = await info(http, host_url)
            async with http.post(f"{host_url}/api/diagnostics/loop-lag/reset"):
                pass
            peak = before["process"]["rssBytes"]
            done = asyncio.Event()

            async def sample() -> None:
                # From /proc, not the host's API: a poll of the API four times a second was ~7%
                # of the host's CPU samples in a py-spy profile, charged to its events.
                nonlocal peak
                while not done.is_set():
                    peak = max(peak, usage([host.pid])[1])
                    await asyncio.sleep(0.25)

            sampler = asyncio.create_task(sample())
            t0 = time.perf_counter()
            calls = await run_calls(sim, http, env, n, args.ramp, f"{host_url}/internal/calls")
            await asyncio.wait_for(asyncio.gather(*(c.ended.wait() for c in calls)), timeout=300)
            wall = time.perf_counter() - t0
            done.set()
            await sampler
            after = await info(http, host_url)
            events = after["process"]["serverEvents"] - before["process"]["serverEvents"]
            cpu = after["process"]["cpuSeconds"] - before["process"]["cpuSeconds"]
            tools = [x for c in calls for x in c.tool_round_trips]
            out.update(
                wall_s=wall,
                events=events,
                host_cpu_s=cpu,
                host_us_per_event=1e6 * cpu / max(events, 1),
                loop_lag_p99_ms=after["process"]["loopLagP99Ms"],
                rss_idle=before["process"]["rssBytes"],
                rss_peak=peak,
                rss_per_call_kb=(peak - before["process"]["rssBytes"]) / n / 1024,
                tool_p50=percentile(tools, 50),
                tool_p95=percentile(tools, 95),
                tool_p99=percentile(tools, 99),
                completed=sum(1 for c in calls if c.end_reason == "caller hung up"),
                ends=dict(collections.Counter(c.end_reason for c in calls)),
                store={
                    k: after["store"][k] - before["store"][k]
                    for k in ("requests", "transactions", "entities", "failures", "flushes")
                },
            )
            # Baseline: the same number of calls, read by the bare loop instead of the host.
            bare_calls = await run_calls(sim, http, env, n, args.ramp, None)
            ws_base = env["REALTIME_WS_BASE"]
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bench.bare_client",
                ws_base,
                env["OPENAI_API_KEY"],
                *[c.call_id for c in bare_calls],
                cwd=ROOT,
                stdout=asyncio.subprocess.PIPE,
            )
            stdout, _ = await proc.communicate()
            bare = json.loads(stdout.decode().strip().splitlines()[-1])
            out["bare_us_per_event"] = 1e6 * bare["cpu"] / max(bare["events"], 1)
            out["overhead_ratio"] = out["host_us_per_event"] / out["bare_us_per_event"]
    finally:
        host.terminate()
        await asyncio.to_thread(host.wait, 30)
        log.close()
        await runner.cleanup()
    return out


async def main(args: argparse.Namespace) -> None:
    tune_harness_gc()
    azurite = start_azurite()
    rows = []
    try:
        for n in args.calls:
            rows.append(await measure(n, azurite.connection_string, args))
    finally:
        azurite.stop()
    print(f"scenario=standard time_scale={args.time_scale} ramp={args.ramp}s (all calls overlap)")
    head = (
        "calls",
        "done",
        "events",
        "host us/ev",
        "bare us/ev",
        "overhead x",
        "tool p50",
        "tool p95",
        "tool p99",
        "lag p99 ms",
        "RSS KB/call",
    )
    print(" | ".join(f"{h:>11}" for h in head))
    print("-" * (14 * len(head)))
    for r in rows:
        vals = (
            r["calls"],
            r["completed"],
            r["events"],
            r["host_us_per_event"],
            r["bare_us_per_event"],
            r["overhead_ratio"],
            r["tool_p50"],
            r["tool_p95"],
            r["tool_p99"],
            r["loop_lag_p99_ms"],
            r["rss_per_call_kb"],
        )
        print(" | ".join(f"{v:11.2f}" if isinstance(v, float) else f"{v!s:>11}" for v in vals))
    for r in rows:
        print(f"{r['calls']} calls: table requests {r['store']}; call ends {r['ends']}")
    print("targets: overhead x <= 2; tool p99 <= 5 ms at 200 calls; lag p99 <= 25 ms and <= 150 KB/call at 1000")


if __name__ == "__main__":
    import uvloop

    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, nargs="+", default=[100, 200, 500, 1000])
    parser.add_argument(
        "--time-scale", type=float, default=1.0, help="1 = real pacing: N calls are N real concurrent calls"
    )
    parser.add_argument("--ramp", type=float, default=3.0)
    uvloop.install()
    asyncio.run(main(parser.parse_args()))
