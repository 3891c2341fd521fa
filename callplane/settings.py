"""Settings read once from the environment and `.env`, named as in the seed and the Bicep outputs.

`load_settings()` is the only entry: it validates everything and, on a bad or missing value,
stops the process with one line naming the variable (an operator reads that line in a log
stream; a pydantic traceback hides it).
"""

from __future__ import annotations

import logging
import os
import sys
from enum import StrEnum
from typing import Literal
from urllib.parse import urlparse

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

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
    """A setting is missing or invalid. `str()` is the one line shown at start-up."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"configuration error: {variable}: {problem}")
        self.variable = variable


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


def running_in_azure(env: dict[str, str] | None = None) -> bool:
    env = dict(os.environ) if env is None else env
    return bool(env.get("WEBSITE_INSTANCE_ID") or env.get("CONTAINER_APP_NAME"))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    # --- the seed's names -------------------------------------------------------------------
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

    # --- what the split into two deployables needs ----------------------------------------
    realtime_dialect: Dialect | None = Field(default=None, alias="REALTIME_DIALECT")
    session_host_url: str = Field(default="", alias="SESSION_HOST_URL")
    handoff_secret: str = Field(default="", alias="HANDOFF_SECRET")
    storage_connection_string: str = Field(default="", alias="STORAGE_CONNECTION_STRING")
    storage_table_endpoint: str = Field(default="", alias="STORAGE_TABLE_ENDPOINT")
    admin_token: str = Field(default="", alias="ADMIN_TOKEN")
    max_calls_per_replica: int = Field(default=200, alias="MAX_CALLS_PER_REPLICA", ge=1)
    overflow_target_uri: str = Field(default="", alias="OVERFLOW_TARGET_URI")
    caller_allow: str = Field(default="", alias="CALLER_ALLOW")
    caller_deny: str = Field(default="", alias="CALLER_DENY")
    applicationinsights_connection_string: str = Field(
        default="", alias="APPLICATIONINSIGHTS_CONNECTION_STRING"
    )
    functions_port: int = Field(default=7071, alias="FUNCTIONS_PORT", ge=1, le=65535)
    simulator_port: int = Field(default=8089, alias="SIMULATOR_PORT", ge=1, le=65535)
    max_call_seconds: float = Field(default=1800.0, alias="MAX_CALL_SECONDS", gt=0)
    # A chat model (Azure: its deployment name) for the end-of-call summary; empty = offline only.
    summary_model: str = Field(default="", alias="SUMMARY_MODEL")
    shutdown_grace_seconds: float = Field(default=25.0, alias="SHUTDOWN_GRACE_SECONDS", ge=0)
    lease_ttl_seconds: float = Field(default=6.0, alias="LEASE_TTL_SECONDS", ge=0.5, le=120)
    table_prefix: str = Field(default="", alias="TABLE_PREFIX", pattern=r"^[A-Za-z]?[A-Za-z0-9]{0,20}$")

    @field_validator("log_format", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("realtime_dialect", mode="before")
    @classmethod
    def _empty_dialect(cls, value: object) -> object:
        return None if value == "" else value

    @model_validator(mode="after")
    def _derive(self) -> Settings:
        if self.realtime_dialect is None:
            host = urlparse(self.openai_base).hostname or ""
            self.realtime_dialect = (
                Dialect.AZURE if host.endswith(".openai.azure.com") else Dialect.OPENAI
            )
        return self

    @property
    def dialect(self) -> Dialect:
        assert self.realtime_dialect is not None  # set by _derive
        return self.realtime_dialect

    @property
    def call_control_base(self) -> str:
        """`{OPENAI_BASE}/v1/realtime/calls` as in the seed (Azure's base already ends in /openai)."""
        return self.openai_base.rstrip("/") + "/v1/realtime/calls"

    def check(self, role: Role, env: dict[str, str] | None = None) -> None:
        """Rules that span fields or depend on the role; raises ConfigError naming the variable."""
        in_azure = running_in_azure(env)
        for name in ("OPENAI_BASE",):
            if urlparse(self.openai_base).scheme not in ("http", "https"):
                raise ConfigError(name, "must be an http(s) URL")
        if urlparse(self.realtime_ws_base).scheme not in ("ws", "wss"):
            raise ConfigError("REALTIME_WS_BASE", "must be a ws(s) URL")
        if self.dialect is Dialect.AZURE and self.realtime_api_version:
            raise ConfigError(
                "REALTIME_API_VERSION",
                "must be empty with the azure dialect: the GA /openai/v1 path answers 401 to api-version",
            )
        if self.test_mode and in_azure:
            raise ConfigError("TEST_MODE", "signature checks cannot be switched off when running in Azure")
        # Azure without a key uses the managed identity (Entra token); OpenAI always needs the key.
        if role in (Role.FUNCTION_APP, Role.SESSION_HOST) and not self.openai_api_key \
                and self.dialect is Dialect.OPENAI:
            raise ConfigError("OPENAI_API_KEY", "is required with the openai dialect")
        if role is Role.FUNCTION_APP:
            if not self.test_mode or self.openai_webhook_secret:
                if not self.openai_webhook_secret:
                    raise ConfigError("OPENAI_WEBHOOK_SECRET", "is required (or TEST_MODE=1 locally)")
                _check_whsec("OPENAI_WEBHOOK_SECRET", self.openai_webhook_secret)
            if not self.session_host_url:
                raise ConfigError("SESSION_HOST_URL", "is required")
            if urlparse(self.session_host_url).scheme not in ("http", "https"):
                raise ConfigError("SESSION_HOST_URL", "must be an http(s) URL")
        if role in (Role.FUNCTION_APP, Role.SESSION_HOST):
            if not self.handoff_secret:
                raise ConfigError("HANDOFF_SECRET", "is required")
            _check_whsec("HANDOFF_SECRET", self.handoff_secret)
            if not (self.storage_connection_string or self.storage_table_endpoint):
                raise ConfigError(
                    "STORAGE_CONNECTION_STRING",
                    "set it (Azurite / account key) or STORAGE_TABLE_ENDPOINT (managed identity)",
                )
        if role is Role.SESSION_HOST and in_azure and not self.admin_token:
            raise ConfigError("ADMIN_TOKEN", "is required when running in Azure")
        if role is Role.SIMULATOR and self.openai_webhook_secret:
            _check_whsec("OPENAI_WEBHOOK_SECRET", self.openai_webhook_secret)


def _from_validation_error(exc: ValidationError) -> ConfigError:
    first = exc.errors()[0]
    loc = first.get("loc") or ("?",)
    return ConfigError(str(loc[0]), first.get("msg", "invalid value"))


def build_settings(role: Role, env: dict[str, str] | None = None, *, env_file: str | None = ".env") -> Settings:
    """Validate settings for `role`; raises ConfigError. `env` replaces os.environ (tests)."""
    try:
        if env is None:
            settings = Settings(_env_file=env_file)
        else:
            settings = Settings.model_validate(env)
    except ValidationError as exc:
        raise _from_validation_error(exc) from None
    settings.check(role, env)
    return settings


def load_settings(role: Role) -> Settings:
    """Start-up entry: on a configuration error print one line and exit with status 2."""
    try:
        settings = build_settings(role)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        raise SystemExit(2) from None
    log.info("realtime dialect: %s", settings.dialect.value)
    return settings
