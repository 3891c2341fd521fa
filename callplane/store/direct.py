"""Table writes, point reads and queries sent straight over aiohttp and signed here, instead of
through the SDK's pipeline.

The SDK runs every request through its pipeline (a dozen policies, tracing decorators, its
transport wrapper): ~1.2 ms of client CPU per write against Azurite on a two-vCPU machine, where
the same request sent with aiohttp costs ~0.4 ms (docs/performance.md). Writes and whole-result
queries are most of the session host's table requests (write-behind transactions, lease inserts
and tombstones, heartbeats, rollups, the lease sweep every second), so they come this way, and
so do point reads (a lease watched during a hand-over, an agent profile); paged queries, table
creation and anything this module cannot sign (a SAS, a Cosmos endpoint) stay with the SDK.

What the SDK does well is still the SDK's: entity property typing and key escaping (through
`transactions.request_line`, the same framing a transaction part uses), a query's parameters
and the typed entities it returns (the SDK's own substitution and conversion), and the error types
callers catch (its own error decoder reads our answer, so a conflict is `ResourceExistsError`, a
failed ETag check `ResourceModifiedError`, a missing table `ResourceNotFoundError` with code
`TableNotFound`). Retries and timeouts match the SDK's settings here (`tables._service`): two
retries 0.2 s apart and doubling on a dropped connection, a timeout or a status the service uses
for "try again"; connect 5 s, read 10 s. A request that never got an answer raises the SDK's
`ServiceRequestError` / `ServiceResponseError`, both `AzureError`.

Authentication: an account key (connection strings, Azurite) signs each request with
SharedKeyLite (`Date` and the canonical resource, HMAC-SHA256 with the key); an Entra ID
credential (managed identity) gives a bearer token for storage, kept until two minutes before
it expires.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.utils import formatdate
from typing import Any, Protocol
from urllib.parse import quote, urlencode

import aiohttp
from azure.core.credentials import AzureNamedKeyCredential
from azure.core.exceptions import ServiceRequestError, ServiceResponseError
from azure.data.tables import TableEntity
from azure.data.tables import _deserialize as sdk_deserialize
from azure.data.tables import _serialize as sdk_serialize
from multidict import CIMultiDictProxy
from yarl import URL

from callplane.store.transactions import Operation, account_url, entity_address, error_of, request_line

STORAGE_SCOPE = "https://storage.azure.com/.default"
_substitute: Callable[..., str] = sdk_serialize._parameter_filter_substitution
_to_entity: Callable[[Mapping[str, Any]], TableEntity] = sdk_deserialize._convert_to_entity
RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
RETRIES = 2
BACKOFF_S = 0.2
TOKEN_MARGIN_S = 120.0
MINIMAL_JSON = "application/json;odata=minimalmetadata"  # what we ask for: properties, types, ETag


class _TokenSource(Protocol):
    async def get_token(self, *scopes: str) -> Any: ...


@dataclass(slots=True, frozen=True)
class Answer:
    status: int
    headers: CIMultiDictProxy[str]
    body: bytes

    def metadata(self) -> dict[str, Any]:
        """The written entity's metadata, as the SDK's write calls return it (we read the ETag)."""
        get = self.headers.get
        return {"etag": get("ETag"), "date": get("Date"), "version": get("x-ms-version")}


class DirectTables:
    """One account's table endpoint, for writes, point reads and queries. Its HTTP session lives on
    the loop that first uses it (the store thread's, in the session host); `close` there too."""

    def __init__(
        self,
        base_url: str,
        api_version: str,
        *,
        key: AzureNamedKeyCredential | None = None,
        credential: _TokenSource | None = None,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 10.0,
    ) -> None:
        if (key is None) == (credential is None):
            raise ValueError("give an account key or a token credential")
        self.base_url = base_url.rstrip("/")
        self.api_version = api_version
        self._key = key
        self._secret = base64.b64decode(key.named_key.key) if key is not None else b""
        self._credential = credential
        self._token: tuple[str, float] | None = None
        self._timeout = aiohttp.ClientTimeout(sock_connect=connect_timeout_s, sock_read=read_timeout_s)
        self._http: aiohttp.ClientSession | None = None

    @classmethod
    def for_client(cls, client: Any) -> DirectTables | None:
        """For an SDK table or service client's account, when this module can sign for it."""
        if getattr(client, "_cosmos_endpoint", False):
            return None
        base = account_url(client)
        credential = client.credential
        if isinstance(credential, AzureNamedKeyCredential):
            return cls(base, client.api_version, key=credential)
        # A token credential (not a SAS, which also has no named key but carries a signature).
        if credential is not None and hasattr(credential, "get_token") and not hasattr(credential, "signature"):
            return cls(base, client.api_version, credential=credential)
        return None

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def _auth(self, url: URL) -> dict[str, str]:
        date = formatdate(usegmt=True)
        if self._key is not None:
            name = self._key.named_key.name
            resource = f"/{name}{url.raw_path}"
            digest = hmac.new(self._secret, f"{date}\n{resource}".encode(), hashlib.sha256).digest()
            return {"x-ms-date": date, "Authorization": f"SharedKeyLite {name}:{base64.b64encode(digest).decode()}"}
        assert self._credential is not None
        token = self._token
        if token is None or token[1] - TOKEN_MARGIN_S <= time.time():
            got = await self._credential.get_token(STORAGE_SCOPE)
            token = self._token = (str(got.token), float(got.expires_on))
        return {"x-ms-date": date, "Authorization": f"Bearer {token[0]}"}

    async def send(self, method: str, url: str, body: bytes | None, headers: Mapping[str, str]) -> Answer:
        """One request, retried as the SDK would; raises only when no answer came at all."""
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=self._timeout, trust_env=False)
        target = URL(url, encoded=True)  # signed as sent: no re-quoting of the keys in the path
        failure: Exception | None = None
        for attempt in range(RETRIES + 1):
            if attempt:
                await asyncio.sleep(min(2.0, BACKOFF_S * 2 ** (attempt - 1)))
            sent = {
                "x-ms-version": self.api_version,
                "DataServiceVersion": "3.0",
                "MaxDataServiceVersion": "3.0;NetFx",
                **headers,
                **(await self._auth(target)),
            }
            try:
                async with self._http.request(method, target, data=body, headers=sent) as resp:
                    answer = Answer(resp.status, resp.headers, await resp.read())
            except aiohttp.ConnectionTimeoutError as exc:
                failure = ServiceRequestError("could not reach the table service in time", error=exc)
                continue
            except TimeoutError as exc:
                failure = ServiceResponseError("no answer from the table service in time", error=exc)
                continue
            except (aiohttp.ClientError, OSError) as exc:
                failure = ServiceRequestError(f"could not reach the table service: {type(exc).__name__}", error=exc)
                continue
            if answer.status in RETRY_STATUS and attempt < RETRIES:
                continue
            return answer
        assert failure is not None
        raise failure

    async def write(self, op: Operation, table_url: str) -> dict[str, Any]:
        """One entity operation ("create", "upsert", "update" or "delete", entity[, options]) as
        a plain request; its metadata, or the SDK's exception. A delete of a missing entity is
        done, as with the SDK."""
        line, extra, body = request_line(table_url, op)
        method, url = line.split(" ", 1)
        headers = {"Accept": MINIMAL_JSON, **dict(h.split(": ", 1) for h in extra)}
        if body is not None:
            headers["Content-Type"] = "application/json"
        answer = await self.send(method, url, body, headers)
        if 200 <= answer.status < 300 or (method == "DELETE" and answer.status == 404):
            return answer.metadata()
        raise error_of(answer)

    async def read(self, table_url: str, partition_key: str, row_key: str) -> TableEntity:
        """One entity by its keys, as the SDK's `get_entity` returns it (typed, ETag in
        `.metadata`), or its exception (`ResourceNotFoundError` for a missing entity or table)."""
        url = f"{entity_address(table_url, partition_key, row_key)}?$format={MINIMAL_JSON}"
        answer = await self.send("GET", url, None, {"Accept": MINIMAL_JSON})
        if answer.status != 200:
            raise error_of(answer)
        return _to_entity(json.loads(answer.body))

    async def query(
        self, table_url: str, query_filter: str, parameters: Mapping[str, Any], select: list[str] | None = None
    ) -> list[TableEntity]:
        """Every entity matching the filter (its `@name` parameters substituted as the SDK does),
        page after page, as the SDK's typed entities (ETag in `.metadata`)."""
        params = {"$format": MINIMAL_JSON, "$filter": _substitute(parameters, query_filter)}
        if select:
            params["$select"] = ",".join(select)
        found: list[TableEntity] = []
        while True:
            url = f"{table_url}()?{urlencode(params, quote_via=quote)}"
            answer = await self.send("GET", url, None, {"Accept": MINIMAL_JSON})
            if answer.status != 200:
                raise error_of(answer)
            found += [_to_entity(row) for row in json.loads(answer.body)["value"]]
            next_pk = answer.headers.get("x-ms-continuation-NextPartitionKey")
            next_rk = answer.headers.get("x-ms-continuation-NextRowKey")
            if not (next_pk or next_rk):
                return found
            params.update({"NextPartitionKey": next_pk or "", "NextRowKey": next_rk or ""})
