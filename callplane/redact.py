"""PII redaction for logs: phone numbers and email addresses never reach a log sink in clear."""

from __future__ import annotations

import re
from typing import Any

_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
# E.164 / national numbers: 7+ digits, optionally with +, spaces, dashes, dots or brackets between.
# A letter right after the last digit (`+14255550123x`, `0123ext`) still ends the number.
_PHONE = re.compile(r"(?<![\w])\+?\d(?:[\d\s().-]{5,}\d)(?!\d)")

_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _mask_phone(match: re.Match[str]) -> str:
    text = match.group(0)
    digits = re.sub(r"\D", "", text)
    if len(digits) < 7 or _ISO_DATE.fullmatch(text.strip()):
        return text
    return "***" + digits[-2:]


def redact(text: str) -> str:
    """Mask emails, then phone numbers (keeping the last two digits so calls stay tellable apart)."""
    text = _EMAIL.sub("[email]", text)
    return _PHONE.sub(_mask_phone, text)


def redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: redact_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_value(v) for v in value]
    return value


def mask_phone(phone: str | None, keep: int = 4) -> str:
    """For display (API, dashboard): everything but the last `keep` digits becomes a bullet; a
    short number (an extension, a short code) is all bullets, since its tail is most of it."""
    if not phone:
        return "unknown"
    digits = re.sub(r"\D", "", phone)
    if not digits or "•" in phone:
        return phone  # not a number ("anonymous"), or masked already
    if len(digits) < 7:
        return "•" * len(digits)
    return "•" * (len(digits) - keep) + digits[-keep:]


def mask_digits(text: str) -> str:
    """Every digit becomes a bullet: for text quoted from a caller (a spoken number, an order id)."""
    return re.sub(r"\d", "•", text)
