"""Call-control REST client (`/v1/realtime/calls/{id}/accept|reject|refer|hangup`) and the
control-socket URL and headers, per dialect.

Raw aiohttp rather than the openai SDK: the SDK sends `Authorization: Bearer` for Azure keys
(whether Azure accepts that on /openai/v1 is unverified) and would add a second HTTP stack
(httpx2) to a service that already runs on aiohttp.
"""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import quote

import aiohttp

from callplane.settings import Dialect, Settings


class CallControlError(Exception):
    """The service refused a call-control request. `retryable` marks 5xx/429/network trouble."""

    def __init__(self, status: int, code: str | None, message: str, param: str | None = None) -> None:
        super().__init__(f"{status} {code or ''} {message}".strip())
        self.status = status
        self.code = code
        self.message = message
        self.param = param

    @property
    def retryable(self) -> bool:
        return self.status in {0, 429} or self.status >= 500

    @property
    def call_gone(self) -> bool:
        return self.status == 404 or self.code == "call_id_not_found"


COGNITIVE_SCOPE = "https://cognitiveservices.azure.com/.default"


class RealtimeAuth:
    """Headers for call control and the control socket.

    Azure with a key: `api-key`. Azure without a key: a Microsoft Entra token for the managed
    identity (role Cognitive Services OpenAI User), cached until five minutes before it expires.
    OpenAI: `Authorization: Bearer <key>`.
    """

    def __init__(self, settings: Settings, credential: Any = None) -> None:
        self._settings = settings
        self._credential = credential
        self._token: str = ""
        self._expires = 0.0

    async def headers(self) -> dict[str, str]:
        s = self._settings
        if s.dialect is Dialect.OPENAI:
            return {"Authorization": f"Bearer {s.openai_api_key}"}
        if s.openai_api_key:
            return {"api-key": s.openai_api_key}
        if time.time() > self._expires - 300:
            if self._credential is None:
                from azure.identity.aio import DefaultAzureCredential

                self._credential = DefaultAzureCredential()
            token = await self._credential.get_token(COGNITIVE_SCOPE)
            self._token, self._expires = token.token, float(token.expires_on)
        return {"Authorization": f"Bearer {self._token}"}

    async def close(self) -> None:
        if self._credential is not None and hasattr(self._credential, "close"):
            await self._credential.close()


def socket_url(settings: Settings, call_id: str) -> str:
    return f"{settings.realtime_ws_base}?call_id={quote(call_id, safe='')}"


class CallControl:
    """Thin client over one shared aiohttp session; construction has no side effects."""

    def __init__(
        self, http: aiohttp.ClientSession, settings: Settings, auth: RealtimeAuth | None = None, timeout_s: float = 8.0
    ) -> None:
        self._http = http
        self._settings = settings
        self.auth = auth or RealtimeAuth(settings)
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)

    async def _post(self, call_id: str, action: str, body: dict[str, Any] | bytes | None) -> None:
        url = f"{self._settings.call_control_base}/{quote(call_id, safe='')}/{action}"
        headers = await self.auth.headers()
        if isinstance(body, bytes):  # already encoded (the same accept body serves many calls)
            sent: dict[str, Any] = {"data": body}
            headers = {**headers, "content-type": "application/json"}
        else:
            sent = {"json": body}
        try:
            async with self._http.post(url, headers=headers, timeout=self._timeout, **sent) as resp:
                if resp.status < 300:
                    await resp.read()
                    return
                raw = await resp.read()
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise CallControlError(0, "network_error", f"{action} failed: {type(exc).__name__}") from None
        code = message = param = None
        try:
            err = json.loads(raw).get("error") or {}
            code, message, param = err.get("code"), err.get("message"), err.get("param")
        except (ValueError, AttributeError):
            message = raw[:200].decode(errors="replace")
        raise CallControlError(resp.status, code, message or resp.reason or "error", param)

    async def accept(self, call_id: str, body: dict[str, Any] | bytes) -> None:
        await self._post(call_id, "accept", body)

    async def reject(self, call_id: str, status_code: int = 603) -> None:
        await self._post(call_id, "reject", {"status_code": status_code})

    async def refer(self, call_id: str, target_uri: str) -> None:
        await self._post(call_id, "refer", {"target_uri": target_uri})

    async def hangup(self, call_id: str) -> None:
        await self._post(call_id, "hangup", None)
