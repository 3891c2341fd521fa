"""Calls that never drop: figures with two session-host processes on one Azurite.

    .venv/bin/python -m bench.failover --calls 100

Every call runs the `tool_at_stop` scenario, whose two function calls wait at gates that the
benchmark opens at the very moment it stops a replica: every call has a function call in flight
then. The simulator is in its strictest mode: every event fans out to all attached sockets, and
events sent while no socket is attached are dropped, not held.

1. Rolling restart: SIGTERM A (gate 1 opens with it), start A; SIGTERM B (gate 2), start B.
2. SIGKILL of the owner with the standby on: takeover = from the kill to the answer of the
   function call in flight (p50/p95).
3. SIGKILL with STANDBY=false: the call is resumed from the store on a new socket; "heard again" =
   from the kill to the resumed session's first response.create (the caller hears the agent).
4. SIGTERM with one replica: no peer, every call is served to its end.
5. Accept held 1 s after the hand-off: a socket opened before it would be refused with 404.
6. Duplicate hand-offs: every call handed to both replicas at once; calls acted on twice must be 0.
Unanswered function calls, answers sent twice, calls cut (not ended by the caller's own hang-up)
and turns lost or doubled (stored transcript vs what the simulator played) are counted per row.
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

from bench.procs import NO_WEBHOOKS, serve_simulator, tell_accepted
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
TTL = "3"
TTL_S = float(TTL)
SCENARIO = "tool_at_stop"


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
        logs = os.environ.get("BENCH_LOG_DIR")  # keep each replica's log there (appended)
        out = open(f"{logs}/{self.name}.log", "ab") if logs else subprocess.DEVNULL  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "session_host"], cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT
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
    accept_after_s: float = 0.0,
) -> list[SimCall]:
    """Hand off and accept `n` calls: round-robin over `targets`, or to all of them at once."""
    settings = build_settings(Role.SESSION_HOST, env)
    scenario = load_scenario(SCENARIO)
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
        await asyncio.sleep(accept_after_s)
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
    """Stored turns of the call; a replica that just started may answer 503 for a moment."""
    last = ""
    for _ in range(50):
        async with http.get(f"{url}/api/calls/{call_id}/transcript") as resp:
            if resp.status == 200:
                return int((await resp.json())["count"])
            last = f"{resp.status} {(await resp.text())[:200]}"
        await asyncio.sleep(0.2)
    raise RuntimeError(f"transcript of {call_id} unreadable: {last}")


async def all_held(calls: list[SimCall], gate: int, *, standby: bool = False, timeout: float = 120) -> None:
    """Until every call's function call waits at `gate` (and, with `standby`, a second socket follows it)."""
    deadline = time.monotonic() + timeout
    while not all(f"tool_held_{gate}" in c.marks and (not standby or c.socket_opens >= 2) for c in calls):
        if time.monotonic() > deadline:
            raise TimeoutError(f"calls never all reached gate {gate}")
        await asyncio.sleep(0.05)


def open_gate(calls: list[SimCall], gate: int) -> None:
    for c in calls:
        c.gate(gate).set()


def takeover_s(calls: list[SimCall], stopped_ms: float) -> list[float]:
    """Per call: from the stop to the first answer of the function call in flight then (emitted
    within a second after the stop, when its gate opened)."""
    out = []
    for c in calls:
        answered = [
            c.output_times[fc]
            for fc, t in c.function_call_times.items()
            if stopped_ms <= t < stopped_ms + 1000 and fc in c.output_times
        ]
        if answered:
            out.append((min(answered) - stopped_ms) / 1000)
    return out


async def outcome(http: aiohttp.ClientSession, url: str, calls: list[SimCall]) -> dict[str, Any]:
    await asyncio.wait_for(asyncio.gather(*(c.ended.wait() for c in calls)), 300)
    await asyncio.sleep(3.0)  # final flushes
    lost = doubled = 0
    for c in calls:
        stored = await transcript_len(http, url, c.call_id)
        # The azure dialect gives no caller transcripts: only the assistant's turns can be stored.
        played = sum(1 for speaker, _ in c.transcript if speaker == "assistant")
        lost += max(0, played - stored)
        doubled += max(0, stored - played)
    return {
        "calls": len(calls),
        "kept": sum(1 for c in calls if c.end_reason == "caller hung up"),
        "fn_calls": sum(c.function_calls_emitted for c in calls),
        "unanswered": sum(c.function_calls_unanswered for c in calls),
        "answered_twice": sum(1 for c in calls for n in c.outputs_per_function_call.values() if n > 1),
        "turns_lost": lost,
        "turns_doubled": doubled,
        "greeted": sum(1 for c in calls if "greeting_requested" in c.marks),
        "early_sockets": sum(c.early_sockets for c in calls),
    }


async def scenario_rolling(
    sim: Simulator, http: aiohttp.ClientSession, env: dict[str, str], a: Replica, b: Replica, n: int
) -> dict[str, Any]:
    calls = await place(sim, http, env, [a.url, b.url], n, ramp=2.0)
    await all_held(calls, 1, standby=True)
    t0 = time.monotonic()
    stop_ms = now_ms()
    open_gate(calls, 1)
    rc_a = await a.stop(signal.SIGTERM)
    await a.start(http)
    await all_held(calls, 2)
    stop_b_ms = now_ms()
    open_gate(calls, 2)
    rc_b = await b.stop(signal.SIGTERM)
    await b.start(http)
    restart_s = time.monotonic() - t0
    out = await outcome(http, a.url, calls)
    waits = takeover_s(calls, stop_ms) + takeover_s(calls, stop_b_ms)
    out.update(restart_s=round(restart_s, 1), exit_codes=f"{rc_a},{rc_b}", answer_p95_s=percentile(waits, 95))
    return out


async def scenario_kill(
    sim: Simulator, http: aiohttp.ClientSession, env: dict[str, str], a: Replica, b: Replica, n: int, *, standby: bool
) -> dict[str, Any]:
    for r in (a, b):
        r.env["STANDBY"] = "true" if standby else "false"
        await r.stop(signal.SIGTERM)
        await r.start(http)
    calls = await place(sim, http, env, [a.url], n, ramp=2.0)
    await all_held(calls, 1, standby=standby)
    await a.stop(signal.SIGKILL)
    killed_ms = now_ms()
    open_gate(calls, 1)  # emitted after the owner died: only a standby can hear them
    await asyncio.sleep(TTL_S + 3)
    open_gate(calls, 2)
    out = await outcome(http, b.url, calls)
    waits = takeover_s(calls, killed_ms)
    heard = [
        (min(t for t in c.response_create_times if t > killed_ms) - killed_ms) / 1000
        for c in calls
        if any(t > killed_ms for t in c.response_create_times)
    ]
    out.update(
        resumed=sum(1 for c in calls if any(t > killed_ms for t in c.response_create_times) or c.output_times),
        takeover_p50_s=percentile(waits, 50),
        takeover_p95_s=percentile(waits, 95),
        heard_again_p95_s=percentile(heard, 95),
        sockets_per_call=round(sum(c.socket_opens for c in calls) / len(calls), 2),
    )
    await a.start(http)
    return out


async def scenario_single(
    sim: Simulator, http: aiohttp.ClientSession, env: dict[str, str], a: Replica, b: Replica, n: int
) -> dict[str, Any]:
    """One replica only (b stopped): SIGTERM while a function call is in flight on every call."""
    await b.stop(signal.SIGTERM)
    await a.stop(signal.SIGTERM)
    a.env["SHUTDOWN_GRACE_SECONDS"] = "120"  # longer than a call: nothing should need cutting
    await a.start(http)
    calls = await place(sim, http, env, [a.url], n, ramp=2.0)
    await all_held(calls, 1)
    t0 = time.monotonic()
    open_gate(calls, 1)
    stopping = asyncio.ensure_future(a.stop(signal.SIGTERM))
    await asyncio.sleep(0.5)
    open_gate(calls, 2)
    rc = await stopping
    stopped_s = time.monotonic() - t0
    await a.start(http)
    out = await outcome(http, a.url, calls)
    out.update(exit_code=rc, stop_s=round(stopped_s, 1))
    await b.start(http)
    return out


async def scenario_late_accept(
    sim: Simulator, http: aiohttp.ClientSession, env: dict[str, str], a: Replica, b: Replica, n: int
) -> dict[str, Any]:
    calls = await place(sim, http, env, [a.url, b.url], n, ramp=2.0, accept_after_s=1.0)
    for gate in (1, 2):
        await all_held(calls, gate)
        open_gate(calls, gate)
    return await outcome(http, a.url, calls)


async def scenario_duplicates(
    sim: Simulator, http: aiohttp.ClientSession, env: dict[str, str], a: Replica, b: Replica, n: int
) -> dict[str, Any]:
    calls = await place(sim, http, env, [a.url, b.url], n, ramp=2.0, duplicate=True)
    for gate in (1, 2):
        await all_held(calls, gate)
        open_gate(calls, gate)
    out = await outcome(http, a.url, calls)
    out.update(acted_twice=sum(1 for c in calls if c.acting_sockets > 1))
    return out


async def run_scenarios(
    sim: Simulator,
    http: aiohttp.ClientSession,
    env: dict[str, str],
    a: Replica,
    b: Replica,
    args: argparse.Namespace,
    results: dict[str, dict[str, Any]],
) -> None:
    n = args.calls
    plan: list[tuple[str, str, Any]] = [
        ("rolling", "rolling restart (SIGTERM), 2 replicas", lambda: scenario_rolling(sim, http, env, a, b, n)),
        ("kill", "SIGKILL owner, standby on", lambda: scenario_kill(sim, http, env, a, b, n, standby=True)),
        ("kill-nostandby", "SIGKILL owner, standby off", lambda: scenario_kill(sim, http, env, a, b, n, standby=False)),
        ("single", "SIGTERM, 1 replica", lambda: scenario_single(sim, http, env, a, b, max(1, n // 2))),
        ("late-accept", "socket 404 until the accept", lambda: scenario_late_accept(sim, http, env, a, b, n)),
        ("duplicates", "duplicate hand-offs", lambda: scenario_duplicates(sim, http, env, a, b, n)),
    ]
    for key, name, run in plan:
        if not args.only or key in args.only:
            results[name] = await run()
        for r in (a, b):
            r.env["STANDBY"] = "true"


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
        runner, sim = await serve_simulator(env, time_scale=args.time_scale, webhook_url=NO_WEBHOOKS)
        a, b = Replica(env, "replica-a"), Replica(env, "replica-b")
        try:
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
                await a.start(http)
                await b.start(http)
                await run_scenarios(sim, http, env, a, b, args, results)
                for r in (a, b):
                    await r.stop(signal.SIGTERM)
        finally:
            for r in (a, b):  # never leave a replica behind when a scenario fails
                if r.proc is not None and r.proc.poll() is None:
                    r.proc.kill()
            await runner.cleanup()
    finally:
        azurite.stop()
    print(
        f"{SCENARIO} scenario, time scale {args.time_scale}, lease TTL {TTL}s, 2 replicas unless named; "
        "strict simulator: events fan out to every socket and are dropped while none is attached"
    )
    keys_seen: list[str] = []
    for figures in results.values():
        keys_seen += [k for k in figures if k not in keys_seen]
    print("| scenario | " + " | ".join(keys_seen) + " |")
    print("|---|" + "---|" * len(keys_seen))
    for name, figures in results.items():
        cells = [figures.get(k, "") for k in keys_seen]
        print(f"| {name} | " + " | ".join(f"{v:.2f}" if isinstance(v, float) else str(v) for v in cells) + " |")
    print(
        "targets: SIGTERM rows kept=calls, unanswered=0, answered_twice=0, turns_lost=0; SIGKILL standby on: "
        f"kept=calls, takeover_p95_s<=1, unanswered=0, answered_twice=0; standby off: resumed=calls, "
        f"heard_again_p95_s<={TTL_S + 1:.0f}; 404 row: greeted=calls, early_sockets=0; duplicates: acted_twice=0"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--time-scale", type=float, default=2.0)
    parser.add_argument(
        "--only",
        nargs="*",
        default=[],
        help="rolling kill kill-nostandby single late-accept duplicates (default: all)",
    )
    asyncio.run(main(parser.parse_args()))
