"""The optional model-written call summary (`SUMMARY_MODEL`), on top of the offline one.

One `POST {OPENAI_BASE}/v1/chat/completions` with the call's transcript, with the same auth as
call control (Azure: `api-key` or an Entra token, OpenAI: Bearer), validated against the
`openai` package's `ChatCompletion` type. Any failure (timeout, HTTP error, odd response) returns
None and the caller keeps the deterministic summary: a summary is never worth a lost record.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import aiohttp
from openai.types.chat import ChatCompletion
from pydantic import ValidationError

from callplane.settings import Settings

log = logging.getLogger(__name__)
INSTRUCTIONS = (
    "You summarise phone calls between a caller and a voice assistant for a support dashboard. "
    "Write one or two plain sentences: what the caller wanted, what was done, how it ended. "
    "Never include phone numbers, emails, order numbers or other personal data."
)
MAX_TRANSCRIPT_CHARS = 12_000  # the newest part of a long call is what matters for the outcome


def transcript_text(lines: Sequence[tuple[str, str]]) -> str:
    text = "\n".join(f"{speaker}: {said}" for speaker, said in lines)
    return text[-MAX_TRANSCRIPT_CHARS:]


async def model_summary(
    http: aiohttp.ClientSession,
    settings: Settings,
    headers: dict[str, str],
    lines: Sequence[tuple[str, str]],
    outcome: str,
    timeout_s: float = 8.0,
) -> tuple[str, int] | None:
    """The model's summary and the tokens it cost, or None (the offline summary stays)."""
    if not settings.summary_model or not lines:
        return None
    body = {
        "model": settings.summary_model,
        "messages": [
            {"role": "system", "content": INSTRUCTIONS},
            {"role": "user", "content": f"Outcome: {outcome}\n{transcript_text(lines)}"},
        ],
        "max_tokens": 160,
    }
    url = settings.openai_base.rstrip("/") + "/v1/chat/completions"
    try:
        async with http.post(url, json=body, headers=headers, timeout=aiohttp.ClientTimeout(total=timeout_s)) as resp:
            if resp.status != 200:
                log.warning("model summary refused: HTTP %d", resp.status)
                return None
            completion = ChatCompletion.model_validate(await resp.json())
    except (TimeoutError, aiohttp.ClientError, ValueError, ValidationError) as exc:
        log.warning("model summary failed: %s", type(exc).__name__)
        return None
    content = completion.choices[0].message.content if completion.choices else None
    if not content or not content.strip():
        return None
    return content.strip()[:1000], completion.usage.total_tokens if completion.usage else 0
