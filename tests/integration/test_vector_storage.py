"""The storage of the columns a search reads of every row it looks at, the vector and the metadata: MAIN on a new
table (a long row keeps both in the heap, out of TOAST; its content goes to TOAST first), and an existing table's
columns moved to MAIN by the next store that starts on it, when its role owns the table."""

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


async def out_of_line(admin: asyncpg.Connection, store: PgVectorStore) -> dict[str, int]:
    """How many rows keep each column in TOAST (pg_column_toast_chunk_id, PostgreSQL 17: NULL when inline)."""
    row = await admin.fetchrow(
        "SELECT count(*) FILTER (WHERE pg_column_toast_chunk_id(embedding) IS NOT NULL) AS embedding, "
        "count(*) FILTER (WHERE pg_column_toast_chunk_id(metadata) IS NOT NULL) AS metadata, "
        "count(*) FILTER (WHERE pg_column_toast_chunk_id(content) IS NOT NULL) AS content "
        f"FROM {store.table.qualified}"
    )
    return dict(row)


async def test_a_new_table_keeps_vectors_and_metadata_of_long_rows_in_the_heap(
    make_store: StoreMaker, admin: asyncpg.Connection
) -> None:
    store = make_store(dimensions=DIM, id_type="text")
    await store.initialize()
    assert await attstorage(admin, store) == "m"
    assert await attstorage(admin, store, "metadata") == "m"
    assert await attstorage(admin, store, "content") == "x"  # the content keeps its type's storage
    # Rows of about 5.5 kB: a 1.5 kB vector, 1 kB of incompressible metadata, 3 kB of incompressible content. The
    # content goes to TOAST; the vector and the metadata stay in the heap, where a search reads them (under the
    # types' own storage the metadata, and without the content the vector, the biggest, would go).
    rng = np.random.default_rng(0)
    n = 50
    vectors = rng.standard_normal((n, DIM)).astype(np.float32)
    metadata = [{"blob": rng.bytes(500).hex()} for _ in range(n)]
    contents = [rng.bytes(1500).hex() for _ in range(n)]
    await store.add_vectors(vectors, [f"r{i}" for i in range(n)], metadata, contents=contents)
    assert await out_of_line(admin, store) == {"embedding": 0, "metadata": 0, "content": n}
    assert await toast_bytes(admin, store) > 0
    hits = await store.search(vectors[7], k=1, filter={"blob": metadata[7]["blob"]})
    assert hits[0].id == "r7"
    assert hits[0].metadata == metadata[7]
    # Metadata too big for a page with its row still goes to TOAST (MAIN moves a value out only then).
    big = [{"blob": rng.bytes(4000).hex()} for _ in range(3)]
    await store.add_vectors(vectors[:3], ["big0", "big1", "big2"], big)
    assert (await out_of_line(admin, store))["metadata"] == 3
    assert (await store.get_vectors(["big1"]))[0][1] == big[1]


async def test_an_existing_tables_vector_and_metadata_columns_are_moved_to_main(
    make_store: StoreMaker, admin: asyncpg.Connection
) -> None:
    first = make_store(dimensions=8)
    await first.initialize()
    for column, storage in (("embedding", "EXTERNAL"), ("metadata", "EXTENDED")):  # the types' own storage
        await admin.execute(f"ALTER TABLE {first.table.qualified} ALTER COLUMN {column} SET STORAGE {storage}")
    assert (await attstorage(admin, first), await attstorage(admin, first, "metadata")) == ("e", "x")
    await first.add_vectors(np.ones((2, 8), dtype=np.float32), metadata=[{"k": 1}, {"k": 2}])
    second = make_store(dimensions=8)
    await second.initialize()
    assert (await attstorage(admin, second), await attstorage(admin, second, "metadata")) == ("m", "m")
    assert await second.count() == 2  # catalog only: the rows are there as they were
    # One column already MAIN is not enough: the other is moved too.
    await admin.execute(f"ALTER TABLE {first.table.qualified} ALTER COLUMN metadata SET STORAGE EXTENDED")
    third = make_store(dimensions=8)
    await third.initialize()
    assert await attstorage(admin, third, "metadata") == "m"


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
