"""Waiting for a local process (webhook app, session host, replica) to answer its health check."""

from __future__ import annotations

import asyncio

import aiohttp


async def wait_healthy(http: aiohttp.ClientSession, base_url: str, timeout: float = 15.0) -> None:
    """Poll `{base_url}/healthz` until it answers 200; TimeoutError after `timeout` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            async with http.get(f"{base_url}/healthz", timeout=aiohttp.ClientTimeout(total=2)) as resp:
                if resp.status == 200:
                    return
        except (aiohttp.ClientError, TimeoutError):
            pass
        if loop.time() > deadline:
            raise TimeoutError(f"{base_url} did not become healthy within {timeout:.0f}s")
        await asyncio.sleep(0.05)
