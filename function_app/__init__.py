"""Azure Functions (Python v2) entry: the one `FunctionApp` the worker indexes.

The worker finds the root `function_app.py`, then imports `function_app`, which resolves to this
package; so the app object lives here and the root file is only the marker the worker checks.
"""

from __future__ import annotations

import json
import logging

import azure.functions as func

from function_app.runtime import ConfigError, get_deps
from function_app.webhook import handle_webhook

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)
log = logging.getLogger("function_app")


@app.function_name(name="openai_webhook")
@app.route(route="openai/webhook", methods=["POST"])
async def openai_webhook(req: func.HttpRequest) -> func.HttpResponse:
    try:
        deps = await get_deps()
    except ConfigError as exc:
        log.error("%s", exc)
        if exc.variable == "KEY_VAULT_URI":  # secrets not readable yet (role propagation): retry later
            return _json(503, {"error": "webhook secrets not available yet"}, {"Retry-After": "10"})
        return _json(500, {"error": "webhook service is misconfigured"})
    reply = await handle_webhook(req.get_body(), dict(req.headers), deps)
    return _json(reply.status, reply.body, reply.headers)


def _json(status: int, body: dict[str, object], headers: dict[str, str] | None = None) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(body), status_code=status, headers=headers or {}, mimetype="application/json")
