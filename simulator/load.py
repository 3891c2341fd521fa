"""Load mode: serve the simulator, place many scripted calls against the running system, wait
for them to end and print what the system did, as a table (and JSON with --json)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from callplane.clock import percentile
from callplane.http_server import listen
from simulator.calls import SimCall
from simulator.scenario import load_scenario
from simulator.server import SIM, SimConfig, Simulator, create_app


def summarize(calls: list[SimCall], wall_s: float) -> dict[str, Any]:
    def spans(key: str) -> list[float]:
        return [v for c in calls if (v := c.summary()[key]) is not None]

    tools = [x for c in calls for x in c.tool_round_trips]
    states: dict[str, int] = {}
    for c in calls:
        states[c.end_reason or c.state.value] = states.get(c.end_reason or c.state.value, 0) + 1
    accept = spans("webhookToAcceptMs")
    greet = spans("webhookToGreetingRequestMs")
    events = sum(c.events_sent for c in calls)
    return {
        "calls": len(calls),
        "outcomes": states,
        "wall_s": round(wall_s, 2),
        "events_sent": events,
        "events_per_s": round(events / wall_s, 1) if wall_s else None,
        "webhook_to_accept_ms": {"p50": percentile(accept, 50), "p95": percentile(accept, 95)},
        "webhook_to_greeting_ms": {"p50": percentile(greet, 50), "p95": percentile(greet, 95)},
        "tool_round_trip_ms": {
            "n": len(tools),
            "p50": percentile(tools, 50),
            "p95": percentile(tools, 95),
            "p99": percentile(tools, 99),
        },
    }


def table(summary: dict[str, Any]) -> str:
    def fmt(v: Any) -> str:
        return "-" if v is None else f"{v:.2f}" if isinstance(v, float) else str(v)

    rows = [
        ("calls", summary["calls"]),
        ("wall time (s)", summary["wall_s"]),
        ("outcomes", ", ".join(f"{k}: {v}" for k, v in summary["outcomes"].items())),
        ("events sent", summary["events_sent"]),
        ("events/s", summary["events_per_s"]),
    ]
    for key in ("webhook_to_accept_ms", "webhook_to_greeting_ms", "tool_round_trip_ms"):
        for q, v in summary[key].items():
            rows.append((f"{key} {q}", v))
    width = max(len(k) for k, _ in rows)
    lines = [f"{'metric'.ljust(width)} | value", f"{'-' * width}-+-{'-' * 20}"]
    lines += [f"{k.ljust(width)} | {fmt(v)}" for k, v in rows]
    return "\n".join(lines)


async def place_and_wait(
    sim: Simulator, scenario_name: str, n: int, concurrency: int, timeout_s: float = 600, ramp_s: float = 0.0
) -> tuple[list[SimCall], float]:
    """Place `n` calls, at most `concurrency` live at once, arrivals spread evenly over `ramp_s`."""
    scenario = load_scenario(scenario_name)
    sem = asyncio.Semaphore(concurrency)
    calls: list[SimCall] = []

    async def one(i: int) -> None:
        await asyncio.sleep(ramp_s * i / max(n, 1))
        async with sem:
            call = sim.new_call(scenario)
            calls.append(call)
            await sim.place_call(call)
            try:
                await asyncio.wait_for(call.ended.wait(), timeout=timeout_s)
            except TimeoutError:
                call.end_reason = "load timeout"

    start = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    return calls, time.perf_counter() - start


async def run_load(args: argparse.Namespace, config: SimConfig) -> None:
    config.time_scale = args.time_scale
    app = create_app(config)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = args.port or int(os.environ.get("SIMULATOR_PORT", "8089"))
    await listen(runner, "127.0.0.1", port)
    try:
        calls, wall = await place_and_wait(app[SIM], args.scenario, args.calls, args.concurrency)
        summary = summarize(calls, wall)
        print(table(summary))
        if args.json:
            doc = json.dumps({"summary": summary, "calls": [c.summary() for c in calls]}, indent=1)
            await asyncio.to_thread(Path(args.json).write_text, doc, encoding="utf-8")
    finally:
        await runner.cleanup()
