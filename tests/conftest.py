from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from azure.core.pipeline.transport import AioHttpTransport
from azure.data.tables.aio import TableClient

from callplane.settings import Role, Settings, build_settings
from callplane.signing import new_secret
from callplane.store.tables import Tables, ensure_tables, open_tables
from simulator.azurite import Azurite, start_azurite


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    server = start_azurite()
    yield server
    server.stop()


@pytest.fixture
def conn(azurite: Azurite) -> str:
    return azurite.connection_string


@pytest.fixture
def store_settings(conn: str) -> Settings:
    """A session host's settings on Azurite, with tables of its own (a fresh prefix)."""
    env = {
        "OPENAI_API_KEY": "k",
        "HANDOFF_SECRET": new_secret(),
        "STORAGE_CONNECTION_STRING": conn,
        "TABLE_PREFIX": "s" + uuid.uuid4().hex[:8],
    }
    return build_settings(Role.SESSION_HOST, env)


@pytest.fixture
async def tables(store_settings: Settings) -> AsyncIterator[Tables]:
    """Those tables, created, through one client."""
    t = open_tables(store_settings)
    await ensure_tables(t)
    yield t
    await t.close()


@pytest.fixture
async def client(conn: str) -> AsyncIterator[TableClient]:
    """A table of its own (a random name) through the SDK's own client; deleted afterwards."""
    c = TableClient.from_connection_string(
        conn, "t" + uuid.uuid4().hex[:12], transport=AioHttpTransport(use_env_settings=False)
    )
    await c.create_table()
    yield c
    await c.delete_table()
    await c.close()
