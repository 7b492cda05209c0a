"""Read replicas in one store (docs/replicas.md): reads go to streaming hot standbys, writes and DDL to the primary.

A private primary and a standby made from it with ``pg_basebackup -R`` serve the whole module; the promotion test
makes a standby of its own. What proves that a replica served a read is what only a replica can show: with its
replay paused (``pg_wal_replay_pause()``), a row just written on the primary is not there yet; or the replica's
own ``pg_stat_activity`` shows the store's statement (the store's sessions there carry a name of the test's own).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg
import numpy as np
import pytest
from tests.servers import PrivateServer, Standby

from pgvecstore import PgVectorStore, ReadOnlyError

DIM = 8


def vectors(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)


def named(dsn: str, app: str) -> str:
    """`dsn` whose sessions carry application_name `app`."""
    parts = urlsplit(dsn)
    query = dict(parse_qsl(parts.query))
    query["application_name"] = app
    return urlunsplit(parts._replace(query=urlencode(query)))


async def eventually(check: Callable[[], Awaitable[bool]], what: str, limit: float = 30.0) -> float:
    """Wait until `check()` holds; fail naming `what` if it never does. Returns the seconds it took (reported,
    not asserted)."""
    start = time.monotonic()
    while not await check():
        if time.monotonic() - start > limit:
            pytest.fail(f"never happened: {what}")
        await asyncio.sleep(0.05)
    return time.monotonic() - start


async def on(dsn: str, sql: str, *args: Any) -> Any:
    """One statement on a connection of its own (the standby's or the primary's)."""
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(sql, *args)
    finally:
        await conn.close()


async def served_on_replica(standby: str, app: str, fragment: str) -> bool:
    """Whether a session of the store on the standby ran a statement containing `fragment` last."""
    return bool(await on(
        standby,
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND query LIKE '%' || $2 || '%'",
        app, fragment,
    ))


@pytest.fixture(scope="module")
def replica(private_server: PrivateServer) -> Iterator[Standby]:
    """The module's standby (tests that stop it start it again)."""
    made = Standby(private_server)
    yield made
    made.close()


@pytest.fixture
async def replica_store(
    private_server: PrivateServer, replica: Standby
) -> AsyncIterator[Callable[..., tuple[PgVectorStore, str]]]:
    """Factory of stores on the private primary with the module's standby as read replica; returns the store and
    the application_name its replica sessions carry."""
    made: list[PgVectorStore] = []

    def factory(**options: Any) -> tuple[PgVectorStore, str]:
        app = f"pgv-rep-{uuid.uuid4().hex[:8]}"
        options.setdefault("read_replicas", [named(replica.dsn, app)])
        options.setdefault("connection_string", private_server.dsn)
        options.setdefault("schema", f"rep_{uuid.uuid4().hex[:10]}")
        options.setdefault("dimensions", DIM)
        options.setdefault("id_type", "text")
        options.setdefault("pool_min_size", 1)
        options.setdefault("pool_max_size", 4)
        options.setdefault("connect_timeout", 3)
        store = PgVectorStore(options)
        made.append(store)
        return store, app

    yield factory
    for store in made:
        await store.close()


def health(store: PgVectorStore) -> str:
    replicas = store._pools.replicas
    assert replicas is not None
    return replicas.replicas[0].health


async def until_replayed(store: PgVectorStore, standby: str) -> None:
    """Wait until the standby has replayed everything the primary wrote so far."""
    position = await on(store.config.connection_string or "", "SELECT pg_current_wal_lsn()")
    await eventually(lambda: _replayed(standby, position), "the standby replayed the primary's writes")


async def _replayed(standby: str, position: str) -> bool:
    return bool(await on(standby, "SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn", position))


async def filled(store: PgVectorStore, standby: str, n: int = 50) -> np.ndarray:
    data = vectors(n, seed=3)
    await store.add_vectors(data, [f"r{i}" for i in range(n)], [{"n": i} for i in range(n)],
                            contents=[f"row number {i} about bicycles" for i in range(n)])
    await until_replayed(store, standby)
    return data


@pytest.fixture
async def resumed(replica: Standby) -> AsyncIterator[None]:
    """The standby's WAL replay running again after the test (which pauses it)."""
    yield
    await on(replica.dsn, "SELECT pg_wal_replay_resume()")


# -- reads go to the replica ----------------------------------------------------------------------------------------
async def test_every_read_is_served_by_the_replica(
    replica_store: Callable[..., tuple[PgVectorStore, str]], replica: Standby, resumed: None
) -> None:
    """With replay paused and read_your_writes off, a row written on the primary is missing from every kind of
    read: vector, filtered, text and hybrid search, get, get_vectors, count. The primary has it."""
    store, app = replica_store(index_type="hnsw", read_your_writes=False, max_replica_lag=600)
    data = await filled(store, replica.dsn)
    await store.create_index()
    await until_replayed(store, replica.dsn)
    await on(replica.dsn, "SELECT pg_wal_replay_pause()")
    fresh = vectors(1, seed=99)
    await store.add_vectors(fresh, ["fresh"], [{"n": 1000}], contents=["zebra crossing"])

    assert [r.id for r in await store.search(fresh[0], k=1)] != ["fresh"]
    assert await store.search(fresh[0], k=3, filter={"n": {"$gte": 1000}}) == []
    assert (await store.search(data[7], k=1, filter={"n": {"$lt": 10}}))[0].id == "r7"
    assert await store.search(mode="text", query_text="zebra", k=3) == []
    assert "fresh" not in [r.id for r in await store.search(fresh[0], mode="hybrid", query_text="zebra", k=5)]
    assert await store.get(["fresh"]) == []
    assert await store.get_vectors(["fresh"]) == [(None, None)]
    assert await store.count() == 50
    assert await store.count({"n": 1000}) == 0
    assert await on(store.config.connection_string or "", f"SELECT count(*) FROM {store.table.qualified}") == 51
    assert await served_on_replica(replica.dsn, app, store.table.name)

    await on(replica.dsn, "SELECT pg_wal_replay_resume()")
    await eventually(lambda: _count_is(store, 51), "the replica replayed the new row")
    assert [r.id for r in await store.search(mode="text", query_text="zebra", k=1)] == ["fresh"]


async def _count_is(store: PgVectorStore, expected: int) -> bool:
    return await store.count() == expected


async def test_read_your_writes_reads_on_the_primary_when_the_replica_has_not_replayed(
    replica_store: Callable[..., tuple[PgVectorStore, str]], replica: Standby, resumed: None
) -> None:
    """A read right after a write sees it: the replica (replay paused) cannot have it, so after the bound the read
    runs on the primary. A second store without read-your-writes reads the stale replica."""
    store, _ = replica_store(max_replica_lag=600, read_your_writes_timeout=0.2)
    stale, _ = replica_store(schema=store.config.schema, read_your_writes=False, max_replica_lag=600)
    await store.initialize()
    await until_replayed(store, replica.dsn)
    await stale.initialize()
    await on(replica.dsn, "SELECT pg_wal_replay_pause()")

    await store.add_vectors(vectors(3), ["a", "b", "c"])
    assert await store.count() == 3
    assert [row.id for row in await store.get(["a", "b", "c"])] == ["a", "b", "c"]
    assert await stale.count() == 0
    await store.delete_vectors(["a"])
    assert await store.count() == 2

    await on(replica.dsn, "SELECT pg_wal_replay_resume()")
    await eventually(lambda: _count_is(stale, 2), "the replica replayed the writes")


async def test_read_your_writes_uses_the_replica_once_it_replayed_the_write(
    replica_store: Callable[..., tuple[PgVectorStore, str]], replica: Standby
) -> None:
    """With replay running, reads after a write wait (briefly) for the replica and are served there."""
    store, app = replica_store()
    await store.add_vectors(vectors(5), [f"w{i}" for i in range(5)])
    for _ in range(5):
        assert await store.count() == 5
    assert await served_on_replica(replica.dsn, app, "count(")


# -- health: lagging, down, restarted, promoted -------------------------------------------------------------------
async def test_a_lagging_replica_is_skipped_and_used_again_once_it_catches_up(
    replica_store: Callable[..., tuple[PgVectorStore, str]], replica: Standby, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pgvecstore")
    store, app = replica_store(max_replica_lag=1.0, read_your_writes=False)
    await filled(store, replica.dsn, n=5)
    await on(replica.dsn, "SELECT pg_wal_replay_pause()")
    try:
        await store.add_vectors(vectors(1, seed=5), ["late"])

        async def skipped() -> bool:  # only the primary has the row: reads see it once the replica is skipped
            return await store.count() == 6

        await eventually(skipped, "reads skipped the lagging replica")
        assert health(store) == "lagging"
        assert any("behind the primary" in r.getMessage() and "max_replica_lag=1" in r.getMessage()
                   for r in caplog.records)
    finally:
        await on(replica.dsn, "SELECT pg_wal_replay_resume()")

    async def back() -> bool:
        await store.get(["late"])
        return await served_on_replica(replica.dsn, app, "document_id")  # get() orders by document_id

    await eventually(back, "reads went to the replica again after it caught up")
    assert any("usable again" in r.getMessage() for r in caplog.records)


async def test_200_concurrent_searches_while_the_replica_stops_all_succeed_and_it_is_used_again_after_restart(
    replica_store: Callable[..., tuple[PgVectorStore, str]], replica: Standby, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pgvecstore")
    store, app = replica_store(pool_max_size=10)
    data = await filled(store, replica.dsn, n=100)
    await store.count()
    assert health(store) == "up"
    outcomes: list[BaseException | list[Any]] = []
    stopping = asyncio.create_task(asyncio.to_thread(replica.stop))
    waves = 0
    while not stopping.done() or waves < 2:
        found = await asyncio.gather(*(store.search(data[i % 100], k=3) for i in range(200)), return_exceptions=True)
        outcomes.extend(found)
        waves += 1
        if stopping.done() and waves >= 2:
            break
    await stopping
    try:
        failures = [o for o in outcomes if isinstance(o, BaseException)]
        assert failures == []
        assert all(isinstance(o, list) and len(o) == 3 for o in outcomes)
        assert health(store) == "down"
        assert any("is down" in r.getMessage() for r in caplog.records)
        assert len(await store.search(data[0], k=3)) == 3  # replica stopped: the primary answers
    finally:
        await asyncio.to_thread(replica.start)  # the module's other tests need it back, whatever happened here

    async def used_again() -> bool:
        await store.search(data[1], k=2)
        return health(store) == "up" and await served_on_replica(replica.dsn, app, store.table.name)

    took = await eventually(used_again, "the store used the restarted replica again", limit=20)
    print(f"replica used again {took:.1f} s after its restart")


async def test_a_promoted_replica_is_skipped(
    private_server: PrivateServer, standby: str, replica_store: Callable[..., tuple[PgVectorStore, str]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A promoted standby no longer follows the primary: reads skip it (with one warning) and see the primary."""
    caplog.set_level(logging.WARNING, logger="pgvecstore")
    store, _ = replica_store(read_replicas=[standby], read_your_writes=False)
    await filled(store, standby, n=5)
    await store.count()
    assert health(store) == "up"
    assert await on(standby, "SELECT pg_promote()") is True
    await store.add_vectors(vectors(1, seed=8), ["after-promotion"])  # never reaches the promoted server

    async def skipped() -> bool:
        return await store.count() == 6

    await eventually(skipped, "reads skipped the promoted replica")
    assert health(store) == "promoted"
    assert await on(standby, f"SELECT count(*) FROM {store.table.qualified}") == 5
    warnings = [r for r in caplog.records if "not in recovery" in r.getMessage()]
    assert len(warnings) == 1


# -- writes and DDL never go to a replica -----------------------------------------------------------------------------
async def test_a_new_table_is_created_on_the_primary_only(
    replica_store: Callable[..., tuple[PgVectorStore, str]], replica: Standby, resumed: None
) -> None:
    """With replay paused the replica cannot even have the schema: set-up, writes and the index build run on the
    primary, and reads after them (read-your-writes) are answered."""
    await on(replica.dsn, "SELECT pg_wal_replay_pause()")
    store, _ = replica_store(index_type="hnsw", auto_create_index=True, read_your_writes_timeout=0.1)
    await store.initialize()
    assert await store.count() == 0  # set-up counts as a write: read on the primary
    await store.add_vectors(vectors(20, seed=4), [f"n{i}" for i in range(20)])
    assert await store.index_info() == "hnsw"
    assert (await store.search(vectors(20, seed=4)[3], k=1))[0].id == "n3"
    assert await store.count() == 20
    assert await on(replica.dsn, "SELECT to_regnamespace($1) IS NULL", store.config.schema)
    # A store that does not wait for its writes: the replica lacks the table, so the primary answers.
    stale, _ = replica_store(schema=store.config.schema, read_your_writes=False, max_replica_lag=600)
    assert await stale.count() == 20


async def test_a_tenant_store_reads_only_its_domain_on_the_replica(
    replica_store: Callable[..., tuple[PgVectorStore, str]], replica: Standby, resumed: None
) -> None:
    """The tenant travels in each replica transaction (row-level security on): a domain's reads on the replica
    see its own rows, as replayed."""
    store, _ = replica_store(domain_id="a", row_level_security=True, read_your_writes=False, max_replica_lag=600)
    other, _ = replica_store(schema=store.config.schema, domain_id="b", read_your_writes=False)
    await store.add_vectors(vectors(3), ["a1", "a2", "a3"], [{"n": i} for i in range(3)])
    await other.add_vectors(vectors(2, seed=1), ["b1", "b2"])
    await until_replayed(store, replica.dsn)
    await on(replica.dsn, "SELECT pg_wal_replay_pause()")
    await store.add_vectors(vectors(1, seed=2), ["a4"])
    assert await store.count() == 3
    assert sorted(r.id for r in await store.search(vectors(1)[0], k=10)) == ["a1", "a2", "a3"]
    assert sorted(r.id for r in await store.search(vectors(1)[0], k=10, filter={"n": {"$gte": 1}})) == ["a2", "a3"]


async def test_a_write_through_a_read_path_is_refused_naming_the_replica(
    replica_store: Callable[..., tuple[PgVectorStore, str]], replica: Standby
) -> None:
    store, _ = replica_store()
    await filled(store, replica.dsn, n=3)
    await store.count()
    with pytest.raises(ReadOnlyError, match="read replica postgresql://postgres@/postgres") as caught:
        await store._pools.replica_read("fetch", f"DELETE FROM {store.table.qualified} RETURNING id", [])
    assert isinstance(caught.value.__cause__, asyncpg.ReadOnlySQLTransactionError)

    async def delete(conn: asyncpg.Connection) -> Any:
        return await conn.execute(f"DELETE FROM {store.table.qualified}")

    with pytest.raises(ReadOnlyError, match="accepts reads only"):
        await store._pools.replica_transaction(delete)
    assert await store.count() == 3


# -- an adapter ---------------------------------------------------------------------------------------------------
async def test_langchain_reads_are_served_by_the_replica(
    private_server: PrivateServer, replica: Standby, resumed: None
) -> None:
    from langchain_core.embeddings import DeterministicFakeEmbedding

    from langchain_pgvecstore import PgVecStore

    lc = PgVecStore(DeterministicFakeEmbedding(size=DIM), connection_string=private_server.dsn,
                    schema=f"rep_{uuid.uuid4().hex[:10]}", dimensions=DIM, read_replicas=[replica.dsn],
                    read_your_writes=False, max_replica_lag=600, pool_min_size=1, pool_max_size=2)
    try:
        await lc.aadd_texts(["alpha", "beta"], ids=["alpha", "beta"])
        position = await on(private_server.dsn, "SELECT pg_current_wal_lsn()")
        await eventually(lambda: _replayed(replica.dsn, position), "the standby replayed the texts")
        await on(replica.dsn, "SELECT pg_wal_replay_pause()")
        await lc.aadd_texts(["gamma"], ids=["gamma"])
        assert "gamma" not in [d.id for d in await lc.asimilarity_search("gamma", k=3)]
        assert [d.id for d in await lc.aget_by_ids(["alpha", "gamma"])] == ["alpha"]
    finally:
        await lc.aclose()
