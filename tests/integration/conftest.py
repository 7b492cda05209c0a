"""Fixtures of the integration tests that destroy servers: a private primary per module and hot standbys of it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.servers import PrivateServer, Standby


@pytest.fixture(scope="module")
def private_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateServer]:
    """A primary of this test module only (it may be stopped, restarted and paused)."""
    server = PrivateServer(tmp_path_factory.mktemp("private"))
    yield server
    server.close()


@pytest.fixture
def standby(private_server: PrivateServer) -> Iterator[str]:
    """A streaming hot standby of the private server (pg_basebackup -R) for one test; its DSN."""
    made = Standby(private_server)
    try:
        yield made.dsn
    finally:
        made.close()
