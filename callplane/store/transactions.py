"""Table transactions (entity group transactions) framed by hand.

A transaction is one `POST /$batch` whose body is a multipart/mixed changeset of plain HTTP
requests, and whose answer is a multipart/mixed changeset of plain HTTP responses. The SDK
builds the body by running every operation through its own request pipeline and then the stdlib
`email` generator, and parses the answer with the `email` parser: ~43 ms of client CPU for a
transaction of 100 upserts on a two-vCPU machine (~5 ms framed here), most of the session
host's store CPU. Both sides of the format are fixed and small (headers we choose, a status
line and an ETag back), so this module writes and reads them directly. What the SDK does well
stays the SDK's: property typing (`_add_entity_properties`) and the error types callers catch
(`TableTransactionError` with the failing operation's index, `RequestTooLargeError`, and the
SDK's own decoding of a whole-request failure). The request goes out through `direct.py` when
it can sign for the account (its pipeline costs more CPU than the whole framing), otherwise
through the SDK's pipeline (`send_request`).

The answer's first failing part decides the error, as with the SDK: the service stops at the
first operation it cannot apply, and the whole changeset is rolled back.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote
from uuid import uuid4

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError
from azure.core.rest import HttpRequest
from azure.data.tables import RequestTooLargeError, TableTransactionError, UpdateMode
from azure.data.tables import _error as sdk_errors
from azure.data.tables import _serialize as sdk_serialize
from azure.data.tables.aio import TableClient

if TYPE_CHECKING:
    from callplane.store.direct import Answer, DirectTables

Operation = tuple[Any, ...]  # ("create" | "upsert" | "update" | "delete", entity[, options])

# A whole request refused (auth, throttling, a bad table name): the SDK's decoding, so callers see
# the exception types its other calls raise.
_decode_error: Callable[..., HttpResponseError] = sdk_errors._decode_error


class _Decoded:
    """A direct answer (direct.py) as the SDK's error decoder reads a response."""

    def __init__(self, answer: Answer) -> None:
        self.status_code = answer.status
        self.reason = ""
        self.headers = answer.headers
        self.content_type = answer.headers.get("Content-Type", "")
        self.content = answer.body
        self.request = None

    def body(self) -> bytes:
        return self.content

    def text(self, encoding: str | None = None) -> str:
        return self.content.decode(encoding or "utf-8", errors="replace")


def error_of(answer: Answer, **kw: Any) -> HttpResponseError:
    """The exception the SDK raises for a direct answer (its type, status and error code); `kw`
    as for the SDK's decoder (`error_message`, `error_type`)."""
    return _decode_error(_Decoded(answer), **kw)


# The SDK's own property typing (`Edm.Int64`, dates, binary) and key escaping (quotes doubled).
_add_entity_properties: Callable[[Mapping[str, Any]], dict[str, Any]] = sdk_serialize._add_entity_properties
_prepare_key: Callable[[Any], str] = sdk_serialize._prepare_key
_PART_HEAD = "Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n"
_BOUNDARY = re.compile(r'boundary="?([^";\r\n]+)"?', re.IGNORECASE)
_STATUS = re.compile(r"HTTP/1\.[01] (\d{3})")
_BLANK = re.compile(r"\r?\n\r?\n")


def _key(value: Any) -> str:
    return quote(_prepare_key(value), safe="")


def _if_match(options: Mapping[str, Any]) -> str:
    etag = options.get("etag")
    condition = options.get("match_condition")
    if condition == MatchConditions.IfNotModified:
        if not etag:
            raise ValueError("IfNotModified needs an etag")
        return str(etag)
    if condition in (None, MatchConditions.Unconditionally):
        return "*"
    raise ValueError(f"match condition {condition!r} is not supported in a transaction")


def account_url(client: Any) -> str:
    """The account's table endpoint as the SDK addresses it (an emulator's account name in the path)."""
    return f"{client.scheme}://{client._primary_hostname}"


def table_url(client: TableClient) -> str:
    return f"{account_url(client)}/{client.table_name}"


def entity_address(table_url: str, partition_key: Any, row_key: Any) -> str:
    """One entity's URL, its keys escaped as the SDK escapes them."""
    return f"{table_url}(PartitionKey='{_key(partition_key)}',RowKey='{_key(row_key)}')"


def request_line(table_url: str, op: Operation) -> tuple[str, list[str], bytes | None]:
    """Method and URL, the operation's own headers, and its JSON body."""
    kind = str(op[0]).lower()
    entity: Mapping[str, Any] = op[1]
    options: Mapping[str, Any] = op[2] if len(op) > 2 else {}
    if "PartitionKey" not in entity or "RowKey" not in entity:
        raise ValueError("PartitionKey and/or RowKey were not provided in entity")
    address = entity_address(table_url, entity["PartitionKey"], entity["RowKey"])
    if kind == "delete":
        return f"DELETE {address}", [f"If-Match: {_if_match(options)}"], None
    body = json.dumps(_add_entity_properties(entity)).encode()
    if kind == "create":
        # No echo of the entity in the answer: we only read the ETag.
        return f"POST {table_url}", ["Prefer: return-no-content"], body
    mode = options.get("mode", UpdateMode.MERGE)
    if mode not in (UpdateMode.MERGE, UpdateMode.REPLACE):
        raise ValueError(f"Mode type '{mode}' is not supported.")
    method = "PUT" if mode == UpdateMode.REPLACE else "PATCH"
    if kind == "upsert":  # no If-Match: insert or replace/merge
        return f"{method} {address}", [], body
    if kind == "update":
        return f"{method} {address}", [f"If-Match: {_if_match(options)}"], body
    raise ValueError(f"Unrecognized operation: {op[0]}")


def encode(table_url: str, operations: Sequence[Operation], batch: str, changeset: str) -> bytes:
    """The `$batch` body for `operations` on the table at `table_url`."""
    partition: Any = None
    out = [f"--{batch}\r\nContent-Type: multipart/mixed; boundary={changeset}\r\n\r\n".encode()]
    for index, op in enumerate(operations):
        pk = op[1].get("PartitionKey")
        if index == 0:
            partition = pk
        elif pk != partition:
            raise ValueError("Partition Keys in the batch must all be the same.")
        line, headers, body = request_line(table_url, op)
        head = [
            f"--{changeset}\r\n{_PART_HEAD}Content-ID: {index}\r\n\r\n{line} HTTP/1.1",
            "Accept: application/json;odata=minimalmetadata",
            "DataServiceVersion: 3.0",
            *headers,
        ]
        if body is not None:
            head += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
        out.append(("\r\n".join(head) + "\r\n\r\n").encode())
        if body is not None:
            out.append(body)
        out.append(b"\r\n")
    out.append(f"--{changeset}--\r\n\r\n--{batch}--\r\n".encode())
    return b"".join(out)


@dataclass(slots=True, frozen=True)
class Part:
    """One operation's answer: its status, its headers (names lower-cased) and its body."""

    status: int
    headers: dict[str, str]
    body: str


def _headers(block: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in block.splitlines():
        name, sep, value = line.partition(":")
        if sep:
            out[name.strip().lower()] = value.strip()
    return out


def _one_part(text: str) -> Part | None:
    """An `application/http` part: its MIME headers, then a whole HTTP response."""
    pieces = _BLANK.split(text.lstrip("\r\n"), maxsplit=2)
    if len(pieces) < 2:
        return None
    status = _STATUS.match(pieces[1].lstrip())
    if status is None:
        return None
    response_head = pieces[1].lstrip().split("\n", 1)
    headers = _headers(response_head[1] if len(response_head) > 1 else "")
    body = pieces[2].rstrip("\r\n") if len(pieces) > 2 else ""
    return Part(int(status.group(1)), headers, body)


def decode(content_type: str, body: bytes) -> list[Part]:
    """The parts of a `$batch` answer, in order. A changeset's answers are nested one level down;
    a request the service refused as a whole is a single part directly in the batch."""
    found = _BOUNDARY.search(content_type)
    if found is None:
        raise ValueError("the transaction's answer has no multipart boundary")
    text = body.decode("utf-8", errors="replace")
    parts: list[Part] = []
    for chunk in _between(text, found.group(1)):
        head, *rest = _BLANK.split(chunk.lstrip("\r\n"), maxsplit=1)
        inner = _BOUNDARY.search(head) if "multipart/mixed" in head.lower() else None
        if inner is not None:
            answers = _between(rest[0] if rest else "", inner.group(1))
            parts += [p for p in (_one_part(c) for c in answers) if p is not None]
        elif (part := _one_part(chunk)) is not None:
            parts.append(part)
    return parts


def _between(text: str, boundary: str) -> list[str]:
    """The bodies between `--boundary` delimiters, up to the closing `--boundary--`."""
    pieces = text.split(f"--{boundary}")
    out: list[str] = []
    for piece in pieces[1:]:
        if piece.startswith("--"):
            break
        out.append(piece)
    return out


def _part_error(part: Part, count: int) -> TableTransactionError:
    code: str | None = part.headers.get("x-ms-error-code")
    message = part.body
    try:
        error = json.loads(part.body)["odata.error"]
        code = str(error.get("code") or code)
        message = str(error["message"]["value"])
    except (ValueError, KeyError, TypeError):
        pass
    kind = RequestTooLargeError if part.status == 413 else TableTransactionError
    exc = kind(message=f"{message}\nErrorCode:{code}")
    exc.status_code = part.status
    exc.reason = None
    exc.error_code = code  # type: ignore[attr-defined]
    exc.additional_info = {}  # type: ignore[attr-defined]
    if not 0 <= exc.index < count:
        exc.index = 0
    return exc


async def submit(
    client: TableClient, operations: Sequence[Operation], direct: DirectTables | None = None, **kw: Any
) -> list[dict[str, Any]]:
    """Apply `operations` (one partition, at most 100) atomically; the ETag of each, in order.
    Sent by `direct` when given (`kw` must then be empty), else through the SDK's pipeline with
    `kw` (`read_timeout`, ...), as for its own calls.
    Raises `TableTransactionError` (with `.index` of the failing operation) when the service
    refused one, and what the SDK raises when it refused the whole request."""
    if not operations:
        return []
    batch, changeset = f"batch_{uuid4()}", f"changeset_{uuid4()}"
    url = f"{account_url(client)}/$batch"  # as the SDK's own
    headers = {
        "x-ms-version": client.api_version,
        "DataServiceVersion": "3.0",
        "MaxDataServiceVersion": "3.0;NetFx",
        "Content-Type": f"multipart/mixed; boundary={batch}",
        "Accept": "application/json",
    }
    content = encode(table_url(client), operations, batch, changeset)
    too_large = "The transaction request was too large"
    if direct is not None and not kw:
        answer = await direct.send("POST", url, content, headers)
        if answer.status == 413:
            raise error_of(answer, error_message=too_large, error_type=RequestTooLargeError)
        if answer.status != 202:
            raise error_of(answer)
        content_type, body = answer.headers.get("Content-Type", ""), answer.body
    else:
        # stream=True: the pipeline's content decoding does not know multipart (nor do we want it to).
        request = HttpRequest("POST", url, headers=headers, content=content)
        response = await client._client.send_request(request, stream=True, **kw)
        await response.read()
        if response.status_code == 413:
            raise _decode_error(response, error_message=too_large, error_type=RequestTooLargeError)
        if response.status_code != 202:
            raise _decode_error(response)
        content_type, body = response.headers.get("Content-Type", ""), response.content
    parts = decode(content_type, body)
    for part in parts:
        if not 200 <= part.status < 300:
            raise _part_error(part, len(operations))
    if len(parts) != len(operations):
        raise TableTransactionError(
            message=f"the transaction's answer has {len(parts)} parts for {len(operations)} operations"
        )
    return [{"etag": part.headers["etag"]} if "etag" in part.headers else {} for part in parts]
