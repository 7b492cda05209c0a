"""Covering indexes of indexed metadata keys (`covering_metadata`) on a real PostgreSQL: a selective filter on a
covered key is answered by an index-only scan with the rows an exact answer has, for a tenant too; an entry too
large for a b-tree is refused by name before anything is written; bad options fail clearly."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import asyncpg
import numpy as np
import pytest

from pgvecstore import InvalidInputError, InvalidOptionError, PgVectorStore
from pgvecstore.connection import set_local
from pgvecstore.planner import SearchPlanner, SearchRequest
from pgvecstore.search_tuning import EXACT_SCAN_SETTINGS, record_paths

StoreMaker = Callable[..., PgVectorStore]
DIMS = 32
ROWS = 4000
BUCKETS = 100  # a bucket holds 1% of the rows


def _rows(seed: int = 7) -> tuple[np.ndarray, list[dict[str, Any]]]:
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((ROWS, DIMS)).astype(np.float32)
    metadata: list[dict[str, Any]] = [{"bucket": i % BUCKETS, "name": f"n{i}"} for i in range(ROWS)]
    for i in range(0, ROWS, 10):
        del metadata[i]["bucket"]  # rows without the key have no entry in the covering index
    return vectors, metadata


def _nearest(vectors: np.ndarray, query: np.ndarray, allowed: list[int], k: int) -> list[int]:
    """The exact top k of the allowed rows by cosine distance."""
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    distances = 1 - unit[allowed] @ (query / np.linalg.norm(query))
    return [allowed[i] for i in np.argsort(distances, kind="stable")[:k]]


async def _explain_exact(store: PgVectorStore, request: SearchRequest) -> str:
    """The plan PostgreSQL runs for the store's exact scan of `request` (EXPLAIN ANALYZE, text)."""
    planner = SearchPlanner(store.config, store.table, DIMS, store.config.vector_type or "vector")
    plan = planner.plan(request)
    assert plan.exact is not None
    pool = await store.get_pool()
    async with pool.acquire() as conn, conn.transaction():
        await set_local(conn, EXACT_SCAN_SETTINGS)
        rows = await conn.fetch(f"EXPLAIN (ANALYZE, COSTS OFF) {plan.exact.sql}", *plan.exact.args)
    return "\n".join(r[0] for r in rows)


@pytest.mark.parametrize("variant", [{}, {"vector_type": "halfvec"}, {"quantization": "binary"}],
                         ids=["vector", "halfvec", "binary"])
async def test_a_selective_filter_on_a_covered_key_reads_the_covering_index_only(
    make_store: StoreMaker, admin: asyncpg.Connection, variant: dict[str, str]
) -> None:
    store = make_store(dimensions=DIMS, id_type="text", table_name="covered", index_type="hnsw",
                       indexed_metadata={"bucket": "int"}, covering_metadata=["bucket"], **variant)
    vectors, metadata = _rows()
    if variant.get("vector_type") == "halfvec":
        vectors = vectors.astype(np.float16).astype(np.float32)  # what the column holds
    ids = [f"r{i}" for i in range(ROWS)]
    await store.add_vectors(vectors, ids=ids, metadata=metadata)
    await store.create_index()
    t = store.table
    await admin.execute(f"VACUUM (ANALYZE) {t.qualified}")  # the visibility map lets the scan skip the heap

    query = np.random.default_rng(1).standard_normal(DIMS).astype(np.float16).astype(np.float32)
    allowed = [i for i, m in enumerate(metadata) if m.get("bucket") == 42]
    with record_paths() as paths:
        found = await store.search(query, k=10, filter={"bucket": 42})
    assert paths == ["exact"]
    assert [r.id for r in found] == [ids[i] for i in _nearest(vectors, query, allowed, 10)]
    assert all(r.metadata["bucket"] == 42 for r in found)

    plan = await _explain_exact(store, SearchRequest(query, k=10, filter={"bucket": 42}))
    assert f"Index Only Scan using {t.indexed_object('bucket', 'cov')}" in plan, plan
    assert "Heap Fetches: 0" in plan, plan
    # A broad filter, which the HNSW index would serve were it allowed to, is still read exactly by the exact
    # scan (the retry of a short index scan): its ORDER BY keeps the HNSW index out.
    plan = await _explain_exact(store, SearchRequest(query, k=10, filter={"name": {"$ne": "n7"}}))
    assert "hnsw" not in plan and "Seq Scan" in plan, plan
    # The covering index holds the rows that have the key, not the others.
    entries = await admin.fetchval(
        "SELECT reltuples::bigint FROM pg_class WHERE oid = $1::regclass",
        f"{t.schema}.{t.indexed_object('bucket', 'cov')}",
    )
    assert entries == sum(1 for m in metadata if "bucket" in m)


async def test_a_tenant_reads_only_its_rows_through_the_covering_index(
    make_store: StoreMaker, admin: asyncpg.Connection
) -> None:
    options: dict[str, Any] = {"dimensions": DIMS, "id_type": "text", "table_name": "covered_tenants",
                               "indexed_metadata": {"bucket": "int"}, "covering_metadata": ["bucket"],
                               "index_type": "hnsw"}
    mine, theirs = make_store(domain_id="mine", **options), make_store(domain_id="theirs", **options)
    vectors, metadata = _rows()
    half = ROWS // 2
    await mine.add_vectors(vectors[:half], ids=[f"m{i}" for i in range(half)], metadata=metadata[:half])
    # The other tenant's rows are the same vectors: were its rows to leak into the answer, they would tie.
    await theirs.add_vectors(vectors[:half], ids=[f"t{i}" for i in range(half)], metadata=metadata[:half])
    await mine.create_index()
    await admin.execute(f"VACUUM (ANALYZE) {mine.table.qualified}")

    query = vectors[5] + 0.01
    found = await mine.search(query, k=10, filter={"bucket": 5})
    allowed = [i for i in range(half) if metadata[i].get("bucket") == 5]
    assert [r.id for r in found] == [f"m{i}" for i in _nearest(vectors, query, allowed, 10)]
    plan = await _explain_exact(mine, SearchRequest(query, k=10, filter={"bucket": 5}))
    assert "Index Only Scan" in plan, plan


async def test_an_entry_too_large_for_the_covering_index_is_refused_by_name(make_store: StoreMaker) -> None:
    store = make_store(dimensions=DIMS, id_type="text", table_name="covered_big",
                       indexed_metadata={"title": "text"}, covering_metadata=["title"])
    vectors = np.ones((3, DIMS), dtype=np.float32)
    long = "x" * 3000
    with pytest.raises(InvalidInputError, match=r"metadata key 'title' of row b: .* takes \d+ bytes"):
        await store.add_vectors(vectors, ids=["a", "b", "c"],
                                metadata=[{"title": "short"}, {"title": long}, {"title": "fine"}])
    assert await store.count() == 0, "a failed batch writes nothing"

    await store.add_vectors(vectors, ids=["a", "b", "c"], metadata=[{"title": "short"}, {}, {"other": long}])
    with pytest.raises(InvalidInputError, match="metadata key 'title' of row b"):
        await store.update_metadata(["a", "b"], [{"title": "new"}, {"title": long}])
    titles = {r.id: r.metadata.get("title") for r in await store.get()}
    assert titles == {"a": "short", "b": None, "c": None}, "a failed update changes nothing"


async def test_covering_an_existing_key_checks_its_rows_first(
    make_store: StoreMaker, admin: asyncpg.Connection
) -> None:
    first = make_store(dimensions=DIMS, id_type="text", table_name="covered_later", indexed_metadata={"title": "text"})
    await first.add_vectors(np.ones((2, DIMS), dtype=np.float32), ids=["a", "b"],
                            metadata=[{"title": "t"}, {"title": "y" * 3000}])
    second = make_store(dimensions=DIMS, id_type="text", table_name="covered_later",
                        indexed_metadata={"title": "text"}, covering_metadata=["title"])
    with pytest.raises(InvalidInputError, match="covering_metadata: metadata key 'title' of row b takes"):
        await second.initialize()
    t = second.table
    name = f"{t.schema}.{t.indexed_object('title', 'cov')}"
    assert await admin.fetchval("SELECT to_regclass($1)", name) is None, "a failed set-up makes no index"

    await first.update_metadata(["b"], [{"title": "short"}])
    third = make_store(dimensions=DIMS, id_type="text", table_name="covered_later",
                       indexed_metadata={"title": "text"}, covering_metadata=["title"])
    await third.initialize()
    assert await admin.fetchval("SELECT to_regclass($1)", name) is not None
    # The first store (without the option) now writes through the trigger that checks the covered entries.
    with pytest.raises(InvalidInputError, match="metadata key 'title' of row c"):
        await first.add_vectors(np.ones((1, DIMS), dtype=np.float32), ids=["c"], metadata=[{"title": "z" * 3000}])
    definition = await admin.fetchval("SELECT pg_get_indexdef($1::regclass)", name)
    assert "INCLUDE" in definition and "IS NOT NULL" in definition, definition


async def test_vectors_too_wide_for_a_covering_index_are_refused(
    make_store: StoreMaker, admin: asyncpg.Connection
) -> None:
    covered = {"indexed_metadata": {"year": "int"}, "covering_metadata": ["year"]}
    with pytest.raises(InvalidOptionError, match=r"covering_metadata=\['year'\].*up to 598 dimensions.*halfvec"):
        PgVectorStore(dimensions=768, vector_type="vector", **covered)
    with pytest.raises(InvalidOptionError, match="halfvec vectors of up to 1,196 dimensions; these have 1,500"):
        PgVectorStore(dimensions=1500, **covered)  # no vector type holds them
    # Without vector_type the table's type decides: a new table's (the default, vector) is checked before it is made.
    new = make_store(dimensions=768, table_name="wide_new", **covered)
    with pytest.raises(InvalidOptionError, match="these have 768"):
        await new.initialize()
    assert await admin.fetchval("SELECT to_regclass($1)", f"{new.table.schema}.wide_new") is None
    # A halfvec table that exists takes them; a vector table of as many dimensions does not.
    await make_store(dimensions=768, vector_type="halfvec", table_name="wide_half").initialize()
    await make_store(dimensions=768, table_name="wide_half", **covered).initialize()
    await make_store(dimensions=700, table_name="wide").initialize()
    with pytest.raises(InvalidOptionError, match="these have 700"):
        await make_store(table_name="wide", **covered).initialize()


@pytest.mark.parametrize(
    ("covered", "message"),
    [
        (["year"], r"covering_metadata: 'year' is not a key of indexed_metadata \(declared: 'lang'\)"),
        (["lang", "lang"], "names 'lang' more than once"),
        ("lang", "must be a list of indexed_metadata keys"),
    ],
)
def test_bad_covering_options_fail_clearly(covered: Any, message: str) -> None:
    with pytest.raises(InvalidOptionError, match=message):
        PgVectorStore(dimensions=4, indexed_metadata={"lang": "text"}, covering_metadata=covered)

