"""Bounded request-body reading for aiohttp handlers."""

from __future__ import annotations

from aiohttp import web


async def read_limited(request: web.Request, limit: int) -> bytes:
    """Up to `limit + 1` bytes of the body: enough to tell "too large" without reading a flood.
    (`StreamReader.read(n)` may return fewer bytes than are coming, so read until EOF or past limit.)"""
    chunks: list[bytes] = []
    size = 0
    while size <= limit:
        chunk = await request.content.read(limit + 1 - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)
