"""`reindex()`: the vector index rebuilt online (``REINDEX ... CONCURRENTLY``) while the store writes and searches.

What a user checks: writes and searches go on while the rebuild waits, the same index (name and kind) is valid
afterwards and finds the right rows, the leftovers of an interrupted rebuild do not stop the next one, and the
connection that ran it gives back its session settings.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import asyncpg
import numpy as np
import pytest

from pgvecstore import PgVectorStore

DIM = 16
ROWS = 2000


def vectors(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)


async def index_state(admin: asyncpg.Connection, store: PgVectorStore) -> list[tuple[str, bool]]:
    """(name, valid) of every index of the store's table on the embedding, by name."""
    rows = await admin.fetch(
        "SELECT c.relname, i.indisvalid FROM pg_index AS i JOIN pg_class AS c ON c.oid = i.indexrelid "
        "WHERE i.indrelid = to_regclass($1) AND pg_get_indexdef(c.oid) LIKE '%embedding%' ORDER BY 1",
        store.table.qualified,
    )
    return [(row[0], row[1]) for row in rows]


async def test_reindex_without_an_index_does_nothing(make_store: Callable[..., PgVectorStore]) -> None:
    store = make_store(dimensions=DIM)
    await store.add_vectors(vectors(10, 1))
    assert await store.reindex() is None
    assert await store.index_info() is None


async def test_writes_and_searches_go_on_while_the_index_is_rebuilt(
    make_store: Callable[..., PgVectorStore], pg_dsn: str, admin: asyncpg.Connection
) -> None:
    """A rebuild waits for an old snapshot (a long report, here a raw transaction that read the table); meanwhile
    the store adds, updates, deletes and searches without waiting. Then the rebuild finishes and the index, under
    its name, is valid and answers like an exact scan."""
    store = make_store(dimensions=DIM, id_type="text", index_type="hnsw", auto_create_index=True)
    data = vectors(ROWS, 2)
    ids = [f"r{i}" for i in range(ROWS)]
    await store.add_vectors(data, ids, [{"n": i} for i in range(ROWS)])
    assert await store.index_info() == "hnsw"
    before = await index_state(admin, store)

    reader = await asyncpg.connect(pg_dsn)
    report = reader.transaction(isolation="repeatable_read")
    await report.start()
    assert await reader.fetchval(f"SELECT count(*) FROM {store.table.qualified}") == ROWS
    rebuild = asyncio.create_task(store.reindex())
    try:
        # The rebuild is under way and waits for the report's snapshot to end.
        async def waiting() -> bool:
            return bool(await admin.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'REINDEX INDEX CONCURRENTLY%' "
                "AND wait_event_type = 'Lock'"
            ))

        for _ in range(500):
            if await waiting():
                break
            await asyncio.sleep(0.02)
        else:
            pytest.fail("the rebuild never started waiting for the open snapshot")
        # Meanwhile: writes and searches, none of them waiting for the rebuild.
        fresh = vectors(50, 3)
        await asyncio.wait_for(store.add_vectors(fresh, [f"new{i}" for i in range(50)]), 30)
        await asyncio.wait_for(store.update_metadata(ids[:20], [{"n": -1}] * 20), 30)
        assert await asyncio.wait_for(store.delete_vectors(ids[20:40]), 30) == 20
        hits = await asyncio.wait_for(store.search(fresh[7], k=3), 30)
        assert hits[0].id == "new7"
        assert not rebuild.done()
    finally:
        await report.rollback()
        await reader.close()
    assert await asyncio.wait_for(rebuild, 120) == "hnsw"

    assert await index_state(admin, store) == before  # the same index, valid, nothing left beside it
    assert await store.count() == ROWS + 50 - 20
    for i in range(10):  # a row is its own nearest neighbour, through the rebuilt index
        assert (await store.search(fresh[i], k=1))[0].id == f"new{i}"


async def test_a_leftover_of_an_interrupted_rebuild_is_dropped(
    make_store: Callable[..., PgVectorStore], admin: asyncpg.Connection
) -> None:
    """An interrupted ``REINDEX ... CONCURRENTLY`` leaves an invalid ``<index>_ccnew``: the next reindex() drops
    it and rebuilds."""
    store = make_store(dimensions=DIM, index_type="hnsw")
    await store.add_vectors(vectors(200, 4))
    await store.create_index()
    name = store.table.index_name("hnsw")
    # An invalid index of that name, as a failed concurrent build leaves one (the unique build fails on duplicates).
    with pytest.raises(asyncpg.UniqueViolationError):
        await admin.execute(
            f'CREATE UNIQUE INDEX CONCURRENTLY "{name}_ccnew" ON {store.table.qualified} ((1))'
        )
    leftover = f'"{store.table.schema}"."{name}_ccnew"'
    assert await admin.fetchval("SELECT NOT indisvalid FROM pg_index WHERE indexrelid = to_regclass($1)", leftover)
    assert await store.reindex() == "hnsw"
    assert await admin.fetchval("SELECT to_regclass($1)", leftover) is None
    assert await admin.fetchval(
        "SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass($1)", f'"{store.table.schema}"."{name}"'
    )


async def test_the_rebuilds_session_settings_do_not_outlive_it(make_store: Callable[..., PgVectorStore]) -> None:
    """The rebuild raises maintenance_work_mem and lifts statement_timeout for its session; the connection goes
    back to the pool reset, so the next operations run with the store's settings."""
    store = make_store(dimensions=DIM, index_type="hnsw", statement_timeout=5, pool_min_size=1, pool_max_size=1)
    await store.add_vectors(vectors(300, 5))
    await store.create_index()
    pool = await store.get_pool()
    memory = await pool.fetchval("SHOW maintenance_work_mem")
    assert await store.reindex() == "hnsw"
    async with pool.acquire() as conn:  # the pool's only connection: the one that ran the rebuild
        assert await conn.fetchval("SHOW statement_timeout") == "5s"
        assert await conn.fetchval("SHOW maintenance_work_mem") == memory
