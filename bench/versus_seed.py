"""This project against the original implementation, side by side, in one run.

    .venv/bin/python -m bench.versus_seed --calls 1 200 1000

For each N, the same N `versus`-scenario calls (greeting, two tool turns with tools and arguments
both implementations take, goodbye; all arriving at once) are placed by this project's simulator, first against the original service (started with
`../shared/seed/run-seed.sh`: its unmodified source under Bun), then against this project (its
webhook app and session host processes, on Azurite). Both get the OpenAI dialect (Bearer auth).
Per N: calls served, webhook -> accept and webhook -> greeting request p50/p95, tool round trip
p50/p99 (function call sent -> output and response.create back), CPU ms per call of the system's
own processes (Azurite, the simulator and this harness are not counted) and RSS growth per call
(peak minus idle, summed over those processes), each with its ratio to the original.
Then, with MAX_CALLS_PER_REPLICA=100 and 200 calls at once: how fast the 100 extra calls are
refused busy (webhook -> SIP rejection), and how the 100 admitted ones fare.

`--repeat K` runs each N K times in pairs (the original, then this project, so both see the
machine as it is then) and the overload row K times: the tables show medians, and the range of
the K pairs' ratios, since one run's ratio moves by a tenth or more from run to run here.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
from pathlib import Path
from typing import Any

import aiohttp

from bench.procs import deployed, serve_simulator, tune_harness_gc, usage
from callplane.clock import percentile
from simulator.azurite import free_port, start_azurite
from simulator.calls import SimCall
from simulator.load import place_and_wait
from simulator.readiness import wait_healthy
from simulator.server import Simulator
from tests.stack import make_env

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT.parent / "shared" / "seed" / "run-seed.sh"
SCENARIO = "versus"  # tools and arguments both implementations take


async def measured(sim: Simulator, pids: list[int], n: int, timeout_s: float) -> dict[str, Any]:
    await asyncio.sleep(1.0)  # settle: idle figures
    cpu0, rss0 = usage(pids)
    peak = rss0
    done = asyncio.Event()

    async def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, usage(pids)[1])
            await asyncio.sleep(0.25)

    sampler = asyncio.create_task(sample())
    calls, wall = await place_and_wait(sim, SCENARIO, n, n, timeout_s)
    done.set()
    await sampler
    await asyncio.sleep(1.0)  # the last writes after the calls end are part of the cost
    cpu1, _ = usage(pids)
    return figures(calls, wall, (cpu1 - cpu0) * 1000 / n, (peak - rss0) / n)


def figures(calls: list[SimCall], wall: float, cpu_ms: float, rss_per_call: float) -> dict[str, Any]:
    def spans(key: str) -> list[float]:
        return [v for c in calls if (v := c.summary()[key]) is not None]

    accept, greet = spans("webhookToAcceptMs"), spans("webhookToGreetingRequestMs")
    tools = [x for c in calls for x in c.tool_round_trips]
    return {
        "served": sum(1 for c in calls if c.end_reason == "caller hung up" and len(c.tool_round_trips) == 2),
        "calls": len(calls),
        "wall_s": wall,
        "accept_p50": percentile(accept, 50),
        "accept_p95": percentile(accept, 95),
        "greet_p50": percentile(greet, 50),
        "greet_p95": percentile(greet, 95),
        "tool_p50": percentile(tools, 50),
        "tool_p99": percentile(tools, 99),
        "cpu_ms_per_call": cpu_ms,
        "rss_kb_per_call": rss_per_call / 1024,
    }


async def run_seed(conn: str, n: int, args: argparse.Namespace) -> dict[str, Any]:
    sim_port, port = free_port(), free_port()
    env = make_env(conn, sim_port=sim_port, fn_port=free_port(), host_port=free_port(), dialect="openai")
    runner, sim = await serve_simulator(
        env,
        time_scale=args.time_scale,
        webhook_url=f"http://127.0.0.1:{port}/openai/webhook",
        webhook_retries=1,
        webhook_connections=args.webhook_connections,
    )
    proc = subprocess.Popen(
        ["bash", str(SEED), str(port), env["OPENAI_BASE"], env["OPENAI_WEBHOOK_SECRET"]],
        env={**os.environ, "OPENAI_API_KEY": env["OPENAI_API_KEY"]},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        async with aiohttp.ClientSession() as http:
            await wait_healthy(http, f"http://127.0.0.1:{port}", timeout=300)  # first use installs Bun
        return await measured(sim, [proc.pid], n, args.timeout)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        await asyncio.to_thread(proc.wait, 30)
        await runner.cleanup()


async def run_ours(conn: str, n: int, args: argparse.Namespace, **extra: str) -> dict[str, Any]:
    async with deployed(
        conn,
        time_scale=args.time_scale,
        dialect="openai",
        sim={"webhook_connections": args.webhook_connections},
        MAX_CALLS_PER_REPLICA=str(max(n, 1)),
        **extra,
    ) as sut:
        return await measured(sut.sim, sut.pids, n, args.timeout)


async def run_overload(conn: str, args: argparse.Namespace) -> dict[str, Any]:
    """200 calls at once on a replica that takes 100: the extra ones must be refused in < 100 ms."""
    async with deployed(
        conn,
        time_scale=args.time_scale,
        dialect="openai",
        sim={"webhook_connections": args.webhook_connections},
        MAX_CALLS_PER_REPLICA="100",
    ) as sut:
        await asyncio.sleep(1.0)
        calls, wall = await place_and_wait(sut.sim, SCENARIO, 200, 200, args.timeout)
    refused = [c for c in calls if c.rejected_with is not None]
    refuse_ms = [c.marks["ended"] - c.marks["webhook_sent"] for c in refused if "ended" in c.marks]
    admitted = figures([c for c in calls if c.rejected_with is None], wall, 0.0, 0.0)
    return {
        "refused": len(refused),
        "refused_486": sum(1 for c in refused if c.rejected_with == 486),
        "refuse_p50_ms": percentile(refuse_ms, 50),
        "refuse_p95_ms": percentile(refuse_ms, 95),
        "refuse_max_ms": max(refuse_ms) if refuse_ms else None,
        "admitted_served": admitted["served"],
        "admitted_greet_p95": admitted["greet_p95"],
    }


def fmt(v: Any) -> str:
    if v is None:
        return "-"
    return f"{v:,.1f}" if isinstance(v, float) else str(v)


ROWS = [
    ("calls served", "served", None),
    ("webhook -> accept p50 (ms)", "accept_p50", "lower"),
    ("webhook -> accept p95 (ms)", "accept_p95", "lower"),
    ("webhook -> greeting p50 (ms)", "greet_p50", "lower"),
    ("webhook -> greeting p95 (ms)", "greet_p95", "lower"),
    ("tool round trip p50 (ms)", "tool_p50", "lower"),
    ("tool round trip p99 (ms)", "tool_p99", "lower"),
    ("CPU per call (ms)", "cpu_ms_per_call", "lower"),
    ("RSS growth per call (KB)", "rss_kb_per_call", "lower"),
]


COUNTS = frozenset({"served", "calls", "refused", "refused_486", "admitted_served"})  # the fewest, not the median


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Each figure's median over repeated runs of one system (counts: the fewest)."""
    out: dict[str, Any] = dict(runs[0])
    for key in runs[0]:
        values = [r[key] for r in runs if isinstance(r.get(key), int | float)]
        if key in COUNTS:
            out[key] = min(values) if values else None
        elif values:
            out[key] = statistics.median(values)
    return out


def print_table(n: int, seeds: list[dict[str, Any]], ours: list[dict[str, Any]]) -> None:
    """One table per N: each system's figure (the median when repeated) and their ratio; with
    repeats, also the range of the ratios of the pairs run one after the other."""
    cap = ARGS.webhook_connections or "no cap"
    pairs = len(seeds)
    seed, mine = median_of(seeds), median_of(ours)
    print(f"\n{n} simultaneous calls ({SCENARIO} scenario, time scale {ARGS.time_scale}, webhook connections: {cap})")
    if pairs > 1:
        print(f"medians of {pairs} runs each, run in pairs (original, then this project)")
        print("| metric | original (Bun) | this project | ratio (ours / original) | ratio per pair, min-max |")
        print("|---|---|---|---|---|")
    else:
        print("| metric | original (Bun) | this project | ratio (ours / original) |")
        print("|---|---|---|---|")
    for label, key, _ in ROWS:
        a, b = seed.get(key), mine.get(key)
        median_ratio = _ratio(a, b)
        ratio = f"{median_ratio:.2f}x" if median_ratio is not None else "-"
        each = [r for s, o in zip(seeds, ours, strict=True) if (r := _ratio(s.get(key), o.get(key))) is not None]
        spread = f"{min(each):.2f}-{max(each):.2f}x" if each else "-"
        if key == "served":
            a, b, ratio, spread = f"{a}/{seed['calls']}", f"{b}/{mine['calls']}", "", ""
        print(f"| {label} | {fmt(a)} | {fmt(b)} | {ratio} |" + (f" {spread} |" if pairs > 1 else ""))


def _ratio(original: Any, ours: Any) -> float | None:
    """ours / original, when both are figures and the original's is not zero."""
    if isinstance(original, float | int) and isinstance(ours, float | int) and original:
        return ours / original
    return None


ARGS = argparse.Namespace(time_scale=1.0, webhook_connections=0)


async def main(args: argparse.Namespace) -> None:
    tune_harness_gc()
    azurite = start_azurite()
    results: list[tuple[int, list[dict[str, Any]], list[dict[str, Any]]]] = []
    overloads: list[dict[str, Any]] = []
    try:
        for n in args.calls:
            seeds: list[dict[str, Any]] = []
            ours: list[dict[str, Any]] = []
            for _ in range(args.repeat):  # in pairs: both systems see the machine as it is then
                seeds.append(await run_seed(azurite.connection_string, n, args))
                ours.append(await run_ours(azurite.connection_string, n, args))
            results.append((n, seeds, ours))
            print_table(n, seeds, ours)
        if args.overload:
            for _ in range(args.repeat):
                overloads.append(await run_overload(azurite.connection_string, args))
    finally:
        azurite.stop()
    command = " ".join(map(str, args.calls)) + (f" --repeat {args.repeat}" if args.repeat > 1 else "")
    print(f"\n# summary (command: python -m bench.versus_seed --calls {command})")
    for n, seeds, ours in results:
        print_table(n, seeds, ours)
    if overloads:
        print("\nMAX_CALLS_PER_REPLICA=100, 200 calls at once (target: every extra call refused busy in < 100 ms)")
        merged = median_of(overloads)
        for k, v in merged.items():
            each = ", ".join(fmt(o[k]) for o in overloads) if len(overloads) > 1 else ""
            print(f"| {k} | {fmt(v)} |" + (f" {each} |" if each else ""))
    print(
        "\ntargets at 200 and 1,000: all served; greeting p95 <= original; tool p99 <= original; "
        "CPU per call <= 2x original; RSS per call <= original"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, nargs="+", default=[1, 200, 1000])
    parser.add_argument("--time-scale", type=float, default=1.0)
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument("--no-overload", dest="overload", action="store_false")
    # Runs per N (and of the overload row): medians are printed, and the range of the ratios.
    parser.add_argument("--repeat", type=int, default=1)
    # How many webhook deliveries the simulator has in flight at once (0: no cap, as the service).
    # 100 reproduces the harness of earlier runs (aiohttp's default pool).
    parser.add_argument("--webhook-connections", type=int, default=0)
    ARGS = parser.parse_args()
    asyncio.run(main(ARGS))
