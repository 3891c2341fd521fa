"""Secrets from Key Vault at start-up (KEY_VAULT_URI): retried while the vault says no or the hook
has not written them yet, and merged into the settings. Key Vault itself cannot be reached here:
the source below stands in for azure-keyvault-secrets' SecretClient (same get-or-None contract)."""

from __future__ import annotations

import pytest

from callplane.settings import ConfigError, Role, build_settings
from callplane.signing import new_secret
from callplane.vault import read_secrets


class Forbidden(Exception):
    status_code = 403


class Vault:
    """Answers 403 for the first `forbidden` reads (role propagation), then the stored values."""

    def __init__(self, values: dict[str, str], forbidden: int = 0) -> None:
        self.values, self.forbidden, self.reads = values, forbidden, 0

    def get(self, name: str) -> str | None:
        self.reads += 1
        if self.forbidden > 0:
            self.forbidden -= 1
            raise Forbidden()
        return self.values.get(name)


def test_reads_retry_through_403_and_missing_secrets() -> None:
    vault = Vault({"handoff-secret": "h"}, forbidden=2)
    waits: list[float] = []
    later = {"admin-token": "a" * 40}

    def sleep(s: float) -> None:
        waits.append(s)
        if len(waits) == 3:
            vault.values.update(later)  # the hook wrote it meanwhile

    got = read_secrets(vault, ["HANDOFF_SECRET", "ADMIN_TOKEN", "OPENAI_API_KEY"], sleep=sleep)
    assert got == {"HANDOFF_SECRET": "h", "ADMIN_TOKEN": "a" * 40}, "the optional API key may be absent"
    assert waits == [1.0, 2.0, 4.0]


def test_gives_up_naming_what_is_missing() -> None:
    with pytest.raises(RuntimeError, match=r"still missing .*handoff-secret \(not there yet\)"):
        read_secrets(Vault({}), ["HANDOFF_SECRET"], deadline_s=5, sleep=lambda s: None)


def test_settings_take_missing_secrets_from_the_vault_and_keep_what_the_environment_sets() -> None:
    handoff, webhook = new_secret(), new_secret()
    env = {
        "KEY_VAULT_URI": "https://kv.vault.azure.net/",
        "SESSION_HOST_URL": "http://h",
        "STORAGE_TABLE_ENDPOINT": "https://a.table.core.windows.net",
        "OPENAI_BASE": "https://r.openai.azure.com/openai",
        "OPENAI_WEBHOOK_SECRET": webhook,
    }
    vault = Vault({"handoff-secret": handoff, "webhook-secret": "whsec_ignored", "openai-api-key": "k"}, forbidden=1)
    settings = build_settings(Role.FUNCTION_APP, env, secret_source=vault, vault_deadline_s=10)
    assert settings.handoff_secret == handoff and settings.openai_api_key == "k"
    assert settings.openai_webhook_secret == webhook, "the environment wins over the vault"
    with pytest.raises(ConfigError) as info:
        build_settings(
            Role.SESSION_HOST, {**env, "CONTAINER_APP_NAME": "x"}, secret_source=Vault({}), vault_deadline_s=0
        )
    assert info.value.variable == "KEY_VAULT_URI" and "admin-token" in str(info.value)


async def test_a_re_registered_webhook_secret_is_picked_up_after_one_refusal(conn: str) -> None:
    """The hook replaced the endpoint (its secret was lost): the service now signs with a new
    secret. The Function App re-reads it from the vault (at most once a minute) instead of
    refusing every call until a restart."""
    from function_app import runtime
    from simulator.scenario import load_scenario
    from tests.stack import run_stack

    async with run_stack(conn) as stack:
        deps = runtime._holder.deps
        assert deps is not None
        fresh = new_secret()
        reads: list[int] = []

        async def reread() -> str:
            reads.append(1)
            return fresh

        deps.reread_secret = reread
        stack.sim.config.webhook_secret = fresh
        call = stack.sim.new_call(load_scenario("greeting_only"))
        await stack.sim.place_call(call)
        stored = await stack.wait_call(call.call_id)
        assert stored["status"] == "completed" and reads == [1]
        # A forged signature afterwards does not make it read the vault again within the minute.
        other = stack.sim.new_call(load_scenario("greeting_only"))
        stack.sim.config.webhook_secret = new_secret()
        await stack.sim.place_call(other)
        assert reads == [1] and other.accept_body is None
