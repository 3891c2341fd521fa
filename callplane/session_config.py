"""The one place the Realtime session is configured: the accept body and `session.update`.

Voice goes in `audio.output.voice`; when the service answers `unknown_parameter` for it, the
session retries with the legacy top-level `voice`, then with no voice at all (docs/realtime.md).
The azure dialect never sends input-transcription config: Azure SIP rejects it.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from callplane import prompts
from callplane.profiles import ChosenProfile
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


def session_config(
    settings: Settings, voice_mode: VoiceMode = VoiceMode.AUDIO_OUTPUT, chosen: ChosenProfile | None = None
) -> dict[str, Any]:
    """The session for a call: from its profile when there is one, else today's built-in agent."""
    profile = chosen.profile if chosen is not None else None
    variables = chosen.variables if chosen is not None else {}
    turn = (
        profile.turnDetection.session_field()
        if profile is not None
        else {
            "type": "server_vad",
            "create_response": True,
            "interrupt_response": True,
            "silence_duration_ms": 500,
        }
    )
    audio_input: dict[str, Any] = {"turn_detection": turn}
    if profile is not None and profile.noiseReduction:
        audio_input["noise_reduction"] = {"type": profile.noiseReduction}
    if settings.dialect is Dialect.OPENAI:
        transcription: dict[str, Any] = {"model": TRANSCRIPTION_MODEL}
        if profile is not None and profile.language:
            transcription["language"] = profile.language.split("-")[0]
        audio_input["transcription"] = transcription
    audio: dict[str, Any] = {"input": audio_input}
    instructions = prompts.INSTRUCTIONS
    if profile is not None:
        instructions = profile.render(profile.instructions, variables)
        if profile.language:
            instructions += f"\nSpeak {profile.language} unless the caller speaks another language."
    config: dict[str, Any] = {
        "type": "realtime",
        "model": (profile.model if profile is not None and profile.model else None) or settings.realtime_model,
        "instructions": instructions,
        "tools": schemas(tuple(profile.tools)) if profile is not None else schemas(),
        "tool_choice": "auto",
        "audio": audio,
    }
    voice = profile.voice if profile is not None else settings.realtime_voice
    if voice:
        if voice_mode is VoiceMode.AUDIO_OUTPUT:
            audio["output"] = {"voice": voice}
        elif voice_mode is VoiceMode.LEGACY:
            config["voice"] = voice
    return config


def interruptible(update: dict[str, Any], on: bool) -> dict[str, Any]:
    """`update` with the caller's speech allowed (or not) to cut the assistant's response."""
    turn = update["session"]["audio"]["input"]["turn_detection"]
    turn["interrupt_response"] = on
    return update


def accept_body(
    settings: Settings, voice_mode: VoiceMode = VoiceMode.AUDIO_OUTPUT, chosen: ChosenProfile | None = None
) -> dict[str, Any]:
    return session_config(settings, voice_mode, chosen)


def session_update(
    settings: Settings, voice_mode: VoiceMode = VoiceMode.AUDIO_OUTPUT, chosen: ChosenProfile | None = None
) -> dict[str, Any]:
    # The model is fixed by the accept; sending it again is at best ignored.
    config = session_config(settings, voice_mode, chosen)
    config.pop("model", None)
    return {"type": "session.update", "session": config}


def greeting_request(chosen: ChosenProfile | None = None) -> dict[str, Any]:
    if chosen is None:
        return {"type": "response.create", "response": {"instructions": prompts.GREETING}}
    profile = chosen.profile
    return {"type": "response.create", "response": {"instructions": profile.render(profile.greeting, chosen.variables)}}


def disclosure_request(chosen: ChosenProfile) -> dict[str, Any] | None:
    """The opening disclosure, word for word, before anything else."""
    text = chosen.profile.disclosure
    if not text:
        return None
    words = chosen.profile.render(text, chosen.variables)
    return {
        "type": "response.create",
        "response": {"instructions": f"Say exactly this, word for word, and nothing else: {words}"},
    }


def without(config: dict[str, Any], paths: set[str]) -> dict[str, Any]:
    """`config` with the dotted `paths` left out: parameters this service refused with
    unknown_parameter (the same way voice falls back), so a profile setting that a service
    version does not know costs the setting, not the call."""
    for path in paths:
        *parents, leaf = path.split(".")
        node: Any = config
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(leaf, None)
    return config
