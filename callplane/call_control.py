"""Call-control REST client (`/v1/realtime/calls/{id}/accept|reject|refer|hangup`) and the
control-socket URL and headers, per dialect.

Raw aiohttp rather than the openai SDK: the SDK sends `Authorization: Bearer` for Azure keys
(whether Azure accepts that on /openai/v1 is unverified) and would add a second HTTP stack
(httpx2) to a service that already runs on aiohttp.
"""

from __future__ import annotations

import json
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


def auth_headers(settings: Settings) -> dict[str, str]:
    if settings.dialect is Dialect.AZURE:
        return {"api-key": settings.openai_api_key}
    return {"Authorization": f"Bearer {settings.openai_api_key}"}


def socket_url(settings: Settings, call_id: str) -> str:
    return f"{settings.realtime_ws_base}?call_id={quote(call_id, safe='')}"


class CallControl:
    """Thin client over one shared aiohttp session; construction has no side effects."""

    def __init__(self, http: aiohttp.ClientSession, settings: Settings, timeout_s: float = 8.0) -> None:
        self._http = http
        self._settings = settings
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)

    async def _post(self, call_id: str, action: str, body: dict[str, Any] | None) -> None:
        url = f"{self._settings.call_control_base}/{quote(call_id, safe='')}/{action}"
        headers = auth_headers(self._settings)
        try:
            async with self._http.post(url, json=body, headers=headers, timeout=self._timeout) as resp:
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

    async def accept(self, call_id: str, body: dict[str, Any]) -> None:
        await self._post(call_id, "accept", body)

    async def reject(self, call_id: str, status_code: int = 603) -> None:
        await self._post(call_id, "reject", {"status_code": status_code})

    async def refer(self, call_id: str, target_uri: str) -> None:
        await self._post(call_id, "refer", {"target_uri": target_uri})

    async def hangup(self, call_id: str) -> None:
        await self._post(call_id, "hangup", None)
