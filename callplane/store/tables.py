"""Table clients: one code path for Azurite (connection string) and Azure (endpoint + identity)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from azure.core.exceptions import ResourceExistsError
from azure.data.tables.aio import TableClient, TableServiceClient

from callplane.settings import Settings

TABLES = ("calls", "callindex", "rollups", "webhooks", "leases")


@dataclass(slots=True)
class Tables:
    service: TableServiceClient
    calls: TableClient
    callindex: TableClient
    rollups: TableClient
    webhooks: TableClient
    leases: TableClient

    async def close(self) -> None:
        for client in (self.calls, self.callindex, self.rollups, self.webhooks, self.leases):
            await client.close()
        await self.service.close()


def _service(settings: Settings) -> TableServiceClient:
    # Bounded retries: the write-behind layer owns long retry loops, so a stuck request must not
    # sit inside the SDK for minutes (its default is 10 tries with up to 120 s backoff).
    kwargs: dict[str, Any] = {
        "retry_total": 2,
        "retry_backoff_factor": 0.2,
        "retry_backoff_max": 2,
        "connection_timeout": 5,
        "read_timeout": 10,
    }
    if settings.storage_connection_string:
        return TableServiceClient.from_connection_string(settings.storage_connection_string, **kwargs)
    from azure.identity.aio import DefaultAzureCredential

    return TableServiceClient(settings.storage_table_endpoint, credential=DefaultAzureCredential(), **kwargs)


def open_tables(settings: Settings) -> Tables:
    """Construct clients (no I/O); call `ensure_tables` once at start-up."""
    service = _service(settings)
    names = [f"{settings.table_prefix}{name}" for name in TABLES]
    clients = [service.get_table_client(name) for name in names]
    return Tables(service, *clients)


async def ensure_tables(tables: Tables) -> None:
    for client in (tables.calls, tables.callindex, tables.rollups, tables.webhooks, tables.leases):
        try:
            await tables.service.create_table(client.table_name)
        except ResourceExistsError:
            pass
