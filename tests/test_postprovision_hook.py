"""The azd postprovision hook against the simulator's Azure webhook_endpoints API: it generates
the app secrets once, registers the webhook once, and re-runs change nothing. (Key Vault cannot
be reached here: the hook's SecretStore is a dict in this test; the KeyVaultStore is 20 lines of
azure-keyvault-secrets calls.)"""

from __future__ import annotations

import asyncio
import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

from tests.stack import run_stack

HOOK = Path(__file__).resolve().parent.parent / "infra" / "hooks" / "postprovision.py"


def load_hook() -> ModuleType:
    spec = importlib.util.spec_from_file_location("postprovision", HOOK)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class DictStore:
    def __init__(self) -> None:
        self.values: dict[str, str] = {}
        self.writes = 0

    def get(self, name: str) -> str | None:
        return self.values.get(name)

    def set(self, name: str, value: str) -> None:
        self.values[name] = value
        self.writes += 1


async def test_hook_is_idempotent_against_the_simulator(conn: str) -> None:
    hook = load_hook()
    async with run_stack(conn, dialect="azure") as stack:
        store = DictStore()
        auth = {"api-key": stack.sim.config.api_key}
        url = "https://func-abc.azurewebsites.net/openai/webhook"

        def run() -> str:
            hook.ensure_generated(store)
            return str(hook.ensure_webhook(store, hook.urllib_http, stack.sim_url, auth, url))

        assert await asyncio.to_thread(run) == "created"
        assert store.values["handoff-secret"].startswith("whsec_")
        assert len(store.values["admin-token"]) >= 32
        secret = store.values["webhook-secret"]
        assert secret.startswith("whsec_")
        writes = store.writes
        assert await asyncio.to_thread(run) == "kept"
        assert store.writes == writes, "a second run writes nothing"
        endpoints = stack.sim.config.webhook_endpoints
        assert [e["url"] for e in endpoints] == [url]

        # The secret was lost (e.g. a new vault): the endpoint is replaced, not duplicated.
        del store.values["webhook-secret"]
        assert await asyncio.to_thread(run) == "replaced"
        assert [e["url"] for e in stack.sim.config.webhook_endpoints] == [url]
        assert store.values["webhook-secret"] != secret

        with pytest.raises(RuntimeError, match="401"):
            await asyncio.to_thread(
                hook.ensure_webhook, store, hook.urllib_http, stack.sim_url, {"api-key": "wrong"}, url
            )


@pytest.mark.parametrize("path", ["key", "entra"])
async def test_hook_retries_a_403_until_the_role_applies(conn: str, path: str) -> None:
    """Both ways the hook authenticates (the resource's API key; the deployer's Entra token), with
    Azure answering 403 while a fresh role assignment propagates: retried with backoff, then done."""
    hook = load_hook()
    async with run_stack(conn, dialect="azure") as stack:
        store = DictStore()
        url = "https://func-abc.azurewebsites.net/openai/webhook"
        if path == "entra":
            stack.sim.config.entra_tokens.add("entra-token-for-deployer")
            auth = {"Authorization": "Bearer entra-token-for-deployer"}
        else:
            auth = {"api-key": stack.sim.config.api_key}
        stack.sim.config.forbidden_next = 3
        waits: list[float] = []
        said: list[str] = []
        http = hook.retrying(hook.urllib_http, sleep=waits.append, say=said.append)
        outcome = await asyncio.to_thread(hook.ensure_webhook, store, http, stack.sim_url, auth, url)
        assert outcome == "created" and store.values["webhook-secret"].startswith("whsec_")
        assert waits == [2.0, 4.0, 8.0] and all("403" in line for line in said)
        assert [e["url"] for e in stack.sim.config.webhook_endpoints] == [url]
        # A 403 that never goes away ends the hook with the status, after the last attempt.
        stack.sim.config.forbidden_next = 100
        del store.values["webhook-secret"]
        with pytest.raises(RuntimeError, match="403"):
            await asyncio.to_thread(
                hook.ensure_webhook,
                store,
                hook.retrying(hook.urllib_http, attempts=3, sleep=waits.append, say=said.append),
                stack.sim_url,
                auth,
                url,
            )


def test_key_vault_writes_are_retried_while_the_role_propagates() -> None:
    hook = load_hook()

    class Forbidden(Exception):
        status_code = 403

    calls: list[int] = []

    def write() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise Forbidden()
        return "ok"

    waits: list[float] = []
    assert hook.with_retries(write, "writing x", sleep=waits.append) == "ok"
    assert waits == [2.0, 4.0]

    class NotFound(Exception):
        status_code = 404

    def missing() -> None:
        raise NotFound()

    with pytest.raises(NotFound):
        hook.with_retries(missing, "reading y", sleep=waits.append)
