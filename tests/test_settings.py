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
        (
            {"OPENAI_BASE": "https://r.openai.azure.com/openai", "REALTIME_API_VERSION": "2025-08-28"},
            "REALTIME_API_VERSION",
        ),
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
    with pytest.raises(ConfigError, match="ADMIN_TOKEN: must be at least 32 characters"):
        build_settings(Role.SESSION_HOST, base_env(CONTAINER_APP_NAME="host", ADMIN_TOKEN="t"))
    ok = build_settings(Role.SESSION_HOST, base_env(CONTAINER_APP_NAME="host", ADMIN_TOKEN="t" * 32))
    assert ok.admin_token == "t" * 32
    assert build_settings(Role.SESSION_HOST, base_env(ADMIN_TOKEN="t")).admin_token == "t", "short is fine locally"


def test_every_problem_is_reported_at_once() -> None:
    env = base_env(
        PORT="99999",
        HANDOFF_SECRET="x",
        STORAGE_CONNECTION_STRING="garbage",
        SESSION_HOST_URL="",
        OPENAI_WEBHOOK_SECRET="plain",
    )
    with pytest.raises(ConfigError) as info:
        build_settings(Role.FUNCTION_APP, env)
    assert [var for var, _ in info.value.problems] == [
        "PORT",
        "OPENAI_WEBHOOK_SECRET",
        "SESSION_HOST_URL",
        "HANDOFF_SECRET",
        "STORAGE_CONNECTION_STRING",
    ]
    lines = str(info.value).splitlines()
    assert len(lines) == 5 and all(line.startswith("configuration error: ") for line in lines)


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("garbage", "is not a list of Name=value pairs"),
        ("DefaultEndpointsProtocol=https;AccountKey=abc", "names neither TableEndpoint nor AccountName"),
        ("AccountName=a;TableEndpoint=ftp://x", "TableEndpoint must be an http(s) URL"),
        (
            "AccountName=a;TableEndpoint=https://a.table.core.windows.net",
            "neither AccountKey nor SharedAccessSignature",
        ),
    ],
)
def test_a_malformed_connection_string_is_one_line(value: str, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        build_settings(Role.SESSION_HOST, base_env(STORAGE_CONNECTION_STRING=value))
    assert str(info.value) == f"configuration error: STORAGE_CONNECTION_STRING: {problem}" or problem in str(info.value)
    assert len(str(info.value).splitlines()) == 1


def test_handoff_secret_must_differ_from_the_webhook_secret() -> None:
    secret = new_secret()
    with pytest.raises(ConfigError, match="HANDOFF_SECRET: must differ"):
        build_settings(Role.FUNCTION_APP, base_env(HANDOFF_SECRET=secret, OPENAI_WEBHOOK_SECRET=secret))


@pytest.mark.parametrize("module", ["function_app", "session_host"])
def test_entry_point_stops_with_one_line(module: str, tmp_path: Path) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "HANDOFF_SECRET": "not-a-whsec",
        "OPENAI_API_KEY": "k",
        "OPENAI_WEBHOOK_SECRET": new_secret(),
        "SESSION_HOST_URL": "http://x",
        "STORAGE_CONNECTION_STRING": "UseDevelopmentStorage=true",
        "PYTHONPATH": str(ROOT),
    }
    proc = subprocess.run(
        [sys.executable, "-m", module], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines == [
        "configuration error: HANDOFF_SECRET: must be a Standard Webhooks secret of the form whsec_<base64>"
    ]
    env["PORT"] = env["FUNCTIONS_PORT"] = "0"
    proc = subprocess.run(
        [sys.executable, "-m", module], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 3, lines
    assert {line.split(":")[1].strip() for line in lines} == {"PORT", "FUNCTIONS_PORT", "HANDOFF_SECRET"}


def test_env_example_documents_every_setting() -> None:
    from callplane.settings import Settings

    documented = {
        line.split("=")[0]
        for line in (ROOT / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    }
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

    settings = build_settings(
        Role.SESSION_HOST, base_env(OPENAI_API_KEY="", OPENAI_BASE="https://r.openai.azure.com/openai")
    )
    cred = Credential()
    auth = RealtimeAuth(settings, cred)
    assert await auth.headers() == {"Authorization": "Bearer tok1"}
    assert await auth.headers() == {"Authorization": "Bearer tok1"}, "cached until near expiry"
    assert cred.scopes == [COGNITIVE_SCOPE]
    keyed = build_settings(Role.SESSION_HOST, base_env(OPENAI_BASE="https://r.openai.azure.com/openai"))
    assert await RealtimeAuth(keyed).headers() == {"api-key": "k"}
    openai = build_settings(Role.SESSION_HOST, base_env())
    assert await RealtimeAuth(openai).headers() == {"Authorization": "Bearer k"}
