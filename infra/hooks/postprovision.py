"""azd postprovision hook: generate the app secrets and register the Realtime webhook.

Runs after `azd provision` with the Bicep outputs in the environment. Idempotent: running it
again changes nothing that is already right.
- `handoff-secret` (whsec_) and `admin-token`: generated here if Key Vault lacks them; never typed.
- The webhook endpoint (Azure `POST {AZURE_OPENAI_ENDPOINT}/openai/v1/dashboard/webhook_endpoints`)
  pointing at the Function App; its signing secret, shown only once, is stored as `webhook-secret`.
  An endpoint for our URL whose secret we no longer hold is replaced.
- `openai-api-key`: stored only when AZURE_OPENAI_API_KEY is given (USE_OPENAI_KEY=true).
Needs: pip install azure-identity azure-keyvault-secrets (both in requirements.txt).
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any, Protocol

WEBHOOK_SECRET, HANDOFF_SECRET, ADMIN_TOKEN, OPENAI_KEY = (
    "webhook-secret",
    "handoff-secret",
    "admin-token",
    "openai-api-key",
)


class SecretStore(Protocol):
    def get(self, name: str) -> str | None: ...
    def set(self, name: str, value: str) -> None: ...


class KeyVaultStore:
    def __init__(self, vault_url: str) -> None:
        from azure.identity import DefaultAzureCredential
        from azure.keyvault.secrets import SecretClient

        self._client = SecretClient(vault_url=vault_url, credential=DefaultAzureCredential())

    def get(self, name: str) -> str | None:
        from azure.core.exceptions import ResourceNotFoundError

        def read() -> str | None:
            try:
                return self._client.get_secret(name).value
            except ResourceNotFoundError:
                return None

        return with_retries(read, f"reading {name} from Key Vault")  # type: ignore[no-any-return]

    def set(self, name: str, value: str) -> None:
        with_retries(
            lambda: self._client.set_secret(name, value, content_type="text/plain"), f"writing {name} to Key Vault"
        )


def new_whsec() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def ensure_generated(store: SecretStore) -> list[str]:
    """Create the secrets only this deployment uses, if missing. Returns what was created."""
    created = []
    for name, make in ((HANDOFF_SECRET, new_whsec), (ADMIN_TOKEN, lambda: secrets.token_urlsafe(32))):
        if not store.get(name):
            store.set(name, make())
            created.append(name)
    return created


Http = Callable[[str, str, dict[str, str], bytes | None], tuple[int, Any]]


def urllib_http(method: str, url: str, headers: dict[str, str], body: bytes | None) -> tuple[int, Any]:
    req = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            raw = resp.read()
            return resp.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            return exc.code, json.loads(raw)
        except ValueError:
            return exc.code, {"error": raw[:200].decode(errors="replace")}


RETRYABLE = {403, 408, 429, 500, 502, 503, 504}  # 403: a role granted minutes ago is not effective yet


def retrying(
    http: Http,
    *,
    attempts: int = 8,
    first_wait_s: float = 2.0,
    sleep: Callable[[float], None] = time.sleep,
    say: Callable[[str], None] = print,
) -> Http:
    """`http` retried with backoff (about 4 minutes in all) while Azure answers 403 or a
    transient error: the deployer's and the identity's role assignments take minutes to apply."""

    def call(method: str, url: str, headers: dict[str, str], body: bytes | None) -> tuple[int, Any]:
        wait = first_wait_s
        for attempt in range(1, attempts + 1):
            status, doc = http(method, url, headers, body)
            if status not in RETRYABLE or attempt == attempts:
                return status, doc
            say(
                f"postprovision: {method} webhook endpoints answered {status}; retrying in {wait:.0f} s "
                f"(attempt {attempt}/{attempts}; new role assignments take minutes to apply)"
            )
            sleep(wait)
            wait = min(wait * 2, 60.0)
        raise AssertionError("unreachable")

    return call


def with_retries(
    action: Callable[[], Any],
    what: str,
    *,
    attempts: int = 8,
    first_wait_s: float = 2.0,
    sleep: Callable[[float], None] = time.sleep,
) -> Any:
    """Key Vault calls retried while the deployer's Key Vault Secrets Officer role propagates."""
    wait = first_wait_s
    for attempt in range(1, attempts + 1):
        try:
            return action()
        except Exception as exc:  # azure-core's HttpResponseError, imported lazily with the SDK
            status = getattr(exc, "status_code", None)
            if status not in RETRYABLE or attempt == attempts:
                raise
            print(f"postprovision: {what} answered {status}; retrying in {wait:.0f} s (attempt {attempt}/{attempts})")
            sleep(wait)
            wait = min(wait * 2, 60.0)
    raise AssertionError("unreachable")


def ensure_webhook(store: SecretStore, http: Http, openai_endpoint: str, auth: dict[str, str], webhook_url: str) -> str:
    """Make sure exactly one endpoint for `webhook_url` exists and its secret is stored.
    Returns "kept", "created" or "replaced"."""
    base = openai_endpoint.rstrip("/") + "/openai/v1/dashboard/webhook_endpoints"
    headers = {"Content-Type": "application/json", **auth}
    status, listing = http("GET", base, headers, None)
    if status != 200:
        raise RuntimeError(f"listing webhook endpoints failed: HTTP {status} {listing}")
    ours = [e for e in (listing or {}).get("data", []) if e.get("url") == webhook_url]
    if ours and store.get(WEBHOOK_SECRET):
        return "kept"
    for endpoint in ours:  # its secret was shown once and is lost: replace it
        http("DELETE", f"{base}/{endpoint['id']}", headers, None)
    body = json.dumps(
        {"name": "realtime-incoming", "url": webhook_url, "event_types": ["realtime.call.incoming"]}
    ).encode()
    status, created = http("POST", base, headers, body)
    if status not in (200, 201) or not str((created or {}).get("signing_secret", "")).startswith("whsec_"):
        raise RuntimeError(f"creating the webhook endpoint failed: HTTP {status}")
    store.set(WEBHOOK_SECRET, created["signing_secret"])
    return "replaced" if ours else "created"


def openai_auth(api_key: str) -> dict[str, str]:
    if api_key:
        return {"api-key": api_key}
    from azure.identity import DefaultAzureCredential

    token = DefaultAzureCredential().get_token("https://cognitiveservices.azure.com/.default").token
    return {"Authorization": f"Bearer {token}"}


def main() -> int:
    env = os.environ
    native = env.get("REALTIME_DIALECT", "azure") == "openai"
    needed = (
        ("AZURE_KEY_VAULT_ENDPOINT", "WEBHOOK_URL")
        if native
        else ("AZURE_KEY_VAULT_ENDPOINT", "AZURE_OPENAI_ENDPOINT", "WEBHOOK_URL")
    )
    missing = [k for k in needed if not env.get(k)]
    if missing:
        print(f"postprovision: missing {', '.join(missing)} (run through azd)", file=sys.stderr)
        return 2
    store = KeyVaultStore(env["AZURE_KEY_VAULT_ENDPOINT"])
    created = ensure_generated(store)
    api_key = env.get("AZURE_OPENAI_API_KEY", "")
    if api_key and env.get("USE_OPENAI_KEY", "false").lower() == "true" and store.get(OPENAI_KEY) != api_key:
        store.set(OPENAI_KEY, api_key)
        created.append(OPENAI_KEY)
    if native:
        # api.openai.com has no endpoint-registration API for this: the platform's settings page does it.
        print(
            f"postprovision: native OpenAI: create a webhook for {env['WEBHOOK_URL']} (realtime.call.incoming) in "
            "the OpenAI platform settings and store its secret as Key Vault secret webhook-secret"
        )
        outcome = "left to you (native OpenAI)"
    else:
        endpoint = env["AZURE_OPENAI_ENDPOINT"].rstrip("/")
        outcome = ensure_webhook(store, retrying(urllib_http), endpoint, openai_auth(api_key), env["WEBHOOK_URL"])
    # Names only: secret values never reach the console.
    print(f"postprovision: secrets created: {', '.join(created) or 'none'}; webhook endpoint {outcome}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
