"""Per-call analysis that needs no model: sentiment, latency percentiles and the call summary.

Deterministic and offline so tests can assert on it. Sentiment is a small lexicon score over what
the caller said (or, where the dialect gives no caller transcript, over signals such as barge-ins
and a request for a human); the summary is built from the tools used and how the call ended.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Literal

from callplane.redact import mask_digits

Sentiment = Literal["positive", "neutral", "negative"]

_POSITIVE = {
    "thanks",
    "thank",
    "great",
    "perfect",
    "awesome",
    "excellent",
    "helpful",
    "good",
    "love",
    "wonderful",
    "appreciate",
    "nice",
    "fantastic",
    "brilliant",
    "amazing",
}
_NEGATIVE = {
    "angry",
    "terrible",
    "awful",
    "useless",
    "ridiculous",
    "worst",
    "hate",
    "unacceptable",
    "frustrated",
    "frustrating",
    "annoyed",
    "stupid",
    "bad",
    "horrible",
    "complaint",
    "cancel",
    "refund",
    "never",
    "furious",
    "disappointed",
    "waste",
    "wrong",
    "late",
    "broken",
}
_WORD = re.compile(r"[a-z']+")


def text_sentiment(text: str) -> Sentiment:
    words = _WORD.findall(text.lower())
    score = sum(w in _POSITIVE for w in words) - sum(w in _NEGATIVE for w in words)
    if score > 0:
        return "positive"
    if score < 0:
        return "negative"
    return "neutral"


def call_sentiment(user_texts: Sequence[str], barge_ins: int, wanted_human: bool) -> Sentiment:
    score = 0
    for text in user_texts:
        s = text_sentiment(text)
        score += 1 if s == "positive" else -1 if s == "negative" else 0
    if not user_texts:
        # No caller transcript (Azure SIP): fall back to behaviour.
        score -= (barge_ins >= 3) + wanted_human
    if score > 0:
        return "positive"
    if score < 0:
        return "negative"
    return "neutral"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _quote(text: str, limit: int = 80) -> str:
    """The caller's words for a summary: digits masked (a spoken phone or card number must not be
    stored in clear), cut at a word boundary with an ellipsis, never mid-word."""
    text = mask_digits(" ".join(text.split()))
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0] if " " in text[:limit] else text[:limit]
    return cut.rstrip(",.;:") + "…"


def summarize(
    status: str,
    end_reason: str | None,
    duration_ms: int | None,
    tools: Sequence[str],
    turns: int,
    barge_ins: int,
    first_user_text: str | None,
) -> str:
    parts = []
    if first_user_text:
        parts.append(f'Caller opened with "{_quote(first_user_text)}".')
    if tools:
        uniq = list(dict.fromkeys(tools))
        parts.append("Used " + ", ".join(uniq) + ".")
    else:
        parts.append("No tools used.")
    secs = round((duration_ms or 0) / 1000)
    parts.append(f"{_count(turns, 'turn')} over {secs}s, {_count(barge_ins, 'barge-in')}.")
    parts.append(f"Ended {status}" + (f" ({end_reason})." if end_reason else "."))
    return " ".join(parts)
