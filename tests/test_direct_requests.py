"""Table writes and queries sent by callplane/store/direct.py (aiohttp, signed here), on Azurite,
held to what the SDK's own calls store, return and raise for the same requests."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from azure.core import MatchConditions
from azure.core.credentials import AccessToken, AzureNamedKeyCredential
from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestError,
)
from azure.core.pipeline.transport import AioHttpTransport
from azure.data.tables import TableTransactionError, UpdateMode
from azure.data.tables.aio import TableClient

from callplane.settings import Settings
from callplane.store import direct as direct_module
from callplane.store import transactions
from callplane.store.direct import DirectTables
from callplane.store.tables import TableOps, open_tables
from tests.test_transactions import HOSTILE_KEYS, rows, typed

REPLACE = {"mode": UpdateMode.REPLACE}


class Counted(DirectTables):
    """The real sender, counting what it sent (so a test knows the SDK's pipeline was not used)."""

    sent: list[str]

    async def send(self, method: str, url: str, body: bytes | None, headers: Any) -> direct_module.Answer:
        self.sent.append(method)
        return await super().send(method, url, body, headers)


@pytest.fixture
async def sender(client: TableClient) -> AsyncIterator[Counted]:
    made = Counted.for_client(client)
    assert isinstance(made, Counted)
    made.sent = []
    yield made
    await made.close()


async def test_direct_writes_store_what_the_sdks_writes_store(client: TableClient, sender: Counted) -> None:
    ops = TableOps(client, None, sender)
    mine = await ops.upsert_entity(typed("ours"), **REPLACE)
    await client.upsert_entity(typed("sdk"), mode=UpdateMode.REPLACE)
    await ops.create_entity(typed("ours2"))
    await client.create_entity(typed("sdk2"))
    stored = await rows(client)
    for a, b in (("ours", "sdk"), ("ours2", "sdk2")):
        assert {k: v for k, v in stored[a].items() if k != "RowKey"} == {
            k: v for k, v in stored[b].items() if k != "RowKey"
        }
    assert mine["etag"] == (await client.get_entity("p", "ours")).metadata["etag"]
    # Merge keeps what it does not name; replace drops it.
    await ops.upsert_entity({"PartitionKey": "p", "RowKey": "ours", "extra": 1})
    merged = await client.get_entity("p", "ours")
    assert merged["extra"] == 1 and merged["small"] == 7
    await ops.upsert_entity({"PartitionKey": "p", "RowKey": "ours", "only": 2}, **REPLACE)
    assert set(await client.get_entity("p", "ours")) == {"PartitionKey", "RowKey", "only"}
    assert sender.sent == ["PUT", "POST", "PATCH", "PUT"]


async def test_direct_writes_raise_the_sdks_exceptions(client: TableClient, sender: Counted) -> None:
    ops = TableOps(client, None, sender)
    first = await ops.create_entity({"PartitionKey": "p", "RowKey": "a", "n": 1})
    with pytest.raises(ResourceExistsError) as exists:
        await ops.create_entity({"PartitionKey": "p", "RowKey": "a", "n": 2})
    assert exists.value.status_code == 409 and exists.value.error_code == "EntityAlreadyExists"
    second = await ops.update_entity(
        {"PartitionKey": "p", "RowKey": "a", "n": 3}, etag=first["etag"], match_condition=MatchConditions.IfNotModified
    )
    with pytest.raises(ResourceModifiedError) as stale:  # the first ETag again: somebody wrote since
        await ops.update_entity(
            {"PartitionKey": "p", "RowKey": "a", "n": 4},
            etag=first["etag"],
            match_condition=MatchConditions.IfNotModified,
        )
    assert stale.value.status_code == 412
    assert (await client.get_entity("p", "a"))["n"] == 3 and second["etag"] != first["etag"]
    await ops.delete_entity("p", "a")
    await ops.delete_entity("p", "a")  # a delete of what is gone is done, as with the SDK
    assert await rows(client) == {}


async def test_hostile_keys_are_signed_as_sent(client: TableClient, sender: Counted) -> None:
    """The signature covers the path as it goes on the wire: keys with quotes, percent signs and
    non-ASCII letters must neither be re-quoted after signing nor refused."""
    ops = TableOps(client, None, sender)
    for key in HOSTILE_KEYS:
        await ops.upsert_entity({"PartitionKey": "p", "RowKey": key, "v": key})
        await ops.update_entity({"PartitionKey": "p", "RowKey": key, "w": 1})
    await ops.submit_transaction([("upsert", {"PartitionKey": "q", "RowKey": k, "v": k}) for k in HOSTILE_KEYS])
    stored = {e["RowKey"]: dict(e) async for e in client.query_entities("PartitionKey eq 'p'")}
    assert sorted(stored) == sorted(HOSTILE_KEYS) and all(stored[k]["v"] == k and stored[k]["w"] == 1 for k in stored)
    assert sorted([e["RowKey"] async for e in client.query_entities("PartitionKey eq 'q'")]) == sorted(HOSTILE_KEYS)
    for key in HOSTILE_KEYS:
        await ops.delete_entity("p", key)
    assert len(sender.sent) == 3 * len(HOSTILE_KEYS) + 1


async def test_a_direct_transaction_fails_as_the_sdks_does(client: TableClient, sender: Counted) -> None:
    await client.create_entity({"PartitionKey": "p", "RowKey": "b"})
    with pytest.raises(TableTransactionError) as caught:
        await transactions.submit(
            client,
            [("create", {"PartitionKey": "p", "RowKey": "a"}), ("create", {"PartitionKey": "p", "RowKey": "b"})],
            sender,
        )
    assert caught.value.index == 1 and caught.value.status_code == 409
    assert set(await rows(client)) == {"b"}, "the changeset was rolled back"
    await client.delete_table()
    ops = TableOps(client, None, sender)
    recreated: list[str] = []
    ops.on_recreated = recreated.append
    result = await ops.submit_transaction([("upsert", {"PartitionKey": "p", "RowKey": "a", "n": 1})])
    assert recreated == [client.table_name] and "etag" in result[0]
    assert sender.sent == ["POST", "POST", "POST"], "the missing table was recognised from the direct answer"


async def test_a_wrong_key_is_refused_as_the_sdk_refuses_it_without_showing_the_key(
    client: TableClient, conn: str
) -> None:
    wrong = "d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXk="
    key = AzureNamedKeyCredential(client.account_name, wrong)
    sdk = TableClient(client.url, client.table_name, credential=key, transport=AioHttpTransport(use_env_settings=False))
    sender = DirectTables(f"{client.scheme}://{client._primary_hostname}", client.api_version, key=key)
    ops = TableOps(client, None, sender)
    try:
        with pytest.raises(HttpResponseError) as theirs:
            await sdk.upsert_entity({"PartitionKey": "p", "RowKey": "a"})
        with pytest.raises(HttpResponseError) as ours:
            await ops.upsert_entity({"PartitionKey": "p", "RowKey": "a"})
    finally:
        await sender.close()
        await sdk.close()
    assert type(ours.value) is type(theirs.value) and ours.value.status_code == theirs.value.status_code == 403
    assert ours.value.error_code == theirs.value.error_code == "AuthorizationFailure"
    assert wrong not in str(ours.value) and wrong not in repr(ours.value)
    assert await rows(client) == {}


async def test_an_unreachable_store_is_an_azure_error_after_the_retries(client: TableClient) -> None:
    from simulator.azurite import free_port

    sender = DirectTables(
        f"http://127.0.0.1:{free_port()}/devstoreaccount1",
        client.api_version,
        key=AzureNamedKeyCredential("devstoreaccount1", "a2V5"),
        connect_timeout_s=1.0,
    )
    calls: list[int] = []
    real_sleep = direct_module.asyncio.sleep

    async def quick(delay: float) -> None:
        calls.append(round(delay * 10))
        await real_sleep(0)

    direct_module.asyncio.sleep = quick  # type: ignore[assignment]
    try:
        with pytest.raises(ServiceRequestError) as caught:
            await sender.write(("upsert", {"PartitionKey": "p", "RowKey": "a"}), sender.base_url + "/t")
    finally:
        direct_module.asyncio.sleep = real_sleep  # type: ignore[assignment]
    assert isinstance(caught.value, AzureError) and calls == [2, 4], calls
    await sender.close()


async def test_a_token_credential_signs_with_a_bearer_token_fetched_once() -> None:
    seen: list[tuple[str, str]] = []

    async def table_service(request: web.Request) -> web.Response:
        seen.append((request.method, request.headers.get("Authorization", "")))
        return web.Response(status=204, headers={"ETag": 'W/"1"'})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", table_service)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]

    class Credential:
        """The first token runs out within a minute, the second in an hour."""

        def __init__(self) -> None:
            self.scopes: list[tuple[str, ...]] = []

        async def get_token(self, *scopes: str) -> AccessToken:
            self.scopes.append(scopes)
            lifetime = 60 if len(self.scopes) == 1 else 3600
            return AccessToken(f"token{len(self.scopes)}", int(time.time()) + lifetime)

    credential = Credential()
    sender = DirectTables(f"http://127.0.0.1:{port}", "2019-02-02", credential=credential)
    try:
        url = sender.base_url + "/t"
        assert (await sender.write(("upsert", {"PartitionKey": "p", "RowKey": "a"}), url))["etag"] == 'W/"1"'
        await sender.write(("update", {"PartitionKey": "p", "RowKey": "a"}), url)
        await sender.write(("delete", {"PartitionKey": "p", "RowKey": "a"}), url)
    finally:
        await sender.close()
        await runner.cleanup()
    assert seen == [("PATCH", "Bearer token1"), ("PATCH", "Bearer token2"), ("DELETE", "Bearer token2")]
    assert credential.scopes == [("https://storage.azure.com/.default",)] * 2


async def test_the_switch_sends_every_request_through_the_sdk(store_settings: Settings) -> None:
    on = open_tables(store_settings)
    off = open_tables(store_settings.model_copy(update={"direct_table_writes": False}))
    try:
        assert isinstance(on.direct, DirectTables) and all(ops.direct is on.direct for ops in on.all())
        assert off.direct is None and all(ops.direct is None for ops in off.all())
        # Both write and read back the same all the same.
        for tables in (on, off):
            await tables.leases.upsert_entity({"PartitionKey": "p", "RowKey": "r"})
            assert (await tables.leases.get_entity("p", "r"))["RowKey"] == "r"
    finally:
        await on.close()
        await off.close()


def test_what_cannot_be_signed_here_stays_with_the_sdk() -> None:
    from azure.core.credentials import AzureSasCredential

    sas = TableClient("https://acct.table.core.windows.net", "t", credential=AzureSasCredential("sv=1&sig=x"))
    cosmos = TableClient("https://acct.table.cosmos.azure.com", "t", credential=AzureNamedKeyCredential("acct", "a2V5"))
    keyed = TableClient("https://acct.table.core.windows.net", "t", credential=AzureNamedKeyCredential("acct", "a2V5"))
    assert DirectTables.for_client(sas) is None and DirectTables.for_client(cosmos) is None
    sender = DirectTables.for_client(keyed)
    assert sender is not None and sender.base_url == "https://acct.table.core.windows.net"


async def test_direct_queries_read_what_the_sdks_queries_read(client: TableClient, sender: Counted) -> None:
    """Typed properties and ETags, `@name` parameters with quotes, a selection, and more rows than
    one page (the service answers at most 1,000 a page and a continuation)."""
    ops = TableOps(client, None, sender)
    await client.upsert_entity(typed("a"), mode=UpdateMode.REPLACE)
    await ops.upsert_entity({"PartitionKey": "p", "RowKey": "it's", "n": 5})
    for start in range(0, 1005, 100):
        await ops.submit_transaction(
            [
                ("upsert", {"PartitionKey": "many", "RowKey": f"{i:05d}", "n": i})
                for i in range(start, min(start + 100, 1005))
            ]
        )
    sender.sent.clear()
    sql = "PartitionKey eq @pk and RowKey ge @rk"
    for query, params, select in (
        (sql, {"pk": "p", "rk": ""}, None),
        ("RowKey eq @rk", {"rk": "it's"}, ["n"]),
        ("PartitionKey eq @pk", {"pk": "many"}, ["RowKey", "n"]),
    ):
        ours = await ops.query(query, params, select=select, parse=lambda e: (dict(e), e.metadata["etag"]))
        theirs = [
            (dict(e), e.metadata["etag"]) async for e in client.query_entities(query, parameters=params, select=select)
        ]
        assert ours == theirs and ours, query
    assert len(ours) == 1005 and sender.sent == ["GET"] * 4, sender.sent  # 1 + 1 + two pages
    await client.delete_table()
    recreated: list[str] = []
    ops.on_recreated = recreated.append
    assert await ops.query("PartitionKey eq @pk", {"pk": "p"}, parse=dict) == []
    assert recreated == [client.table_name], "a missing table was recognised from the direct answer"


async def test_direct_point_reads_read_what_the_sdks_reads_read(client: TableClient, sender: Counted) -> None:
    """Typed properties and the ETag, hostile keys, and the SDK's own exceptions for a missing
    entity and a missing table (which is then created again, as for writes)."""
    ops = TableOps(client, None, sender)
    await client.upsert_entity(typed("a"), mode=UpdateMode.REPLACE)
    for key in HOSTILE_KEYS:
        await client.upsert_entity({"PartitionKey": "p", "RowKey": key, "v": key})
    sender.sent.clear()
    for key in ("a", *HOSTILE_KEYS):
        ours, theirs = await ops.get_entity("p", key), await client.get_entity("p", key)
        assert dict(ours) == dict(theirs) and ours.metadata["etag"] == theirs.metadata["etag"], key
    assert sender.sent == ["GET"] * (1 + len(HOSTILE_KEYS))
    with pytest.raises(ResourceNotFoundError) as missing:
        await ops.get_entity("p", "nobody")
    with pytest.raises(ResourceNotFoundError) as sdk_missing:
        await client.get_entity("p", "nobody")
    assert missing.value.error_code == sdk_missing.value.error_code == "ResourceNotFound"
    await client.delete_table()
    recreated: list[str] = []
    ops.on_recreated = recreated.append
    with pytest.raises(ResourceNotFoundError) as after:
        await ops.get_entity("p", "a")
    assert after.value.error_code == "ResourceNotFound" and recreated == [client.table_name]
    # A selection is the SDK's to send.
    sender.sent.clear()
    await client.upsert_entity(typed("a"), mode=UpdateMode.REPLACE)
    assert set(await ops.get_entity("p", "a", select=["small"])) == {"small"}
    assert sender.sent == []
