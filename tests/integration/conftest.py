"""Fixtures of the integration tests that destroy servers: a private primary per module and hot standbys of it."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.servers import PrivateServer, Standby


@pytest.fixture(scope="module")
def private_server() -> Iterator[PrivateServer]:
    """A primary of this test module only (it may be stopped, restarted and paused). Not under pytest's basetemp:
    another pytest session on the machine resets that folder's modes, which locks the server's system user out
    of its own files (and pg_basebackup out of a standby's)."""
    root = Path(tempfile.mkdtemp(prefix="pgvecstore-private-"))
    try:
        server = PrivateServer(root)
        yield server
        server.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def standby(private_server: PrivateServer) -> Iterator[str]:
    """A streaming hot standby of the private server (pg_basebackup -R) for one test; its DSN."""
    made = Standby(private_server)
    try:
        yield made.dsn
    finally:
        made.close()
