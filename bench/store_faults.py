"""Store faults under load: nothing placed is lost, and new calls are answered soon after.

    .venv/bin/python -m bench.store_faults --calls 50

With N live standard-scenario calls on the deployed processes (webhook app, session host; the
simulator in this process), one case at a time, each on a fresh Azurite:
  a. Azurite killed and an empty one started on the same port (the store comes back with nothing);
  b. Azurite frozen for 30 s (SIGSTOP, then SIGCONT);
  c. 10 signed hand-offs with poisoned call ids sent between the good calls.
Printed per case: calls placed, stored (final record readable), listed (paging /api/calls),
lost (placed - stored), and how soon after the store's return a new call was accepted.
Targets: lost 0, listed = stored = placed, new calls answered within 5 s of the return.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import time
from collections.abc import Awaitable, Callable

import aiohttp

from bench.procs import Deployed, deployed
from callplane import signing
from callplane.clock import now_ms
from simulator.azurite import Azurite, free_port, start_azurite
from simulator.calls import SimCall
from simulator.scenario import load_scenario

POISON = ["rtc/poison", "rtc#poison", "rtc?poison", "..", "rtc\x01poison", "r" * 300, "rtc\\poison", ".", "a b", "#"]


async def place(d: Deployed, scenario: str = "standard") -> SimCall:
    call = d.sim.new_call(load_scenario(scenario))
    d.sim.spawn(d.sim.place_call(call))
    return call


async def wait_live(calls: list[SimCall], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not all("ws_open" in c.marks for c in calls):
        if time.monotonic() > deadline:
            missing = sum("ws_open" not in c.marks for c in calls)
            raise RuntimeError(f"{missing} calls never got a control socket")
        await asyncio.sleep(0.2)


async def first_answer_after(d: Deployed, start: float, limit: float = 60) -> float | None:
    """Seconds from `start` until a newly placed call is accepted (probes every 0.5 s)."""
    probes: list[SimCall] = []
    next_probe = start
    while time.monotonic() - start < limit:
        if time.monotonic() >= next_probe:
            probes.append(await place(d, "greeting_only"))
            next_probe += 0.5
        if any("accept" in p.marks for p in probes):
            return round(time.monotonic() - start, 2)
        await asyncio.sleep(0.05)
    return None


async def tally(http: aiohttp.ClientSession, url: str, calls: list[SimCall]) -> dict[str, int]:
    for c in calls:
        await asyncio.wait_for(c.ended.wait(), 240)
    await asyncio.sleep(3.0)  # final flushes
    stored = 0
    for c in calls:
        async with http.get(f"{url}/api/calls/{c.call_id}") as resp:
            if resp.status == 200 and (await resp.json())["status"] != "active":
                stored += 1
    listed: set[str] = set()
    page = f"{url}/api/calls?limit=200"
    while page:
        async with http.get(page) as resp:
            doc = await resp.json()
        listed |= {c["callId"] for c in doc["calls"]}
        page = f"{url}/api/calls?limit=200&next={doc['next']}" if doc.get("next") else ""
    wanted = {c.call_id for c in calls}
    return {"placed": len(calls), "stored": stored, "listed": len(listed & wanted), "lost": len(calls) - stored}


async def case(
    name: str, n: int, time_scale: float, fault: Callable[[Deployed, Azurite, aiohttp.ClientSession], Awaitable[float]]
) -> dict[str, object]:
    port = free_port()
    azurite = start_azurite(port)
    try:
        async with (
            deployed(azurite.connection_string, time_scale=time_scale, LEASE_TTL_SECONDS="3") as d,
            aiohttp.ClientSession() as http,
        ):
            calls = [await place(d) for _ in range(n)]
            await wait_live(calls)
            back_at = await fault(d, azurite, http)
            answered = await first_answer_after(d, back_at) if back_at else None
            counts = await tally(http, d.host_url, calls)
            return {"case": name, **counts, "answered_after_s": answered}
    finally:
        azurite.stop()


async def kill_and_restart_empty(d: Deployed, azurite: Azurite, http: aiohttp.ClientSession) -> float:
    azurite.stop()
    await asyncio.sleep(2.0)
    fresh = start_azurite(azurite.port)
    azurite.proc, azurite.workdir = fresh.proc, fresh.workdir
    return time.monotonic()


async def freeze(d: Deployed, azurite: Azurite, http: aiohttp.ClientSession) -> float:
    os.killpg(azurite.proc.pid, signal.SIGSTOP)
    await asyncio.sleep(30)
    os.killpg(azurite.proc.pid, signal.SIGCONT)
    return time.monotonic()


async def poison(d: Deployed, azurite: Azurite, http: aiohttp.ClientSession) -> float:
    refused = 0
    for bad in POISON:
        body = json.dumps({"callId": bad, "webhookId": "wh_poison", "receivedAt": now_ms(), "sipHeaders": []}).encode()
        headers = {"content-type": "application/json", **signing.sign_headers(d.env["HANDOFF_SECRET"], body)}
        async with http.post(f"{d.host_url}/internal/calls", data=body, headers=headers) as resp:
            refused += resp.status == 400
        await place(d, "greeting_only")  # a good call between the poisoned ones (not counted below)
    assert refused == len(POISON), refused
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=50)
    args = parser.parse_args()
    rows = []
    for name, scale, fault in (
        ("a. store killed, back empty", 2.0, kill_and_restart_empty),
        ("b. store frozen 30 s", 1.0, freeze),
        ("c. 10 poisoned hand-offs", 2.0, poison),
    ):
        rows.append(asyncio.run(case(name, args.calls, scale, fault)))
    print()
    print("| case | placed | stored | listed | lost | new call answered after the store's return |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        answered = (
            "n/a (store never left)"
            if r["case"].startswith("c.")
            else (f"{r['answered_after_s']} s" if r["answered_after_s"] is not None else "not within 60 s")
        )
        print(f"| {r['case']} | {r['placed']} | {r['stored']} | {r['listed']} | {r['lost']} | {answered} |")


if __name__ == "__main__":
    main()
