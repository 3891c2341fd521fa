"""Admin auth: with ADMIN_TOKEN set, `/api/*` needs `Authorization: Bearer <token>` or the
session cookie from `POST /api/session`. Unset means open (the local demo).

A session is a random id in an HttpOnly cookie; the store keeps only its SHA-256 with a sliding
idle expiry bounded by an absolute one, so every replica honours it and `DELETE /api/session`
ends it everywhere at once. Sign-in attempts are limited per client on each replica.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable

from aiohttp import web
from azure.core.exceptions import ResourceNotFoundError

from callplane.clock import now_ms
from callplane.store.tables import TableOps
from session_host import keys

COOKIE = "va_session"
SESSION_PK = "session"
IDLE_MS = 30 * 60 * 1000  # a session unused this long ends
ABSOLUTE_MS = 12 * 3600 * 1000  # and none outlives this, however busy
RENEW_AFTER_MS = 5 * 60 * 1000  # the idle expiry is pushed on at most this often (one write)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
PUBLIC = ("/api/session",)


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def client_of(request: web.Request) -> str:
    # Behind the Container Apps ingress the peer is the proxy; the client is the first hop it names.
    forwarded = request.headers.get("X-Forwarded-For", "")
    return forwarded.split(",")[0].strip() or request.remote or "?"


def over_https(request: web.Request) -> bool:
    return request.secure or request.headers.get("X-Forwarded-Proto", "").lower() == "https"


async def _session_valid(table: TableOps, session_id: str) -> bool:
    try:
        entity = await table.get_entity(SESSION_PK, _digest(session_id))
    except ResourceNotFoundError:
        return False
    now = now_ms()
    idle_until, absolute_until = int(entity["idleUntil"]), int(entity["absoluteUntil"])
    if now >= min(idle_until, absolute_until):
        return False
    if idle_until - now < IDLE_MS - RENEW_AFTER_MS:
        entity["idleUntil"] = str(min(now + IDLE_MS, absolute_until))
        await table.upsert_entity(dict(entity))
    return True


async def authorized(request: web.Request) -> bool:
    token = request.app[keys.SETTINGS].admin_token
    if not token:
        return True
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer ") and hmac.compare_digest(header[7:].encode(), token.encode()):
        return True
    session_id = request.cookies.get(COOKIE, "")
    return (
        bool(session_id)
        and len(session_id) <= 128
        and await _session_valid(request.app[keys.TABLES].sessions, session_id)
    )


@web.middleware
async def admin_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    path = request.path
    if path.startswith("/api/") and path not in PUBLIC and not await authorized(request):
        return web.json_response(
            {"error": "unauthorized: send Authorization: Bearer <ADMIN_TOKEN> or sign in at POST /api/session"},
            status=401,
        )
    return await handler(request)


@web.middleware
async def security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    resp = await handler(request)
    resp.headers.setdefault("X-Content-Type-Options", "nosniff")
    resp.headers.setdefault("X-Frame-Options", "DENY")
    csp = resp.headers.get("Content-Security-Policy")
    resp.headers["Content-Security-Policy"] = f"{csp}; frame-ancestors 'none'" if csp else "frame-ancestors 'none'"
    if over_https(request):
        resp.headers.setdefault("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
    return resp


async def create_session(request: web.Request) -> web.Response:
    token = request.app[keys.SETTINGS].admin_token
    if not token:
        return web.json_response({"ok": True, "auth": "disabled"})
    limiter, client = request.app[keys.SIGN_IN], client_of(request)
    wait = limiter.blocked_for(client)
    if wait:
        return web.json_response(
            {"error": "too many wrong tokens from this client; wait and try again"},
            status=429,
            headers={"Retry-After": str(int(wait) + 1)},
        )
    try:
        body = await request.json()
    except ValueError:
        return web.json_response({"error": 'body must be JSON {"token": "..."}'}, status=400)
    given = body.get("token") if isinstance(body, dict) else None
    if not isinstance(given, str) or not hmac.compare_digest(given.encode(), token.encode()):
        limiter.failed(client)
        return web.json_response({"error": "wrong token"}, status=401)
    session_id = secrets.token_urlsafe(32)
    now = now_ms()
    table = request.app[keys.TABLES].sessions
    await _forget_expired(table, now)
    await table.upsert_entity(
        {
            "PartitionKey": SESSION_PK,
            "RowKey": _digest(session_id),
            # Epoch ms as 13-digit strings (Int64 needs a typed property; strings compare in order).
            "created": str(now),
            "idleUntil": str(now + IDLE_MS),
            "absoluteUntil": str(now + ABSOLUTE_MS),
        }
    )
    resp = web.json_response({"ok": True})
    resp.set_cookie(
        COOKIE,
        session_id,
        httponly=True,
        samesite="Strict",
        path="/",
        secure=over_https(request),
        max_age=ABSOLUTE_MS // 1000,
    )
    return resp


async def _forget_expired(table: TableOps, now: int) -> None:
    """Sign-ins are rare, so each one clears a few expired sessions: the partition stays small."""
    expired = await table.query(
        "PartitionKey eq @pk and absoluteUntil lt @now",
        {"pk": SESSION_PK, "now": str(now)},
        parse=lambda e: e["RowKey"],
    )
    for row_key in expired[:20]:
        try:
            await table.delete_entity(SESSION_PK, str(row_key))
        except ResourceNotFoundError:
            pass


async def delete_session(request: web.Request) -> web.Response:
    session_id = request.cookies.get(COOKIE, "")
    if session_id and len(session_id) <= 128:
        try:
            await request.app[keys.TABLES].sessions.delete_entity(SESSION_PK, _digest(session_id))
        except ResourceNotFoundError:
            pass
    resp = web.json_response({"ok": True})
    resp.del_cookie(COOKIE, path="/")
    return resp


def who(request: web.Request) -> str:
    """The admin making a change, for audits and profile versions: a short hash of the credential
    used, never the credential itself."""
    from callplane.store.lifecycle import who_of

    if not request.app[keys.SETTINGS].admin_token:
        return "open (no ADMIN_TOKEN)"
    header = request.headers.get("Authorization", "")
    credential = header[7:] if header.startswith("Bearer ") else request.cookies.get(COOKIE, "")
    return who_of(credential)
