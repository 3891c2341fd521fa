"""Typed application keys: the session host's long-lived resources, created in app.py."""

from __future__ import annotations

import asyncio

import aiohttp
from aiohttp import web

from callplane.call_control import CallControl
from callplane.logs import Throttle
from callplane.settings import Settings
from callplane.store.calls import CallReader
from callplane.store.profile_store import ProfileCache
from callplane.store.tables import Tables
from callplane.store.writer import StoreWriter
from callplane.telemetry import Telemetry
from session_host.call_observers import Observers
from session_host.health import LoopMonitor
from session_host.live import LiveFeed
from session_host.ownership import Heartbeat
from session_host.registry import CallRegistry
from session_host.session import SessionOptions
from session_host.sign_in import SignInLimiter

SETTINGS = web.AppKey("settings", Settings)
HTTP = web.AppKey("http", aiohttp.ClientSession)
CONTROL = web.AppKey("control", CallControl)
TABLES = web.AppKey("tables", Tables)
LANE = web.AppKey("ownership_tables", Tables)  # the same tables on their own thread, for ownership
WRITER = web.AppKey("writer", StoreWriter)
OBSERVERS = web.AppKey("call_observers", Observers)  # what every call's events go to
READER = web.AppKey("reader", CallReader)
REGISTRY = web.AppKey("registry", CallRegistry)
OPTIONS = web.AppKey("session_options", SessionOptions)
REPLICA = web.AppKey("replica", str)
STARTED = web.AppKey("started_ms", int)
LIVE = web.AppKey("live", LiveFeed)
TELEMETRY = web.AppKey("telemetry", Telemetry)
LOOP = web.AppKey("loop_monitor", LoopMonitor)
HEARTBEAT = web.AppKey("heartbeat", Heartbeat)
THROTTLE = web.AppKey("log_throttle", Throttle)
SIGN_IN = web.AppKey("sign_in_limiter", SignInLimiter)
RESTARTS = web.AppKey("task_restarts", dict[str, int])  # background task name -> restarts after a crash
PURGED = web.AppKey("purged_once", bool)
PROFILES = web.AppKey("profiles", ProfileCache)

# Set by a follower whose function call waits unanswered: sweep now, not at the next tick.
SWEEP_NOW = web.AppKey("sweep_now", asyncio.Event)
