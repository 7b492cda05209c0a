"""Compact vectors against a real PostgreSQL + pgvector (issue 17): ``vector_type="halfvec"`` and
``quantization="binary"`` with re-ranking, checked against exact numpy answers: round trips, every metric,
filters, tenants, hybrid search, errors where pgvector refuses, existing tables, the adapters and the command line.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import asyncpg
import numpy as np
import pytest

from pgvecstore import InvalidInputError, InvalidOptionError, Metric, PgVectorStore, SchemaMismatchError
from pgvecstore.compact import DEFAULT_RERANK_FACTOR
from pgvecstore.connection import set_local
from pgvecstore.planner import SearchPlanner, SearchRequest
from pgvecstore.search_tuning import record_paths

StoreMaker = Callable[..., PgVectorStore]
METRICS = list(Metric)


def clustered(n: int, d: int, seed: int = 0, clusters: int = 100, noise_seed: int | None = None) -> np.ndarray:
    """Rows around `clusters` random centres (spread 1): binary quantization keeps their neighbourhoods only
    roughly, so re-ranking matters (numpy: recall@10 about 0.55 with 10 candidates, 0.98 with 240)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, d))
    noise = rng if noise_seed is None else np.random.default_rng(noise_seed)
    return (centres[np.arange(n) % clusters] + noise.standard_normal((n, d))).astype(np.float32)


def queries(count: int, d: int, seed: int = 0, clusters: int = 100) -> np.ndarray:
    """Queries around the centres of `clustered(..., seed, clusters)`, other draws than its rows."""
    return clustered(count, d, seed=seed, clusters=clusters, noise_seed=1000 + seed)


def distances(metric: Metric, rows: np.ndarray, query: np.ndarray) -> np.ndarray:
    """pgvector's distance of each row to the query, in float64."""
    x, q = rows.astype(np.float64), query.astype(np.float64)
    if metric == Metric.COSINE:
        return 1 - (x @ q) / (np.linalg.norm(x, axis=1) * np.linalg.norm(q))
    if metric == Metric.EUCLIDEAN:
        return np.linalg.norm(x - q, axis=1)
    return -(x @ q)


def exact_top(
    metric: Metric, rows: np.ndarray, query: np.ndarray, k: int, among: np.ndarray | None = None
) -> list[int]:
    d = distances(metric, rows, query)
    order = np.argsort(d, kind="stable")
    if among is not None:
        order = order[np.isin(order, among)]
    return order[:k].tolist()


def check_exactly_ranked(metric: Metric, rows: np.ndarray, query: np.ndarray, results: list[Any]) -> list[int]:
    """The positions of the results; asserts that their scores are the exact scores of their stored vectors and
    that they come nearest first."""
    found = [int(r.metadata["i"]) for r in results]
    expected = [metric.score(float(x)) for x in distances(metric, rows[found], query)]
    assert [r.score for r in results] == pytest.approx(expected, rel=1e-4, abs=1e-4)
    assert all(a.score >= b.score - 1e-6 for a, b in itertools.pairwise(results))
    return found


def recall(found: list[int], truth: list[int]) -> float:
    return len(set(found) & set(truth)) / len(truth)


# -- halfvec ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("metric", METRICS)
async def test_halfvec_round_trip_and_search_for_each_metric(
    make_store: StoreMaker, admin: asyncpg.Connection, schema: str, metric: Metric
) -> None:
    rows = clustered(400, 16, seed=3, clusters=20)
    half = rows.astype(np.float16).astype(np.float32)  # what a halfvec column holds
    store = make_store(dimensions=16, metric=metric, vector_type="halfvec", id_type="text")
    ids = [f"r{i}" for i in range(len(rows))]
    meta = [{"i": i} for i in range(len(rows))]
    # Every input form of today: float32 and float64 arrays, lists of floats.
    await store.add_vectors(rows[:200], ids[:200], meta[:200])
    await store.add_vectors(rows[200:300].astype(np.float64), ids[200:300], meta[200:300])
    await store.add_vectors(rows[300:].tolist(), ids[300:], meta[300:])
    column = await admin.fetchval(
        "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
        f"WHERE attrelid = '\"{schema}\".knowledge_embeddings'::regclass AND attname = 'embedding'"
    )
    assert column == "halfvec(16)"

    got = await store.get(ids[::50], include_vectors=True)
    for row in got:
        assert row.vector is not None and row.vector.dtype == np.float32
        np.testing.assert_array_equal(row.vector, half[int(row.metadata["i"])])
    pairs = await store.get_vectors(["r7", "missing"])
    np.testing.assert_array_equal(pairs[0][0], half[7])
    assert pairs[1] == (None, None)

    probes = queries(10, 16, seed=3, clusters=20)
    for query in probes:  # no index: exact, on the half-precision values
        results = await store.search(query, k=10, include_vectors=True)
        found = check_exactly_ranked(metric, half, query.astype(np.float16).astype(np.float32), results)
        assert found == exact_top(metric, half, query.astype(np.float16).astype(np.float32), 10)
        np.testing.assert_array_equal(results[0].vector, half[found[0]])

    assert await store.create_index("hnsw")
    assert await store.index_info() == "hnsw"
    suffix = {"cosine": "cosine", "euclidean": "l2", "inner_product": "ip"}[metric]
    definition = await admin.fetchval(f"SELECT indexdef FROM pg_indexes WHERE schemaname = '{schema}'"
                                      " AND indexname LIKE '%hnsw%'")
    assert f"halfvec_{suffix}_ops" in definition
    total = 0.0
    for query in probes:
        rounded = query.astype(np.float16).astype(np.float32)
        results = await store.search(query, k=10)
        total += recall(check_exactly_ranked(metric, half, rounded, results), exact_top(metric, half, rounded, 10))
    assert total / len(probes) >= 0.9


async def test_halfvec_refuses_values_beyond_half_precision_and_writes_nothing(make_store: StoreMaker) -> None:
    store = make_store(dimensions=2, vector_type="halfvec", batch_size=2)
    with pytest.raises(InvalidInputError, match="vector at position 3 has a value beyond half precision's range"):
        await store.add_vectors(np.array([[1, 2], [3, 4], [5, 6], [1e5, 0]], dtype=np.float32))
    with pytest.raises(InvalidInputError, match="vector at position 1 has a value beyond half precision's range"):
        await store.add_vectors([[1.0, 2.0], [0.0, -7e4]])
    assert await store.count() == 0  # the batch written before the bad one was rolled back
    with pytest.raises(InvalidInputError, match="query vector has a value beyond half precision's range"):
        await store.search([1e6, 0.0])


async def test_hybrid_search_on_a_halfvec_store(make_store: StoreMaker) -> None:
    store = make_store(dimensions=4, vector_type="halfvec", id_type="text")
    texts = {
        "semantic": ("Plants respond to drought and heat stress.", [1.0, 0.0, 0.0, 0.0]),
        "near": ("Irrigation schedules for wheat in dry summers.", [0.9, 0.3, 0.0, 0.0]),
        "keyword": ("The zyxomab antibody binds its receptor.", [0.0, 0.0, 0.0, 1.0]),
    }
    await store.add_vectors([v for _, v in texts.values()], list(texts),
                            contents=[t for t, _ in texts.values()])
    query = [1.0, 0.0, 0.0, 0.0]
    fused = await store.search(query, k=3, mode="hybrid", query_text="zyxomab drought")
    assert {r.id for r in fused[:2]} == {"semantic", "keyword"}
    vector_only = await store.search(query, k=2, mode="hybrid", query_text="zyxomab", alpha=1.0)
    assert [r.id for r in vector_only] == ["semantic", "near"]
    text_first = await store.search(query, k=1, mode="hybrid", query_text="zyxomab", alpha=0.0)
    assert text_first[0].id == "keyword"


# -- binary quantization -----------------------------------------------------------------------------------------
BINARY_ROWS = clustered(2000, 64)


async def _binary_store(make_store: StoreMaker, metric: Metric, **options: Any) -> PgVectorStore:
    options.setdefault("index_type", "hnsw")
    options.setdefault("auto_create_index", True)
    store = make_store(dimensions=64, metric=metric, quantization="binary", **options)
    await store.add_vectors(BINARY_ROWS, metadata=[{"i": i, "quarter": i % 4, "rare": i % 100 == 0}
                                                   for i in range(len(BINARY_ROWS))])
    return store


@pytest.mark.parametrize("metric", METRICS)
async def test_binary_quantized_search_reranks_by_the_exact_distance(
    make_store: StoreMaker, admin: asyncpg.Connection, schema: str, metric: Metric
) -> None:
    store = await _binary_store(make_store, metric)
    assert await store.index_info() == "hnsw_binary"
    definition = await admin.fetchval(f"SELECT indexdef FROM pg_indexes WHERE schemaname = '{schema}'"
                                      " AND indexname LIKE '%hnsw_binary%'")
    assert "binary_quantize(embedding)" in definition and "bit_hamming_ops" in definition
    probes = queries(20, 64)
    by_factor: dict[int, float] = {1: 0.0, 24: 0.0, DEFAULT_RERANK_FACTOR: 0.0}
    for query in probes:
        truth = exact_top(metric, BINARY_ROWS, query, 10)
        for factor in by_factor:
            params = None if factor == DEFAULT_RERANK_FACTOR else {"rerank_factor": factor}  # None: the default
            results = await store.search(query, k=10, search_params=params)
            assert len(results) == 10
            by_factor[factor] += recall(check_exactly_ranked(metric, BINARY_ROWS, query, results), truth)
    mean = {factor: total / len(probes) for factor, total in by_factor.items()}
    assert mean[DEFAULT_RERANK_FACTOR] >= 0.85, mean
    # The candidate count reaches the server: 10 candidates re-ranked lose what 240 find.
    assert mean[1] <= mean[24] - 0.2, mean


async def test_the_binary_index_is_built_with_its_own_defaults_unless_index_params_say_otherwise(
    make_store: StoreMaker, admin: asyncpg.Connection, schema: str
) -> None:
    async def options_of(index_pattern: str) -> list[str]:
        found = await admin.fetchval(
            "SELECT c.reloptions FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = $1 AND c.relname LIKE $2", schema, index_pattern)
        return sorted(found)

    await _binary_store(make_store, Metric.COSINE, table_name="binary_defaults")
    assert await options_of("binary_defaults%hnsw_binary%") == ["ef_construction=40", "m=10"]  # BINARY_HNSW_DEFAULTS
    await _binary_store(make_store, Metric.COSINE, table_name="binary_m16", index_params={"m": 16})
    assert await options_of("binary_m16%hnsw_binary%") == ["ef_construction=40", "m=16"]
    float_store = make_store(dimensions=64, index_type="hnsw", auto_create_index=True, table_name="float_defaults")
    await float_store.add_vectors(BINARY_ROWS[:10])
    # The float index keeps the usual defaults.
    assert await options_of("float_defaults%hnsw%") == ["ef_construction=64", "m=16"]


def _index_scans(node: dict[str, Any]) -> list[dict[str, Any]]:
    found = [node] if node.get("Node Type") == "Index Scan" else []
    for child in node.get("Plans", []):
        found += _index_scans(child)
    return found


@pytest.mark.parametrize("factor", [24, 50, 150])
async def test_the_binary_index_scan_returns_every_candidate_asked_for(make_store: StoreMaker, factor: int) -> None:
    store = await _binary_store(make_store, Metric.COSINE)
    planner = SearchPlanner(store.config, store.table, 64)
    plan = planner.plan(SearchRequest(queries(1, 64)[0], k=10, search_params={"rerank_factor": factor}))
    assert plan.candidates == 10 * factor
    pool = await store.get_pool()
    async with pool.acquire() as conn, conn.transaction():
        await set_local(conn, plan.settings)  # ef_search = candidates, at most 1,000; iterative scans beyond
        # 2,000 rows are read faster than an index scan of 10% of them; a big table takes the index.
        await set_local(conn, {"enable_seqscan": "off"})
        explained = await conn.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) {plan.sql}", *plan.args)
    scans = _index_scans(json.loads(explained)[0]["Plan"])
    [scan] = [s for s in scans if s["Index Name"].endswith("hnsw_binary_idx")]  # the others read the k rows back
    assert scan["Actual Rows"] == 10 * factor


async def test_the_vector_side_of_a_hybrid_search_re_ranks_at_most_one_pass_of_the_binary_index(
    make_store: StoreMaker,
) -> None:
    store = await _binary_store(make_store, Metric.COSINE)
    planner = SearchPlanner(store.config, store.table, 64)
    request = SearchRequest(queries(1, 64)[0], k=5, mode="hybrid", query_text="anything", vector_k=20)
    plan = planner.plan(request, "english")  # 20 * 64 = 1,280 candidates without the bound
    pool = await store.get_pool()
    async with pool.acquire() as conn, conn.transaction():
        await set_local(conn, plan.settings)
        await set_local(conn, {"enable_seqscan": "off"})
        explained = await conn.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) {plan.sql}", *plan.args)
    scans = _index_scans(json.loads(explained)[0]["Plan"])
    [scan] = [s for s in scans if s["Index Name"].endswith("hnsw_binary_idx")]
    assert scan["Actual Rows"] == 1000  # of the table's 2,000 rows
    assert len(await store.search(queries(1, 64)[0], k=5, mode="hybrid", query_text="anything", vector_k=20)) == 5


async def test_binary_store_without_an_index_searches_exactly(make_store: StoreMaker) -> None:
    store = await _binary_store(make_store, Metric.COSINE, index_type="none", auto_create_index=False)
    assert await store.index_info() is None
    for query in queries(5, 64):
        results = await store.search(query, k=10)
        assert check_exactly_ranked(Metric.COSINE, BINARY_ROWS, query, results) == exact_top(
            Metric.COSINE, BINARY_ROWS, query, 10)


async def test_filtered_binary_searches_take_the_index_or_the_exact_scan(
    make_store: StoreMaker, admin: asyncpg.Connection
) -> None:
    metric = Metric.EUCLIDEAN
    store = await _binary_store(make_store, metric)
    await admin.execute(f"ANALYZE {store.table.qualified}")  # the planner's estimates need statistics
    quarter = np.flatnonzero(np.arange(len(BINARY_ROWS)) % 4 == 1)
    rare = np.flatnonzero(np.arange(len(BINARY_ROWS)) % 100 == 0)
    total = 0.0
    probes = queries(10, 64)
    with record_paths() as paths:
        for query in probes:
            # exact_selectivity 0: no estimate, the index scan (a metadata filter's estimate is the planner's guess).
            results = await store.search(query, k=10, filter={"quarter": 1}, search_params={"exact_selectivity": 0})
            assert all(r.metadata["quarter"] == 1 for r in results) and len(results) == 10
            found = check_exactly_ranked(metric, BINARY_ROWS, query, results)
            total += recall(found, exact_top(metric, BINARY_ROWS, query, 10, among=quarter))
            selective = await store.search(query, k=10, filter={"rare": True})
            # A filter estimated selective reads its rows exactly: the exact answer, not Hamming candidates.
            assert check_exactly_ranked(metric, BINARY_ROWS, query, selective) == exact_top(
                metric, BINARY_ROWS, query, 10, among=rare)
    assert paths == ["index", "exact"] * len(probes)
    assert total / len(probes) >= 0.85


async def test_tenant_scoped_binary_searches_see_their_domain_only(make_store: StoreMaker) -> None:
    metric = Metric.COSINE
    half = len(BINARY_ROWS) // 2
    stores = {}
    for tenant, part in (("acme", slice(0, half)), ("globex", slice(half, None))):
        stores[tenant] = make_store(dimensions=64, metric=metric, quantization="binary", index_type="hnsw",
                                    domain_id=tenant)
        start = part.start or 0
        await stores[tenant].add_vectors(BINARY_ROWS[part], metadata=[{"i": start + i}
                                                                      for i in range(len(BINARY_ROWS[part]))])
    assert await stores["acme"].create_index()
    acme_rows = np.arange(half)
    total = 0.0
    probes = queries(10, 64)
    for query in probes:
        results = await stores["acme"].search(query, k=10)
        found = check_exactly_ranked(metric, BINARY_ROWS, query, results)
        assert all(i < half for i in found) and len(found) == 10
        total += recall(found, exact_top(metric, BINARY_ROWS, query, 10, among=acme_rows))
    assert total / len(probes) >= 0.85


async def test_binary_hybrid_search_reranks_its_vector_side(make_store: StoreMaker) -> None:
    store = make_store(dimensions=64, quantization="binary", index_type="hnsw")
    contents = [f"row {i} " + ("zyxomab" if i == 1234 else "plain") for i in range(len(BINARY_ROWS))]
    await store.add_vectors(BINARY_ROWS, metadata=[{"i": i} for i in range(len(BINARY_ROWS))], contents=contents)
    query = BINARY_ROWS[42] + 0.01
    for indexed in (False, True):  # without the index, the vector side is exact; with it, re-ranked candidates
        if indexed:
            assert await store.create_index()
        vector_side = await store.search(query, k=5, mode="hybrid", query_text="zyxomab", alpha=1.0)
        assert [r.metadata["i"] for r in vector_side] == exact_top(Metric.COSINE, BINARY_ROWS, query, 5)
        fused = await store.search(query, k=2, mode="hybrid", query_text="zyxomab")
        assert {r.metadata["i"] for r in fused} == {42, 1234}


# -- what pgvector refuses, and existing tables ------------------------------------------------------------------
async def test_indexes_pgvector_cannot_build_are_refused_naming_the_options(make_store: StoreMaker) -> None:
    binary = make_store(dimensions=8, quantization="binary", table_name="b")
    await binary.add_vectors(np.ones((3, 8), dtype=np.float32))
    with pytest.raises(InvalidOptionError, match="quantization='binary' needs index_type='hnsw'"):
        await binary.create_index("ivfflat")
    assert await binary.index_info() is None
    wide = make_store(dimensions=3000, table_name="w")
    await wide.initialize()
    with pytest.raises(InvalidOptionError, match="vector_type='vector' indexes at most 2,000 dimensions"):
        await wide.create_index("hnsw")
    wide_half = make_store(dimensions=3000, vector_type="halfvec", table_name="wh")
    assert await wide_half.create_index("hnsw")  # halfvec indexes up to 4,000
    with pytest.raises(InvalidOptionError, match="indexes at most 2,000 dimensions"):
        make_store(dimensions=3000, index_type="hnsw", table_name="x")


@pytest.mark.parametrize(("created", "opened"), [("vector", "halfvec"), ("halfvec", "vector")])
async def test_an_existing_table_opened_with_another_vector_type_is_a_schema_mismatch(
    make_store: StoreMaker, created: str, opened: str
) -> None:
    first = make_store(dimensions=8, vector_type=created)
    await first.add_vectors(np.full((1, 8), 1 / 3, dtype=np.float32), metadata=[{"i": 0}])
    with pytest.raises(SchemaMismatchError, match=rf"is {created}\(8\), but this store has vector_type='{opened}'"):
        await make_store(vector_type=opened).initialize()
    reopened = make_store()  # the option left out: read from the table, like dimensions
    [row] = await reopened.get(include_vectors=True)
    expected = np.float32(1 / 3) if created == "vector" else np.float32(np.float16(1 / 3))
    assert row.vector is not None and row.vector[0] == expected
    assert (await reopened.search(np.ones(8), k=1))[0].metadata == {"i": 0}


# -- the adapters and the command line ---------------------------------------------------------------------------
class TableEmbeddings:
    """Embeddings from a lookup: each known text its vector, anything else a far-away one."""

    def __init__(self, vectors: dict[str, list[float]]) -> None:
        self.vectors = vectors

    def __call__(self, text: str) -> list[float]:
        return self.vectors.get(text, [0.0] * 63 + [1.0])


ADAPTER_TEXTS = [f"passage {i}" for i in range(300)]
ADAPTER_VECTORS = {text: row.tolist() for text, row in zip(ADAPTER_TEXTS, clustered(300, 64, seed=5), strict=True)}


@pytest.mark.parametrize("options", [{"vector_type": "halfvec"},
                                     {"quantization": "binary", "index_type": "hnsw", "auto_create_index": True}])
def test_langchain_adapter_passes_compact_options_through(pg_dsn: str, schema: str, options: dict[str, Any]) -> None:
    from langchain_core.embeddings import Embeddings

    from langchain_pgvecstore import PgVecStore

    lookup = TableEmbeddings(ADAPTER_VECTORS)

    class Lookup(Embeddings):
        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            return [lookup(t) for t in texts]

        def embed_query(self, text: str) -> list[float]:
            return lookup(text)

    store = PgVecStore(Lookup(), connection_string=pg_dsn, schema=schema, dimensions=64, **options)
    try:
        assert {k: getattr(store.store.config, k) for k in options} == options
        store.add_texts(ADAPTER_TEXTS, ids=[str(i) for i in range(len(ADAPTER_TEXTS))])
        docs = store.similarity_search("passage 17", k=3)
        assert docs[0].page_content == "passage 17"
    finally:
        store.close()


@pytest.mark.parametrize("options", [{"vector_type": "halfvec"},
                                     {"quantization": "binary", "index_type": "hnsw", "auto_create_index": True}])
async def test_llamaindex_adapter_passes_compact_options_through(pg_dsn: str, schema: str,
                                                                 options: dict[str, Any]) -> None:
    from llama_index.core.schema import TextNode
    from llama_index.core.vector_stores.types import VectorStoreQuery

    from llama_index.vector_stores.pgvecstore import PgVecStore

    store = PgVecStore(connection_string=pg_dsn, schema=schema, dimensions=64, **options)
    try:
        assert {k: getattr(store.client.config, k) for k in options} == options
        await store.async_add([TextNode(id_=str(i), text=text, embedding=ADAPTER_VECTORS[text])
                               for i, text in enumerate(ADAPTER_TEXTS)])
        result = await store.aquery(VectorStoreQuery(query_embedding=ADAPTER_VECTORS["passage 17"],
                                                     similarity_top_k=3))
        assert (result.ids or [])[0] == "17"
    finally:
        await store.aclose()


async def test_cli_index_create_binary(pg_dsn: str, schema: str, make_store: StoreMaker) -> None:
    store = make_store(dimensions=8, id_type="text", quantization="binary")
    await store.add_vectors(np.eye(8, dtype=np.float32), [f"r{i}" for i in range(8)])
    command = [sys.executable, "-m", "pgvecstore.cli", "index", "create", "--binary", "--dsn", pg_dsn,
               "--schema", schema, "--table", "knowledge_embeddings"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "built a hnsw_binary index" in done.stdout
    assert await store.index_info() == "hnsw_binary"
    assert (await store.search(np.eye(8)[3], k=1))[0].id == "r3"
