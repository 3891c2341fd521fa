"""Secrets read from Key Vault at start-up, when KEY_VAULT_URI is set and the environment does not
already hold them.

Why here and not as Key Vault references in the infrastructure: Container Apps fetches a
referenced secret when the app is created and fails the deployment if it is missing or the
identity's role has not propagated yet; App Service resolves references once and caches them for
up to a day. The secrets are written by the azd hook after provisioning, so both would break a
first `azd up`. Read by the apps themselves, a missing secret or a fresh role assignment is a
retry with backoff, logged, instead of a failed deployment; and a webhook secret that was
replaced is picked up again (see `refresh`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Protocol

log = logging.getLogger("callplane.vault")

# Setting → Key Vault secret name. Only settings the environment leaves empty are read.
SECRETS: Mapping[str, str] = {
    "OPENAI_WEBHOOK_SECRET": "webhook-secret",
    "HANDOFF_SECRET": "handoff-secret",
    "ADMIN_TOKEN": "admin-token",
    "OPENAI_API_KEY": "openai-api-key",
}
OPTIONAL = {"OPENAI_API_KEY"}  # absent is a valid answer: the apps then use the managed identity


class SecretSource(Protocol):
    def get(self, name: str) -> str | None:
        """The secret's value, None when it does not exist; raises on any other failure."""
        ...


class KeyVaultSource:
    """azure-keyvault-secrets with the app's managed identity (AZURE_CLIENT_ID) or, off Azure,
    whatever DefaultAzureCredential finds (a developer's `az login`)."""

    def __init__(self, vault_url: str, client_id: str = "") -> None:
        from azure.identity import DefaultAzureCredential
        from azure.keyvault.secrets import SecretClient

        credential = DefaultAzureCredential(managed_identity_client_id=client_id or None)
        self._client = SecretClient(vault_url=vault_url, credential=credential)

    def get(self, name: str) -> str | None:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            return self._client.get_secret(name).value
        except ResourceNotFoundError:
            return None


def _transient(exc: Exception) -> bool:
    # 401/403 right after provisioning is a role assignment that has not propagated yet.
    status = getattr(exc, "status_code", None)
    return status is None or status in (401, 403, 408, 429) or status >= 500


def read_secrets(
    source: SecretSource,
    wanted: list[str],
    *,
    deadline_s: float = 180.0,
    first_wait_s: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, str]:
    """The settings in `wanted` read from the vault, retried with backoff while the vault says no
    (role propagation, throttling) or a required secret is not there yet (the hook writes it).
    Raises RuntimeError naming what is still missing when `deadline_s` runs out."""
    found: dict[str, str] = {}
    pending = list(wanted)
    wait, waited = first_wait_s, 0.0
    while True:
        problems: list[str] = []
        for setting in list(pending):
            try:
                value = source.get(SECRETS[setting])
            except Exception as exc:  # the SDK's errors share no base we could name more narrowly
                if not _transient(exc):
                    raise RuntimeError(f"Key Vault refused {SECRETS[setting]}: {type(exc).__name__}") from None
                problems.append(f"{SECRETS[setting]} ({getattr(exc, 'status_code', None) or type(exc).__name__})")
                continue
            if value:
                found[setting] = value
                pending.remove(setting)
            elif setting in OPTIONAL:
                pending.remove(setting)
            else:
                problems.append(f"{SECRETS[setting]} (not there yet)")
        if not pending:
            return found
        if waited >= deadline_s:
            raise RuntimeError(f"Key Vault: still missing after {waited:.0f} s: {', '.join(problems)}")
        log.warning(
            "waiting for Key Vault: %s; retrying in %.0f s (a new role assignment can take minutes)",
            ", ".join(problems),
            wait,
        )
        sleep(wait)
        waited += wait
        wait = min(wait * 2, 30.0)


def wanted_for(role_needs: list[str], env: Mapping[str, str]) -> list[str]:
    """The settings to read from the vault: those `role_needs` names that the environment leaves
    empty, plus the optional API key."""
    return [name for name in [*role_needs, "OPENAI_API_KEY"] if not env.get(name)]
