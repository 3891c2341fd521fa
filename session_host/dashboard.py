"""`GET /dashboard` (always served: the page holds no data), its static assets, and the SSE route.
No CDN and no build step: plain HTML, CSS and JavaScript shipped in session_host/static."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from session_host import keys
from session_host.live import events

STATIC = Path(__file__).resolve().parent / "static"


async def page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(
        STATIC / "dashboard.html",
        headers={
            "Cache-Control": "no-cache",
            "Content-Security-Policy": "default-src 'self'; style-src 'self'; script-src 'self'; connect-src 'self'",
            "X-Content-Type-Options": "nosniff",
        },
    )


async def sse(request: web.Request) -> web.StreamResponse:
    return await events(request, request.app[keys.LIVE])


def add_routes(app: web.Application) -> None:
    app.router.add_get("/dashboard", page)
    app.router.add_get("/api/events", sse)
    app.router.add_static("/static/", STATIC, append_version=False)
