"""Entities the store refuses for what they hold (not for how it is doing): told apart before
sending where possible, and set aside by the writer instead of retried forever."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from azure.core.exceptions import HttpResponseError

from callplane.store.tables import table_missing


@dataclass(slots=True, frozen=True)
class SetAside:
    partition_key: str
    row_key: str
    reason: str


_KEY_FORBIDDEN = re.compile(r"[/\\#?\x00-\x1f\x7f-\x9f]")


def key_problem(entity: dict[str, Any]) -> str | None:
    """Why Table Storage would refuse these keys, or None. Checked before sending: the service
    answers 400 for them, and some emulators a 500 that looks transient."""
    for name in ("PartitionKey", "RowKey"):
        key = entity.get(name)
        if not isinstance(key, str):
            return f"{name} is not a string"
        if len(key.encode()) > 1024:
            return f"{name} is longer than 1 KiB"
        if _KEY_FORBIDDEN.search(key):
            return f"{name} holds a character keys may not hold"
    return None


def refused_as_invalid(exc: HttpResponseError) -> bool:
    """The store refused the request for what it holds (400), not for how it was doing."""
    return exc.status_code == 400 and not table_missing(exc)
