"""Admin API for agent profiles and number routes (callplane/profiles.py has what a profile is).

Every change is a new version with who and when; a bad profile is a 400 whose JSON names the
field (`{"error": ..., "field": "tools"}`); the dry run answers what a number would be accepted
with, without a call.
"""

from __future__ import annotations

import json
import re

from aiohttp import web
from pydantic import ValidationError

from callplane.handoff import SipHeader
from callplane.profiles import DEFAULT, NAME, Profile, Route
from callplane.session_config import VoiceMode, accept_body
from callplane.store import profile_store as store
from session_host import auth, keys

_NAME = re.compile(NAME)


def _bad(field: str, error: str) -> web.Response:
    return web.json_response({"error": f"{field}: {error}", "field": field}, status=400)


def _name(request: web.Request) -> str:
    name = request.match_info["name"]
    if not _NAME.match(name):
        raise web.HTTPBadRequest(
            text=json.dumps({"error": "name: lower-case letters, digits and '-', up to 63", "field": "name"}),
            content_type="application/json",
        )
    return name


async def _body(request: web.Request) -> object:
    try:
        return await request.json()
    except ValueError:
        raise web.HTTPBadRequest(
            text=json.dumps({"error": "body: not JSON", "field": "body"}), content_type="application/json"
        ) from None


def _first_error(exc: ValidationError) -> tuple[str, str]:
    err = exc.errors()[0]
    field = ".".join(str(p) for p in err["loc"]) or "body"
    return field, str(err["msg"]).removeprefix("Value error, ")


async def list_profiles(request: web.Request) -> web.Response:
    cache = request.app[keys.PROFILES]
    await cache.refresh()
    docs = [p.doc() for p in sorted(cache.profiles.values(), key=lambda p: p.name)]
    if DEFAULT not in cache.profiles:
        docs.insert(0, {**cache.default().doc(), "builtIn": True})
    return web.json_response({"profiles": docs, "count": len(docs)})


async def get_profile(request: web.Request) -> web.Response:
    name = _name(request)
    raw_version = request.query.get("version")
    version = int(raw_version) if raw_version and raw_version.isdigit() else None
    stored = await store.get_profile(request.app[keys.TABLES].profiles, name, version)
    if stored is None and name == DEFAULT and version is None:
        return web.json_response({**request.app[keys.PROFILES].default().doc(), "builtIn": True})
    if stored is None:
        return web.json_response({"error": "Profile not found"}, status=404)
    return web.json_response(stored.doc())


async def profile_versions(request: web.Request) -> web.Response:
    name = _name(request)
    versions = await store.history(request.app[keys.TABLES].profiles, name)
    if not versions:
        return web.json_response({"error": "Profile not found"}, status=404)
    return web.json_response({"name": name, "versions": versions})


async def put_profile(request: web.Request) -> web.Response:
    name = _name(request)
    body = await _body(request)
    try:
        profile = Profile.model_validate(body)
    except ValidationError as exc:
        return _bad(*_first_error(exc))
    stored, created = await store.put_profile(request.app[keys.TABLES].profiles, name, profile, auth.who(request))
    await request.app[keys.PROFILES].refresh()
    return web.json_response(stored.doc(), status=201 if created else 200)


async def delete_profile(request: web.Request) -> web.Response:
    name = _name(request)
    cache = request.app[keys.PROFILES]
    await cache.refresh()
    routed = sorted(number for number, profile in cache.routes.items() if profile == name)
    if routed:
        return web.json_response({"error": f"numbers still route to it: {', '.join(routed)}"}, status=409)
    if not await store.delete_profile(request.app[keys.TABLES].profiles, name):
        return web.json_response({"error": "Profile not found"}, status=404)
    await cache.refresh()
    return web.Response(status=204)


def _number(request: web.Request) -> str:
    key = store.route_key(request.match_info["number"])
    if key is None:
        raise web.HTTPBadRequest(
            text=json.dumps({"error": "number: an E.164 number, e.g. +14255550100 (+ as %2B)", "field": "number"}),
            content_type="application/json",
        )
    return key


async def list_routes(request: web.Request) -> web.Response:
    cache = request.app[keys.PROFILES]
    await cache.refresh()
    routes = [{"number": n, "profile": p} for n, p in sorted(cache.routes.items())]
    return web.json_response({"routes": routes, "count": len(routes)})


async def put_route(request: web.Request) -> web.Response:
    number = _number(request)
    try:
        route = Route.model_validate(await _body(request))
    except ValidationError as exc:
        return _bad(*_first_error(exc))
    cache = request.app[keys.PROFILES]
    await cache.refresh()
    if route.profile != DEFAULT and route.profile not in cache.profiles:
        return _bad("profile", f"no profile named {route.profile!r}")
    created = await store.put_route(request.app[keys.TABLES].profiles, number, route.profile, auth.who(request))
    await cache.refresh()
    return web.json_response({"number": number, "profile": route.profile}, status=201 if created else 200)


async def delete_route(request: web.Request) -> web.Response:
    number = _number(request)
    if not await store.delete_route(request.app[keys.TABLES].profiles, number):
        return web.json_response({"error": "Route not found"}, status=404)
    await request.app[keys.PROFILES].refresh()
    return web.Response(status=204)


async def dry_run(request: web.Request) -> web.Response:
    """What a call to `number` (and these SIP headers) would be accepted with."""
    number = _number(request)
    extra = request.query.getall("header", [])
    headers = [SipHeader(name="To", value=f"<sip:{number}@sip.example>")]
    for item in extra:
        name, _, value = item.partition(":")
        headers.append(SipHeader(name=name.strip(), value=value.strip()))
    cache = request.app[keys.PROFILES]
    await cache.refresh()
    chosen = cache.choose(headers, request.query.get("caller"))
    body = accept_body(request.app[keys.SETTINGS], VoiceMode.AUDIO_OUTPUT, chosen)
    return web.json_response({"profile": chosen.name, "version": chosen.version, "accept": body})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/profiles", list_profiles)
    app.router.add_get("/api/profiles/{name}", get_profile)
    app.router.add_get("/api/profiles/{name}/versions", profile_versions)
    app.router.add_put("/api/profiles/{name}", put_profile)
    app.router.add_delete("/api/profiles/{name}", delete_profile)
    app.router.add_get("/api/routes", list_routes)
    app.router.add_put("/api/routes/{number}", put_route)
    app.router.add_delete("/api/routes/{number}", delete_route)
    app.router.add_get("/api/routes/{number}/dry-run", dry_run)
