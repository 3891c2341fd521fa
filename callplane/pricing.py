"""What a call costs: the Realtime model's tokens priced per million, by kind.

Defaults are OpenAI's published list prices for the realtime models (openai.com/api/pricing, as
of 2025-08-28, when gpt-realtime became generally available); Azure OpenAI's Global Standard
prices for the same models have matched them, but check your agreement. `PRICES` (JSON) adds
models or replaces these, e.g. {"my-deployment": {"audioIn": 32, "audioInCached": 0.4, ...}};
an Azure deployment name that is not listed is priced as the model it contains (gpt-realtime-mini
before gpt-realtime), else as gpt-realtime.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from callplane.validation import first_error


class Price(BaseModel):
    """USD per million tokens."""

    model_config = ConfigDict(extra="forbid")

    textIn: float = Field(ge=0)
    textInCached: float = Field(ge=0)
    audioIn: float = Field(ge=0)
    audioInCached: float = Field(ge=0)
    textOut: float = Field(ge=0)
    audioOut: float = Field(ge=0)


DEFAULT_PRICES: dict[str, Price] = {
    "gpt-realtime": Price(textIn=4.0, textInCached=0.4, audioIn=32.0, audioInCached=0.4, textOut=16.0, audioOut=64.0),
    "gpt-realtime-mini": Price(
        textIn=0.6, textInCached=0.06, audioIn=10.0, audioInCached=0.3, textOut=2.4, audioOut=20.0
    ),
}


def parse_prices(raw: str) -> dict[str, Price]:
    """The price table with `raw` (the PRICES setting) laid over the defaults; ValueError names
    the model and field that is wrong."""
    table = dict(DEFAULT_PRICES)
    if not raw.strip():
        return table
    try:
        doc = json.loads(raw)
    except ValueError:
        raise ValueError("is not JSON") from None
    if not isinstance(doc, dict):
        raise ValueError('must be a JSON object {"<model>": {"audioIn": ..., ...}}')
    for model, price in doc.items():
        try:
            table[str(model)] = Price.model_validate(price)
        except ValidationError as exc:
            raise ValueError(f"{model}.{first_error(exc)}") from None
    return table


def price_for(table: dict[str, Price], model: str) -> Price:
    if model in table:
        return table[model]
    for name in sorted(table, key=len, reverse=True):  # the most specific name the deployment holds
        if name in model:
            return table[name]
    return table["gpt-realtime"]


def usage_cost(price: Price, usage: Any) -> float:
    """USD for one `response.done` usage (openai's RealtimeResponseUsage). Cached input tokens are
    part of the input counts and priced at the cached rate."""
    inp, out = usage.input_token_details, usage.output_token_details
    text_in = (inp.text_tokens or 0) if inp else 0
    audio_in = (inp.audio_tokens or 0) if inp else 0
    cached = inp.cached_tokens_details if inp else None
    cached_text = (cached.text_tokens or 0) if cached else 0
    cached_audio = (cached.audio_tokens or 0) if cached else 0
    if inp and not cached and inp.cached_tokens:
        cached_text = min(inp.cached_tokens, text_in)  # no split given: the cheaper reading
        cached_audio = min(inp.cached_tokens - cached_text, audio_in)
    text_out = (out.text_tokens or 0) if out else 0
    audio_out = (out.audio_tokens or 0) if out else 0
    return (
        (text_in - cached_text) * price.textIn
        + cached_text * price.textInCached
        + (audio_in - cached_audio) * price.audioIn
        + cached_audio * price.audioInCached
        + text_out * price.textOut
        + audio_out * price.audioOut
    ) / 1_000_000
