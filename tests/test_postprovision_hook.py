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
