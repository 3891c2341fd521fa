"""Agent profiles: what the agent says and does on a line, as data instead of code.

A profile is the instructions (with `{caller_number}`, `{called_number}` and `{x_<header>}`
placeholders filled per call), the greeting, voice, language, model, the tools it may use (from
`callplane/tools/`) with per-tool timeouts, transfer targets by reason, and how it behaves on a
phone line: turn detection, noise reduction, an opening disclosure. A call picks its profile by
the number it was made to (the `To` header, else `Diversion`), then by the header named in
PROFILE_HEADER, else `default`; the built-in default reproduces the behaviour of a deployment
without profiles. Profiles and routes live in Table Storage, versioned (see
callplane/store/profile_store.py); a live call keeps the version it started with.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from callplane import prompts
from callplane.handoff import SipHeader, e164
from callplane.tools import TOOLS

DEFAULT = "default"
NAME = r"^[a-z0-9][a-z0-9-]{0,62}$"
# The voices the GA Realtime API offers.
VOICES = ("alloy", "ash", "ballad", "cedar", "coral", "echo", "marin", "sage", "shimmer", "verse")
_PLACEHOLDER = re.compile(r"\{([a-z_][a-z0-9_]*)\}")
_SIP_TARGET = re.compile(r"^(tel:\+?[0-9]{3,20}|sips?:[^@\s]+@[^\s]+)$")


class TurnDetection(BaseModel):
    """As the GA session schema spells it (`audio.input.turn_detection`), camelCase here."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["server_vad", "semantic_vad"] = "server_vad"
    threshold: float | None = Field(default=None, ge=0.0, le=1.0)
    prefixPaddingMs: int | None = Field(default=None, ge=0, le=2000)
    silenceDurationMs: int | None = Field(default=500, ge=100, le=5000)
    eagerness: Literal["low", "medium", "high", "auto"] | None = None

    @model_validator(mode="after")
    def _fits_type(self) -> TurnDetection:
        if self.type == "semantic_vad" and (self.threshold is not None or self.prefixPaddingMs is not None):
            raise ValueError("semantic_vad takes eagerness only (threshold and prefixPaddingMs are server_vad's)")
        if self.type == "server_vad" and self.eagerness is not None:
            raise ValueError("eagerness belongs to semantic_vad")
        return self

    def session_field(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type, "create_response": True, "interrupt_response": True}
        if self.type == "semantic_vad":
            if self.eagerness:
                out["eagerness"] = self.eagerness
            return out
        for key, value in (
            ("threshold", self.threshold),
            ("prefix_padding_ms", self.prefixPaddingMs),
            ("silence_duration_ms", self.silenceDurationMs),
        ):
            if value is not None:
                out[key] = value
        return out


class SilencePolicy(BaseModel):
    """A silent caller is asked again, a few times, then said goodbye to (not cut off)."""

    model_config = ConfigDict(extra="forbid")

    repromptAfterS: float = Field(default=8.0, ge=1.0, le=120.0)
    maxReprompts: int = Field(default=2, ge=0, le=5)
    reprompt: str = Field(
        default="The caller has gone quiet. Briefly ask whether they are still there.", max_length=500
    )


class SlowTools(BaseModel):
    """Dead air while a tool runs: after `fillerAfterMs` the agent says a short filler, and a tool
    that passes its timeout gets a spoken apology, never silence."""

    model_config = ConfigDict(extra="forbid")

    fillerAfterMs: int = Field(default=1500, ge=200, le=10_000)
    filler: str = Field(default="One moment while I check that.", min_length=1, max_length=200)


ToolName = Annotated[str, Field(min_length=1, max_length=64)]


class Profile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    instructions: str = Field(min_length=1, max_length=20_000)
    greeting: str = Field(default=prompts.GREETING, min_length=1, max_length=2_000)
    voice: str = "marin"
    language: str | None = Field(default=None, pattern=r"^[a-z]{2}(-[A-Z]{2})?$")
    model: str | None = Field(default=None, min_length=1, max_length=100)
    tools: list[ToolName] = Field(default_factory=lambda: list(TOOLS))
    toolTimeouts: dict[str, float] = Field(default_factory=dict)
    transferTargets: dict[str, str] = Field(default_factory=dict, description="reason (or 'default') -> tel:/sip:")
    turnDetection: TurnDetection = Field(default_factory=TurnDetection)
    noiseReduction: Literal["near_field", "far_field"] | None = None
    disclosure: str | None = Field(default=None, max_length=2_000, description="spoken first; cannot be interrupted")
    silence: SilencePolicy | None = None  # None: after two minutes of silence the call is wrapped up
    slowTools: SlowTools | None = None

    @field_validator("voice")
    @classmethod
    def _voice(cls, value: str) -> str:
        if value not in VOICES:
            raise ValueError(f"unknown voice {value!r}; one of {', '.join(VOICES)}")
        return value

    @field_validator("tools")
    @classmethod
    def _tools(cls, value: list[str]) -> list[str]:
        unknown = [t for t in value if t not in TOOLS]
        if unknown:
            raise ValueError(f"no such tool: {', '.join(unknown)}; the tools are {', '.join(sorted(TOOLS))}")
        if len(set(value)) != len(value):
            raise ValueError("a tool is listed twice")
        return value

    @field_validator("toolTimeouts")
    @classmethod
    def _timeouts(cls, value: dict[str, float]) -> dict[str, float]:
        for name, seconds in value.items():
            if name not in TOOLS:
                raise ValueError(f"no such tool: {name}")
            if not 0.1 <= seconds <= 60:
                raise ValueError(f"{name}: a timeout from 0.1 to 60 seconds")
        return value

    @field_validator("transferTargets")
    @classmethod
    def _targets(cls, value: dict[str, str]) -> dict[str, str]:
        for reason, target in value.items():
            if not _SIP_TARGET.match(target):
                raise ValueError(f"{reason}: {target!r} is not a tel:+<digits> or sip:user@host URI")
        return value

    @field_validator("instructions", "greeting", "disclosure")
    @classmethod
    def _placeholders(cls, text: str | None) -> str | None:
        for name in _PLACEHOLDER.findall(text or ""):
            if name not in ("caller_number", "called_number") and not name.startswith("x_"):
                raise ValueError(
                    f"placeholder {{{name}}} is not defined (use caller_number, called_number or x_<header>)"
                )
        return text

    def render(self, text: str, variables: dict[str, str]) -> str:
        """`text` with its placeholders filled; an unknown SIP header becomes an empty string."""
        return _PLACEHOLDER.sub(lambda m: variables.get(m.group(1), ""), text)

    def transfer_target(self, reason: str | None, fallback: str) -> str:
        if reason:
            for key, target in self.transferTargets.items():
                if key.lower() in reason.lower():
                    return target
        return self.transferTargets.get("default", fallback)


class Route(BaseModel):
    model_config = ConfigDict(extra="forbid")

    profile: str = Field(pattern=NAME)


class ChosenProfile(BaseModel):
    """What a call carries from the webhook to its session (in the hand-off and the lease)."""

    name: str
    version: int
    profile: Profile
    variables: dict[str, str] = Field(default_factory=dict)


def builtin_default(voice: str) -> Profile:
    """Today's behaviour, as a profile: the built-in prompt, greeting and every tool."""
    return Profile(
        instructions=prompts.INSTRUCTIONS, greeting=prompts.GREETING, voice=voice if voice in VOICES else "marin"
    )


def called_number(headers: list[SipHeader]) -> str | None:
    """The number the caller dialled: the `To` URI's user part, else `Diversion`'s."""
    from callplane.handoff import _URI_USER

    by_name = {h.name.lower(): h.value for h in headers}
    for name in ("to", "t", "diversion"):
        match = _URI_USER.search(by_name.get(name, ""))
        if match:
            return e164(match.group(1))
    return None


def call_variables(caller: str | None, called: str | None, headers: list[SipHeader]) -> dict[str, str]:
    out = {"caller_number": caller or "", "called_number": called or ""}
    for header in headers:
        if header.name.lower().startswith("x-"):
            out["x_" + header.name[2:].lower().replace("-", "_")] = header.value[:200]
    return out


def chosen_of(req: Any) -> ChosenProfile | None:
    """The profile a hand-off carries (None: the built-in agent)."""
    raw = getattr(req, "profile", None)
    return ChosenProfile.model_validate(raw) if raw else None
