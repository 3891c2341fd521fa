"""`python -m function_app`: serve the Function handlers locally through a thin aiohttp adapter.

Azure Functions Core Tools cannot be installed here, so this adapter turns each aiohttp request
into an `azure.functions.HttpRequest`, calls the very function the worker would call, and turns
its `HttpResponse` back. One code path, two hosts.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import cache

import azure.functions as func
from aiohttp import web

from callplane.bodies import read_limited
from callplane.http_server import JsonErrorRunner, json_errors, listen
from callplane.logs import setup_logging
from callplane.settings import Role, Settings, load_settings
from callplane.telemetry import Telemetry
from function_app import app as function_app
from function_app.runtime import close_deps, install, open_deps

log = logging.getLogger("function_app")
MAX_BODY = 1024 * 1024  # read one byte past the webhook limit so the handler itself answers 413

FunctionHandler = Callable[[func.HttpRequest], Awaitable[func.HttpResponse]]


@cache
def _routes() -> list[tuple[str, list[str], FunctionHandler]]:
    found = []
    for fn in function_app.get_functions():
        trigger = fn.get_trigger()
        route = getattr(trigger, "route", None)
        methods = [str(getattr(m, "value", m)) for m in (getattr(trigger, "methods", None) or ["POST"])]
        user = fn.get_user_function()
        if route and inspect.iscoroutinefunction(user):
            found.append((route, methods, user))
    return found


def _adapt(handler: FunctionHandler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def view(request: web.Request) -> web.StreamResponse:
        body = await read_limited(request, MAX_BODY)
        freq = func.HttpRequest(
            method=request.method,
            url=str(request.url),
            headers=dict(request.headers),
            params=dict(request.query),
            route_params=dict(request.match_info),
            body=body,
        )
        fresp = await handler(freq)
        headers = {k: v for k, v in fresp.headers.items() if k.lower() != "content-length"}
        return web.Response(
            status=fresp.status_code, body=fresp.get_body(), headers=headers, content_type=fresp.mimetype
        )

    return view


def build_app(settings: Settings, telemetry: Telemetry | None = None) -> web.Application:
    application = web.Application(middlewares=[json_errors], client_max_size=MAX_BODY)

    async def deps_ctx(_: web.Application) -> AsyncIterator[None]:
        deps = await open_deps(settings, telemetry)
        install(deps)
        yield
        await close_deps(deps)

    application.cleanup_ctx.append(deps_ctx)
    for route, methods, handler in _routes():
        for method in methods:
            application.router.add_route(method, "/" + route.lstrip("/"), _adapt(handler))

    async def health(_: web.Request) -> web.Response:
        return web.json_response({"ok": True, "service": "function_app"})

    application.router.add_get("/healthz", health)
    return application


def main(argv: list[str] | None = None) -> None:
    settings = load_settings(Role.FUNCTION_APP)
    setup_logging(settings.log_format, settings.debug_logging)
    if settings.test_mode:
        log.warning("TEST_MODE=1: webhook signatures are NOT verified (local use only)")
    asyncio.run(_serve(settings))


async def _serve(settings: Settings) -> None:
    runner = JsonErrorRunner(build_app(settings), access_log=None, shutdown_timeout=5)
    await runner.setup()
    await listen(runner, "0.0.0.0", settings.functions_port)
    log.info(
        "webhook app listening on http://localhost:%d/openai/webhook", settings.functions_port, extra={"cat": "SUCCESS"}
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("stopping: finishing in-flight webhooks", extra={"cat": "WARNING"})
    await runner.cleanup()
    log.info("webhook app stopped", extra={"cat": "SUCCESS"})


if __name__ == "__main__":
    main()
