"""The core store against a real PostgreSQL + pgvector: the seed page's examples and the guarantees we add."""

from __future__ import annotations

import asyncio
import inspect
import json
import uuid
from collections.abc import Callable

import asyncpg
import numpy as np
import pytest

from pgvecstore import (
    PgVectorStore,
    SchemaMismatchError,
    StoreClosedError,
    SyncPgVectorStore,
    TableNotFoundError,
    VectorStoreFactory,
)

StoreMaker = Callable[..., PgVectorStore]
U1, U2 = "6f1c7a0e-3c1b-4bb5-9a55-0c7d8c3e2a11", "0b9f2d44-7a7e-4a53-9a0a-2f4f5e6d7c88"


def rng_vectors(n: int, d: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, d), dtype=np.float32)


async def table_rows(admin: asyncpg.Connection, schema: str, table: str = "knowledge_embeddings") -> int:
    return int(await admin.fetchval(f'SELECT count(*) FROM "{schema}"."{table}"'))


# -- the seed page's examples ------------------------------------------------------------------------------------


async def test_quick_start_100_by_768(pg_dsn: str, schema: str) -> None:
    factory = VectorStoreFactory()
    store = factory.create(
        backend="pgvector", connection_string=pg_dsn, dimensions=768, metric="cosine", schema=schema
    )
    await store.initialize()
    vectors = rng_vectors(100, 768)
    metadata = [{"source": f"doc_{i}"} for i in range(100)]
    ids = await store.add_vectors(vectors, metadata=metadata)
    assert len(ids) == 100 and len(set(ids)) == 100
    assert all(uuid.UUID(i) for i in ids)

    query = vectors[42]
    results = await store.search(query, k=5)
    assert len(results) == 5
    top_id, top_score, top_meta = results[0]
    assert top_id == ids[42]
    assert top_score == pytest.approx(1.0, abs=1e-5)
    assert top_meta["source"] == "doc_42"
    scores = [score for _, score, _ in results]
    assert scores == sorted(scores, reverse=True)
    await store.close()


async def test_direct_construction_and_context_manager(pg_dsn: str, schema: str) -> None:
    config = {"connection_string": pg_dsn, "dimensions": 3, "metric": "cosine", "schema": schema}
    store = PgVectorStore(config)
    try:
        await store.initialize()
        await store.add_vectors([[1, 0, 0]], metadata=[{"a": 1}])
    finally:
        await store.close()
    async with PgVectorStore(config) as again:
        assert await again.count() == 1
    with pytest.raises(StoreClosedError, match="closed"):
        await again.count()
    with pytest.raises(StoreClosedError):
        await store.search([1, 0, 0])


async def test_database_url_fallback(pg_dsn: str, schema: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", pg_dsn)
    store = VectorStoreFactory().create(backend="pgvector", dimensions=4, schema=schema)
    async with store:
        await store.add_vectors(np.eye(4, dtype=np.float32))
        assert await store.count() == 4
    assert store.config.resolved_dsn() == pg_dsn


async def test_embedded_default_without_any_dsn(pg_dsn: str, schema: str) -> None:
    """No connection_string and no DATABASE_URL: the store starts/reuses the embedded server by itself."""
    store = PgVectorStore(dimensions=2, schema=schema)
    assert store.config.resolved_dsn() is None
    async with store:
        await store.add_vectors([[0.0, 1.0]], metadata=[{"k": "v"}])
        results = await store.search([0.0, 1.0], k=1)
    assert results[0][2]["k"] == "v"


async def test_column_mappings_with_text_ids(make_store: StoreMaker, admin: asyncpg.Connection, schema: str) -> None:
    store = make_store(
        dimensions=8,
        table_name="product_embeddings",
        columns={
            "id": "product_id",
            "embedding": "vector_data",
            "content": "description",
            "metadata": "attributes",
            "domain_id": "category",
            "document_id": "source_file",
            "chunk_index": "segment_num",
            "created_at": "indexed_at",
        },
        id_type="text",
        auto_create_table=True,
    )
    await store.initialize()
    columns = {
        row["column_name"]: row["data_type"]
        for row in await admin.fetch(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = $1 "
            "AND table_name = 'product_embeddings'",
            schema,
        )
    }
    assert columns == {
        "product_id": "text",
        "vector_data": "USER-DEFINED",
        "description": "text",
        "attributes": "jsonb",
        "category": "character varying",
        "source_file": "character varying",
        "segment_num": "integer",
        "indexed_at": "timestamp without time zone",
        "description_tsv": "tsvector",  # full-text search: the content's tsvector, set by a trigger
    }
    ids = await store.add_vectors(
        rng_vectors(3, 8),
        ids=["sku-1", "sku-2", "01-fundamentals_0"],
        metadata=[
            {"content": "red shoe", "document_id": "catalog.pdf", "chunk_index": i, "price": 9.5} for i in range(3)
        ],
    )
    assert ids == ["sku-1", "sku-2", "01-fundamentals_0"]
    row = await admin.fetchrow(
        f'SELECT description, source_file, segment_num, attributes::text FROM "{schema}".product_embeddings '
        "WHERE product_id = 'sku-2'"
    )
    given = {"content": "red shoe", "document_id": "catalog.pdf", "chunk_index": 1, "price": 9.5}
    assert (row[0], row[1], row[2]) == ("red shoe", "catalog.pdf", 1)  # the columns follow the metadata keys
    assert json.loads(row[3]) == given  # and the metadata is stored as given
    vector, meta = (await store.get_vectors(["sku-2"]))[0]
    assert meta == given
    assert vector is not None and vector.shape == (8,)
    [got] = await store.get(["sku-2"])
    assert (got.content, got.document_id, got.chunk_index, got.metadata) == ("red shoe", "catalog.pdf", 1, given)


async def test_multi_tenant_add_search_count_clear(make_store: StoreMaker) -> None:
    tenant_a = make_store(dimensions=4, domain_id="tenant_a")
    tenant_b = make_store(dimensions=4, domain_id="tenant_b")
    everyone = make_store(dimensions=4)
    vectors = rng_vectors(10, 4, seed=1)
    ids_a = await tenant_a.add_vectors(vectors[:6], metadata=[{"n": i} for i in range(6)])
    ids_b = await tenant_b.add_vectors(vectors[6:], metadata=[{"n": i} for i in range(4)])

    assert await tenant_a.count() == 6
    assert await tenant_b.count() == 4
    assert await everyone.count() == 10
    found_b = {row_id for row_id, _, _ in await tenant_b.search(vectors[0], k=10)}
    assert found_b == set(ids_b)
    assert await tenant_b.get_vectors(ids_a[:2]) == [(None, None), (None, None)]
    assert await tenant_b.delete_vectors(ids_a) == 0
    assert await tenant_b.update_metadata([ids_a[0]], [{"stolen": True}]) == 0
    assert await tenant_b.count(filter={"n": 1}) == 1

    assert await tenant_a.clear() == 6
    assert await tenant_a.count() == 0
    assert await tenant_b.count() == 4
    assert await everyone.count() == 4


async def test_a_tenant_cannot_take_over_another_tenants_id(make_store: StoreMaker) -> None:
    tenant_a = make_store(dimensions=2, domain_id="a", id_type="text")
    tenant_b = make_store(dimensions=2, domain_id="b", id_type="text")
    await tenant_a.add_vectors([[1, 0]], ids=["shared-id"], metadata=[{"owner": "a"}])
    with pytest.raises(ValueError, match="'shared-id' already exists in another domain"):
        await tenant_b.add_vectors([[0, 1], [1, 1]], ids=["new-id", "shared-id"], metadata=[{}, {"owner": "b"}])
    _, meta = (await tenant_a.get_vectors(["shared-id"]))[0]
    assert meta is not None and meta["owner"] == "a"
    assert await tenant_b.count() == 0, "the failed batch must write nothing, not even its valid rows"


async def test_domain_id_in_metadata_does_not_move_rows(make_store: StoreMaker, admin: asyncpg.Connection,
                                                        schema: str) -> None:
    tenant_a = make_store(dimensions=2, domain_id="a")
    await tenant_a.add_vectors([[1, 0]], metadata=[{"domain_id": "b"}])
    domains = [r[0] for r in await admin.fetch(f'SELECT domain_id FROM "{schema}".knowledge_embeddings')]
    assert domains == ["a"]


async def test_crud(make_store: StoreMaker) -> None:
    store = make_store(dimensions=6, id_type="text")
    vectors = rng_vectors(10, 6, seed=2)
    ids = await store.add_vectors(vectors, ids=[f"doc_{i}" for i in range(10)],
                                  metadata=[{"source": "file.pdf"} for _ in range(10)])
    results = await store.get_vectors(["doc_1", "missing", "doc_2"], include_metadata=True)
    assert results[1] == (None, None)
    np.testing.assert_allclose(results[0][0], vectors[1], rtol=1e-6)
    np.testing.assert_allclose(results[2][0], vectors[2], rtol=1e-6)
    assert results[0][1] is not None and results[0][1]["source"] == "file.pdf"
    without_meta = await store.get_vectors(["doc_3"], include_metadata=False)
    assert without_meta[0][1] is None and without_meta[0][0] is not None

    assert await store.update_metadata(["doc_1", "doc_2"], [{"source": "updated.pdf"}, {"source": "new.pdf"}]) == 2
    metas = [m for _, m in await store.get_vectors(["doc_1", "doc_2"])]
    assert [m["source"] for m in metas if m] == ["updated.pdf", "new.pdf"]

    assert await store.delete_vectors(["doc_1", "doc_2", "nope"]) == 2
    for empty in (None, {}):
        with pytest.raises(ValueError, match="needs a filter that restricts the rows; use clear"):
            await store.delete(filter=empty)
    assert await store.count() == 8
    assert await store.count(filter={"source": "file.pdf"}) == 8
    assert await store.clear() == 8
    assert await store.count() == 0
    assert ids[0] == "doc_0"


async def test_get_rows_by_ids_and_filter_without_a_query(make_store: StoreMaker) -> None:
    store = make_store(dimensions=2, id_type="text")
    await store.add_vectors(
        [[1, 0], [0, 1], [1, 1]], ids=["c", "a", "b"],
        metadata=[{"document_id": "d2", "chunk_index": 0, "t": 1}, {"document_id": "d1", "chunk_index": 1, "t": 2},
                  {"document_id": "d1", "chunk_index": 0, "t": 1}],
    )
    assert [row_id for row_id, _, _ in await store.get()] == ["b", "a", "c"]
    assert [row_id for row_id, _, _ in await store.get(filter={"t": 1})] == ["b", "c"]
    [(row_id, vector, meta)] = await store.get(ids=["a", "zzz"], include_vectors=True)
    assert row_id == "a" and meta["t"] == 2
    np.testing.assert_allclose(vector, [0, 1])
    assert len(await store.get(limit=2)) == 2
    assert await store.get(ids=[]) == []
    with pytest.raises(ValueError, match="limit must be None or an integer between 1 and"):
        await store.get(limit=0)


async def test_update_metadata_keeps_columns_in_step(make_store: StoreMaker) -> None:
    store = make_store(dimensions=2)
    [row_id] = await store.add_vectors([[1, 2]], metadata=[{"content": "old", "document_id": "d1", "chunk_index": 0,
                                                            "tag": "x"}])
    await store.update_metadata([row_id], [{"content": "new text", "chunk_index": 5, "tag": "y"}])
    _, meta = (await store.get_vectors([row_id]))[0]
    assert meta == {"content": "new text", "chunk_index": 5, "tag": "y"}  # the new metadata, as given
    [row] = await store.get([row_id])  # the columns follow the keys it has; document_id keeps its value
    assert (row.content, row.document_id, row.chunk_index) == ("new text", "d1", 5)
    assert await store.count(filter={"content": "new text"}) == 1
    assert await store.count(filter={"chunk_index": 5}) == 1
    with pytest.raises(ValueError, match="metadatas has 1 entries but ids has 2"):
        await store.update_metadata([row_id, row_id], [{}])


async def test_equality_filters_keep_types(make_store: StoreMaker) -> None:
    store = make_store(dimensions=3)
    vectors = rng_vectors(4, 3, seed=3)
    await store.add_vectors(
        vectors,
        metadata=[
            {"category": "technology", "year": "2024", "active": True, "count": 5},
            {"category": "technology", "year": "2023", "active": False, "count": 6},
            {"category": "science", "year": "2024", "active": True, "count": 5},
            {"category": "science", "year": 2024},
        ],
    )
    results = await store.search(vectors[0], k=10, filter={"category": "technology", "year": "2024"},
                                 include_metadata=True)
    assert len(results) == 1 and results[0][2]["count"] == 5
    assert await store.count(filter={"active": True}) == 2
    assert await store.count(filter={"count": 5}) == 2
    assert await store.count(filter={"count": "5"}) == 0
    assert await store.count(filter={"year": 2024}) == 1
    no_meta = await store.search(vectors[0], k=2, include_metadata=False)
    assert all(meta is None for _, _, meta in no_meta)


# -- scores ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("metric", ["cosine", "euclidean", "inner_product"])
async def test_scores_match_numpy(make_store: StoreMaker, metric: str) -> None:
    rng = np.random.default_rng(4)
    vectors = rng.normal(size=(50, 16)).astype(np.float32)
    query = rng.normal(size=16).astype(np.float32)
    store = make_store(dimensions=16, metric=metric, table_name=f"scores_{metric}")
    ids = await store.add_vectors(vectors)
    if metric == "cosine":
        expected = vectors @ query / (np.linalg.norm(vectors, axis=1) * np.linalg.norm(query))
    elif metric == "euclidean":
        expected = 1.0 / (1.0 + np.linalg.norm(vectors - query, axis=1))
    else:
        expected = vectors @ query
    order = np.argsort(-expected)[:10]
    results = await store.search(query, k=10)
    assert [r[0] for r in results] == [ids[i] for i in order]
    np.testing.assert_allclose([r[1] for r in results], expected[order], rtol=1e-4, atol=1e-5)


# -- writes: upsert, atomicity, validation ------------------------------------------------------------------------


async def test_re_adding_an_id_replaces_the_row(make_store: StoreMaker, admin: asyncpg.Connection,
                                                schema: str) -> None:
    store = make_store(dimensions=3)
    [row_id] = await store.add_vectors([[1, 0, 0]], metadata=[{"v": 1, "content": "first", "document_id": "a"}])
    created = await admin.fetchval(f'SELECT created_at FROM "{schema}".knowledge_embeddings')
    again = await store.add_vectors([[0, 1, 0]], ids=[row_id], metadata=[{"v": 2, "content": "second"}])
    assert again == [row_id]
    assert await store.count() == 1
    vector, meta = (await store.get_vectors([row_id]))[0]
    np.testing.assert_allclose(vector, [0, 1, 0])
    assert meta == {"v": 2, "content": "second"}
    [row] = await store.get([row_id])
    assert (row.content, row.document_id, row.chunk_index) == ("second", None, None)
    assert await admin.fetchval(f'SELECT created_at FROM "{schema}".knowledge_embeddings') == created
    # a mix of new and existing ids in one call
    ids = await store.add_vectors([[1, 1, 0], [0, 0, 1]], ids=[row_id, str(uuid.uuid4())])
    assert ids[0] == row_id and await store.count() == 2


async def test_a_failed_batch_leaves_the_table_unchanged(make_store: StoreMaker, admin: asyncpg.Connection,
                                                         schema: str) -> None:
    store = make_store(dimensions=4, batch_size=10)
    keep = await store.add_vectors(rng_vectors(5, 4), metadata=[{"keep": i} for i in range(5)])
    before = await admin.fetch(f'SELECT id, metadata::text FROM "{schema}".knowledge_embeddings ORDER BY id')

    def rows_with_a_bad_one():
        for i in range(35):
            yield [float("nan")] * 4 if i == 27 else [float(i), 1.0, 2.0, 3.0]

    with pytest.raises(ValueError, match="vector at position 27 contains NaN"):
        await store.add_vectors(rows_with_a_bad_one(), ids=[keep[0]] + [str(uuid.uuid4()) for _ in range(34)],
                                metadata=[{"replaced": True}] * 35)
    after = await admin.fetch(f'SELECT id, metadata::text FROM "{schema}".knowledge_embeddings ORDER BY id')
    assert after == before


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"vectors": [[1, 2, 3], [1, 2]]}, "vector at position 1 has dimension 2, expected 3"),
        ({"vectors": np.ones((2, 4))}, "has dimension 4, expected 3"),
        ({"vectors": [[1, 2, 3], [1, float("inf"), 3]]}, "vector at position 1 contains NaN or infinity"),
        ({"vectors": [[1, 2, 3]] * 3, "ids": ["a", "b"]}, "ids has 2 entries but there are 3 vectors"),
        ({"vectors": [[1, 2, 3]] * 2, "metadata": [{}]}, "metadata has 1 entries but there are 2 vectors"),
        ({"vectors": [[1, 2, 3]] * 2, "metadata": [{}, {"x": object()}]}, "metadata at position 1 is not JSON"),
        ({"vectors": [[1, 2, 3]] * 2, "metadata": [{}, {"x": float("nan")}]}, "metadata at position 1 is not JSON"),
        ({"vectors": [[1, 2, 3]] * 2, "metadata": [{}, "text"]}, "metadata at position 1 must be a dict"),
        ({"vectors": [[1, 2, 3]] * 3, "ids": [U1, U2, U1.upper()]}, f"duplicate id '{U1}' at position 2"),
        ({"vectors": [[1, 2, 3]] * 2, "metadata": [{"s": "a\x00b"}, {}]}, "metadata at position 0 contains a NUL"),
        ({"vectors": [[1, 2, 3]], "contents": ["nul\x00"]}, "content at position 0 contains a NUL"),
        ({"vectors": [[1, 2, 3]], "chunk_indexes": ["3"]}, "chunk_index at position 0 must be an integer"),
        ({"vectors": [[1, 2, 3]], "metadata": [{"chunk_index": 2**40}]}, "chunk_index at position 0 is out of"),
        ({"vectors": [[1, 2, 3]], "ids": ["not-a-uuid"]}, "id 'not-a-uuid' at position 0 is not a UUID"),
        ({"vectors": [[1, 2, 3]], "ids": [3.5]}, "id at position 0 must be a string"),
        ({"vectors": "abc"}, "vectors must be a numpy array"),
    ],
)
async def test_bad_input_is_refused_before_anything_is_written(
    make_store: StoreMaker, kwargs: dict, message: str
) -> None:
    store = make_store(dimensions=3)
    await store.add_vectors([[9, 9, 9]])
    vectors = kwargs.pop("vectors")
    with pytest.raises(ValueError, match=message):
        await store.add_vectors(vectors, **kwargs)
    assert await store.count() == 1


async def test_search_arguments_are_checked(make_store: StoreMaker) -> None:
    store = make_store(dimensions=3)
    await store.add_vectors([[1, 0, 0]])
    for bad_k in (0, -1, 2.5, "3", True):
        with pytest.raises(ValueError, match="k must be an integer between 1 and"):
            await store.search([1, 0, 0], k=bad_k)
    with pytest.raises(ValueError, match="query vector has dimension 2, expected 3"):
        await store.search([1, 0])
    with pytest.raises(ValueError, match="NaN"):
        await store.search([1, float("nan"), 0])
    assert len(await store.search(np.array([[1, 0, 0]]), k=1)) == 1


async def test_large_streamed_input_lands_in_batches(make_store: StoreMaker) -> None:
    store = make_store(dimensions=8, batch_size=1000)
    rng = np.random.default_rng(5)
    rows = (rng.random(8, dtype=np.float32) for _ in range(4500))
    ids = await store.add_vectors(rows, metadata=({"i": i} for i in range(4500)))
    assert len(ids) == 4500 and len(set(ids)) == 4500
    assert await store.count() == 4500
    assert await store.count(filter={"i": 4499}) == 1


async def test_existing_table_must_match(make_store: StoreMaker) -> None:
    await make_store(dimensions=3).initialize()
    with pytest.raises(SchemaMismatchError, match=r"holds 3-dimensional vectors .*is vector\(3\)\), but this store "
                       r"has dimensions=5\. .*another table_name .*leave dimensions out .*DROP TABLE"):
        await make_store(dimensions=5).initialize()
    with pytest.raises(SchemaMismatchError, match="id_type='text'.*set id_type='uuid'"):
        await make_store(dimensions=3, id_type="text").initialize()
    with pytest.raises(SchemaMismatchError, match="no column for content -> 'body'"):
        await make_store(dimensions=3, columns={"content": "body"}).initialize()
    with pytest.raises(SchemaMismatchError, match="does not exist and auto_create_table is False"):
        await make_store(dimensions=3, table_name="absent", auto_create_table=False).initialize()


# -- indexes -----------------------------------------------------------------------------------------------------


async def vector_indexes(admin: asyncpg.Connection, schema: str, table: str = "knowledge_embeddings") -> list[str]:
    rows = await admin.fetch(
        "SELECT indexdef FROM pg_indexes WHERE schemaname = $1 AND tablename = $2 AND indexdef ~ '(hnsw|ivfflat)'",
        schema, table,
    )
    return [r[0] for r in rows]


async def test_hnsw_auto_index_at_initialize(make_store: StoreMaker, admin: asyncpg.Connection, schema: str) -> None:
    store = make_store(dimensions=16, index_type="hnsw", auto_create_index=True,
                       index_params={"m": 8, "ef_construction": 32})
    await store.initialize()
    [definition] = await vector_indexes(admin, schema)
    assert "USING hnsw (embedding vector_cosine_ops) WITH (m='8', ef_construction='32')" in definition
    assert await store.index_info() == "hnsw"
    ids = await store.add_vectors(rng_vectors(200, 16, seed=6))
    results = await store.search(rng_vectors(200, 16, seed=6)[17], k=3, search_params={"ef_search": 100})
    assert results[0][0] == ids[17]


async def test_ivfflat_auto_index_waits_for_min_rows(make_store: StoreMaker, admin: asyncpg.Connection,
                                                     schema: str) -> None:
    store = make_store(dimensions=8, metric="euclidean", index_type="ivfflat", auto_create_index=True,
                       min_rows_for_index=300, index_params={"lists": 4}, search_params={"probes": 4})
    await store.initialize()
    await store.add_vectors(rng_vectors(200, 8))
    assert await vector_indexes(admin, schema) == []
    await store.add_vectors(rng_vectors(150, 8, seed=1))
    [definition] = await vector_indexes(admin, schema)
    # vector_l2_ops is IVFFlat's default operator class, so pg_indexes leaves it out
    assert "USING ivfflat (embedding) WITH (lists='4')" in definition
    query = rng_vectors(150, 8, seed=1)[3]
    assert (await store.search(query, k=1))[0][1] == pytest.approx(1.0)


async def test_explicit_index_creation_both_types(make_store: StoreMaker, admin: asyncpg.Connection,
                                                  schema: str) -> None:
    store = make_store(dimensions=8, metric="inner_product", auto_create_index=False)
    await store.initialize()
    await store.add_vectors(rng_vectors(500, 8))
    assert await store.create_index(index_type="ivfflat", params={"lists": 20}) is True
    assert await store.create_index(index_type="ivfflat", params={"lists": 20}) is False
    [definition] = await vector_indexes(admin, schema)
    assert "ivfflat (embedding vector_ip_ops) WITH (lists='20')" in definition
    assert await store.create_index(index_type="hnsw") is True
    [definition] = await vector_indexes(admin, schema)
    assert "hnsw (embedding vector_ip_ops) WITH (m='16', ef_construction='64')" in definition
    assert await store.drop_index() is True
    assert await store.drop_index() is False
    assert await vector_indexes(admin, schema) == []
    with pytest.raises(ValueError, match="index_params.lists must be between 1 and 32768"):
        await store.create_index("ivfflat", {"lists": 0})
    with pytest.raises(ValueError, match="index_type must be one of"):
        await store.create_index("flat")


async def test_ivfflat_lists_default_follows_row_count(make_store: StoreMaker, admin: asyncpg.Connection,
                                                       schema: str) -> None:
    store = make_store(dimensions=4)
    await store.add_vectors(rng_vectors(2500, 4))
    await store.create_index("ivfflat")
    [definition] = await vector_indexes(admin, schema)
    assert "lists='2'" in definition


async def test_index_build_ignores_statement_timeout(make_store: StoreMaker, pg_dsn: str, schema: str,
                                                     admin: asyncpg.Connection) -> None:
    loader = make_store(dimensions=64)
    await loader.add_vectors(rng_vectors(20000, 64))
    timeout_ms = 300
    options = f"options=-c%20statement_timeout%3D{timeout_ms}"
    limited_dsn = pg_dsn + ("&" if "?" in pg_dsn else "?") + options
    # the same build through a plain connection with that timeout is cut off: the build takes longer than it
    plain = await asyncpg.connect(limited_dsn)
    try:
        assert await plain.fetchval("SHOW statement_timeout") == f"{timeout_ms}ms"
        with pytest.raises(asyncpg.QueryCanceledError):
            await plain.execute(
                f'CREATE INDEX probe_idx ON "{schema}".knowledge_embeddings USING hnsw (embedding vector_cosine_ops)'
            )
    finally:
        await plain.close()
    store = make_store(dimensions=64, connection_string=limited_dsn)
    assert await store.create_index("hnsw") is True
    assert await store.index_info() == "hnsw"


async def test_eight_concurrent_initializations_make_one_table_and_one_index(
    pg_dsn: str, schema: str, admin: asyncpg.Connection
) -> None:
    stores = [
        PgVectorStore(connection_string=pg_dsn, schema=schema, table_name="shared", dimensions=8,
                      index_type="hnsw", auto_create_index=True, pool_min_size=1, pool_max_size=2)
        for _ in range(8)
    ]
    try:
        await asyncio.gather(*(store.initialize() for store in stores))
        await asyncio.gather(*(store.add_vectors(rng_vectors(10, 8, seed=i)) for i, store in enumerate(stores)))
    finally:
        await asyncio.gather(*(store.close() for store in stores))
    tables = await admin.fetchval(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = $1", schema)
    assert tables == 3  # the table and its two term-statistics tables, each made once
    assert len(await vector_indexes(admin, schema, "shared")) == 1
    assert await table_rows(admin, schema, "shared") == 80


# -- sync API ----------------------------------------------------------------------------------------------------


def test_sync_store_works_in_a_plain_script(pg_dsn: str, schema: str) -> None:
    with SyncPgVectorStore(connection_string=pg_dsn, schema=schema, dimensions=2) as store:
        ids = store.add_vectors([[1, 0], [0, 1]], metadata=[{"n": 1}, {"n": 2}])
        assert store.search([0, 1], k=1)[0][0] == ids[1]
        assert store.count() == 2


async def test_sync_store_works_inside_a_running_event_loop(pg_dsn: str, schema: str) -> None:
    """As in Jupyter: sync calls made while an event loop runs in this thread."""
    store = SyncPgVectorStore(connection_string=pg_dsn, schema=schema, dimensions=2)
    try:
        ids = store.add_vectors([[1, 0], [0, 1]])
        assert store.search([1, 0], k=1)[0][0] == ids[0]
        # the async API of the same store object also works on this loop
        assert await store.store.count() == 2
    finally:
        store.close()


def test_the_sync_store_has_the_async_stores_methods_and_signatures() -> None:
    public = {
        name for name, member in inspect.getmembers(PgVectorStore)
        if not name.startswith("_") and inspect.iscoroutinefunction(member) and name != "get_pool"
    }
    assert public <= set(dir(SyncPgVectorStore))
    for name in public:
        assert inspect.signature(getattr(SyncPgVectorStore, name)) == inspect.signature(getattr(PgVectorStore, name))
        assert not inspect.iscoroutinefunction(getattr(SyncPgVectorStore, name))
        if name != "close":  # the one close of the sync API documents itself (see close_blocking)
            assert getattr(SyncPgVectorStore, name).__doc__ == getattr(PgVectorStore, name).__doc__
    store = SyncPgVectorStore(dimensions=3)
    assert list(inspect.signature(store.search).parameters)[:4] == ["query", "k", "filter", "include_metadata"]


async def test_dimensions_come_from_an_existing_table(make_store: StoreMaker) -> None:
    with pytest.raises(TableNotFoundError, match="no 'dimensions' to create it with"):
        await make_store(table_name="nothing_yet").initialize()
    writer = make_store(dimensions=5, id_type="text")
    await writer.add_vectors(rng_vectors(3, 5), ids=["a", "b", "c"])
    reader = make_store(id_type="text")  # no dimensions: read from the table's vector column
    assert reader.dimensions is None
    await reader.initialize()
    assert reader.dimensions == 5
    assert [hit.id for hit in await reader.search(rng_vectors(3, 5)[1], k=1)] == ["b"]
    with pytest.raises(ValueError, match="query vector has dimension 4, expected 5"):
        await reader.search([1.0, 0.0, 0.0, 0.0])
    with pytest.raises(SchemaMismatchError, match="dimensions=6"):
        await make_store(dimensions=6, id_type="text").initialize()


async def test_results_carry_their_columns_and_on_request_their_vectors(make_store: StoreMaker) -> None:
    store = make_store(dimensions=3, id_type="text")
    vectors = np.array([[1, 0, 0], [0.9, 0.1, 0], [0, 1, 0]], dtype=np.float32)
    await store.add_vectors(vectors, ids=["a", "b", "c"], metadata=[{"tag": "x"}, None, {"document_id": "m"}],
                            contents=["alpha", "beta", None], document_ids=["d1", "d1", None],
                            chunk_indexes=[0, 1, None])
    hits = await store.search([1, 0, 0], k=3)
    first = hits[0]
    row_id, _score, meta = first  # the seed's tuple
    assert (row_id, meta, first[0], len(first)) == ("a", {"tag": "x"}, "a", 3)
    assert first == ("a", pytest.approx(1.0), {"tag": "x"})
    assert (first.content, first.document_id, first.chunk_index, first.vector) == ("alpha", "d1", 0, None)
    assert [hit.metadata for hit in hits] == [{"tag": "x"}, {}, {"document_id": "m"}]  # exactly as written
    assert hits[2].document_id is None  # the explicit list wins over the metadata key
    with_vectors = await store.search([1, 0, 0], k=3, include_vectors=True)
    np.testing.assert_array_equal(np.stack([hit.vector for hit in with_vectors]), vectors)
    assert [hit.score for hit in with_vectors] == [hit.score for hit in hits]
    rows = await store.get(["c", "a"], include_vectors=True)
    assert [(r.id, r.content, r.document_id, r.chunk_index) for r in rows] == [
        ("a", "alpha", "d1", 0), ("c", None, None, None)]  # ordered by document, chunk, id (NULLs last)
    row_id, vector, meta = rows[0]
    np.testing.assert_array_equal(vector, vectors[0])
    assert meta == {"tag": "x"}


async def test_store_sessions_run_in_utc_whatever_the_connection_asks(make_store: StoreMaker, pg_dsn: str) -> None:
    """created_at is a TIMESTAMP filled by NOW(): every store session runs in UTC so dates compare unambiguously."""
    dsn = pg_dsn + ("&" if "?" in pg_dsn else "?") + "options=-c%20timezone%3DAmerica/New_York"
    store = make_store(dimensions=2, connection_string=dsn)
    await store.initialize()
    pool = await store.get_pool()
    assert await pool.fetchval("SHOW timezone") == "UTC"


async def test_session_settings_made_through_get_pool_never_reach_the_stores_searches(make_store: StoreMaker) -> None:
    """The store skips the pool's reset after its own operations (they keep no session state); a connection that
    the user's SQL borrowed through get_pool() is still reset before the store uses it again."""
    store = make_store(dimensions=8, pool_min_size=1, pool_max_size=1)
    data = np.random.default_rng(4).standard_normal((500, 8)).astype(np.float32)
    await store.add_vectors(data)
    await store.create_index("hnsw", {"m": 4, "ef_construction": 8})
    pool = await store.get_pool()
    async with pool.acquire() as conn:  # the pool's only connection
        await conn.execute("SET hnsw.ef_search = 1; SET hnsw.iterative_scan = off; SET application_name = 'mine'")
        assert await conn.fetchval("SHOW hnsw.ef_search") == "1"
    # With these settings still in force, an HNSW search would return a single row.
    assert len(await store.search(data[0], k=10)) == 10
    async with pool.acquire() as conn:
        assert await conn.fetchval("SHOW application_name") == "pgvecstore"
        assert await conn.fetchval("SHOW hnsw.ef_search") == "40"
    # Many store operations in a row leave the session as they found it.
    for row in data[:20]:
        await store.search(row, k=3)
    await store.count()
    # Iterative scans are a session setting of a direct connection's pool; behind a transaction pooler the store
    # sets nothing at session level (its filtered searches set them in each transaction).
    session_default = "off" if store.config.pooled_transactions else "strict_order"
    assert await pool.fetchval("SHOW hnsw.iterative_scan") == session_default


async def test_vectors_given_as_lists_land_exactly_and_a_bad_one_late_in_a_batch_writes_nothing(
    make_store: StoreMaker,
) -> None:
    """Lists of floats (what embedding APIs return) are converted while the rows before them are being copied;
    the rows land exactly as numpy would convert them, and a bad vector deep in the batch still names its position
    and leaves the table as it was."""
    store = make_store(dimensions=16, id_type="text")
    rng = np.random.default_rng(11)
    data = rng.standard_normal((3000, 16))
    lists = data.tolist()
    ids = [f"v{i}" for i in range(3000)]
    assert await store.add_vectors(lists, ids) == ids
    got = await store.get_vectors([ids[0], ids[1234], ids[2999]], include_metadata=False)
    for (vector, _meta), i in zip(got, (0, 1234, 2999), strict=True):
        assert vector is not None
        np.testing.assert_array_equal(vector, data[i].astype(np.float32))

    fresh = make_store(dimensions=16, id_type="text", table_name="fresh")
    short = [*lists[:2100], lists[2100][:15], *lists[2101:]]
    with pytest.raises(ValueError, match="vector at position 2100 has dimension 15, expected 16"):
        await fresh.add_vectors(short, ids)
    broken = [*lists[:1700], [float("nan")] * 16, *lists[1701:]]
    with pytest.raises(ValueError, match="vector at position 1700 contains NaN or infinity"):
        await fresh.add_vectors(broken, ids)
    assert await fresh.count() == 0
    # Rows that exist already go through the upsert path, with the same checks.
    with pytest.raises(ValueError, match="vector at position 2100 has dimension 15"):
        await store.add_vectors(short, ids)
    assert await store.count() == 3000


async def test_a_search_without_a_vector_index_reads_the_other_columns_of_k_rows_only(make_store: StoreMaker) -> None:
    """Without a vector index a search is an exact scan: it finds the k nearest ids first, so the scan of every row
    outputs no metadata (its text is made for the k rows only), and the answer is the nearest rows."""
    from pgvecstore.planner import SearchPlanner, SearchRequest

    store = make_store(dimensions=8, id_type="text")
    data = rng_vectors(300, 8, seed=4)
    await store.add_vectors(data, [f"r{i}" for i in range(300)], [{"i": i} for i in range(300)])
    assert await store.index_info() is None
    hits = await store.search(data[17], k=5)
    distances = ((data / np.linalg.norm(data, axis=1, keepdims=True)) @ (data[17] / np.linalg.norm(data[17])))
    assert [h.id for h in hits] == [f"r{i}" for i in np.argsort(-distances)[:5]]
    assert hits[0].metadata == {"i": 17}
    plan = SearchPlanner(store.config, store.table, 8).plan(SearchRequest(data[17], k=5))
    assert plan.exact is not None
    async with (await store.get_pool()).acquire() as conn:  # the plan's values are in the core's wire format
        explained = json.loads(await conn.fetchval(
            f"EXPLAIN (ANALYZE, VERBOSE, FORMAT JSON) {plan.exact.sql}", *plan.exact.args))

    def nodes(node: dict[str, object]) -> list[dict[str, object]]:
        children = node.get("Plans", [])
        assert isinstance(children, list)
        return [node, *[n for child in children for n in nodes(child)]]

    every = nodes(explained[0]["Plan"])
    scans = [n for n in every if n.get("Relation Name") == store.table.name]
    distance = [n for n in scans if "<=>" in str(n["Output"])]
    assert len(distance) == 1 and distance[0]["Actual Rows"] == 300  # the scan of every row ...
    assert not any("metadata" in str(n["Output"]) for n in distance)  # ... outputs no metadata
    texts = [n for n in every if "metadata)::text" in str(n.get("Output"))]
    assert texts and all(n["Actual Rows"] * n["Actual Loops"] == 5 for n in texts)  # its text: the k rows only
