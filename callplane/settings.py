"""Settings read once from the environment and `.env`, named as in `.env.example` and the Bicep outputs.

`load_settings()` is the only entry: it validates everything and, on a bad or missing value,
stops the process with one line naming the variable (an operator reads that line in a log
stream; a pydantic traceback hides it).
"""

from __future__ import annotations

import logging
import os
import sys
from enum import StrEnum
from typing import Any, Literal
from urllib.parse import urlparse

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from callplane.pricing import Price, parse_prices, price_for
from callplane.vault import KeyVaultSource, SecretSource, read_secrets, wanted_for

log = logging.getLogger(__name__)


class Dialect(StrEnum):
    AZURE = "azure"
    OPENAI = "openai"


class Role(StrEnum):
    """Which deployable is reading the settings; each needs a different subset."""

    FUNCTION_APP = "function_app"
    SESSION_HOST = "session_host"
    SIMULATOR = "simulator"


class ConfigError(Exception):
    """One or more settings are missing or invalid. `str()` is one line per problem, every
    problem of the environment at once, so an operator fixes them in one pass."""

    def __init__(self, variable: str, problem: str, more: list[tuple[str, str]] | None = None) -> None:
        self.problems = [(variable, problem), *(more or [])]
        super().__init__("\n".join(f"configuration error: {var}: {text}" for var, text in self.problems))
        self.variable = variable

    @classmethod
    def of(cls, problems: list[tuple[str, str]]) -> ConfigError:
        return cls(problems[0][0], problems[0][1], problems[1:])


def _check_whsec(variable: str, value: str) -> str:
    # The two common verifiers (standardwebhooks, openai) read bare secrets differently, so only
    # the unambiguous `whsec_<base64>` form is allowed.
    import base64
    import binascii

    if not value.startswith("whsec_"):
        raise ConfigError(variable, "must be a Standard Webhooks secret of the form whsec_<base64>")
    try:
        key = base64.b64decode(value.removeprefix("whsec_"), validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(variable, "the part after whsec_ is not valid base64") from None
    if len(key) < 16:
        raise ConfigError(variable, "the decoded key is shorter than 16 bytes")
    return value


def _connection_string_problem(value: str) -> str | None:
    """A connection string the table SDK would reject at first use, told at start-up instead."""
    if value == "UseDevelopmentStorage=true":
        return None
    parts = dict(part.split("=", 1) for part in value.split(";") if "=" in part)
    if any(part and "=" not in part for part in value.split(";")):
        return "is not a list of Name=value pairs separated by ;"
    if not (parts.get("TableEndpoint") or parts.get("AccountName")):
        return "names neither TableEndpoint nor AccountName"
    endpoint = parts.get("TableEndpoint", "")
    if endpoint and urlparse(endpoint).scheme not in ("http", "https"):
        return "TableEndpoint must be an http(s) URL"
    if not (parts.get("AccountKey") or parts.get("SharedAccessSignature")):
        return "has neither AccountKey nor SharedAccessSignature"
    return None


def running_in_azure(env: dict[str, str] | None = None) -> bool:
    env = dict(os.environ) if env is None else env
    return bool(env.get("WEBSITE_INSTANCE_ID") or env.get("CONTAINER_APP_NAME"))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    # --- Realtime and process settings ---------------------------------------------------------------
    openai_api_key: str = Field(default="", alias="OPENAI_API_KEY")
    openai_webhook_secret: str = Field(default="", alias="OPENAI_WEBHOOK_SECRET")
    realtime_model: str = Field(default="gpt-realtime", alias="REALTIME_MODEL")
    realtime_voice: str = Field(default="marin", alias="REALTIME_VOICE")
    sip_target_uri: str = Field(default="", alias="SIP_TARGET_URI")
    port: int = Field(default=8000, alias="PORT", ge=1, le=65535)
    openai_base: str = Field(default="https://api.openai.com", alias="OPENAI_BASE")
    realtime_ws_base: str = Field(default="wss://api.openai.com/v1/realtime", alias="REALTIME_WS_BASE")
    realtime_api_version: str = Field(default="", alias="REALTIME_API_VERSION")
    test_mode: bool = Field(default=False, alias="TEST_MODE")
    log_format: Literal["pretty", "json"] = Field(default="pretty", alias="LOG_FORMAT")
    debug_logging: bool = Field(default=False, alias="DEBUG_LOGGING")
    # The session host's event loop (the Function App runs on its host's).
    event_loop: Literal["uvloop", "asyncio"] = Field(default="uvloop", alias="EVENT_LOOP")

    # --- what the split into two deployables needs ----------------------------------------
    realtime_dialect: Dialect | None = Field(default=None, alias="REALTIME_DIALECT")
    session_host_url: str = Field(default="", alias="SESSION_HOST_URL")
    handoff_secret: str = Field(default="", alias="HANDOFF_SECRET")
    storage_connection_string: str = Field(default="", alias="STORAGE_CONNECTION_STRING")
    storage_table_endpoint: str = Field(default="", alias="STORAGE_TABLE_ENDPOINT")
    admin_token: str = Field(default="", alias="ADMIN_TOKEN")
    # A SIP header whose value names the agent profile, for calls whose number has no route.
    profile_header: str = Field(default="", alias="PROFILE_HEADER", pattern=r"^([A-Za-z][A-Za-z0-9-]{0,63})?$")
    # In Azure: the vault the apps read their secrets from at start-up (callplane/vault.py).
    key_vault_uri: str = Field(default="", alias="KEY_VAULT_URI")
    azure_client_id: str = Field(default="", alias="AZURE_CLIENT_ID")
    # Callers' numbers leave the API and the dashboard feed masked unless this is set.
    show_caller_numbers: bool = Field(default=False, alias="SHOW_CALLER_NUMBERS")
    max_calls_per_replica: int = Field(default=200, alias="MAX_CALLS_PER_REPLICA", ge=1)
    overflow_target_uri: str = Field(default="", alias="OVERFLOW_TARGET_URI")
    caller_allow: str = Field(default="", alias="CALLER_ALLOW")
    caller_deny: str = Field(default="", alias="CALLER_DENY")
    applicationinsights_connection_string: str = Field(default="", alias="APPLICATIONINSIGHTS_CONNECTION_STRING")
    functions_port: int = Field(default=7071, alias="FUNCTIONS_PORT", ge=1, le=65535)
    max_call_seconds: float = Field(default=1800.0, alias="MAX_CALL_SECONDS", gt=0)
    # Calls, transcripts and index rows older than this are purged (0: kept forever).
    retention_days: float = Field(default=30.0, alias="RETENTION_DAYS", ge=0)
    # Store callers' numbers only as a keyed hash (HMAC-SHA256 with CALLER_HASH_KEY).
    hash_caller_numbers: bool = Field(default=False, alias="HASH_CALLER_NUMBERS")
    caller_hash_key: str = Field(default="", alias="CALLER_HASH_KEY")
    # Token prices (JSON, USD per million) over the defaults in callplane/pricing.py.
    prices: str = Field(default="", alias="PRICES")
    # A chat model (Azure: its deployment name) for the end-of-call summary; empty = offline only.
    summary_model: str = Field(default="", alias="SUMMARY_MODEL")
    shutdown_grace_seconds: float = Field(default=25.0, alias="SHUTDOWN_GRACE_SECONDS", ge=0)
    lease_ttl_seconds: float = Field(default=6.0, alias="LEASE_TTL_SECONDS", ge=0.5, le=120)
    # A peer follows every live call on a second control socket, ready to take it over at once.
    standby: bool = Field(default=True, alias="STANDBY")
    table_prefix: str = Field(default="", alias="TABLE_PREFIX", pattern=r"^[A-Za-z]?[A-Za-z0-9]{0,20}$")
    # Table writes and queries sent with aiohttp and signed by callplane/store/direct.py (a third
    # of the SDK pipeline's CPU per request); off: every request through the SDK.
    direct_table_writes: bool = Field(default=True, alias="DIRECT_TABLE_WRITES")

    @field_validator("log_format", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("openai_base", "realtime_ws_base", mode="before")
    @classmethod
    def _empty_is_default(cls, value: object, info: Any) -> object:
        # `.env.example` leaves these empty for local runs; empty means the public endpoint.
        if value == "":
            return cls.model_fields[str(info.field_name)].default
        return value

    @field_validator("realtime_dialect", mode="before")
    @classmethod
    def _empty_dialect(cls, value: object) -> object:
        return None if value == "" else value

    @model_validator(mode="after")
    def _derive(self) -> Settings:
        if self.realtime_dialect is None:
            host = urlparse(self.openai_base).hostname or ""
            self.realtime_dialect = Dialect.AZURE if host.endswith(".openai.azure.com") else Dialect.OPENAI
        return self

    @property
    def dialect(self) -> Dialect:
        assert self.realtime_dialect is not None  # set by _derive
        return self.realtime_dialect

    @property
    def price(self) -> Price:
        """The realtime model's token prices (PRICES over the defaults)."""
        return price_for(parse_prices(self.prices), self.realtime_model)

    @property
    def call_control_base(self) -> str:
        """`{OPENAI_BASE}/v1/realtime/calls` (Azure's base already ends in /openai)."""
        return self.openai_base.rstrip("/") + "/v1/realtime/calls"

    def check(self, role: Role, env: dict[str, str] | None = None) -> None:
        """Rules that span fields or depend on the role; raises one ConfigError naming every problem."""
        problems = self.problems(role, running_in_azure(env))
        if problems:
            raise ConfigError.of(problems)

    def problems(self, role: Role, in_azure: bool) -> list[tuple[str, str]]:
        found: list[tuple[str, str]] = []
        for rule in _RULES:
            for problem in rule(self, role, in_azure):
                if problem[0] not in {var for var, _ in found}:  # the first problem per variable
                    found.append(problem)
        return found


Problems = list[tuple[str, str]]


def _whsec_problem(variable: str, value: str) -> Problems:
    try:
        _check_whsec(variable, value)
    except ConfigError as exc:
        return exc.problems
    return []


def _urls(s: Settings, role: Role, in_azure: bool) -> Problems:
    found: Problems = []
    if urlparse(s.openai_base).scheme not in ("http", "https"):
        found.append(("OPENAI_BASE", "must be an http(s) URL"))
    if urlparse(s.realtime_ws_base).scheme not in ("ws", "wss"):
        found.append(("REALTIME_WS_BASE", "must be a ws(s) URL"))
    try:
        parse_prices(s.prices)
    except ValueError as exc:
        found.append(("PRICES", str(exc)))
    if s.dialect is Dialect.AZURE and s.realtime_api_version:
        found.append(
            (
                "REALTIME_API_VERSION",
                "must be empty with the azure dialect: the GA /openai/v1 path answers 401 to api-version",
            )
        )
    return found


def _auth(s: Settings, role: Role, in_azure: bool) -> Problems:
    found: Problems = []
    if s.test_mode and in_azure:
        found.append(("TEST_MODE", "signature checks cannot be switched off when running in Azure"))
    # Azure without a key uses the managed identity (Entra token); OpenAI always needs the key.
    if role in (Role.FUNCTION_APP, Role.SESSION_HOST) and not s.openai_api_key and s.dialect is Dialect.OPENAI:
        found.append(("OPENAI_API_KEY", "is required with the openai dialect"))
    if role is Role.SESSION_HOST and in_azure:
        if not s.admin_token:
            found.append(("ADMIN_TOKEN", "is required when running in Azure"))
        elif len(s.admin_token) < MIN_ADMIN_TOKEN:
            found.append(("ADMIN_TOKEN", f"must be at least {MIN_ADMIN_TOKEN} characters when running in Azure"))
    return found


def _webhook(s: Settings, role: Role, in_azure: bool) -> Problems:
    found: Problems = []
    if role is Role.FUNCTION_APP:
        if not s.test_mode or s.openai_webhook_secret:
            if not s.openai_webhook_secret:
                found.append(("OPENAI_WEBHOOK_SECRET", "is required (or TEST_MODE=1 locally)"))
            found += _whsec_problem("OPENAI_WEBHOOK_SECRET", s.openai_webhook_secret)
        if not s.session_host_url:
            found.append(("SESSION_HOST_URL", "is required"))
        elif urlparse(s.session_host_url).scheme not in ("http", "https"):
            found.append(("SESSION_HOST_URL", "must be an http(s) URL"))
    if role is Role.SIMULATOR and s.openai_webhook_secret:
        found += _whsec_problem("OPENAI_WEBHOOK_SECRET", s.openai_webhook_secret)
    return found


def _handoff_and_store(s: Settings, role: Role, in_azure: bool) -> Problems:
    if role not in (Role.FUNCTION_APP, Role.SESSION_HOST):
        return []
    found: Problems = []
    if not s.handoff_secret:
        found.append(("HANDOFF_SECRET", "is required"))
    found += _whsec_problem("HANDOFF_SECRET", s.handoff_secret) if s.handoff_secret else []
    if s.handoff_secret and s.handoff_secret == s.openai_webhook_secret:
        found.append(("HANDOFF_SECRET", "must differ from OPENAI_WEBHOOK_SECRET (one leaked key must not sign both)"))
    if s.hash_caller_numbers and len(s.caller_hash_key) < 16:
        found.append(("CALLER_HASH_KEY", "must be at least 16 characters when HASH_CALLER_NUMBERS is on"))
    if not (s.storage_connection_string or s.storage_table_endpoint):
        found.append(
            ("STORAGE_CONNECTION_STRING", "set it (Azurite / account key) or STORAGE_TABLE_ENDPOINT (managed identity)")
        )
    elif s.storage_connection_string and (problem := _connection_string_problem(s.storage_connection_string)):
        found.append(("STORAGE_CONNECTION_STRING", problem))
    elif s.storage_table_endpoint and urlparse(s.storage_table_endpoint).scheme not in ("http", "https"):
        found.append(("STORAGE_TABLE_ENDPOINT", "must be an http(s) URL"))
    return found


_RULES = (_urls, _auth, _webhook, _handoff_and_store)
MIN_ADMIN_TOKEN = 32


def _from_validation_error(exc: ValidationError) -> ConfigError:
    problems = [(str((err.get("loc") or ("?",))[0]), err.get("msg", "invalid value")) for err in exc.errors()]
    return ConfigError.of(problems)


# The secrets each deployable needs, which it reads from Key Vault when KEY_VAULT_URI is set.
ROLE_SECRETS = {
    Role.FUNCTION_APP: ["OPENAI_WEBHOOK_SECRET", "HANDOFF_SECRET"],
    Role.SESSION_HOST: ["HANDOFF_SECRET", "ADMIN_TOKEN"],
    Role.SIMULATOR: [],
}


def build_settings(
    role: Role,
    env: dict[str, str] | None = None,
    *,
    env_file: str | None = ".env",
    secret_source: SecretSource | None = None,
    vault_deadline_s: float = 180.0,
) -> Settings:
    """Validate settings for `role`; raises ConfigError with every problem found. `env` replaces
    os.environ (tests). With KEY_VAULT_URI set, secrets the environment leaves empty are read from
    the vault first (`secret_source` replaces the vault in tests)."""
    from_vault = _from_vault(role, env, env_file, secret_source, vault_deadline_s)

    def read(overrides: dict[str, Any]) -> Settings:
        if env is None:
            return Settings(_env_file=env_file, **{**from_vault, **overrides})
        return Settings.model_validate({**env, **from_vault, **overrides})

    try:
        settings = read({})
    except ValidationError as exc:
        invalid = _from_validation_error(exc)
        # Read again with the invalid values at their defaults, so the rules that span fields
        # report their problems in the same run.
        defaults = {
            str(f.alias): f.default
            for f in Settings.model_fields.values()
            if str(f.alias) in {var for var, _ in invalid.problems}
        }
        try:
            rest = read(defaults).problems(role, running_in_azure(env))
        except ValidationError:
            rest = []
        seen = {var for var, _ in invalid.problems}
        raise ConfigError.of(invalid.problems + [p for p in rest if p[0] not in seen]) from None
    settings.check(role, env)
    return settings


def _from_vault(
    role: Role, env: dict[str, str] | None, env_file: str | None, source: SecretSource | None, deadline_s: float
) -> dict[str, str]:
    values = dict(os.environ) if env is None else dict(env)
    if env is None and env_file:
        from dotenv import dotenv_values

        values = {**{k: v for k, v in dotenv_values(env_file).items() if v}, **{k: v for k, v in values.items() if v}}
    uri = values.get("KEY_VAULT_URI", "")
    if not uri:
        return {}
    wanted = wanted_for(ROLE_SECRETS[role], values)
    if not wanted:
        return {}
    try:
        source = source or KeyVaultSource(uri, values.get("AZURE_CLIENT_ID", ""))
        return read_secrets(source, wanted, deadline_s=deadline_s)
    except RuntimeError as exc:
        raise ConfigError("KEY_VAULT_URI", str(exc)) from None


def load_settings(role: Role) -> Settings:
    """Start-up entry: on configuration errors print one line each and exit with status 2."""
    try:
        settings = build_settings(role)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        raise SystemExit(2) from None
    log.info("realtime dialect: %s", settings.dialect.value)
    return settings
