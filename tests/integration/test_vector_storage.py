"""The vector column's storage: MAIN on a new table (a long row keeps its vector in the heap, out of TOAST), and
an existing table's column moved to MAIN by the next store that starts on it, when its role owns the table."""

from __future__ import annotations

from collections.abc import Callable

import asyncpg
import numpy as np

from pgvecstore import PgVectorStore

StoreMaker = Callable[..., PgVectorStore]
DIM = 384


async def attstorage(admin: asyncpg.Connection, store: PgVectorStore, column: str = "embedding") -> str:
    value = await admin.fetchval(
        "SELECT attstorage::text FROM pg_attribute WHERE attrelid = $1::regclass AND attname = $2",
        store.table.qualified, column,
    )
    return str(value)


async def toast_bytes(admin: asyncpg.Connection, store: PgVectorStore) -> int:
    size = await admin.fetchval(
        "SELECT pg_relation_size(reltoastrelid) FROM pg_class WHERE oid = $1::regclass", store.table.qualified
    )
    return int(size)


async def test_a_new_table_keeps_vectors_of_long_rows_in_the_heap(make_store: StoreMaker,
                                                                  admin: asyncpg.Connection) -> None:
    store = make_store(dimensions=DIM, id_type="text")
    await store.initialize()
    assert await attstorage(admin, store) == "m"
    assert await attstorage(admin, store, "metadata") == "x"  # the other columns keep their types' storage
    # Rows of about 2.6 kB (a 1.5 kB vector, 1 kB of incompressible metadata): the vectors stay in the heap and
    # the metadata goes to TOAST (under pgvector's own storage, EXTERNAL, the vector, the biggest, would go).
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((50, DIM)).astype(np.float32)
    metadata = [{"blob": rng.bytes(500).hex()} for _ in range(50)]
    await store.add_vectors(vectors, [f"r{i}" for i in range(50)], metadata)
    # pg_column_toast_chunk_id (PostgreSQL 17): the TOAST value a column points to, NULL when stored inline.
    stored = await admin.fetchrow(
        "SELECT count(*) FILTER (WHERE pg_column_toast_chunk_id(embedding) IS NOT NULL) AS vectors, "
        "count(*) FILTER (WHERE pg_column_toast_chunk_id(metadata) IS NOT NULL) AS metadata "
        f"FROM {store.table.qualified}"
    )
    assert stored["vectors"] == 0
    assert stored["metadata"] == 50  # what went out of line is the metadata
    assert await toast_bytes(admin, store) > 0
    hits = await store.search(vectors[7], k=1)
    assert hits[0].id == "r7"
    assert hits[0].metadata == metadata[7]


async def test_an_existing_tables_vector_column_is_moved_to_main(make_store: StoreMaker,
                                                                 admin: asyncpg.Connection) -> None:
    first = make_store(dimensions=8)
    await first.initialize()
    await admin.execute(f"ALTER TABLE {first.table.qualified} ALTER COLUMN embedding SET STORAGE EXTERNAL")
    assert await attstorage(admin, first) == "e"
    await first.add_vectors(np.ones((2, 8), dtype=np.float32), metadata=[{"k": 1}, {"k": 2}])
    second = make_store(dimensions=8)
    await second.initialize()
    assert await attstorage(admin, second) == "m"
    assert await second.count() == 2  # catalog only: the rows are there as they were


async def test_a_busy_table_keeps_its_storage_and_the_store_starts(make_store: StoreMaker, pg_dsn: str,
                                                                   admin: asyncpg.Connection) -> None:
    first = make_store(dimensions=8)
    await first.initialize()
    await admin.execute(f"ALTER TABLE {first.table.qualified} ALTER COLUMN embedding SET STORAGE EXTERNAL")
    reader = await asyncpg.connect(pg_dsn)
    try:
        async with reader.transaction():  # a long reader: ALTER TABLE would wait for it
            await reader.execute(f"LOCK TABLE {first.table.qualified} IN ACCESS SHARE MODE")
            second = make_store(dimensions=8)
            await second.initialize()
            assert await second.count() == 0
    finally:
        await reader.close()
    assert await attstorage(admin, second) == "e"
