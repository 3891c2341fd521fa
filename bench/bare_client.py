"""Baseline for bench.session_host: the same control sockets, read by a bare aiohttp receive loop.

Run as a subprocess: `python -m bench.bare_client SIM_URL KEY CALL_ID...`. It opens each call's
socket, asks for the greeting, answers every function call with an empty output and a
response.create (so the simulator plays the same script), counts the events and prints its own
CPU seconds. What the session host spends per event beyond this is our control-plane overhead.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys

import aiohttp


async def play_script(ws: aiohttp.ClientWebSocketResponse, counts: dict[str, int]) -> None:
    """Read the socket until it closes, answering every function call with an empty output and a
    response.create (so the simulator plays its script through); counts["events"] counts as it
    reads, so a run cut short still reports what arrived."""
    async for msg in ws:
        if msg.type is not aiohttp.WSMsgType.TEXT:
            break
        counts["events"] += 1
        if '"response.function_call_arguments.done"' in msg.data:
            ev = json.loads(msg.data)
            await ws.send_str(
                json.dumps(
                    {
                        "type": "conversation.item.create",
                        "item": {"type": "function_call_output", "call_id": ev["call_id"], "output": "{}"},
                    }
                )
            )
            await ws.send_str('{"type":"response.create"}')


async def one(http: aiohttp.ClientSession, ws_url: str, key: str, call_id: str, counts: dict[str, int]) -> None:
    async with http.ws_connect(f"{ws_url}?call_id={call_id}", headers={"api-key": key}, max_msg_size=0) as ws:
        await ws.send_str('{"type":"session.update","session":{"type":"realtime"}}')
        await ws.send_str('{"type":"response.create"}')
        await play_script(ws, counts)


async def main() -> None:
    ws_url, key, call_ids = sys.argv[1], sys.argv[2], sys.argv[3:]
    counts = {"events": 0}
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        await asyncio.gather(*(one(http, ws_url, key, c, counts) for c in call_ids))
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    print(json.dumps({"events": counts["events"], "cpu": cpu}))


if __name__ == "__main__":
    asyncio.run(main())
