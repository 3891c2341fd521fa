"""The Function App's long-lived resources, built once per worker event loop.

Azure Functions gives a Python v2 app no start-up hook, so the HTTP session and table clients
are created on the first request inside the worker's loop and reused after that (a new TLS
handshake per webhook would sit in the ringing caller's path).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import aiohttp

from callplane import gc_tuning
from callplane.call_control import CallControl
from callplane.settings import ConfigError, Role, Settings, build_settings
from callplane.store.profile_store import ProfileCache
from callplane.store.records import RefusalRecorder
from callplane.store.tables import ensure_tables, open_tables
from callplane.telemetry import Telemetry, configure
from callplane.vault import SECRETS, KeyVaultSource
from function_app.webhook import WebhookDeps, warm

log = logging.getLogger("function_app")


@dataclass(slots=True)
class _Holder:
    loop: asyncio.AbstractEventLoop | None = None
    deps: WebhookDeps | None = None
    lock: asyncio.Lock | None = None


_holder = _Holder()


async def open_deps(settings: Settings, telemetry: Telemetry | None = None) -> WebhookDeps:
    if telemetry is None:
        configure(settings.applicationinsights_connection_string, "webhook", settings.azure_client_id)
        telemetry = Telemetry()
    # No cap on connections (aiohttp's default is 100): in a burst of calls every hand-off and
    # accept goes out at once; a cap made the 101st caller wait for the first hundred's accepts.
    http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    tables = open_tables(settings)
    try:
        await ensure_tables(tables)
    except Exception:
        # The store may be briefly down at start: dedupe then answers 503 and the service retries.
        log.warning("could not create tables at start-up; will use them as they come back")
    profiles = ProfileCache(tables.profiles, settings.realtime_voice, settings.profile_header)
    try:
        await profiles.refresh()
    except Exception:  # the store may be down at start: the built-in agent until it is back
        log.warning("could not read the agent profiles at start-up; read again when a call comes in")
    deps = WebhookDeps(
        settings=settings,
        http=http,
        control=CallControl(http, settings),
        tables=tables,
        telemetry=telemetry,
        refusals=RefusalRecorder(tables),
        profiles=profiles,
    )
    warm(deps)
    gc_tuning.tune()  # once per process: what is loaded now lives as long as the worker
    if settings.key_vault_uri:
        source = KeyVaultSource(settings.key_vault_uri, settings.azure_client_id)

        async def reread() -> str | None:
            return await asyncio.to_thread(source.get, SECRETS["OPENAI_WEBHOOK_SECRET"])

        deps.reread_secret = reread
    return deps


async def close_deps(deps: WebhookDeps) -> None:
    if deps.profiles is not None:
        await deps.profiles.close()
    await deps.control.auth.close()
    await deps.http.close()
    await deps.tables.close()


async def get_deps(settings: Settings | None = None) -> WebhookDeps:
    """Deps for the current loop; raises ConfigError when the environment is not valid."""
    loop = asyncio.get_running_loop()
    if _holder.loop is not loop or _holder.deps is None:
        _holder.loop, _holder.deps, _holder.lock = loop, None, asyncio.Lock()
    assert _holder.lock is not None
    async with _holder.lock:
        if _holder.deps is None:
            if settings is None:
                # Off the loop: with KEY_VAULT_URI this reads Key Vault (sync SDK), bounded so a
                # ringing caller's webhook gets a 503 to retry rather than waiting minutes.
                settings = await asyncio.to_thread(build_settings, Role.FUNCTION_APP, vault_deadline_s=20.0)
            _holder.deps = await open_deps(settings)
    return _holder.deps


def install(deps: WebhookDeps) -> None:
    """Used by the local adapter, which builds deps at start-up (so bad settings stop it)."""
    _holder.loop, _holder.deps, _holder.lock = asyncio.get_running_loop(), deps, asyncio.Lock()


__all__ = ["ConfigError", "close_deps", "get_deps", "install", "open_deps"]
