"""`python -m simulator` serves the Realtime double (and places demo calls with --demo-calls);
`python -m simulator load --calls N --concurrency C --scenario S` places many calls against a
running system and prints a summary table."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal

import aiohttp
from aiohttp import web

from callplane.http_server import listen
from callplane.logs import setup_logging
from simulator.readiness import wait_healthy
from simulator.scenario import load_scenario, scenario_names
from simulator.server import SIM, SimConfig, create_app

log = logging.getLogger("simulator")


def config_from_env(args: argparse.Namespace) -> SimConfig:
    secret = os.environ.get("OPENAI_WEBHOOK_SECRET", "")
    if not secret.startswith("whsec_"):
        raise SystemExit("configuration error: OPENAI_WEBHOOK_SECRET: must be a whsec_ secret for signing")
    dialect = args.dialect or os.environ.get("REALTIME_DIALECT") or "openai"
    return SimConfig(
        webhook_url=args.webhook_url or os.environ.get("SIMULATOR_WEBHOOK_URL", "http://127.0.0.1:7071/openai/webhook"),
        webhook_secret=secret,
        api_key=os.environ.get("OPENAI_API_KEY", "sk-sim"),
        dialect=dialect,
        time_scale=args.time_scale,
    )


async def serve(args: argparse.Namespace) -> None:
    config = config_from_env(args)
    app = create_app(config)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=2)
    await runner.setup()
    port = args.port or int(os.environ.get("SIMULATOR_PORT", "8089"))
    await listen(runner, "127.0.0.1", port)
    log.info(
        "simulator (%s dialect) on http://127.0.0.1:%d; webhooks go to %s",
        config.dialect,
        port,
        config.webhook_url,
        extra={"cat": "SUCCESS"},
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if args.demo_calls:
        demo = asyncio.ensure_future(demo_calls(app, args, stop))
    await stop.wait()
    if args.demo_calls:
        demo.cancel()
    await runner.cleanup()


async def demo_calls(app: web.Application, args: argparse.Namespace, stop: asyncio.Event) -> None:
    sim = app[SIM]
    async with aiohttp.ClientSession() as http:
        # Wait until the webhook app answers, so the first demo call is not lost to start-up order.
        try:
            await wait_healthy(http, sim.config.webhook_url.split("/openai/")[0], timeout=20)
        except TimeoutError:
            log.warning("the webhook app is not answering; placing demo calls anyway")
    names = args.scenario.split(",")
    for i in range(args.demo_calls):
        if stop.is_set():
            return
        scenario = load_scenario(names[i % len(names)])
        call = sim.new_call(scenario)
        log.info("placing demo call %s (%s)", call.call_id, scenario.name, extra={"cat": "CALL"})
        sim.spawn(sim.place_call(call))
        await asyncio.sleep(args.demo_interval)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m simulator")
    sub = parser.add_subparsers(dest="command")
    parser.add_argument("--port", type=int, default=None)
    parser.add_argument("--webhook-url", default=None)
    parser.add_argument("--dialect", choices=["openai", "azure"], default=None)
    parser.add_argument("--time-scale", type=float, default=1.0)
    parser.add_argument("--demo-calls", type=int, default=0)
    parser.add_argument("--demo-interval", type=float, default=8.0)
    parser.add_argument("--scenario", default="standard", help="comma-separated: " + ", ".join(scenario_names()))
    load = sub.add_parser("load", help="place many calls and print a summary table")
    load.add_argument("--calls", type=int, default=10)
    load.add_argument("--concurrency", type=int, default=10)
    load.add_argument("--scenario", default="standard")
    load.add_argument("--time-scale", type=float, default=1.0)
    load.add_argument("--port", type=int, default=None)
    load.add_argument("--webhook-url", default=None)
    load.add_argument("--dialect", choices=["openai", "azure"], default=None)
    load.add_argument("--json", default=None, help="also write the summary and every call's measurements here")
    args = parser.parse_args()
    setup_logging(os.environ.get("LOG_FORMAT", "pretty"), os.environ.get("DEBUG_LOGGING") == "1")
    if os.environ.get("SIMULATOR_UVLOOP", "1") == "1":
        try:
            import uvloop

            uvloop.install()  # the double must never be a load test's bottleneck
        except ImportError:
            pass
    if args.command == "load":
        from simulator.load import run_load

        asyncio.run(run_load(args, config_from_env(args)))
    else:
        asyncio.run(serve(args))


if __name__ == "__main__":
    main()
