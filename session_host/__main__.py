"""`python -m session_host`: serve on PORT until SIGTERM/SIGINT, then drain and flush."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

import uvloop

from callplane import gc_tuning, tools
from callplane.http_server import JsonErrorRunner, listen
from callplane.logs import setup_logging
from callplane.settings import Role, Settings, load_settings
from callplane.telemetry import configure
from session_host import keys
from session_host.app import create_app

log = logging.getLogger("session_host")


async def serve(settings: Settings) -> None:
    # The table SDK runs on its own thread (callplane/store/tables.py); a 1 ms GIL switch interval
    # (default 5 ms) bounds how long that thread's CPU can hold up the loop that carries calls.
    sys.setswitchinterval(0.001)
    setup_logging(settings.log_format, settings.debug_logging)
    configure(settings.applicationinsights_connection_string, "session_host", settings.azure_client_id)
    app = create_app(settings)
    runner = JsonErrorRunner(app, access_log=None, shutdown_timeout=5)
    await runner.setup()
    # The tools' schemas (~15 ms of CPU to generate) are built now, not in the first call's
    # session.update. Everything loaded so far lives for the process's life: frozen, and the
    # collector's passes spaced out (callplane/gc_tuning.py has the figures).
    tools.schemas()
    gc_tuning.tune()
    await listen(runner, "0.0.0.0", settings.port)
    log.info(
        "session host listening on http://localhost:%d/ (dashboard at /dashboard; event loop: %s)",
        settings.port,
        "uvloop" if isinstance(asyncio.get_running_loop(), uvloop.Loop) else "asyncio",
        extra={"cat": "SUCCESS"},
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("stopping: no new calls; draining live calls", extra={"cat": "WARNING"})
    await app[keys.REGISTRY].drain(settings.shutdown_grace_seconds, wrap_up_before=10.0)
    await runner.cleanup()
    log.info("session host stopped", extra={"cat": "SUCCESS"})


def main() -> None:
    settings = load_settings(Role.SESSION_HOST)
    # uvloop runs the same asyncio code on libuv: 4-5% less of the session host's CPU per call at
    # 200 calls, about the same at 1,000 (interleaved runs, docs/performance.md).
    # EVENT_LOOP=asyncio: the standard loop.
    if settings.event_loop == "uvloop":
        uvloop.run(serve(settings))
    else:
        asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
