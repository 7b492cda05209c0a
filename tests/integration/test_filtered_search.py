"""Filtered search with an HNSW index returns k rows, and the right ones, even when the filter is selective.

pgvector's HNSW index applies a WHERE clause after finding its candidates, so a plain index scan under a 1% filter
returns a handful of rows. These tests check what a user sees through `PgVectorStore.search`: ``k`` rows whenever
``k`` rows match, every one matching the filter, best first, and recall@10 of at least 0.95 against the exact
filtered answer (computed with numpy), at filters matching 50%, 10%, 1% and 0.1% of the rows; and which path
(index scan or exact scan) each search took, as `search_tuning.record_paths` reports it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import asyncpg
import numpy as np
import pytest

from pgvecstore import PgVectorStore
from pgvecstore import indexes as indexes_module
from pgvecstore.connection import set_local
from pgvecstore.indexes import BUILD_MEMORY_CAP, BUILD_MEMORY_FLOOR, build_settings, hnsw_build_memory
from pgvecstore.metric import Metric
from pgvecstore.search_tuning import (
    EXACT_SCAN_SETTINGS,
    SearchOptions,
    estimated_share,
    filtered_ef,
    note_path,
    parse_estimate,
    record_paths,
    search_settings,
    should_retry_exact,
    use_exact_scan,
    validate_search_options,
)
from pgvecstore.sql import queries

ROWS, DIMS, K = 6000, 32, 10
GROUPS = {"g2": 2, "g10": 10, "g100": 100, "g1000": 1000}  # filters matching 50%, 10%, 1%, 0.1%


@pytest.fixture(scope="module")
def data() -> dict[str, Any]:
    rng = np.random.default_rng(42)
    vectors = rng.standard_normal((ROWS, DIMS)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    labels = {key: rng.integers(0, n, ROWS) for key, n in GROUPS.items()}
    # The 0.1% group: exactly 10 rows per value, so every filter matches k rows.
    labels["g1000"] = np.repeat(np.arange(ROWS // 10), 10)[rng.permutation(ROWS)]
    queries = rng.standard_normal((20, DIMS)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    metadata = [{"n": i, **{key: int(labels[key][i]) for key in GROUPS}} for i in range(ROWS)]
    return {"vectors": vectors, "labels": labels, "queries": queries, "metadata": metadata}


async def _indexed_store(make_store: Callable[..., PgVectorStore], admin: asyncpg.Connection,
                         data: dict[str, Any], **options: Any) -> PgVectorStore:
    store = make_store(dimensions=DIMS, index_type="hnsw", **options)
    await store.add_vectors(data["vectors"], metadata=data["metadata"])
    assert await store.create_index("hnsw", {"m": 16, "ef_construction": 64})
    await admin.execute(f"ANALYZE {store.table.qualified}")  # the planner's estimates need statistics
    return store


def _truth(data: dict[str, Any], query: np.ndarray, key: str, value: int) -> list[int]:
    rows = np.flatnonzero(data["labels"][key] == value)
    scores = data["vectors"][rows] @ query
    return [int(r) for r in rows[np.argsort(-scores)[:K]]]


def _recall(found: list[list[int]], truth: list[list[int]]) -> float:
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth, strict=True)]))


@pytest.fixture(scope="module")
def clustered() -> dict[str, Any]:
    """30,000 clustered unit vectors (50 clusters, each spread in a random 32-dimensional subspace of 128
    dimensions), as embeddings are: hard enough that an HNSW index scan alone misses rows under a 1% filter."""
    rows, dims, clusters, latent = 30_000, 128, 50, 32
    rng = np.random.default_rng(42)
    centers = rng.standard_normal((clusters, dims)).astype(np.float32)
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    bases = rng.standard_normal((clusters, latent, dims)).astype(np.float32) / np.float32(np.sqrt(dims))

    def draw(count: int) -> np.ndarray:
        cluster = rng.integers(0, clusters, count)
        out = rng.standard_normal((count, dims)).astype(np.float32) * np.float32(0.1 / np.sqrt(dims))
        spread = rng.standard_normal((count, latent)).astype(np.float32) / np.float32(np.sqrt(latent))
        out += centers[cluster] + np.einsum("nl,nld->nd", spread, bases[cluster])
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    vectors, queries = draw(rows), draw(40)
    labels = {key: rng.integers(0, n, rows) for key, n in GROUPS.items()}
    metadata = [{"n": i, **{key: int(labels[key][i]) for key in GROUPS}} for i in range(rows)]
    return {"vectors": vectors, "labels": labels, "queries": queries, "metadata": metadata, "dims": dims}


# -- through the store -----------------------------------------------------------------------------------------
async def test_store_filtered_search_at_every_selectivity_returns_k_rows_with_recall(
    make_store: Callable[..., PgVectorStore], admin: asyncpg.Connection, clustered: dict[str, Any]
) -> None:
    """Filters matching 50%, 10%, 1% and 0.1% of 30,000 rows: every search returns k rows that match, best
    first, and recall@10 against numpy's exact filtered top 10 is at least 0.95 at each selectivity."""
    data = clustered
    store = make_store(dimensions=data["dims"], index_type="hnsw")
    await store.add_vectors(data["vectors"], metadata=data["metadata"])
    assert await store.create_index("hnsw", {"m": 16, "ef_construction": 64})
    await admin.execute(f"ANALYZE {store.table.qualified}")  # the planner's estimates need statistics

    async def run(key: str, search_params: dict[str, Any] | None = None) -> tuple[float, list[str]]:
        found, truth = [], []
        with record_paths() as paths:
            for i, query in enumerate(data["queries"]):
                value = int(data["labels"][key][i * 37])
                hits = await store.search(query, k=K, filter={key: value}, search_params=search_params)
                assert len(hits) == K, f"{key}={value}: {len(hits)} rows"
                assert all(meta[key] == value for _id, _score, meta in hits)
                scores = [score for _id, score, _meta in hits]
                assert scores == sorted(scores, reverse=True)
                found.append([meta["n"] for _id, _score, meta in hits])
                truth.append(_truth(data, query, key, value))
        return _recall(found, truth), paths

    recalls = {}
    for key in GROUPS:
        recalls[key], paths = await run(key)
        assert len(paths) == len(data["queries"])
        if key in ("g2", "g10"):
            assert paths.count("index") >= len(paths) - 2, paths  # broad filters use the index
        if key == "g1000":
            assert "index" not in paths  # 0.1%: the planner's estimate sends every query to the exact scan
    assert min(recalls.values()) >= 0.95, recalls
    # What the estimate is for: the index scan alone (estimate off) finds too few of the right rows at 1%.
    index_only, paths = await run("g100", {"exact_selectivity": 0})
    assert set(paths) == {"index"}
    assert index_only < 0.95 <= recalls["g100"]


async def test_store_returns_every_row_when_fewer_than_k_match(
    make_store: Callable[..., PgVectorStore], admin: asyncpg.Connection, data: dict[str, Any]
) -> None:
    store = await _indexed_store(make_store, admin, data)
    hits = await store.search(data["queries"][0], k=K, filter={"$and": [{"g1000": 3}, {"g2": 0}]})
    expected = int(((data["labels"]["g1000"] == 3) & (data["labels"]["g2"] == 0)).sum())
    assert len(hits) == expected < K


async def test_store_search_options_tune_the_filtered_path(
    make_store: Callable[..., PgVectorStore], admin: asyncpg.Connection, data: dict[str, Any]
) -> None:
    store = await _indexed_store(make_store, admin, data)
    value = int(data["labels"]["g100"][0])
    query = data["queries"][0]
    with record_paths() as paths:
        # Estimate off, no exact re-run: the index scan alone (iterative, so still k rows at 1% of 6,000 rows).
        index_only = {"exact_selectivity": 0, "retry_exact": False, "filtered_ef_search": 40}
        hits = await store.search(query, k=K, filter={"g100": value}, search_params=index_only)
        assert len(hits) == K
        # Every filter counts as selective: the exact scan, which finds the exact answer.
        hits = await store.search(query, k=K, filter={"g2": 0}, search_params={"exact_selectivity": 1.0})
        assert [meta["n"] for _id, _score, meta in hits] == _truth(data, query, "g2", 0)
    assert paths == ["index", "exact"]
    with pytest.raises(ValueError, match="exact_selectivity"):
        await store.search(query, k=K, filter={"g100": value}, search_params={"exact_selectivity": 2})


async def test_store_re_runs_a_short_index_scan_exactly(
    make_store: Callable[..., PgVectorStore], admin: asyncpg.Connection, data: dict[str, Any]
) -> None:
    """An index scan that comes back with fewer than k rows (here: the estimate is off, so the index path runs,
    and fewer than k rows match) is re-run exactly, which settles that every matching row was returned."""
    store = await _indexed_store(make_store, admin, data)
    query, both = data["queries"][5], (data["labels"]["g1000"] == 3) & (data["labels"]["g2"] == 0)
    with record_paths() as paths:
        hits = await store.search(query, k=K, filter={"$and": [{"g1000": 3}, {"g2": 0}]},
                                  search_params={"exact_selectivity": 0})
    assert paths == ["index+exact"]
    expected = np.flatnonzero(both)
    expected = [int(r) for r in expected[np.argsort(-(data["vectors"][expected] @ query))]]
    assert [meta["n"] for _id, _score, meta in hits] == expected


async def test_a_filtered_search_takes_its_own_path_whatever_ran_before_it_on_the_connection(
    make_store: Callable[..., PgVectorStore], admin: asyncpg.Connection, data: dict[str, Any]
) -> None:
    """Exact scans leave nothing behind for the next search on the same connection: after a run of very
    selective (exact) searches, a broad filter still gets the index scan's answer. PostgreSQL switches a prepared
    statement to a generic plan after five runs, and that plan, made under the exact scan's settings, would
    otherwise answer the broad filter by an exact scan too, whatever its own settings (slow on a large table)."""
    reference = await _indexed_store(make_store, admin, data)
    store = make_store(dimensions=DIMS, pool_min_size=1, pool_max_size=1)  # the same table, one connection
    short_list = {"filtered_ef_search": 10}  # the index path's answer then differs from the exact one

    async def broad(s: PgVectorStore, query: np.ndarray) -> list[int]:
        hits = await s.search(query, k=K, filter={"g2": 0}, search_params=short_list)
        return [meta["n"] for _id, _score, meta in hits]

    queries = data["queries"]
    by_index = {i: await broad(reference, queries[i]) for i in range(len(queries))}
    differs = [i for i, found in by_index.items() if found != _truth(data, queries[i], "g2", 0)]
    assert differs, "the short candidate list found every exact answer: nothing to tell the paths apart"
    with record_paths() as paths:
        for i in range(8):
            await store.search(queries[i], k=K, filter={"g1000": int(data["labels"]["g1000"][i])})
        again = {i: await broad(store, queries[i]) for i in differs}
    assert paths == ["exact"] * 8 + ["index"] * len(differs)
    assert again == {i: by_index[i] for i in differs}


async def _log_statements(pool: asyncpg.Pool) -> list[tuple[str, tuple[Any, ...]]]:
    """The text and arguments of every statement the one connection of `pool` runs from now on."""
    sent: list[tuple[str, tuple[Any, ...]]] = []
    async with pool.acquire() as conn:
        conn.add_query_logger(lambda record: sent.append((record.query, tuple(record.args or ()))))
    return sent


async def test_a_selective_filters_exact_scan_is_one_statement_planned_for_its_own_values(
    make_store: Callable[..., PgVectorStore], admin: asyncpg.Connection, data: dict[str, Any]
) -> None:
    """On the store's own connections a very selective filter costs one statement, as an unfiltered search does:
    no transaction, no settings, because the connections plan every statement for its own values (so the exact
    scan's prepared statement never runs a plan made for another value). A broad filter's index scan still sets
    its own settings in a transaction."""
    await _indexed_store(make_store, admin, data)
    store = make_store(dimensions=DIMS, pool_min_size=1, pool_max_size=1, statement_cache_size=100)
    pool = await store.get_pool()
    assert await pool.fetchval("SHOW plan_cache_mode") == "force_custom_plan"
    sent = await _log_statements(pool)
    values = [int(v) for v in data["labels"]["g1000"][:8]]
    queries = data["queries"]
    await store.search(queries[-1], k=K, filter={"g1000": values[0]})  # the pool's reset, the index probe
    sent.clear()
    with record_paths() as paths:
        for i, value in enumerate(values):
            hits = await store.search(queries[i], k=K, filter={"g1000": value})
            assert [meta["n"] for _id, _score, meta in hits] == _truth(data, queries[i], "g1000", value)
        estimates = [sql for sql, _ in sent if sql.startswith("EXPLAIN")]
        scans = [sql for sql, _ in sent if not sql.startswith("EXPLAIN")]
        assert paths == ["exact"] * len(values)
        assert len(estimates) == len(set(values)) - 1 and len(scans) == len(values) and len(set(scans)) == 1
        sent.clear()
        await store.search(queries[0], k=K, filter={"g1000": values[0]})  # its estimate is cached
        assert [sql for sql, _ in sent] == scans[:1]
        async with pool.acquire() as conn:
            [(generic, custom)] = await conn.fetch(
                "SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE statement = $1", scans[0])
        assert generic == 0 and custom == len(values) + 2
        sent.clear()
        await store.search(queries[0], k=K, filter={"g2": 0})
        assert paths[-1] == "index"
        texts = [sql for sql, _ in sent]
        assert texts[1] == "BEGIN;" and "set_config" in texts[2]  # after its estimate
        assert len(texts) == 4 and texts[3] not in scans  # then the index scan's statement, not the exact one


async def test_on_an_applications_pool_the_exact_scan_sets_its_own_plan(
    make_store: Callable[..., PgVectorStore], admin: asyncpg.Connection, data: dict[str, Any], pg_dsn: str,
    schema: str,
) -> None:
    """The store cannot know how an application's pool plans its statements: there the exact scan sets
    ``plan_cache_mode`` itself, in its transaction."""
    await _indexed_store(make_store, admin, data)
    async with asyncpg.create_pool(pg_dsn, min_size=1, max_size=1) as pool:
        store = PgVectorStore(pool=pool, dimensions=DIMS, schema=schema)
        sent = await _log_statements(pool)
        value = int(data["labels"]["g1000"][0])
        with record_paths() as paths:
            hits = await store.search(data["queries"][0], k=K, filter={"g1000": value})
        assert paths == ["exact"]
        assert [meta["n"] for _id, _score, meta in hits] == _truth(data, data["queries"][0], "g1000", value)
        settings = [args for sql, args in sent if "set_config" in sql]
        assert any("plan_cache_mode" in args and "force_custom_plan" in args for args in settings)
        await store.close()


async def test_store_unfiltered_search_with_an_index_returns_k_rows(
    make_store: Callable[..., PgVectorStore], admin: asyncpg.Connection, data: dict[str, Any]
) -> None:
    store = await _indexed_store(make_store, admin, data)
    with record_paths() as paths:
        hits = await store.search(data["queries"][0], k=K)
    assert paths == []  # an unfiltered search takes no filtered path (no estimate, no exact re-run)
    assert len(hits) == K
    truth = [int(r) for r in np.argsort(-(data["vectors"] @ data["queries"][0]))[:K]]
    assert len({meta["n"] for _id, _score, meta in hits} & set(truth)) >= 8


async def test_plain_index_scan_loses_rows_under_a_selective_filter(
    make_store: Callable[..., PgVectorStore], admin: asyncpg.Connection, data: dict[str, Any]
) -> None:
    """The problem the tuning solves: without iterative scans, HNSW returns fewer than k rows at 1%."""
    store = await _indexed_store(make_store, admin, data)
    pool = await store.get_pool()
    counts = []
    async with pool.acquire() as conn:
        for i, query in enumerate(data["queries"][:10]):
            search, _ = queries.vector_search(
                store.table, Metric.COSINE, None, {"g100": int(data["labels"]["g100"][i * 37])}, query, K,
                metadata=True, vectors=False,
            )
            async with conn.transaction():
                await set_local(conn, {"hnsw.iterative_scan": "off", "hnsw.ef_search": "40"})
                rows = await conn.fetch(search.sql, *search.args)
            assert all(json.loads(row[1])["g100"] == int(data["labels"]["g100"][i * 37]) for row in rows)
            counts.append(len(rows))
    assert min(counts) < K


async def test_planner_estimate_parses_and_orders_selectivities(
    make_store: Callable[..., PgVectorStore], admin: asyncpg.Connection, data: dict[str, Any]
) -> None:
    store = await _indexed_store(make_store, admin, data)
    shares = {}
    for key in ("g2", "g1000"):
        estimate = queries.estimate_rows(store.table, None, {key: 1})
        plan = await admin.fetchval(estimate.sql, *estimate.args)
        matching, total = parse_estimate(plan)
        assert total == pytest.approx(ROWS, rel=0.05)
        shares[key] = matching / total
    assert shares["g2"] == pytest.approx(0.5, abs=0.15)
    assert shares["g1000"] < 0.03


# -- pure functions --------------------------------------------------------------------------------------------
def test_search_settings_leave_unfiltered_default_searches_alone() -> None:
    assert search_settings(SearchOptions(), filtered=False, k=10) == {}
    assert search_settings(SearchOptions(ef_search=80), filtered=False, k=10) == {"hnsw.ef_search": "80"}
    assert search_settings(SearchOptions(), filtered=False, k=100) == {"hnsw.ef_search": "100"}
    assert search_settings(SearchOptions(probes=4), filtered=False, k=10) == {"ivfflat.probes": "4"}


def test_search_settings_of_filtered_searches_scan_iteratively_and_wider() -> None:
    settings = search_settings(SearchOptions(), filtered=True, k=10)
    assert settings["hnsw.iterative_scan"] == "strict_order"
    assert settings["ivfflat.iterative_scan"] == "relaxed_order"
    assert settings["hnsw.ef_search"] == "400"
    assert settings["hnsw.max_scan_tuples"] == "20000"
    assert search_settings(SearchOptions(max_probes=7), filtered=True, k=10)["ivfflat.max_probes"] == "7"
    assert search_settings(SearchOptions(), filtered=True, k=5000)["hnsw.ef_search"] == "1000"
    # A selective filter (by the planner's estimate) gets a list that holds 2k matching rows: 20 / 4% = 500.
    assert search_settings(SearchOptions(), filtered=True, k=10, share=0.04)["hnsw.ef_search"] == "500"
    assert search_settings(SearchOptions(), filtered=True, k=10, share=0.5)["hnsw.ef_search"] == "400"


def test_filtered_candidate_list_holds_2k_matching_rows_by_the_estimate() -> None:
    options = SearchOptions()
    assert filtered_ef(options, 10) == 400  # no estimate: filtered_ef_search
    assert filtered_ef(options, 10, 0.5) == 400  # broad filters keep filtered_ef_search
    assert filtered_ef(options, 10, 0.05) == 400
    assert filtered_ef(options, 10, 0.04) == 500
    assert filtered_ef(options, 10, 0.02) == 1000  # capped at pgvector's limit
    assert filtered_ef(options, 300, 0.5) == 1000  # 2k matching rows for a larger k too
    assert filtered_ef(options, 10, 0.0) == 400  # nothing matches by the estimate: nothing to lengthen
    assert filtered_ef(SearchOptions(filtered_ef_search=50), 10, 0.5) == 50
    assert filtered_ef(SearchOptions(filtered_ef_search=50, ef_search=120), 10, 0.5) == 120
    assert filtered_ef(SearchOptions(filtered_ef_search=1000), 10, 0.5) == 1000


def test_exact_scan_decision() -> None:
    options = SearchOptions()
    assert use_exact_scan(options, matching=20, total=200_000, k=10)  # 0.01%
    assert use_exact_scan(options, matching=2_000, total=200_000, k=10)  # 1%
    # The planner's estimate of a metadata equality counts matches in 99 sampled values: a 1% filter estimated
    # at 3 in 99 still scans exactly; 4 in 99 goes to the index.
    assert use_exact_scan(options, matching=3 * 200_000 / 99, total=200_000, k=10)
    assert not use_exact_scan(options, matching=4 * 200_000 / 99, total=200_000, k=10)
    assert not use_exact_scan(options, matching=20_000, total=200_000, k=10)  # 10%
    assert not use_exact_scan(SearchOptions(exact_selectivity=0), matching=1, total=200_000, k=10)
    # A filter that an iterative scan could not satisfy within max_scan_tuples goes exact whatever the share.
    assert use_exact_scan(SearchOptions(exact_selectivity=0.001, max_scan_tuples=100), 5_000, 100_000, 10)
    assert not use_exact_scan(options, matching=0, total=0, k=10)
    assert should_retry_exact(options, 3, 10, filtered=True, exact=False)
    assert not should_retry_exact(options, 3, 10, filtered=True, exact=True)
    assert not should_retry_exact(options, 3, 10, filtered=False, exact=False)
    assert not should_retry_exact(SearchOptions(retry_exact=False), 3, 10, filtered=True, exact=False)
    # Both paths plan every search for its own settings (no generic plan carried over from the other path).
    assert EXACT_SCAN_SETTINGS["plan_cache_mode"] == "force_custom_plan"
    assert search_settings(options, filtered=True, k=10)["plan_cache_mode"] == "force_custom_plan"
    assert "plan_cache_mode" not in search_settings(options, filtered=False, k=10)
    assert estimated_share(50, 200) == 0.25
    assert estimated_share(0, 0) is None


async def test_record_paths_sees_only_its_own_context() -> None:
    note_path("index")  # outside any recording: nothing to do, no error

    async def searches(*taken: str) -> list[str]:
        with record_paths() as paths:
            for path in taken:
                note_path(path)
                await asyncio.sleep(0)  # let the other task record in between
        return paths

    first, second = await asyncio.gather(searches("index", "exact"), searches("index+exact"))
    assert first == ["index", "exact"]
    assert second == ["index+exact"]

    async def search_in_a_task() -> None:
        note_path("exact")

    with record_paths() as outer:  # tasks started inside the recording record into it (asyncio copies the context)
        note_path("index")
        await asyncio.create_task(search_in_a_task())
    assert outer == ["index", "exact"]


def test_search_options_are_validated_with_the_option_named() -> None:
    assert SearchOptions.from_params({"ef_search": 64}, {"exact_selectivity": 0.1}) == SearchOptions(
        ef_search=64, exact_selectivity=0.1
    )
    for bad, message in [
        ({"exact_selectivity": 1.5}, "exact_selectivity"),
        ({"exact_selectivity": float("nan")}, "exact_selectivity"),
        ({"max_scan_tuples": 0}, "max_scan_tuples"),
        ({"filtered_ef_search": True}, "filtered_ef_search"),
        ({"retry_exact": 1}, "retry_exact"),
        ({"ef_serch": 40}, "did you mean 'ef_search'"),
    ]:
        with pytest.raises(ValueError, match=message):
            validate_search_options(bad)
    with pytest.raises(ValueError, match="mapping"):
        validate_search_options([("ef_search", 40)])


def test_parse_estimate_reads_both_branches_or_a_dropped_filter() -> None:
    plan = [{"Plan": {"Node Type": "Append", "Plans": [{"Plan Rows": 12}, {"Plan Rows": 1000}]}}]
    assert parse_estimate(plan) == (12.0, 1000.0)
    assert parse_estimate(json.dumps(plan)) == (12.0, 1000.0)
    # A constant-false filter ({"$in": []}) makes the planner drop its branch: nothing matches.
    assert parse_estimate([{"Plan": {"Node Type": "Seq Scan", "Plan Rows": 5}}]) == (0.0, 5.0)


async def test_a_filter_that_matches_nothing_returns_nothing(make_store: Callable[..., Any]) -> None:
    store = make_store(dimensions=4, index_type="hnsw", auto_create_index=True)
    await store.add_vectors(np.eye(4, dtype=np.float32), metadata=[{"g": i} for i in range(4)])
    assert await store.search([1, 0, 0, 0], k=3, filter={"g": {"$in": []}}) == []
    assert len(await store.search([1, 0, 0, 0], k=3, filter={"g": {"$in": [1, 2]}})) == 2


# -- index build settings --------------------------------------------------------------------------------------
def test_build_settings_size_memory_to_the_graph_and_never_lower_the_session() -> None:
    small = build_settings("hnsw", {"m": 16}, rows=10_000, dimensions=384, current_memory=64 * 2**20,
                           current_workers=2)
    assert small == {"maintenance_work_mem": f"{BUILD_MEMORY_FLOOR // 1024}kB"}
    mid = build_settings("hnsw", {"m": 16}, rows=200_000, dimensions=384, current_memory=64 * 2**20,
                         current_workers=0)
    assert mid["maintenance_work_mem"] == f"{hnsw_build_memory(200_000, 384, 16) // 1024}kB"
    assert 400 * 2**20 < hnsw_build_memory(200_000, 384, 16) < 700 * 2**20
    assert mid["max_parallel_maintenance_workers"] == "2"
    huge = build_settings("hnsw", {"m": 16}, rows=10_000_000, dimensions=1536, current_memory=0, current_workers=8)
    assert huge == {"maintenance_work_mem": f"{BUILD_MEMORY_CAP // 1024}kB"}
    assert build_settings("hnsw", {}, rows=1000, dimensions=8, current_memory=8 * 2**30, current_workers=4) == {}
    ivf = build_settings("ivfflat", {"lists": 1000}, rows=2_000_000, dimensions=768, current_memory=0,
                         current_workers=2)
    assert int(ivf["maintenance_work_mem"].removesuffix("kB")) * 1024 >= 50_000 * 768 * 4


async def test_index_build_leaves_no_setting_behind(
    make_store: Callable[..., PgVectorStore], data: dict[str, Any]
) -> None:
    store = make_store(dimensions=DIMS, pool_min_size=1, pool_max_size=1)  # one connection: the build's own
    await store.add_vectors(data["vectors"][:500])
    assert await store.create_index("hnsw")
    pool = await store.get_pool()
    async with pool.acquire() as conn:
        assert await conn.fetchval("SHOW maintenance_work_mem") == "64MB"
    assert await store.index_info() == "hnsw"


async def test_filtered_search_without_a_vector_index_is_exact_until_another_process_builds_one(
    make_store: Callable[..., PgVectorStore], admin: asyncpg.Connection, data: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No vector index: a filtered search is the exact scan it has to be, in one statement. An index that another
    store (another process) builds later is noticed once the store's look at the catalog is out of date."""
    store = make_store(dimensions=DIMS)
    await store.add_vectors(data["vectors"], metadata=data["metadata"])
    await admin.execute(f"ANALYZE {store.table.qualified}")
    query = data["queries"][1]
    with record_paths() as paths:
        for _ in range(2):
            hits = await store.search(query, k=K, filter={"g2": 1})
            assert [meta["n"] for _id, _score, meta in hits] == _truth(data, query, "g2", 1)
    assert paths == ["exact", "exact"]

    other = make_store(dimensions=DIMS)
    assert await other.create_index("hnsw", {"m": 16, "ef_construction": 64})
    with record_paths() as paths:
        await store.search(query, k=K, filter={"g2": 1})
    assert paths == ["exact"]  # within INDEX_PROBE_TTL the store still goes by its last look
    monkeypatch.setattr(indexes_module, "INDEX_PROBE_TTL", 0.0)
    with record_paths() as paths:
        hits = await store.search(query, k=K, filter={"g2": 1})
    assert paths == ["index"]
    assert len(hits) == K and all(meta["g2"] == 1 for _id, _score, meta in hits)
