"""Filtered search with an HNSW index returns k rows, and the right ones, even when the filter is selective.

pgvector's HNSW index applies a WHERE clause after finding its candidates, so a plain index scan under a 1% filter
returns a handful of rows. These tests check what a user sees: ``k`` rows whenever ``k`` rows match, every one
matching the filter, and recall@10 of at least 0.95 against the exact filtered answer (computed with numpy).
They run through `PgVectorStore.search`, and through the `search_tuning` decisions around the store's own SQL
(the prototype in ``benchmarks/filtered.py`` that the store's search follows).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np
import pytest

from pgvecstore import PgVectorStore
from pgvecstore.indexes import BUILD_MEMORY_CAP, BUILD_MEMORY_FLOOR, build_settings, hnsw_build_memory
from pgvecstore.search_tuning import (
    EXACT_SCAN_SETTINGS,
    SearchOptions,
    parse_estimate,
    search_settings,
    should_retry_exact,
    use_exact_scan,
    validate_search_options,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import filtered as prototype

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
                         data: dict[str, Any]) -> PgVectorStore:
    store = make_store(dimensions=DIMS, index_type="hnsw")
    await store.add_vectors(data["vectors"], metadata=data["metadata"])
    assert await store.create_index("hnsw", {"m": 16, "ef_construction": 64})
    await admin.execute(f"ANALYZE {store.table.qualified_table}")  # the planner's estimates need statistics
    return store


def _truth(data: dict[str, Any], query: np.ndarray, key: str, value: int) -> list[int]:
    rows = np.flatnonzero(data["labels"][key] == value)
    scores = data["vectors"][rows] @ query
    return [int(r) for r in rows[np.argsort(-scores)[:K]]]


def _recall(found: list[list[int]], truth: list[list[int]]) -> float:
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth, strict=True)]))


# -- through the store -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("key", ["g100", "g1000"])
async def test_store_filtered_search_returns_k_matching_rows_with_high_recall(
    make_store: Callable[..., PgVectorStore], admin: asyncpg.Connection, data: dict[str, Any], key: str
) -> None:
    store = await _indexed_store(make_store, admin, data)
    found, truth = [], []
    for i, query in enumerate(data["queries"]):
        value = int(data["labels"][key][i * 37])
        hits = await store.search(query, k=K, filter={key: value})
        assert len(hits) == K, f"{key}={value}: {len(hits)} rows, {int((data['labels'][key] == value).sum())} match"
        assert all(meta[key] == value for _id, _score, meta in hits)
        scores = [score for _id, score, _meta in hits]
        assert scores == sorted(scores, reverse=True)
        found.append([meta["n"] for _id, _score, meta in hits])
        truth.append(_truth(data, query, key, value))
    assert _recall(found, truth) >= 0.95


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
    # Estimate off, no exact re-run: the index scan alone (iterative, so still k rows at 1% of 6,000 rows).
    hits = await store.search(data["queries"][0], k=K, filter={"g100": value},
                              search_params={"exact_selectivity": 0, "retry_exact": False, "filtered_ef_search": 40})
    assert len(hits) == K
    with pytest.raises(ValueError, match="exact_selectivity"):
        await store.search(data["queries"][0], k=K, filter={"g100": value}, search_params={"exact_selectivity": 2})


async def test_store_unfiltered_search_with_an_index_returns_k_rows(
    make_store: Callable[..., PgVectorStore], admin: asyncpg.Connection, data: dict[str, Any]
) -> None:
    store = await _indexed_store(make_store, admin, data)
    hits = await store.search(data["queries"][0], k=K)
    assert len(hits) == K
    truth = [int(r) for r in np.argsort(-(data["vectors"] @ data["queries"][0]))[:K]]
    assert len({meta["n"] for _id, _score, meta in hits} & set(truth)) >= 8


# -- the search_tuning decisions around the store's SQL --------------------------------------------------------
@pytest.mark.parametrize("key", list(GROUPS))
async def test_tuned_search_returns_k_rows_with_recall_at_every_selectivity(
    make_store: Callable[..., PgVectorStore], admin: asyncpg.Connection, data: dict[str, Any], key: str
) -> None:
    store = await _indexed_store(make_store, admin, data)
    pool = await store.get_pool()
    options = SearchOptions()
    found, truth, paths = [], [], []
    async with pool.acquire() as conn:
        for i, query in enumerate(data["queries"]):
            value = int(data["labels"][key][i * 37])
            rows, path = await prototype.tuned_search(conn, store.table, query, K, {key: value}, options)
            assert len(rows) == K
            assert all(json.loads(row[1])[key] == value for row in rows)
            found.append(prototype.row_numbers(rows))
            truth.append(_truth(data, query, key, value))
            paths.append(path)
    assert _recall(found, truth) >= 0.95
    if key in ("g2", "g10"):
        assert paths.count("index") >= len(paths) - 2  # broad filters use the index
    if key == "g1000":
        assert "index" not in paths  # 0.1%: the planner's estimate sends every query to the exact scan


async def test_plain_index_scan_loses_rows_under_a_selective_filter(
    make_store: Callable[..., PgVectorStore], admin: asyncpg.Connection, data: dict[str, Any]
) -> None:
    """The problem the tuning solves: without iterative scans, HNSW returns fewer than k rows at 1%."""
    store = await _indexed_store(make_store, admin, data)
    pool = await store.get_pool()
    async with pool.acquire() as conn:
        counts = []
        for i, query in enumerate(data["queries"][:10]):
            value = int(data["labels"]["g100"][i * 37])
            rows, _ = await prototype.method_search(conn, store.table, "default", query, K, {"g100": value},
                                                   SearchOptions())
            counts.append(len(rows))
    assert min(counts) < K


async def test_planner_estimate_parses_and_orders_selectivities(
    make_store: Callable[..., PgVectorStore], admin: asyncpg.Connection, data: dict[str, Any]
) -> None:
    store = await _indexed_store(make_store, admin, data)
    from pgvecstore.filters import compile_filter
    from pgvecstore.sql import Params

    shares = {}
    for key in ("g2", "g1000"):
        params = Params()
        where = f"WHERE {compile_filter({key: 1}, store.table, params)}"
        plan = await admin.fetchval(store.table.estimate_rows(where), *params.values)
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
    assert settings["hnsw.ef_search"] == "200"
    assert settings["hnsw.max_scan_tuples"] == "20000"
    assert search_settings(SearchOptions(max_probes=7), filtered=True, k=10)["ivfflat.max_probes"] == "7"
    assert search_settings(SearchOptions(), filtered=True, k=5000)["hnsw.ef_search"] == "1000"


def test_exact_scan_decision() -> None:
    options = SearchOptions()
    assert use_exact_scan(options, matching=20, total=200_000, k=10)  # 0.01%
    assert use_exact_scan(options, matching=2_000, total=200_000, k=10)  # 1%
    assert not use_exact_scan(options, matching=20_000, total=200_000, k=10)  # 10%
    assert not use_exact_scan(SearchOptions(exact_selectivity=0), matching=1, total=200_000, k=10)
    # A filter that an iterative scan could not satisfy within max_scan_tuples goes exact whatever the share.
    assert use_exact_scan(SearchOptions(exact_selectivity=0.001, max_scan_tuples=100), 5_000, 100_000, 10)
    assert not use_exact_scan(options, matching=0, total=0, k=10)
    assert should_retry_exact(options, 3, 10, filtered=True, exact=False)
    assert not should_retry_exact(options, 3, 10, filtered=True, exact=True)
    assert not should_retry_exact(options, 3, 10, filtered=False, exact=False)
    assert not should_retry_exact(SearchOptions(retry_exact=False), 3, 10, filtered=True, exact=False)
    assert EXACT_SCAN_SETTINGS["enable_indexscan"] == "off"


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
