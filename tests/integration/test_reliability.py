"""Reliability under faults, load and many instances: nothing lost, nothing stuck, clear errors.

Destructive tests (server restart, stop, a paused postmaster) run on a private embedded server of this module;
the others use the session's server. Every test checks what a user would check: rows present, errors raised, the
store's sessions in ``pg_stat_activity`` (found by their ``application_name``).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg
import numpy as np
import pytest
from tests.dsn import dsn_as
from tests.servers import PrivateServer

from pgvecstore import (
    ConnectionFailedError,
    ConnectionLostError,
    ExtensionMissingError,
    PgVectorStore,
    QueryTimeoutError,
    ReadOnlyError,
    StoreClosedError,
    SyncPgVectorStore,
)
from pgvecstore.connection import APPLICATION_NAME

WORKER = Path(__file__).with_name("_reliability_worker.py")
REPO = Path(__file__).resolve().parents[2]
DIM = 8


# -- helpers ---------------------------------------------------------------------------------------------------
def with_params(dsn: str, **params: str) -> str:
    """The DSN with extra query parameters (application_name to tell this test's sessions apart)."""
    parts = urlsplit(dsn)
    query = dict(parse_qsl(parts.query))
    query.update(params)
    return urlunsplit(parts._replace(query=urlencode(query)))


def app_dsn(dsn: str, label: str) -> tuple[str, str]:
    """A DSN whose sessions carry a unique application_name, and that name."""
    name = f"pgv-{label}-{uuid.uuid4().hex[:8]}"
    return with_params(dsn, application_name=name), name


async def sessions(conn: asyncpg.Connection, app: str) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT pid, state, wait_event_type, xact_start FROM pg_stat_activity WHERE application_name = $1", app
    )


async def eventually(check: Callable[[], Awaitable[bool]], what: str, limit: float = 30.0) -> None:
    """Wait until `check()` holds (polling); fail naming `what` if it never does. Not a timing assertion."""
    deadline = time.monotonic() + limit
    while not await check():
        if time.monotonic() > deadline:
            pytest.fail(f"never happened: {what}")
        await asyncio.sleep(0.02)


def vectors(n: int, seed: int = 0, dim: int = DIM) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)


# -- a private server for destructive tests (tests/servers.py; fixtures in conftest.py) ---------------------------
@pytest.fixture
async def private_store(private_server: PrivateServer) -> AsyncIterator[Callable[..., PgVectorStore]]:
    """Factory of stores on the private server (each in a schema of its own), closed afterwards."""
    made: list[PgVectorStore] = []

    def factory(**options: Any) -> PgVectorStore:
        options.setdefault("connection_string", private_server.dsn)
        options.setdefault("schema", f"r_{uuid.uuid4().hex[:12]}")
        options.setdefault("dimensions", DIM)
        options.setdefault("pool_min_size", 2)
        options.setdefault("pool_max_size", 4)
        options.setdefault("connect_timeout", 3)
        store = PgVectorStore(options)
        made.append(store)
        return store

    yield factory
    for store in made:
        await store.close()


# -- a connection lost in the middle of admin work -----------------------------------------------------------------
def kill_sessions_unnoticed(dsn: str, app: str) -> None:
    """End every session named `app`, from another thread, while this event loop is blocked: the store's pool
    cannot notice, so its next operation starts on a connection the server has already closed (as after a
    failover the client did not see)."""

    async def kill() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            pids = [row["pid"] for row in await sessions(conn, app)]
            assert pids, "the store has no session to end"
            await conn.execute("SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) AS pid", pids)
            while await conn.fetchval("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1::int[])", pids):
                await asyncio.sleep(0.01)
        finally:
            await conn.close()

    worker = threading.Thread(target=lambda: asyncio.run(kill()))
    worker.start()
    worker.join()  # blocks this loop, on purpose


@pytest.mark.parametrize("operation", ["create_index", "drop_index", "index_info", "enable_text_search",
                                       "first text search"])
async def test_a_connection_lost_during_admin_work_is_connection_lost_and_the_next_call_works(
    make_store: Callable[..., PgVectorStore], pg_dsn: str, operation: str
) -> None:
    dsn, app = app_dsn(pg_dsn, "admin")
    store = make_store(connection_string=dsn, dimensions=DIM, id_type="text", pool_min_size=2, pool_max_size=2,
                       text_search=operation != "enable_text_search")
    await store.add_vectors(vectors(40), ids=[f"r{i}" for i in range(40)],
                            contents=[f"alpha beta {i}" for i in range(40)])
    if operation in ("drop_index", "index_info"):
        await store.create_index("hnsw")
    calls = {
        "create_index": lambda: store.create_index("hnsw"),
        "drop_index": store.drop_index,
        "index_info": store.index_info,
        "enable_text_search": store.enable_text_search,
        "first text search": lambda: store.search(query_text="alpha", mode="text", k=3),
    }
    call = calls[operation]
    await asyncio.gather(*(store.count() for _ in range(4)))  # both pooled connections open
    kill_sessions_unnoticed(pg_dsn, app)
    with pytest.raises(ConnectionLostError, match="lost the connection to PostgreSQL"):
        await call()
    expected = {"create_index": True, "drop_index": True, "index_info": "hnsw", "enable_text_search": True}
    result = await call()  # the same store, the next call: the pool was renewed
    if operation == "first text search":
        assert len(result) == 3 and all("alpha" in (hit.content or "") for hit in result)
    else:
        assert result == expected[operation]
    assert await store.count() == 40


# -- server restart and outage ------------------------------------------------------------------------------------
async def test_restart_while_idle_next_operations_succeed(
    private_server: PrivateServer, private_store: Callable[..., PgVectorStore]
) -> None:
    store = private_store()
    data = vectors(50)
    ids = await store.add_vectors(data)
    await asyncio.to_thread(private_server.restart)

    # The same store, no re-initialisation: reads and writes work.
    assert await store.count() == 50
    hits = await store.search(data[7], k=1)
    assert hits[0][0] == ids[7]
    await store.add_vectors(vectors(10, seed=1))
    assert await store.count() == 60


async def test_stale_pooled_connections_are_replaced(
    private_server: PrivateServer, private_store: Callable[..., PgVectorStore]
) -> None:
    """A restart the client did not notice (its event loop was blocked, like a half-open connection after a
    failover) leaves dead connections in the pool: a read retries once on a fresh connection, so no call fails,
    and the pool heals."""
    store = private_store(pool_min_size=4, pool_max_size=4)
    data = vectors(20)
    ids = await store.add_vectors(data)
    await asyncio.gather(*(store.count() for _ in range(8)))  # all four pooled connections opened and used
    private_server.restart()  # blocks this loop: the pool cannot notice the dead sessions

    failures = []
    for _ in range(3):
        try:
            assert (await store.search(data[3], k=1))[0][0] == ids[3]
            break
        except ConnectionFailedError as exc:
            failures.append(str(exc))
    assert failures == [], failures  # the read was retried on a fresh connection (PgVectorStore._read)
    # Every later call works: the other dead connections were replaced, not handed out one by one.
    for _ in range(8):
        assert await store.count() == 20


async def test_outage_raises_clear_error_then_recovers(
    private_server: PrivateServer, private_store: Callable[..., PgVectorStore]
) -> None:
    store = private_store()
    data = vectors(30)
    ids = await store.add_vectors(data)
    await asyncio.to_thread(private_server.stop)
    try:
        for call in (
            store.search(data[0], k=3),
            store.count(),
            store.add_vectors(vectors(5, seed=2)),
            store.get_vectors(ids[:2]),
            store.delete_vectors(ids[:1]),
        ):
            with pytest.raises(ConnectionFailedError, match="could not connect to PostgreSQL") as info:
                await asyncio.wait_for(call, timeout=30)  # a hang guard, not a timing assertion
            assert "reconnects on a later call" in str(info.value)
        # A store created during the outage fails clearly at initialize().
        with pytest.raises(ConnectionFailedError, match="could not connect"):
            await private_store().initialize()
    finally:
        await asyncio.to_thread(private_server.start)

    # Nothing of the failed writes landed, nothing was lost.
    assert await store.count() == 30
    assert (await store.search(data[0], k=1))[0][0] == ids[0]


async def test_search_loop_through_a_restart(
    private_server: PrivateServer, private_store: Callable[..., PgVectorStore]
) -> None:
    store = private_store(pool_max_size=3)
    data = vectors(100)
    ids = await store.add_vectors(data)
    outcomes: dict[str, int] = {"ok": 0, "connection_failed": 0}
    other_errors: list[BaseException] = []
    restarted = asyncio.Event()
    ok_after_restart = 0

    async def search_loop(worker: int) -> None:
        nonlocal ok_after_restart
        rng = np.random.default_rng(worker)
        while ok_after_restart < 20:
            i = int(rng.integers(100))
            try:
                hits = await store.search(data[i], k=3)
            except ConnectionFailedError:
                outcomes["connection_failed"] += 1
                await asyncio.sleep(0.01)
                continue
            except Exception as exc:  # anything else is a bug: record it and stop
                other_errors.append(exc)
                return
            assert hits[0][0] == ids[i]
            outcomes["ok"] += 1
            if restarted.is_set():
                ok_after_restart += 1

    loops = [asyncio.create_task(search_loop(w)) for w in range(3)]
    await asyncio.sleep(0.2)
    await asyncio.to_thread(private_server.restart)
    restarted.set()
    await asyncio.wait_for(asyncio.gather(*loops), timeout=60)
    assert not other_errors, other_errors
    assert outcomes["ok"] >= 20
    assert await store.count() == 100


async def test_unresponsive_server_is_bounded_by_connect_timeout(
    private_server: PrivateServer, private_store: Callable[..., PgVectorStore], admin_private: asyncpg.Connection
) -> None:
    """A server that accepts but never answers (paused postmaster) does not hang a call: connect_timeout ends it."""
    dsn, app = app_dsn(private_server.dsn, "paused")
    # pool_min_size=0: asyncpg (0.32+) would otherwise reopen the pool's floor connection by itself.
    store = private_store(connection_string=dsn, connect_timeout=1, pool_min_size=0, pool_max_size=2)
    await store.add_vectors(vectors(10))
    # Drop the pool's sessions so the next call must open a new connection.
    await admin_private.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1", app
    )
    await eventually(lambda: _no_sessions(admin_private, app), "the store's sessions ended")
    os.kill(private_server.postmaster_pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        with pytest.raises(ConnectionFailedError, match=r"connect_timeout=1s"):
            await asyncio.wait_for(store.count(), timeout=30)  # a hang guard, not a timing assertion
        print(f"\nunresponsive server: the call failed after {time.monotonic() - started:.2f}s (connect_timeout=1)")
    finally:
        os.kill(private_server.postmaster_pid, signal.SIGCONT)
    assert await store.count() == 10


async def _no_sessions(conn: asyncpg.Connection, app: str) -> bool:
    return not await sessions(conn, app)


@pytest.fixture
async def admin_private(private_server: PrivateServer) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(private_server.dsn)
    yield conn
    await conn.close()


# -- a connection killed in the middle of add_vectors -----------------------------------------------------------
async def _hold_id_uncommitted(conn: asyncpg.Connection, store: PgVectorStore, row_id: str) -> asyncpg.Transaction:
    """Insert `row_id` in an open transaction: a COPY of the same id waits on it, in the middle of the call."""
    tx = conn.transaction()
    await tx.start()
    table = f'"{store.config.schema}"."{store.config.table_name}"'
    await conn.execute(f"INSERT INTO {table} (id, embedding) VALUES ($1, $2::real[]::vector)", row_id, [0.0] * DIM)
    return tx


async def _waiting_backend(conn: asyncpg.Connection, app: str) -> int:
    """The pid of the store's session once it waits on a lock (mid-call)."""
    found: list[int] = []

    async def waiting() -> bool:
        found[:] = [r["pid"] for r in await sessions(conn, app) if r["wait_event_type"] == "Lock"]
        return bool(found)

    await eventually(waiting, "the store's session waits on the held id")
    return found[0]


async def test_killed_connection_mid_batch_is_all_or_nothing(
    make_store: Callable[..., PgVectorStore], pg_dsn: str, admin: asyncpg.Connection
) -> None:
    dsn, app = app_dsn(pg_dsn, "kill")
    store = make_store(connection_string=dsn, dimensions=DIM, id_type="text", batch_size=500)
    await store.initialize()
    n = 3000
    data = vectors(n, seed=3)
    ids = [f"doc-{i}" for i in range(n)]
    metadata = [{"i": i} for i in range(n)]
    # The third batch waits on an id held by another transaction: batches one and two are already written
    # inside the call's transaction when its connection is killed.
    holder = await asyncpg.connect(pg_dsn)
    tx = await _hold_id_uncommitted(holder, store, ids[1200])
    try:
        call = asyncio.create_task(store.add_vectors(data, ids, metadata))
        pid = await _waiting_backend(admin, app)
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
        with pytest.raises(ConnectionFailedError, match="rolled back"):
            await call
    finally:
        await tx.rollback()
        await holder.close()

    assert await store.count() == 0  # nothing of the call landed
    # The same call again lands every row exactly once, and a third time changes nothing.
    for _ in range(2):
        assert await store.add_vectors(data, ids, metadata) == ids
        assert await store.count() == n
    got = await store.get_vectors([ids[0], ids[1200], ids[-1]])
    np.testing.assert_allclose(got[1][0], data[1200], rtol=1e-6)
    assert got[2][1]["i"] == n - 1


# -- cancellation ---------------------------------------------------------------------------------------------------
async def _lock_table(conn: asyncpg.Connection, store: PgVectorStore) -> asyncpg.Transaction:
    tx = conn.transaction()
    await tx.start()
    await conn.execute(f'LOCK TABLE "{store.config.schema}"."{store.config.table_name}" IN ACCESS EXCLUSIVE MODE')
    return tx


async def test_cancelled_search_leaves_the_pool_healthy(
    make_store: Callable[..., PgVectorStore], pg_dsn: str, admin: asyncpg.Connection
) -> None:
    dsn, app = app_dsn(pg_dsn, "cancel-search")
    store = make_store(connection_string=dsn, dimensions=DIM, pool_min_size=1, pool_max_size=2)
    data = vectors(100, seed=4)
    ids = await store.add_vectors(data)
    locker = await asyncpg.connect(pg_dsn)
    tx = await _lock_table(locker, store)
    try:
        searches = [asyncio.create_task(store.search(data[i], k=5)) for i in range(2)]
        await _waiting_backend(admin, app)
        for task in searches:
            task.cancel()
        for task in searches:
            with pytest.raises(asyncio.CancelledError):
                await task
    finally:
        await tx.rollback()
        await locker.close()

    # Both pooled connections are usable again (the server-side statements were cancelled, not left running).
    results = await asyncio.gather(*(store.search(data[i], k=1) for i in range(10)))
    assert [r[0][0] for r in results] == ids[:10]
    await eventually(lambda: _all_idle(admin, app), "the store's sessions are idle")
    assert len(await sessions(admin, app)) <= 2
    await store.close()
    await eventually(lambda: _no_sessions(admin, app), "close() ended every session")


async def _all_idle(conn: asyncpg.Connection, app: str) -> bool:
    return all(r["state"] == "idle" for r in await sessions(conn, app))


async def test_cancelled_add_vectors_is_all_or_nothing(
    make_store: Callable[..., PgVectorStore], pg_dsn: str, admin: asyncpg.Connection
) -> None:
    dsn, app = app_dsn(pg_dsn, "cancel-add")
    store = make_store(connection_string=dsn, dimensions=DIM, id_type="text", batch_size=200, pool_max_size=2)
    await store.initialize()
    n = 1000
    data = vectors(n, seed=5)
    ids = [f"c-{i}" for i in range(n)]
    holder = await asyncpg.connect(pg_dsn)
    tx = await _hold_id_uncommitted(holder, store, ids[700])
    try:
        call = asyncio.create_task(store.add_vectors(data, ids))
        await _waiting_backend(admin, app)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
    finally:
        await tx.rollback()
        await holder.close()

    assert await store.count() == 0
    assert await store.add_vectors(data, ids) == ids
    assert await store.count() == n
    await eventually(lambda: _all_idle(admin, app), "the store's sessions are idle")
    assert len(await sessions(admin, app)) <= 2


# -- load ---------------------------------------------------------------------------------------------------------
async def test_2000_concurrent_searches_through_a_pool_of_10(
    make_store: Callable[..., PgVectorStore], pg_dsn: str, admin: asyncpg.Connection
) -> None:
    dsn, app = app_dsn(pg_dsn, "load")
    store = make_store(
        connection_string=dsn, dimensions=32, pool_min_size=2, pool_max_size=10, index_type="hnsw",
        auto_create_index=True,
    )
    data = vectors(2000, seed=6, dim=32)
    ids = await store.add_vectors(data)
    rng = np.random.default_rng(7)
    picks = rng.integers(0, len(data), 2000)
    queries = data[picks] + rng.normal(0, 0.01, (2000, 32)).astype(np.float32)

    async def timed(query: np.ndarray) -> tuple[list[Any], float]:
        started = time.perf_counter()
        hits = await store.search(query, k=5)
        return hits, time.perf_counter() - started

    started = time.perf_counter()
    results = await asyncio.gather(*(timed(q) for q in queries))
    wall = time.perf_counter() - started
    latencies = np.array([seconds for _, seconds in results]) * 1000
    print(
        f"\n2000 concurrent searches, pool_max_size=10: {wall:.2f}s wall, {2000 / wall:.0f}/s, latency p50 "
        f"{np.percentile(latencies, 50):.0f} ms, p99 {np.percentile(latencies, 99):.0f} ms (queued for the pool)"
    )
    found = sum(hits[0][0] == ids[i] for (hits, _), i in zip(results, picks, strict=True))
    assert found >= 0.95 * len(picks)  # HNSW is approximate; the nearest row is (nearly) always first

    # The store holds no more sessions than its pool allows, and close() ends all of them.
    assert 2 <= len(await sessions(admin, app)) <= 10
    await store.close()
    await eventually(lambda: _no_sessions(admin, app), "close() ended every session")


async def test_a_connection_kept_between_operations_never_keeps_anyone_waiting(
    make_store: Callable[..., PgVectorStore]
) -> None:
    """Back-to-back operations of a task reuse their connection without the pool's round trip (pgvecstore.pool.
    LoopPool); with a pool of one connection, nobody else ever waits for it longer than it is really in use."""
    store = make_store(dimensions=DIM, pool_min_size=1, pool_max_size=1)
    ids = await store.add_vectors(vectors(20))
    query = vectors(20)[3]
    for _ in range(5):
        assert (await store.search(query, k=1))[0].id == ids[3]  # one after another: the kept connection
    pool = await store.get_pool()  # SQL of the user's own gets the connection the store kept
    assert await asyncio.wait_for(pool.fetchval("SELECT 1"), timeout=10) == 1
    await store.search(query, k=1)
    # Many operations at once through one connection: each waits for it only while another uses it.
    done = await asyncio.wait_for(
        asyncio.gather(*(store.search(query, k=1) for _ in range(40)), *(store.count() for _ in range(40))),
        timeout=30,
    )
    assert done[:40] == [done[0]] * 40 and done[40:] == [20] * 40
    await store.search(query, k=1)
    assert await asyncio.wait_for(pool.fetchval("SELECT 2"), timeout=10) == 2  # an earlier-taken pool too
    await asyncio.wait_for(store.close(), timeout=10)  # and close right after an operation does not wait


async def test_store_sessions_are_named_pgvecstore(make_store: Callable[..., PgVectorStore]) -> None:
    store = make_store(dimensions=DIM)
    await store.add_vectors(vectors(3))
    pool = await store.get_pool()
    assert await pool.fetchval("SELECT current_setting('application_name')") == APPLICATION_NAME == "pgvecstore"


# -- use after close ------------------------------------------------------------------------------------------------
async def test_every_call_after_close_raises_store_closed(make_store: Callable[..., PgVectorStore]) -> None:
    store = make_store(dimensions=DIM, id_type="text")
    await store.add_vectors(vectors(3), ["a", "b", "c"])
    await store.close()
    await store.close()  # twice is harmless
    calls: list[Callable[[], Awaitable[Any]]] = [
        store.initialize,
        lambda: store.add_vectors(vectors(1), ["d"]),
        lambda: store.search(vectors(1)[0]),
        lambda: store.get_vectors(["a"]),
        lambda: store.get(),
        lambda: store.update_metadata(["a"], [{"x": 1}]),
        lambda: store.delete_vectors(["a"]),
        lambda: store.delete({"x": 1}),
        store.clear,
        store.count,
        lambda: store.create_index("hnsw"),
        store.drop_index,
        store.index_info,
        store.get_pool,
    ]
    for call in calls:
        with pytest.raises(StoreClosedError, match="has been closed"):
            await call()

    sync = SyncPgVectorStore(store)
    with pytest.raises(StoreClosedError):
        sync.count()


async def test_close_during_calls_never_reconnects(make_store: Callable[..., PgVectorStore], pg_dsn: str,
                                                   admin: asyncpg.Connection) -> None:
    """Calls racing close() either finish or raise StoreClosedError; afterwards the store has no session."""
    dsn, app = app_dsn(pg_dsn, "close-race")
    store = make_store(connection_string=dsn, dimensions=DIM)
    data = vectors(200, seed=8)
    await store.add_vectors(data)
    calls = [asyncio.create_task(store.search(data[i % 200], k=3)) for i in range(200)]
    await asyncio.sleep(0)
    await store.close()
    outcomes = await asyncio.gather(*calls, return_exceptions=True)
    errors = [o for o in outcomes if isinstance(o, BaseException)]
    assert all(isinstance(e, StoreClosedError) for e in errors), [repr(e) for e in errors]
    await eventually(lambda: _no_sessions(admin, app), "close() ended every session")
    with pytest.raises(StoreClosedError):
        await store.count()
    assert not await sessions(admin, app)


# -- statement_timeout ----------------------------------------------------------------------------------------------
async def test_statement_timeout_ends_a_stuck_search_but_not_an_index_build(
    make_store: Callable[..., PgVectorStore], pg_dsn: str, admin: asyncpg.Connection
) -> None:
    loader = make_store(dimensions=64)
    await loader.add_vectors(vectors(5000, seed=9, dim=64))
    store = make_store(dimensions=64, statement_timeout=0.2)

    # A search that would wait (here on a lock; in production on a slow plan) is cancelled by the server.
    locker = await asyncpg.connect(pg_dsn)
    tx = await _lock_table(locker, store)
    try:
        with pytest.raises(QueryTimeoutError, match="statement timeout") as raised:
            await asyncio.wait_for(store.search(vectors(1, dim=64)[0]), timeout=30)  # hang guard
        assert isinstance(raised.value, TimeoutError)  # what a caller without pgvecstore's errors catches
        assert isinstance(raised.value.__cause__, asyncpg.QueryCanceledError)  # the driver's error, kept
    finally:
        await tx.rollback()
        await locker.close()
    assert len(await store.search(vectors(1, dim=64)[0], k=3)) == 3  # the pool is fine afterwards

    # The HNSW build takes far longer than 0.2 s on these rows, and is not cut off.
    started = time.perf_counter()
    assert await store.create_index("hnsw", {"m": 16, "ef_construction": 200})
    print(f"\nHNSW build under statement_timeout=0.2s took {time.perf_counter() - started:.2f}s")
    assert await store.index_info() == "hnsw"
    pool = await store.get_pool()
    assert await pool.fetchval("SHOW statement_timeout") == "200ms"  # the build lifted it only in its transaction


# -- poolers: no prepared statements with statement_cache_size=0 -------------------------------------------------
async def test_statement_cache_size_0_uses_no_named_prepared_statements(
    make_store: Callable[..., PgVectorStore],
) -> None:
    """PgBouncer's transaction mode cannot follow named prepared statements from one transaction to the next;
    with statement_cache_size=0 every pooled session holds none, whatever ran on it."""
    store = make_store(dimensions=DIM, pool_min_size=1, pool_max_size=1, statement_cache_size=0, id_type="text")
    cached = make_store(dimensions=DIM, pool_min_size=1, pool_max_size=1, table_name="cached", id_type="text")
    for s in (store, cached):
        await s.add_vectors(vectors(20), [f"id{i}" for i in range(20)], [{"k": i} for i in range(20)])
        await s.search(vectors(1)[0], k=3, filter={"k": {"$gte": 3}})
        await s.get_vectors(["id1"])
        await s.update_metadata(["id1"], [{"k": 100}])
        await s.count({"k": 100})
        await s.delete_vectors(["id2"])
    pool = await store.get_pool()
    assert await pool.fetchval("SELECT count(*) FROM pg_prepared_statements") == 0
    cached_pool = await cached.get_pool()
    assert await cached_pool.fetchval("SELECT count(*) FROM pg_prepared_statements") > 0  # the default caches


# A representative part of the core suite: writes, upserts, every read, filters, tenancy, row-level security.
CORE_SUBSET = [
    "tests/integration/test_core_store.py",
    "tests/integration/test_tenancy.py",
]


def test_core_suite_passes_with_statement_cache_size_0(pg_dsn: str) -> None:
    """The integration tests of the core and of tenancy, every store made with statement_cache_size=0."""
    env = {**os.environ, "PGVECSTORE_TEST_STATEMENT_CACHE_SIZE": "0", "PGVECSTORE_TEST_DSN": pg_dsn}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x", *CORE_SUBSET],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    summary = run.stdout.strip().splitlines()[-1] if run.stdout.strip() else ""
    print(f"\nstatement_cache_size=0: {summary}")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert " passed" in summary and "failed" not in summary


# -- a role without CREATE EXTENSION rights -------------------------------------------------------------------------
@pytest.fixture
async def fresh_database(pg_dsn: str, admin: asyncpg.Connection) -> AsyncIterator[tuple[str, str]]:
    """A new database without pgvector and a plain LOGIN role (no superuser): (database, role)."""
    if not await admin.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = current_user"):
        pytest.skip("needs a superuser connection to create a database and a role")
    suffix = uuid.uuid4().hex[:10]
    database, role = f"pgv_db_{suffix}", f"pgv_app_{suffix}"
    await admin.execute(f'CREATE DATABASE "{database}"')
    await admin.execute(f'CREATE ROLE "{role}" LOGIN')
    try:
        yield database, role
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await admin.execute(f'DROP ROLE IF EXISTS "{role}"')


async def test_role_without_extension_rights(pg_dsn: str, fresh_database: tuple[str, str]) -> None:
    database, role = fresh_database
    app_dsn_ = dsn_as(pg_dsn, role, database=database)
    store = PgVectorStore(connection_string=app_dsn_, dimensions=DIM, schema="app", pool_min_size=1)
    try:
        with pytest.raises(ExtensionMissingError) as info:
            await store.initialize()
    finally:
        await store.close()
    message = str(info.value)
    assert f"database {database!r}" in message and f"role {role!r}" in message
    assert "CREATE EXTENSION IF NOT EXISTS vector" in message

    # An administrator installs pgvector and gives the role a schema: the same role now works.
    owner = await asyncpg.connect(dsn_as(pg_dsn, urlsplit(pg_dsn).username or "postgres", database=database))
    try:
        await owner.execute("CREATE EXTENSION vector")
        await owner.execute(f'CREATE SCHEMA app AUTHORIZATION "{role}"')
    finally:
        await owner.close()
    async with PgVectorStore(connection_string=app_dsn_, dimensions=DIM, schema="app", pool_min_size=1) as store:
        ids = await store.add_vectors(vectors(10))
        assert (await store.search(vectors(10)[4], k=1))[0][0] == ids[4]


# -- many instances ----------------------------------------------------------------------------------------------
async def _run_workers(jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Run each job in its own Python process (a fresh interpreter: nothing shared but the database)."""
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable, str(WORKER), json.dumps(job), stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, cwd=REPO,
        )
        for job in jobs
    ]
    outputs = await asyncio.wait_for(asyncio.gather(*(p.communicate() for p in procs)), timeout=240)
    results = []
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, f"a worker failed:\n{err.decode()[-3000:]}"
        results.append(json.loads(out.decode().strip().splitlines()[-1]))
    return results


@pytest.mark.parametrize("index_type", ["hnsw", "ivfflat"])
async def test_four_processes_create_one_table_and_one_index(
    index_type: str, pg_dsn: str, schema: str, admin: asyncpg.Connection
) -> None:
    """4 processes start at the same instant on a table that does not exist yet: each initializes (table, index)
    and adds 5,000 rows. One table, one vector index of the configured type, every row, no error."""
    rows, workers = 5000, 4
    options = {
        "connection_string": pg_dsn, "schema": schema, "dimensions": 16, "id_type": "text", "index_type": index_type,
        "auto_create_index": True, "min_rows_for_index": 2000, "pool_min_size": 1, "pool_max_size": 2,
    }
    start_at = time.time() + 3  # after every interpreter has imported pgvecstore
    jobs = [{"mode": "index_race", "store": options, "rows": rows, "seed": w, "start_at": start_at}
            for w in range(workers)]
    await _run_workers(jobs)

    tables = await admin.fetch("SELECT tablename FROM pg_tables WHERE schemaname = $1 ORDER BY 1", schema)
    assert [t["tablename"] for t in tables] == [
        "knowledge_embeddings", "knowledge_embeddings_text_docs", "knowledge_embeddings_text_terms"]
    vector_indexes = await admin.fetch(
        "SELECT i.relname, am.amname FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid "
        "JOIN pg_class t ON t.oid = x.indrelid JOIN pg_namespace n ON n.oid = t.relnamespace "
        "JOIN pg_am am ON am.oid = i.relam WHERE n.nspname = $1 AND am.amname IN ('hnsw', 'ivfflat')",
        schema,
    )
    assert [r["amname"] for r in vector_indexes] == [index_type], vector_indexes
    table = f'"{schema}"."knowledge_embeddings"'
    assert await admin.fetchval(f"SELECT count(*) FROM {table}") == rows * workers
    assert await admin.fetchval(f"SELECT count(DISTINCT id) FROM {table}") == rows * workers
    for w in range(workers):
        assert await admin.fetchval(f"SELECT count(*) FROM {table} WHERE id LIKE $1", f"w{w}-%") == rows
    # The index serves searches of a store that opens the table afterwards.
    async with PgVectorStore({**options, "pool_min_size": 1}) as store:
        assert len(await store.search(np.ones(16, dtype=np.float32), k=5)) == 5


async def test_clear_racing_add_vectors_leaves_other_domains_untouched(
    pg_dsn: str, schema: str, make_store: Callable[..., PgVectorStore]
) -> None:
    """In domain A, 2 processes add (each call all or nothing) while a third clears; domain B is never touched."""
    options = {"connection_string": pg_dsn, "schema": schema, "dimensions": DIM, "pool_min_size": 1,
               "pool_max_size": 2, "index_type": "hnsw", "auto_create_index": True}
    store_b = make_store(**options, domain_id="B")
    data_b = vectors(500, seed=10)
    ids_b = await store_b.add_vectors(data_b, metadata=[{"n": i} for i in range(500)])
    per_call, calls = 150, 15
    start_at = time.time() + 3
    jobs = [
        {"mode": "domain_race", "store": {**options, "domain_id": "A"}, "role": role, "rows": per_call,
         "calls": calls, "seed": seed, "start_at": start_at}
        for seed, role in enumerate(["adder", "adder", "clearer"])
    ]
    adder_1, adder_2, clearer = await _run_workers(jobs)
    assert adder_1["adds"] == adder_2["adds"] == calls and clearer["clears"] == calls

    store_a = make_store(**options, domain_id="A")
    remaining = await store_a.count()
    assert remaining % per_call == 0  # every add_vectors call is there whole or not at all
    assert remaining + clearer["cleared_rows"] == 2 * per_call * calls  # each row added once, cleared at most once
    # Domain B: same rows, same vectors, same metadata.
    assert await store_b.count() == 500
    got = await store_b.get_vectors(ids_b)
    np.testing.assert_allclose(np.stack([v for v, _ in got]), data_b, rtol=1e-6)
    assert [m["n"] for _, m in got] == list(range(500))
    assert await store_a.clear() == remaining
    assert await store_b.count() == 500


# -- a read replica (the standby fixture is in conftest.py) ----------------------------------------------------------
async def test_search_from_a_hot_standby(
    private_server: PrivateServer, private_store: Callable[..., PgVectorStore], standby: str
) -> None:
    """Writes go to the primary; a store on the replica initializes (table and index exist), searches, and
    refuses writes with PostgreSQL's read-only error."""
    primary = private_store(id_type="text", index_type="hnsw", auto_create_index=True)
    data = vectors(200, seed=12)
    ids = [f"r{i}" for i in range(200)]
    await primary.add_vectors(data, ids, [{"n": i} for i in range(200)])
    # As a table made before vector columns became storage MAIN: a store on the read-only replica leaves it be.
    async with (await primary.get_pool()).acquire() as conn:
        await conn.execute(f"ALTER TABLE {primary.table.qualified} ALTER COLUMN embedding SET STORAGE EXTERNAL")
    replica = private_store(
        connection_string=standby, schema=primary.config.schema, id_type="text", index_type="hnsw",
        auto_create_table=False, auto_create_index=False,
    )

    async def replicated() -> bool:
        try:
            return await replica.count() == 200
        except Exception:  # the table may not have been replayed yet
            return False

    await eventually(replicated, "the rows reached the standby")
    assert await replica.index_info() == "hnsw"
    assert (await replica.search(data[42], k=1, filter={"n": {"$gte": 40}}))[0][0] == ids[42]
    with pytest.raises(ReadOnlyError, match="recovery"):
        await replica.add_vectors(vectors(1), ["new"])
    assert await primary.count() == 200
