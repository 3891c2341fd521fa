"""Admin auth: with ADMIN_TOKEN set, `/api/*` needs `Authorization: Bearer <token>` or the
HttpOnly session cookie from `POST /api/session`. Unset means open (the local demo)."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable

from aiohttp import web

from session_host import keys

COOKIE = "va_session"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _cookie_value(token: str) -> str:
    # The cookie never carries the token itself: a keyed digest of it, so a leaked cookie is not
    # the admin token, and rotating ADMIN_TOKEN invalidates every cookie.
    return hmac.new(token.encode(), b"admin-session-v1", hashlib.sha256).hexdigest()


def authorized(request: web.Request) -> bool:
    token = request.app[keys.SETTINGS].admin_token
    if not token:
        return True
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer ") and hmac.compare_digest(header[7:].encode(), token.encode()):
        return True
    cookie = request.cookies.get(COOKIE, "")
    return bool(cookie) and hmac.compare_digest(cookie.encode(), _cookie_value(token).encode())


@web.middleware
async def admin_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    path = request.path
    if path.startswith("/api/") and path != "/api/session" and not authorized(request):
        return web.json_response(
            {"error": "unauthorized: send Authorization: Bearer <ADMIN_TOKEN> or sign in at POST /api/session"},
            status=401,
        )
    return await handler(request)


async def create_session(request: web.Request) -> web.Response:
    token = request.app[keys.SETTINGS].admin_token
    if not token:
        return web.json_response({"ok": True, "auth": "disabled"})
    try:
        body = await request.json()
    except ValueError:
        return web.json_response({"error": 'body must be JSON {"token": "..."}'}, status=400)
    given = body.get("token") if isinstance(body, dict) else None
    if not isinstance(given, str) or not hmac.compare_digest(given.encode(), token.encode()):
        return web.json_response({"error": "wrong token"}, status=401)
    resp = web.json_response({"ok": True})
    resp.set_cookie(
        COOKIE,
        _cookie_value(token),
        httponly=True,
        samesite="Strict",
        path="/",
        secure=request.secure,
        max_age=12 * 3600,
    )
    return resp


async def delete_session(request: web.Request) -> web.Response:
    resp = web.json_response({"ok": True})
    resp.del_cookie(COOKIE, path="/")
    return resp
