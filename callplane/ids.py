"""The identifiers that enter from outside: Realtime call ids and webhook delivery ids.

Both become Table Storage keys (which forbid `/ \\ # ?` and control characters, up to 1 KiB) and
call ids also become URL path segments (where `.` and `..` are dot segments an HTTP client
resolves away). The service's own ids are short runs of letters, digits, `_` and `-` (`rtc_…`,
`wh_…`, `msg_…`, `evt_…`), so that is the shape accepted at every entry, checked before anything
is claimed or written: anything else is refused with a 400 that says why, and a later delivery
with a good id still works.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator

MAX_ID = 128
_SHAPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")


class BadId(ValueError):
    pass


def check_id(kind: str, value: object) -> str:
    """`value` if it is a well-formed id; raises BadId naming `kind` and the rule broken."""
    if not isinstance(value, str) or not value:
        raise BadId(f"{kind} is missing")
    if len(value) > MAX_ID:
        raise BadId(f"{kind} is longer than {MAX_ID} characters")
    if not _SHAPE.fullmatch(value):
        raise BadId(f"{kind} may hold only letters, digits, '_' and '-', starting with a letter or digit")
    return value


def _call_id(value: str) -> str:
    return check_id("call id", value)


def _webhook_id(value: str) -> str:
    return check_id("webhook-id", value)


CallId = Annotated[str, AfterValidator(_call_id)]
WebhookId = Annotated[str, AfterValidator(_webhook_id)]
