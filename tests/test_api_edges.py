"""Every answer under /api is JSON, errors included, and the OpenAPI document lists exactly the
routes the session host serves, on real HTTP against Azurite."""

from __future__ import annotations

import aiohttp

from session_host import openapi
from tests.stack import run_stack


async def _raw(http: aiohttp.ClientSession, method: str, url: str, **kw: object) -> tuple[int, str, dict[str, object]]:
    async with http.request(method, url, **kw) as resp:  # type: ignore[arg-type]
        return resp.status, resp.content_type, await resp.json(content_type=None)


async def test_errors_are_json_everywhere(conn: str) -> None:
    async with run_stack(conn) as stack:
        http, host = stack.http, stack.host_url
        status, ctype, doc = await _raw(http, "GET", f"{host}/api/nope")
        assert (status, ctype) == (404, "application/json") and "GET /api/nope" in str(doc["error"])
        status, ctype, doc = await _raw(http, "DELETE", f"{host}/api/stats")
        assert (status, ctype) == (405, "application/json"), doc
        # A path longer than the parser's line limit never reaches a route: still JSON, still a 4xx.
        status, ctype, doc = await _raw(http, "GET", f"{host}/api/calls/{'x' * 9000}")
        assert 400 <= status < 500 and ctype == "application/json" and "error" in doc, (status, doc)
        status, ctype, doc = await _raw(http, "GET", f"{host}/api/calls/active?limit=abc")
        assert (status, ctype) == (400, "application/json") and "limit" in str(doc["error"])
        assert (await stack.api("/api/calls/active?limit=1"))["count"] == 0
        # The webhook app answers unknown routes the same way.
        status, ctype, doc = await _raw(http, "GET", stack.webhook_url.replace("/openai/webhook", "/nope"))
        assert (status, ctype) == (404, "application/json"), doc


async def test_openapi_lists_every_route_and_matches_live_answers(conn: str) -> None:
    async with run_stack(conn) as stack:
        doc = await stack.api("/api/openapi.json")
        served = {
            (r.resource.canonical, r.method.lower())
            for r in stack.host_app.router.routes()
            if r.resource is not None and r.method != "HEAD"
        }
        served = {
            (path, method)
            for path, method in served
            if not path.startswith(("/static", "/internal", "/api/diagnostics")) and path != "/dashboard"
        }
        documented = {
            (path.replace("{callId}", "{call_id}"), method) for path, ops in doc["paths"].items() for method in ops
        }
        assert served == documented, served ^ documented
        for path in ("/api/events", "/api/session", "/healthz", "/readyz", "/api/openapi.json", "/"):
            assert path in doc["paths"], path
        info = await stack.api("/")
        assert set(openapi.endpoints()) <= set(info["endpoints"]) and "/api/openapi.json" in info["endpoints"]
        openapi.Health.model_validate(await stack.api("/healthz"))
        ready = openapi.Readiness.model_validate(await stack.api("/readyz"))
        assert ready.ready and ready.checks == {"accepting": "ok", "heartbeat": "ok"}
        async with stack.http.post(f"{stack.host_url}/api/session", json={}) as resp:
            openapi.SessionOut.model_validate(await resp.json())
        async with stack.http.get(f"{stack.host_url}/api/events") as resp:
            assert resp.status == 200 and resp.content_type == "text/event-stream"
