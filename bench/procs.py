"""The system under test as separate processes (as deployed): webhook app and session host run
from their entry points; the simulator runs in the benchmark's own process and drives them."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from callplane import gc_tuning
from callplane.http_server import listen
from simulator.azurite import free_port
from simulator.readiness import wait_healthy
from simulator.server import SIM, Simulator, create_app
from tests.stack import make_env, sim_config

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Deployed:
    sim: Simulator
    host_url: str
    env: dict[str, str]
    pids: list[int]  # the webhook app's and the session host's processes


NO_WEBHOOKS = "http://127.0.0.1:9/none"  # for benchmarks that hand calls to the hosts themselves
TICK = os.sysconf("SC_CLK_TCK")


def _tree(pid: int) -> list[int]:
    """`pid` and its descendants."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def usage(pids: list[int]) -> tuple[float, int]:
    """CPU seconds and RSS bytes of these processes and their descendants."""
    cpu, rss = 0.0, 0
    for root in pids:
        for pid in _tree(root):
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                cpu += (int(fields[11]) + int(fields[12])) / TICK
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        rss += int(line.split()[1]) * 1024
            except (OSError, IndexError, ValueError):
                continue
    return cpu, rss


def tune_harness_gc() -> None:
    """The harness (simulator, scripted callers) collects garbage the way the services do: with
    default settings its own full passes (up to ~380 ms with 1,000 callers) land in whichever
    system's round trips it is timing. Once, at the start of a benchmark."""
    gc_tuning.tune()


async def serve_simulator(env: dict[str, str], *, time_scale: float, **config: Any) -> tuple[web.AppRunner, Simulator]:
    """The simulator for a `make_env` stack, served on its SIMULATOR_PORT: (its runner, to clean
    up; the simulator). `config`: SimConfig fields, e.g. webhook_url or webhook_retries."""
    app = create_app(sim_config(env, time_scale=time_scale, **config))
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=2)
    await runner.setup()
    await listen(runner, "127.0.0.1", int(env["SIMULATOR_PORT"]))
    return runner, app[SIM]


@asynccontextmanager
async def deployed(
    conn: str,
    *,
    time_scale: float,
    dialect: str = "azure",
    prepare: Callable[[dict[str, str]], Awaitable[None]] | None = None,
    sim: dict[str, Any] | None = None,
    **extra: str,
) -> AsyncIterator[Deployed]:
    """The webhook app and session host as processes on `conn`, with a simulator (`sim`: more
    SimConfig fields) placing calls at them; `extra`: environment for the apps."""
    sim_port, fn_port, host_port = free_port(), free_port(), free_port()
    env = {
        **os.environ,
        **make_env(conn, sim_port=sim_port, fn_port=fn_port, host_port=host_port, dialect=dialect),
        "LOG_FORMAT": "json",
        "SHUTDOWN_GRACE_SECONDS": "2",
        **extra,
    }
    if prepare is not None:  # e.g. seed the tables before the apps start polling them
        await prepare(env)
    profiles = os.environ.get("BENCH_PROFILE_DIR")  # cProfile each app into that folder

    def command(module: str) -> list[str]:
        return [
            sys.executable,
            *(["-m", "cProfile", "-o", f"{profiles}/{module}.prof"] if profiles else []),
            "-m",
            module,
        ]

    logs = os.environ.get("BENCH_LOG_DIR")  # keep each app's log there

    def output(module: str) -> Any:
        return open(f"{logs}/{module}.log", "ab") if logs else subprocess.DEVNULL

    procs = [
        subprocess.Popen(command(m), cwd=ROOT, env=env, stdout=output(m), stderr=subprocess.STDOUT)
        for m in ("function_app", "session_host")
    ]
    runner, simulator = await serve_simulator(env, time_scale=time_scale, webhook_retries=1, **(sim or {}))
    host_url = f"http://127.0.0.1:{host_port}"
    try:
        async with aiohttp.ClientSession() as http:
            for port in (fn_port, host_port):
                await wait_healthy(http, f"http://127.0.0.1:{port}")
        yield Deployed(simulator, host_url, env, [p.pid for p in procs])
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            await asyncio.to_thread(proc.wait, 30)
        await runner.cleanup()


async def tell_accepted(http: aiohttp.ClientSession, host_url: str, handoff_secret: str, call_id: str) -> None:
    """What the Function App does after the accept: the owner opens its socket only then."""
    from callplane import signing
    from callplane.handoff import OUTCOME_PATH, AcceptOutcome

    body = AcceptOutcome(callId=call_id, accepted=True).body()
    headers = {"content-type": "application/json", **signing.sign_headers(handoff_secret, body)}
    async with http.post(host_url + OUTCOME_PATH.format(call_id=call_id), data=body, headers=headers) as resp:
        assert resp.status in (200, 202), await resp.text()
