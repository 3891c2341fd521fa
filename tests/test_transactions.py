"""Table transactions framed by hand (callplane/store/transactions.py), on Azurite, held to what
the SDK's own `submit_transaction` does with the same operations."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from azure.core import MatchConditions
from azure.data.tables import EdmType, EntityProperty, TableTransactionError, UpdateMode
from azure.data.tables.aio import TableClient

from callplane.store import transactions
from callplane.store.tables import TableOps, table_missing

REPLACE = {"mode": UpdateMode.REPLACE}
HOSTILE_KEYS = ["it's", "a''b", "100%", "a+b c", "é漢字", "x=1&y=2", "%27)", "rtc_' or '1'='1"]


def typed(rk: str) -> dict[str, Any]:
    return {
        "PartitionKey": "p",
        "RowKey": rk,
        "text": "quote ' and \" and é\n\ttab",
        "small": 7,
        "big": EntityProperty(2**40, EdmType.INT64),
        "ratio": 0.125,
        "flag": True,
        "at": datetime(2026, 12, 2, 6, 30, 1, 250000, tzinfo=UTC),
        "raw": b"\x00\xffbytes",
        "missing": None,
    }


async def rows(client: TableClient) -> dict[str, dict[str, Any]]:
    return {e["RowKey"]: dict(e) for e in [x async for x in client.list_entities()]}


async def test_every_property_type_reads_back_as_the_sdks_own_transaction_wrote_it(client: TableClient) -> None:
    ours = await transactions.submit(client, [("upsert", typed("ours"), REPLACE), ("create", typed("ours2"))])
    await client.submit_transaction([("upsert", typed("sdk"), REPLACE), ("create", typed("sdk2"))])
    stored = await rows(client)
    for mine, theirs in (("ours", "sdk"), ("ours2", "sdk2")):
        a = {k: v for k, v in stored[mine].items() if k != "RowKey"}
        b = {k: v for k, v in stored[theirs].items() if k != "RowKey"}
        assert a == b
    assert stored["ours"]["big"].value == 2**40 and stored["ours"]["raw"] == b"\x00\xffbytes"
    assert "missing" not in stored["ours"]
    # The ETag handed back is the entity's, usable for a guarded update.
    assert ours[0]["etag"] == (await client.get_entity("p", "ours")).metadata["etag"]


async def test_hostile_keys_are_addressed_exactly(client: TableClient) -> None:
    await transactions.submit(client, [("create", {"PartitionKey": "p", "RowKey": k, "n": 1}) for k in HOSTILE_KEYS])
    await transactions.submit(client, [("upsert", {"PartitionKey": "p", "RowKey": k, "n": 2}) for k in HOSTILE_KEYS])
    stored = await rows(client)
    assert sorted(stored) == sorted(HOSTILE_KEYS) and {r["n"] for r in stored.values()} == {2}
    await transactions.submit(client, [("delete", {"PartitionKey": "p", "RowKey": k}) for k in HOSTILE_KEYS[:4]])
    assert sorted(await rows(client)) == sorted(HOSTILE_KEYS[4:])


async def test_merge_keeps_other_properties_and_replace_drops_them(client: TableClient) -> None:
    await transactions.submit(client, [("create", {"PartitionKey": "p", "RowKey": "m", "a": 1, "b": 1})])
    await transactions.submit(client, [("create", {"PartitionKey": "p", "RowKey": "r", "a": 1, "b": 1})])
    await transactions.submit(
        client,
        [
            ("upsert", {"PartitionKey": "p", "RowKey": "m", "a": 2}),  # merge by default, as the SDK
            ("update", {"PartitionKey": "p", "RowKey": "r", "a": 2}, REPLACE),
        ],
    )
    stored = await rows(client)
    assert stored["m"]["a"] == 2 and stored["m"]["b"] == 1
    assert stored["r"]["a"] == 2 and "b" not in stored["r"]


async def test_a_failing_operation_is_named_and_nothing_is_applied(client: TableClient) -> None:
    await client.create_entity({"PartitionKey": "p", "RowKey": "taken"})
    ops: list[tuple[Any, ...]] = [("create", {"PartitionKey": "p", "RowKey": f"new{i}"}) for i in range(5)]
    ops.insert(3, ("create", {"PartitionKey": "p", "RowKey": "taken"}))
    with pytest.raises(TableTransactionError) as caught:
        await transactions.submit(client, ops)
    assert caught.value.index == 3
    assert caught.value.status_code == 409
    assert caught.value.error_code == "EntityAlreadyExists"  # type: ignore[attr-defined]
    assert sorted(await rows(client)) == ["taken"], "a refused transaction applies none of it"


async def test_a_stale_etag_fails_the_guarded_update_at_its_index(client: TableClient) -> None:
    first = await transactions.submit(client, [("create", {"PartitionKey": "p", "RowKey": "g", "v": 1})])
    await client.upsert_entity({"PartitionKey": "p", "RowKey": "g", "v": 2})  # someone else wrote it
    guarded = {**REPLACE, "etag": first[0]["etag"], "match_condition": MatchConditions.IfNotModified}
    with pytest.raises(TableTransactionError) as caught:
        await transactions.submit(
            client,
            [
                ("upsert", {"PartitionKey": "p", "RowKey": "h"}),
                ("update", {"PartitionKey": "p", "RowKey": "g", "v": 3}, guarded),
            ],
        )
    assert (caught.value.index, caught.value.status_code) == (1, 412)
    assert (await client.get_entity("p", "g"))["v"] == 2
    fresh = {**guarded, "etag": (await client.get_entity("p", "g")).metadata["etag"]}
    done = await transactions.submit(client, [("update", {"PartitionKey": "p", "RowKey": "g", "v": 3}, fresh)])
    assert done[0]["etag"] != fresh["etag"] and (await client.get_entity("p", "g"))["v"] == 3


async def test_bad_operations_are_refused_before_any_request(client: TableClient) -> None:
    with pytest.raises(ValueError, match="Partition Keys"):
        await transactions.submit(
            client, [("create", {"PartitionKey": "p", "RowKey": "a"}), ("create", {"PartitionKey": "q", "RowKey": "b"})]
        )
    with pytest.raises(ValueError, match="Unrecognized operation"):
        await transactions.submit(client, [("insert", {"PartitionKey": "p", "RowKey": "a"})])
    with pytest.raises(ValueError, match="PartitionKey and/or RowKey"):
        await transactions.submit(client, [("create", {"PartitionKey": "p"})])
    with pytest.raises(TypeError, match="must be of type string"):
        await transactions.submit(client, [("delete", {"PartitionKey": "p", "RowKey": 5})])
    assert await transactions.submit(client, []) == []
    assert await rows(client) == {}


async def test_a_missing_table_is_recognised_and_recreated_by_the_table_ops(client: TableClient) -> None:
    await client.delete_table()
    with pytest.raises(TableTransactionError) as caught:
        await transactions.submit(client, [("upsert", {"PartitionKey": "p", "RowKey": "a"})])
    assert table_missing(caught.value)
    ops = TableOps(client, None)
    recreated: list[str] = []
    ops.on_recreated = recreated.append
    # Pipeline options pass through, as to the SDK's own calls.
    result = await ops.submit_transaction([("upsert", {"PartitionKey": "p", "RowKey": "a", "n": 1})], read_timeout=30)
    assert recreated == [client.table_name] and "etag" in result[0]
    assert (await client.get_entity("p", "a"))["n"] == 1


def test_an_answer_refusing_the_whole_request_is_one_part() -> None:
    """A malformed changeset is answered by a single part directly in the batch (no changeset)."""
    body = (
        b"--batchresponse_1\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n"
        b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json;odata=minimalmetadata;charset=utf-8\r\n\r\n"
        b'{"odata.error":{"code":"InvalidInput","message":{"lang":"en-US","value":"0:Bad batch."}}}\r\n'
        b"--batchresponse_1--\r\n"
    )
    [part] = transactions.decode("multipart/mixed; boundary=batchresponse_1", body)
    assert part.status == 400 and '"InvalidInput"' in part.body


def test_an_answer_with_bare_newlines_and_quoted_boundaries_decodes() -> None:
    body = (
        b'--b\nContent-Type: multipart/mixed; boundary="cs"\n\n'
        b'--cs\nContent-Type: application/http\n\nHTTP/1.1 204 No Content\nETag: W/"1"\n\n\n'
        b'--cs\nContent-Type: application/http\n\nHTTP/1.1 201 Created\nEtag: W/"2"\n\n\n'
        b"--cs--\n--b--\n"
    )
    parts = transactions.decode('multipart/mixed; boundary="b"', body)
    assert [(p.status, p.headers["etag"]) for p in parts] == [(204, 'W/"1"'), (201, 'W/"2"')]
    with pytest.raises(ValueError, match="no multipart boundary"):
        transactions.decode("application/json", body)
