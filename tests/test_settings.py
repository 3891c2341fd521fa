from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from callplane.settings import ConfigError, Dialect, Role, build_settings
from callplane.signing import new_secret

ROOT = Path(__file__).resolve().parent.parent


def base_env(**extra: str) -> dict[str, str]:
    env = {
        "OPENAI_API_KEY": "k",
        "OPENAI_WEBHOOK_SECRET": new_secret(),
        "HANDOFF_SECRET": new_secret(),
        "SESSION_HOST_URL": "http://127.0.0.1:8000",
        "STORAGE_CONNECTION_STRING": "UseDevelopmentStorage=true",
    }
    env.update(extra)
    return env


def test_dialect_is_derived_from_the_base_host() -> None:
    azure = build_settings(Role.FUNCTION_APP, base_env(OPENAI_BASE="https://res.openai.azure.com/openai"))
    assert azure.dialect is Dialect.AZURE
    plain = build_settings(Role.FUNCTION_APP, base_env())
    assert plain.dialect is Dialect.OPENAI
    forced = build_settings(Role.FUNCTION_APP, base_env(REALTIME_DIALECT="azure"))
    assert forced.dialect is Dialect.AZURE


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"OPENAI_WEBHOOK_SECRET": "plainsecret"}, "OPENAI_WEBHOOK_SECRET"),
        ({"OPENAI_WEBHOOK_SECRET": "whsec_!!notbase64"}, "OPENAI_WEBHOOK_SECRET"),
        ({"OPENAI_WEBHOOK_SECRET": ""}, "OPENAI_WEBHOOK_SECRET"),
        ({"HANDOFF_SECRET": "abc"}, "HANDOFF_SECRET"),
        ({"SESSION_HOST_URL": ""}, "SESSION_HOST_URL"),
        ({"SESSION_HOST_URL": "ftp://x"}, "SESSION_HOST_URL"),
        ({"STORAGE_CONNECTION_STRING": ""}, "STORAGE_CONNECTION_STRING"),
        ({"OPENAI_API_KEY": "", "REALTIME_DIALECT": "openai"}, "OPENAI_API_KEY"),
        ({"PORT": "70000"}, "PORT"),
        ({"LOG_FORMAT": "xml"}, "LOG_FORMAT"),
        ({"REALTIME_DIALECT": "gcp"}, "REALTIME_DIALECT"),
        ({"OPENAI_BASE": "https://r.openai.azure.com/openai", "REALTIME_API_VERSION": "2025-08-28"},
         "REALTIME_API_VERSION"),
        ({"TEST_MODE": "1", "WEBSITE_INSTANCE_ID": "abc"}, "TEST_MODE"),
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError) as info:
        build_settings(Role.FUNCTION_APP, base_env(**env))
    assert info.value.variable == variable
    assert str(info.value).startswith(f"configuration error: {variable}:")


def test_test_mode_allows_no_webhook_secret_locally() -> None:
    settings = build_settings(Role.FUNCTION_APP, base_env(OPENAI_WEBHOOK_SECRET="", TEST_MODE="1"))
    assert settings.test_mode


def test_admin_token_required_in_azure() -> None:
    with pytest.raises(ConfigError) as info:
        build_settings(Role.SESSION_HOST, base_env(CONTAINER_APP_NAME="host"))
    assert info.value.variable == "ADMIN_TOKEN"
    ok = build_settings(Role.SESSION_HOST, base_env(CONTAINER_APP_NAME="host", ADMIN_TOKEN="t"))
    assert ok.admin_token == "t"


@pytest.mark.parametrize("module", ["function_app", "session_host"])
def test_entry_point_stops_with_one_line(module: str, tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HANDOFF_SECRET": "not-a-whsec", "OPENAI_API_KEY": "k",
           "OPENAI_WEBHOOK_SECRET": new_secret(), "SESSION_HOST_URL": "http://x",
           "STORAGE_CONNECTION_STRING": "UseDevelopmentStorage=true", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", module], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines == ["configuration error: HANDOFF_SECRET: must be a Standard Webhooks secret of the form whsec_<base64>"]


def test_env_example_documents_every_setting() -> None:
    from callplane.settings import Settings

    documented = {line.split("=")[0] for line in (ROOT / ".env.example").read_text().splitlines()
                  if line and not line.startswith("#")}
    aliases = {str(field.alias) for field in Settings.model_fields.values()}
    assert aliases <= documented, aliases - documented


async def test_azure_without_a_key_uses_an_entra_token() -> None:
    from callplane.call_control import COGNITIVE_SCOPE, RealtimeAuth

    class Token:
        def __init__(self, value: str) -> None:
            self.token, self.expires_on = value, 10**10

    class Credential:  # the azure-identity credential protocol: get_token(scope)
        def __init__(self) -> None:
            self.scopes: list[str] = []

        async def get_token(self, scope: str) -> Token:
            self.scopes.append(scope)
            return Token(f"tok{len(self.scopes)}")

    settings = build_settings(Role.SESSION_HOST, base_env(OPENAI_API_KEY="", OPENAI_BASE="https://r.openai.azure.com/openai"))
    cred = Credential()
    auth = RealtimeAuth(settings, cred)
    assert await auth.headers() == {"Authorization": "Bearer tok1"}
    assert await auth.headers() == {"Authorization": "Bearer tok1"}, "cached until near expiry"
    assert cred.scopes == [COGNITIVE_SCOPE]
    keyed = build_settings(Role.SESSION_HOST, base_env(OPENAI_BASE="https://r.openai.azure.com/openai"))
    assert await RealtimeAuth(keyed).headers() == {"api-key": "k"}
    openai = build_settings(Role.SESSION_HOST, base_env())
    assert await RealtimeAuth(openai).headers() == {"Authorization": "Bearer k"}
