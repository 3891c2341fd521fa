"""Calls that never drop: figures with two session-host processes on one Azurite.

    .venv/bin/python -m bench.failover --calls 100

1. Rolling restart during N live standard-scenario calls: SIGTERM replica A, start it again, then
   the same for B. Calls cut (not ended by the caller's own hang-up) and turns lost or doubled
   (stored transcript vs what the simulator played) must both be 0.
2. SIGKILL of one replica during N live calls: time until each of its calls has a new control
   socket from the peer (p50/p95; target p95 <= 5 s) and how many ended normally. Turns the dead
   replica had not flushed yet, and those spoken while no replica listened, are lost by design
   (write-behind); they are counted, not hidden.
3. Duplicate hand-offs: every call handed to both replicas at once; calls run twice must be 0.
The simulator in this process stands in for the Realtime service and, like the Function App,
accepts each call and hands it off.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from bench.procs import tell_accepted
from callplane import signing
from callplane.clock import now_ms, percentile
from callplane.handoff import HandoffRequest
from callplane.session_config import accept_body
from callplane.settings import Role, build_settings
from simulator.azurite import free_port, start_azurite
from simulator.calls import SimCall
from simulator.readiness import wait_healthy
from simulator.scenario import load_scenario
from simulator.server import SIM, Simulator, create_app
from tests.stack import make_env, sim_config

ROOT = Path(__file__).resolve().parent.parent
TTL = "3"


class Replica:
    def __init__(self, env: dict[str, str], name: str) -> None:
        self.port = free_port()
        self.env = {
            **env,
            "PORT": str(self.port),
            "LEASE_TTL_SECONDS": TTL,
            "SHUTDOWN_GRACE_SECONDS": "30",
            "CONTAINER_APP_REPLICA_NAME": name,
        }
        self.name = name
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    async def start(self, http: aiohttp.ClientSession) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "session_host"],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        await wait_healthy(http, self.url, timeout=20)

    async def stop(self, sig: int) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        return await asyncio.to_thread(self.proc.wait, 60)


async def place(
    sim: Simulator,
    http: aiohttp.ClientSession,
    env: dict[str, str],
    targets: list[str],
    n: int,
    ramp: float,
    *,
    duplicate: bool = False,
) -> list[SimCall]:
    """Accept and hand off `n` calls: round-robin over `targets`, or to all of them at once."""
    settings = build_settings(Role.SESSION_HOST, env)
    scenario = load_scenario("standard")
    body = accept_body(settings)
    calls: list[SimCall] = []

    async def hand(url: str, call: SimCall, i: int) -> int:
        req = HandoffRequest(
            callId=call.call_id, callerPhone=call.caller, webhookId=f"wh_{i}", receivedAt=now_ms()
        ).body()
        headers = {"content-type": "application/json", **signing.sign_headers(env["HANDOFF_SECRET"], req)}
        async with http.post(f"{url}/internal/calls", data=req, headers=headers) as resp:
            return resp.status

    async def one(i: int) -> None:
        await asyncio.sleep(ramp * i / n)
        call = sim.new_call(scenario)
        calls.append(call)
        call.mark("webhook_sent")
        urls = targets if duplicate else [targets[i % len(targets)]]
        statuses = await asyncio.gather(*(hand(u, call, i) for u in urls))
        assert any(s == 202 for s in statuses), statuses
        async with http.post(
            f"{env['OPENAI_BASE']}/v1/realtime/calls/{call.call_id}/accept",
            json=body,
            headers={"api-key": env["OPENAI_API_KEY"]},
        ) as resp:
            assert resp.status == 200, await resp.text()
        for url in urls:
            await tell_accepted(http, url, env["HANDOFF_SECRET"], call.call_id)

    await asyncio.gather(*(one(i) for i in range(n)))
    return calls


async def transcript_len(http: aiohttp.ClientSession, url: str, call_id: str) -> int:
    async with http.get(f"{url}/api/calls/{call_id}/transcript") as resp:
        return int((await resp.json())["count"]) if resp.status == 200 else -1


async def outcome(http: aiohttp.ClientSession, url: str, calls: list[SimCall]) -> dict[str, int]:
    await asyncio.sleep(3.0)  # final flushes
    cut = sum(1 for c in calls if c.end_reason != "caller hung up")
    lost = doubled = twice = 0
    for c in calls:
        stored = await transcript_len(http, url, c.call_id)
        # The azure dialect gives no caller transcripts: only the assistant's turns can be stored.
        played = sum(1 for speaker, _ in c.transcript if speaker == "assistant")
        lost += max(0, played - stored)
        doubled += max(0, stored - played)
        twice += len(c.tool_outputs) > 2 or len(c.tool_round_trips) > 2
    unanswered = sum(c.function_calls_unanswered for c in calls)
    answered_twice = sum(1 for c in calls for n in c.outputs_per_function_call.values() if n > 1)
    return {
        "cut": cut,
        "turns_lost": lost,
        "turns_doubled": doubled,
        "tools_twice": twice,
        "fn_calls": sum(c.function_calls_emitted for c in calls),
        "unanswered": unanswered,
        "answered_twice": answered_twice,
        "greeted": sum(1 for c in calls if "greeting_requested" in c.marks),
        "early_sockets": sum(c.early_sockets for c in calls),
    }


async def scenario_rolling(
    sim: Simulator, http: aiohttp.ClientSession, env: dict[str, str], a: Replica, b: Replica, n: int
) -> dict[str, Any]:
    calls = await place(sim, http, env, [a.url, b.url], n, ramp=2.0)
    await asyncio.sleep(3.0)
    t0 = time.monotonic()
    rc_a = await a.stop(signal.SIGTERM)
    await a.start(http)
    rc_b = await b.stop(signal.SIGTERM)
    await b.start(http)
    restart_s = time.monotonic() - t0
    await asyncio.wait_for(asyncio.gather(*(c.ended.wait() for c in calls)), 300)
    out = await outcome(http, a.url, calls)
    out.update(
        calls=n,
        restart_s=round(restart_s, 1),
        exit_codes=f"{rc_a},{rc_b}",
        resumed=sum(1 for c in calls if c.socket_opens >= 2),
    )
    return out


async def scenario_kill(
    sim: Simulator, http: aiohttp.ClientSession, env: dict[str, str], a: Replica, b: Replica, n: int
) -> dict[str, Any]:
    calls = await place(sim, http, env, [a.url], n, ramp=2.0)
    await asyncio.sleep(3.0)
    killed_ms = now_ms()
    await a.stop(signal.SIGKILL)
    await asyncio.wait_for(asyncio.gather(*(c.ended.wait() for c in calls)), 300)
    # Each call's own resume time: its second socket's attach, from the simulator's record.
    waits = [(c.socket_open_times[1] - killed_ms) / 1000 for c in calls if len(c.socket_open_times) >= 2]
    await a.start(http)
    out = await outcome(http, b.url, calls)
    out.update(calls=n, resumed=len(waits), resume_p50_s=percentile(waits, 50), resume_p95_s=percentile(waits, 95))
    return out


async def scenario_single(
    sim: Simulator, http: aiohttp.ClientSession, env: dict[str, str], a: Replica, b: Replica, n: int
) -> dict[str, Any]:
    """One replica only (b stopped): SIGTERM while its calls use tools; no peer to hand to."""
    await b.stop(signal.SIGTERM)
    await a.stop(signal.SIGTERM)
    a.env["SHUTDOWN_GRACE_SECONDS"] = "120"  # longer than a call: nothing should need cutting
    await a.start(http)
    calls = await place(sim, http, env, [a.url], n, ramp=2.0)
    await asyncio.sleep(3.0)
    t0 = time.monotonic()
    rc = await a.stop(signal.SIGTERM)
    stopped_s = time.monotonic() - t0
    await asyncio.wait_for(asyncio.gather(*(c.ended.wait() for c in calls)), 300)
    await a.start(http)
    out = await outcome(http, a.url, calls)
    out.update(
        calls=n,
        completed=sum(1 for c in calls if c.end_reason == "caller hung up"),
        exit_code=rc,
        stop_s=round(stopped_s, 1),
    )
    await b.start(http)
    return out


async def scenario_duplicates(
    sim: Simulator, http: aiohttp.ClientSession, env: dict[str, str], a: Replica, b: Replica, n: int
) -> dict[str, Any]:
    calls = await place(sim, http, env, [a.url, b.url], n, ramp=2.0, duplicate=True)
    await asyncio.wait_for(asyncio.gather(*(c.ended.wait() for c in calls)), 300)
    out = await outcome(http, a.url, calls)
    out.update(calls=n, run_twice=sum(1 for c in calls if c.socket_opens > 1) + out["tools_twice"])
    return out


async def main(args: argparse.Namespace) -> None:
    azurite = start_azurite()
    results: dict[str, dict[str, Any]] = {}
    try:
        sim_port = free_port()
        env = {
            **os.environ,
            **make_env(
                azurite.connection_string,
                sim_port=sim_port,
                fn_port=free_port(),
                host_port=free_port(),
                dialect="azure",
            ),
            "LOG_FORMAT": "json",
        }
        # The benchmark hands calls to the session hosts itself: no Function App, so webhooks go nowhere.
        sim_app = create_app(sim_config(env, time_scale=args.time_scale, webhook_url="http://127.0.0.1:9/none"))
        runner = web.AppRunner(sim_app, access_log=None, shutdown_timeout=2)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", sim_port).start()
        sim = sim_app[SIM]
        a, b = Replica(env, "replica-a"), Replica(env, "replica-b")
        try:
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
                await a.start(http)
                await b.start(http)
                results["rolling restart"] = await scenario_rolling(sim, http, env, a, b, args.calls)
                results["SIGKILL one replica"] = await scenario_kill(sim, http, env, a, b, args.calls)
                results["duplicate hand-offs"] = await scenario_duplicates(sim, http, env, a, b, args.calls)
                single = max(1, args.calls // 2)
                results["SIGTERM, 1 replica"] = await scenario_single(sim, http, env, a, b, single)
                for r in (a, b):
                    await r.stop(signal.SIGTERM)
        finally:
            for r in (a, b):  # never leave a replica behind when a scenario fails
                if r.proc is not None and r.proc.poll() is None:
                    r.proc.kill()
            await runner.cleanup()
    finally:
        azurite.stop()
    print(f"standard scenario, time scale {args.time_scale}, lease TTL {TTL}s, 2 replicas, {args.calls} calls each")
    for name, figures in results.items():
        print(
            f"{name:22} | "
            + " | ".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in figures.items())
        )
    print(
        "targets: rolling restart cut=0, turns lost/doubled=0, unanswered=0, answered_twice=0; SIGKILL resume_p95_s "
        "<= 5; duplicates run_twice=0; SIGTERM with 1 replica: completed=calls, unanswered=0; every call greeted "
        "with early_sockets=0 (the simulator refuses a socket before the accept with 404)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--time-scale", type=float, default=2.0)
    asyncio.run(main(parser.parse_args()))
