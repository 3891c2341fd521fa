"""The whole system in one event loop, on real sockets: simulator, the webhook app (through the
same aiohttp adapter `python -m function_app` uses), the session host, on one Azurite."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web

from callplane.http_server import JsonErrorRunner
from callplane.settings import Role, Settings, build_settings
from callplane.signing import new_secret
from callplane.telemetry import Telemetry
from function_app.__main__ import build_app as build_function_app
from session_host.app import create_app as create_session_host
from session_host.session import SessionOptions
from simulator.azurite import free_port
from simulator.server import SIM, SimConfig, Simulator, client_urls
from simulator.server import create_app as create_simulator


@dataclass
class Stack:
    sim: Simulator
    sim_url: str
    webhook_url: str
    host_url: str
    settings: Settings
    http: aiohttp.ClientSession
    host_app: web.Application

    async def place(self, scenario: str = "greeting_only", **body: Any) -> str:
        async with self.http.post(f"{self.sim_url}/sim/calls", json={"scenario": scenario, **body}) as resp:
            assert resp.status == 201, await resp.text()
            return str((await resp.json())["callId"])

    async def wait_ended(self, call_id: str, timeout: float = 30) -> dict[str, Any]:
        call = self.sim.calls[call_id]
        await asyncio.wait_for(call.ended.wait(), timeout)
        return call.summary()

    async def api(self, path: str, status: int = 200, **kw: Any) -> Any:
        async with self.http.get(f"{self.host_url}{path}", **kw) as resp:
            assert resp.status == status, (resp.status, await resp.text())
            return await resp.json()

    async def wait_stats(self, settled: Callable[[dict[str, Any]], bool], timeout: float = 10) -> dict[str, Any]:
        """Poll /api/stats until `settled` holds (the rollup is written behind the call record,
        so a call can be listed final a flush before its counts land); the last answer either way."""
        deadline = time.monotonic() + timeout
        while True:
            stats: dict[str, Any] = await self.api("/api/stats")
            if settled(stats) or time.monotonic() > deadline:
                return stats
            await asyncio.sleep(0.1)

    async def webhook_has_profile(self, name: str, version: int, number: str | None = None) -> None:
        """Wait until the webhook app's profile cache (it looks at the store when a call comes in
        and its last look is a second old) has `name` at `version` (and the route for `number`)."""
        from function_app import runtime

        deadline = time.monotonic() + 10
        while True:
            deps = runtime._holder.deps
            cache = deps.profiles if deps is not None else None
            if cache is not None:
                await cache.current()
            stored = cache.profiles.get(name) if cache is not None else None
            if stored is not None and stored.version == version and (number is None or number in cache.routes):
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"the webhook app never saw profile {name} v{version}")
            await asyncio.sleep(0.05)

    async def wait_call(self, call_id: str, *, final: bool = True, timeout: float = 20) -> dict[str, Any]:
        """Poll the admin API until the call is stored (and final, if asked)."""
        deadline = time.monotonic() + timeout
        while True:
            async with self.http.get(f"{self.host_url}/api/calls/{call_id}") as resp:
                if resp.status == 200:
                    doc: dict[str, Any] = await resp.json()
                    if not final or doc["status"] != "active":
                        return doc
            if time.monotonic() > deadline:
                raise AssertionError(f"call {call_id} not stored{' as final' if final else ''} in {timeout}s")
            await asyncio.sleep(0.1)


def dead_store(conn: str) -> str:
    """`conn` pointed at a port where nothing listens: a store that cannot be reached."""
    return (
        conn.split("TableEndpoint=", maxsplit=1)[0] + f"TableEndpoint=http://127.0.0.1:{free_port()}/devstoreaccount1;"
    )


def make_env(
    conn: str, *, sim_port: int, fn_port: int, host_port: int, dialect: str, **overrides: str
) -> dict[str, str]:
    base, ws = client_urls(sim_port, dialect)
    env = {
        "OPENAI_API_KEY": "sk-test-" + uuid.uuid4().hex[:8],
        "OPENAI_WEBHOOK_SECRET": new_secret(),
        "HANDOFF_SECRET": new_secret(),
        "OPENAI_BASE": base,
        "REALTIME_WS_BASE": ws,
        "REALTIME_DIALECT": dialect,
        "SESSION_HOST_URL": f"http://127.0.0.1:{host_port}",
        "STORAGE_CONNECTION_STRING": conn,
        "PORT": str(host_port),
        "FUNCTIONS_PORT": str(fn_port),
        "SIMULATOR_PORT": str(sim_port),
        "TABLE_PREFIX": "t" + uuid.uuid4().hex[:10],
    }
    env.update(overrides)
    return env


def sim_config(env: dict[str, str], *, time_scale: float, webhook_url: str | None = None, **extra: Any) -> SimConfig:
    """The simulator's settings for a stack built by make_env: the same secrets and dialect, and its
    webhooks sent to that stack's Function App unless webhook_url names another place."""
    return SimConfig(
        webhook_url=webhook_url or f"http://127.0.0.1:{env['FUNCTIONS_PORT']}/openai/webhook",
        webhook_secret=env["OPENAI_WEBHOOK_SECRET"],
        api_key=env["OPENAI_API_KEY"],
        dialect=env["REALTIME_DIALECT"],
        time_scale=time_scale,
        **extra,
    )


@asynccontextmanager
async def second_replica(stack: Stack) -> AsyncIterator[tuple[web.Application, str]]:
    """Another session host replica on the same store and settings: (its app, its URL)."""
    other = create_session_host(stack.settings)
    port = free_port()
    runner = JsonErrorRunner(other, access_log=None, shutdown_timeout=2)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield other, f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@asynccontextmanager
async def run_stack(
    conn: str,
    *,
    dialect: str = "openai",
    time_scale: float = 20.0,
    options: SessionOptions | None = None,
    telemetry: Telemetry | None = None,
    pre_accept_status: int = 404,
    **overrides: str,
) -> AsyncIterator[Stack]:
    sim_port, fn_port, host_port = free_port(), free_port(), free_port()
    env = make_env(conn, sim_port=sim_port, fn_port=fn_port, host_port=host_port, dialect=dialect, **overrides)
    fn_settings = build_settings(Role.FUNCTION_APP, env)
    host_settings = build_settings(Role.SESSION_HOST, env)
    sim_app = create_simulator(
        sim_config(env, time_scale=time_scale, webhook_retries=1, pre_accept_status=pre_accept_status)
    )
    host_app = create_session_host(
        host_settings,
        options or SessionOptions(reconnect_base_s=0.05, silence_timeout_s=60, wrap_up_s=1.0),
        telemetry=telemetry,
    )
    runners: list[web.AppRunner] = []
    try:
        for app, port in (
            (sim_app, sim_port),
            (build_function_app(fn_settings, telemetry), fn_port),
            (host_app, host_port),
        ):
            runner = JsonErrorRunner(app, access_log=None, shutdown_timeout=2)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", port).start()
            runners.append(runner)
        async with aiohttp.ClientSession() as http:
            yield Stack(
                sim_app[SIM],
                f"http://127.0.0.1:{sim_port}",
                f"http://127.0.0.1:{fn_port}/openai/webhook",
                f"http://127.0.0.1:{host_port}",
                host_settings,
                http,
                host_app,
            )
    finally:
        for runner in reversed(runners):
            await runner.cleanup()
