"""What both servers share below the routes: connection limits and JSON errors from the parser.

aiohttp answers requests it cannot parse (a path or header line over 8 KiB, a bad method) from
its protocol handler, before any middleware runs, as `text/plain` with a logged traceback. Every
answer of ours is JSON and a bad request is the client's fault, not ours: `JsonErrorRunner` makes
those answers JSON and logs one line. The limits close connections that hold a file descriptor
without sending a request (aiohttp 3.14 starts the keep-alive timer when a connection opens).
"""

from __future__ import annotations

import asyncio
import json
import logging
import resource
from http import HTTPStatus
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from callplane.logs import Throttle

log = logging.getLogger("callplane.http")

# A connection that has sent no request after this long is closed (idle keep-alive included).
IDLE_TIMEOUT_S = 60.0
SERVER_LIMITS: dict[str, Any] = {"keepalive_timeout": IDLE_TIMEOUT_S, "max_line_size": 8190, "max_field_size": 8190}
# Connections the kernel queues before the server accepts them (capped by net.core.somaxconn).
# aiohttp's default, 128, overflows when a burst of calls connects at once: the kernel drops
# the extra SYNs and each such client retries a second later (then three), a one-second tail on
# the caller's wait. Measured with the simulator's listener at 1,000 calls: 287 overflows and a
# greeting p95 of 1.77 s at 128; none and 1.40 s at 2048.
LISTEN_BACKLOG = 2048


async def listen(runner: web.BaseRunner, host: str, port: int) -> web.TCPSite:
    """Serve `runner` on host:port with the listen queue above; the site, started."""
    site = web.TCPSite(runner, host, port, backlog=LISTEN_BACKLOG)
    await site.start()
    return site


def error_body(status: int, detail: str) -> bytes:
    phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    lines = (detail or "").split(": bytearray(")[0].strip().splitlines()  # never echo the raw bytes
    text = f"{phrase}: {lines[0][:200]}" if lines and lines[0] != phrase else phrase
    return json.dumps({"error": text, "status": status}).encode()


class _JsonErrorHandler(RequestHandler):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        server = self._manager
        if isinstance(server, _JsonErrorServer) and server.full():
            self._manager = None  # never registered: connection_lost has nothing to undo
            server.refuse(transport)
            return
        super().connection_made(transport)

    def handle_error(
        self, request: BaseRequest, status: int = 500, exc: BaseException | None = None, message: str | None = None
    ) -> web.StreamResponse:
        if status >= 500:
            log.error("request failed: %s", type(exc).__name__ if exc else status, exc_info=exc)
        else:
            log.info(
                "refused a malformed request (%d): %s",
                status,
                (message or "").splitlines()[0][:120] if message else type(exc).__name__ if exc else "",
            )
        if request.writer.output_size > 0:
            raise ConnectionError("response already started; cannot send an error")
        text = message or ""
        if status >= 500:
            text = "the server could not handle this request"  # never a traceback to the client
        resp = web.Response(status=status, body=error_body(status, text), content_type="application/json")
        resp.force_close()
        return resp


_BUSY_BODY = b'{"error": "Service Unavailable: too many open connections", "status": 503}'
_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"
    b"Connection: close\r\nContent-Length: " + str(len(_BUSY_BODY)).encode() + b"\r\n\r\n" + _BUSY_BODY
)


class _JsonErrorServer(web.Server):
    max_connections = 0  # 0: no limit
    refused = 0
    throttle: Throttle

    def __call__(self) -> RequestHandler:
        return _JsonErrorHandler(self, loop=self._loop, **self._kwargs)

    def full(self) -> bool:
        return bool(self.max_connections) and len(self._connections) >= self.max_connections

    def refuse(self, transport: asyncio.BaseTransport) -> None:
        # Refuse before the descriptors run out: past that point the process could no longer
        # accept its own health checks or open control sockets for calls.
        self.refused += 1
        if self.throttle.due("connections") is not None:
            log.warning("refusing connections: %d open (limit %d)", len(self._connections), self.max_connections)
        assert isinstance(transport, asyncio.WriteTransport)
        transport.write(_BUSY)
        transport.close()


class JsonErrorRunner(web.AppRunner):
    """`web.AppRunner` whose protocol handler answers parse errors as JSON and which refuses
    connections beyond `max_connections` (default: half the process's file descriptors, at
    most 4,096) with a 503."""

    def __init__(self, app: web.Application, *, max_connections: int | None = None, **kwargs: Any) -> None:
        super().__init__(app, **{**SERVER_LIMITS, **kwargs})
        self.max_connections = default_max_connections() if max_connections is None else max_connections

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        # The app builds its Server itself; only the protocol class differs, so swap the class
        # rather than copy aiohttp's private construction.
        server.__class__ = _JsonErrorServer
        server.max_connections = self.max_connections  # type: ignore[attr-defined]
        server.throttle = Throttle(10.0)  # type: ignore[attr-defined]
        return server


def default_max_connections() -> int:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    # The other half is for what the process opens itself: control sockets, the store, logs.
    return max(64, min(4096, (soft if soft > 0 else 8192) // 2))


Handler = Any


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Routing errors (404, 405, 413) and unexpected failures answered as JSON, never as a
    traceback; the failure is logged once with its type."""
    try:
        return await handler(request)  # type: ignore[no-any-return]
    except web.HTTPException as exc:
        if exc.content_type == "application/json" or exc.status < 400:
            raise
        detail = f"{request.method} {request.path[:200]}" if exc.status in (404, 405) else exc.text or ""
        return web.Response(
            status=exc.status,
            body=error_body(exc.status, detail),
            content_type="application/json",
            headers=_kept_headers(exc),
        )
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return web.Response(
            status=500,
            body=error_body(500, "the server could not handle this request"),
            content_type="application/json",
        )


def _kept_headers(exc: web.HTTPException) -> dict[str, str]:
    return {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after", "location")}
