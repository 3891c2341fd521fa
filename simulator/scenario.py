"""Scripted callers: a scenario is a greeting, caller turns and what the "model" answers.

Scenarios are YAML files in simulator/scenarios, validated here. Times are real-pacing
milliseconds; the runner divides them by the time scale.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

SCENARIO_DIR = Path(__file__).resolve().parent / "scenarios"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Say(_Strict):
    say: str = Field(min_length=1)


class CallTool(_Strict):
    tool: str
    arguments: dict[str, Any] | str = Field(default_factory=dict)
    say_before: str | None = None
    hold: int = Field(default=0, ge=0, description="emit the function call once the call's gate N opens (0: at once)")

    def arguments_json(self) -> str:
        import json

        return self.arguments if isinstance(self.arguments, str) else json.dumps(self.arguments)


Step = Say | CallTool


class Turn(_Strict):
    caller: str | None = Field(default=None, description="what the caller says (transcript where allowed)")
    pause_ms: int = Field(default=600, ge=0, description="silence before the caller speaks")
    speech_ms: int = Field(default=1500, ge=50)
    barge_in_after_ms: int | None = Field(
        default=None, ge=0, description="start speaking this long into the previous assistant response"
    )
    assistant: list[Step] = Field(default_factory=list)


class Latency(_Strict):
    """Model time to first delta: a normal distribution clipped at min_ms."""

    mean_ms: float = Field(default=350.0, ge=0)
    stdev_ms: float = Field(default=80.0, ge=0)
    min_ms: float = Field(default=80.0, ge=0)


class Faults(_Strict):
    duplicate_webhook: bool = False
    webhook_delay_ms: int = Field(default=0, ge=0)
    wrong_secret: bool = False
    stale_timestamp: bool = False
    accept_status: int | None = Field(default=None, description="answer accept with this status (500, 404)")
    accept_delay_ms: int = Field(default=0, ge=0)
    session_cap_ms: int | None = Field(default=None, description="send session_expired and end after this")
    drop_socket_after_ms: int | None = Field(default=None, description="close the socket abnormally once")
    end_call_on_drop: bool = False
    server_error_after_ms: int | None = None
    slow_socket_ms: int = Field(default=0, ge=0, description="delay added before every server event")
    reject_voice: Literal["none", "audio_output", "both"] = "none"
    # Session parameters this service refuses with unknown_parameter (dotted paths), as a service
    # version without a feature would.
    reject_params: list[str] = Field(default_factory=list)


class Scenario(_Strict):
    name: str
    description: str = ""
    caller: str = "+14255550123"
    greeting: str = "Hi, this is Alex from Contoso Outfitters. How can I help you today?"
    talk_over_greeting_ms: int | None = Field(
        default=None, ge=0, description="the caller starts talking this far into the first response"
    )
    turns: list[Turn] = Field(default_factory=list)
    hangup: Literal["caller", "wait"] = Field(
        default="caller", description="caller hangs up after the last turn, or waits for the assistant to end"
    )
    hangup_after_ms: int = Field(default=800, ge=0)
    wait_limit_ms: int = Field(default=30_000, ge=0, description="how long a waiting caller stays on the line")
    latency: Latency = Field(default_factory=Latency)
    chars_per_second: float = Field(default=15.0, gt=0, description="speech rate of streamed transcript")
    faults: Faults = Field(default_factory=Faults)


@cache
def load_scenario(name: str) -> Scenario:
    path = SCENARIO_DIR / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in SCENARIO_DIR.glob("*.yaml")))
        raise ValueError(f"unknown scenario {name!r}; known: {known}")
    return Scenario.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))


def scenario_names() -> list[str]:
    return sorted(p.stem for p in SCENARIO_DIR.glob("*.yaml"))
