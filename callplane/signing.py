"""Standard Webhooks signing and verification, for the Realtime webhook and our own hand-off.

Verification is `standardwebhooks` (constant-time compare, fixed ±5 minute tolerance); this module
only maps its several failure types onto one exception and adds the signing side, which the
simulator and the Function App's hand-off use.
"""

from __future__ import annotations

import binascii
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime

from standardwebhooks import Webhook, WebhookVerificationError


class SignatureError(Exception):
    """Missing, malformed, wrong or expired signature. The message is safe to return to a caller."""


def verify(secret: str, body: bytes, headers: Mapping[str, str]) -> None:
    """Raise SignatureError unless `body` is signed with `secret` within the tolerance."""
    try:
        Webhook(secret).verify(body, dict(headers), json_parse=False)
    except WebhookVerificationError as exc:
        raise SignatureError(str(exc)) from None
    except (ValueError, binascii.Error, UnicodeDecodeError):
        # standardwebhooks raises these for a signature entry without a comma, bad base64, or a
        # body that is not UTF-8: all are "not signed by us".
        raise SignatureError("Malformed signature headers") from None


def sign_headers(
    secret: str, body: bytes, *, msg_id: str | None = None, timestamp: float | None = None
) -> dict[str, str]:
    """The three Standard Webhooks headers for `body` (`timestamp` lets tests make stale ones)."""
    msg_id = msg_id or f"wh_{uuid.uuid4().hex}"
    ts = int(time.time() if timestamp is None else timestamp)
    signature = Webhook(secret).sign(msg_id, datetime.fromtimestamp(ts, tz=UTC), body.decode())
    return {"webhook-id": msg_id, "webhook-timestamp": str(ts), "webhook-signature": signature}


def new_secret() -> str:
    import base64
    import secrets

    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
