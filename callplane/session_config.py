"""The one place the Realtime session is configured: the accept body and `session.update`.

Voice goes in `audio.output.voice`; when the service answers `unknown_parameter` for it, the
session retries with the legacy top-level `voice`, then with no voice at all (docs/realtime.md).
The azure dialect never sends input-transcription config: Azure SIP rejects it.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from callplane import prompts
from callplane.settings import Dialect, Settings
from callplane.tools import schemas


class VoiceMode(StrEnum):
    AUDIO_OUTPUT = "audio.output.voice"
    LEGACY = "voice"
    NONE = "none"

    def next(self) -> VoiceMode | None:
        order = list(VoiceMode)
        i = order.index(self)
        return order[i + 1] if i + 1 < len(order) else None


TRANSCRIPTION_MODEL = "gpt-4o-mini-transcribe"


def session_config(settings: Settings, voice_mode: VoiceMode = VoiceMode.AUDIO_OUTPUT) -> dict[str, Any]:
    audio_input: dict[str, Any] = {
        "turn_detection": {
            "type": "server_vad",
            "create_response": True,
            "interrupt_response": True,
            "silence_duration_ms": 500,
        }
    }
    if settings.dialect is Dialect.OPENAI:
        audio_input["transcription"] = {"model": TRANSCRIPTION_MODEL}
    audio: dict[str, Any] = {"input": audio_input}
    config: dict[str, Any] = {
        "type": "realtime",
        "model": settings.realtime_model,
        "instructions": prompts.INSTRUCTIONS,
        "tools": schemas(),
        "tool_choice": "auto",
        "audio": audio,
    }
    if settings.realtime_voice:
        if voice_mode is VoiceMode.AUDIO_OUTPUT:
            audio["output"] = {"voice": settings.realtime_voice}
        elif voice_mode is VoiceMode.LEGACY:
            config["voice"] = settings.realtime_voice
    return config


def accept_body(settings: Settings, voice_mode: VoiceMode = VoiceMode.AUDIO_OUTPUT) -> dict[str, Any]:
    return session_config(settings, voice_mode)


def session_update(settings: Settings, voice_mode: VoiceMode = VoiceMode.AUDIO_OUTPUT) -> dict[str, Any]:
    # The model is fixed by the accept; sending it again is at best ignored.
    config = session_config(settings, voice_mode)
    config.pop("model", None)
    return {"type": "session.update", "session": config}


def greeting_request() -> dict[str, Any]:
    return {"type": "response.create", "response": {"instructions": prompts.GREETING}}
