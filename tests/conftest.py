"""Test fixtures: one real PostgreSQL + pgvector per session, and a fresh schema for each test.

By default the session starts the embedded server in a temporary data directory; ``PGVECSTORE_TEST_DSN`` points
the same suite at an external server instead. Nothing here mocks the database.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from pgvecstore import PgVectorStore
from pgvecstore.server import DATA_DIR_ENV, embedded_dsn

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
# PGVECSTORE_TEST_STATEMENT_CACHE_SIZE=0 runs every make_store store without prepared statements, as behind
# PgBouncer in transaction mode.
STATEMENT_CACHE_SIZE = os.environ.get("PGVECSTORE_TEST_STATEMENT_CACHE_SIZE")

# A suite started in the background by a shell without job control (`nohup ... &`) inherits an ignored SIGINT,
# and so would every command it runs: the tests that press Ctrl-C on a child (the CLI's ingest, `dsn --wait`)
# need the child to hear it. A handled signal is reset to its default in a child at exec; an ignored one is not.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def pg_dsn() -> Iterator[str]:
    """DSN of the session's PostgreSQL: PGVECSTORE_TEST_DSN, else an embedded server of this session's own."""
    external = os.environ.get("PGVECSTORE_TEST_DSN")
    if external:
        yield external
        return
    # Not under pytest's basetemp: a later pytest session resets that folder's mode, which would lock the
    # server's system user out of a server still in use.
    data_root = Path(tempfile.mkdtemp(prefix="pgvecstore-test-"))
    # atexit runs last-registered first: the server (registered by embedded_dsn) stops before its data is removed.
    atexit.register(shutil.rmtree, data_root, ignore_errors=True)
    previous = os.environ.get(DATA_DIR_ENV)
    # The embedded default (no DSN, no DATABASE_URL) then finds this same server.
    os.environ[DATA_DIR_ENV] = str(data_root)
    dsn = embedded_dsn()
    yield dsn
    if previous is None:
        os.environ.pop(DATA_DIR_ENV, None)
    else:
        os.environ[DATA_DIR_ENV] = previous


@pytest.fixture(autouse=True)
def _no_database_url(monkeypatch: pytest.MonkeyPatch) -> None:
    """A DATABASE_URL in the developer's shell must not redirect tests; tests that want it set it."""
    monkeypatch.delenv("DATABASE_URL", raising=False)


@pytest.fixture
async def schema(pg_dsn: str) -> AsyncIterator[str]:
    """A schema name unique to this test, dropped with everything in it afterwards."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    yield name
    conn = await asyncpg.connect(pg_dsn)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
    finally:
        await conn.close()


@pytest.fixture
async def make_store(pg_dsn: str, schema: str) -> AsyncIterator[Callable[..., PgVectorStore]]:
    """Factory of stores on the session server in this test's schema; every store made is closed afterwards."""
    made: list[PgVectorStore] = []

    def factory(**options: Any) -> PgVectorStore:
        options.setdefault("connection_string", pg_dsn)
        options.setdefault("schema", schema)
        options.setdefault("pool_min_size", 1)
        options.setdefault("pool_max_size", 4)
        if STATEMENT_CACHE_SIZE is not None:
            options.setdefault("statement_cache_size", int(STATEMENT_CACHE_SIZE))
        store = PgVectorStore(options)
        made.append(store)
        return store

    yield factory
    for store in made:
        await store.close()


@pytest.fixture
async def admin(pg_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    """A plain connection for checking what is really in the database."""
    conn = await asyncpg.connect(pg_dsn)
    yield conn
    await conn.close()


@pytest.fixture(scope="session")
def scifact_dir() -> Path:
    """The shared SciFact benchmark files (../shared/data/scifact beside the checkout)."""
    path = SHARED_DATA / "scifact"
    if not path.exists():
        pytest.fail(f"SciFact data not found at {path}: tests read it from ../shared beside the checkout")
    return path
