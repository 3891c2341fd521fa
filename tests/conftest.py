from __future__ import annotations

from collections.abc import Iterator

import pytest

from simulator.azurite import Azurite, start_azurite


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    server = start_azurite()
    yield server
    server.stop()


@pytest.fixture
def conn(azurite: Azurite) -> str:
    return azurite.connection_string
