"""Filtered search with an HNSW index: rows returned and recall@10 against the exact filtered answer.

Filters ``{"g2": v}``, ``{"g10": v}``, ``{"g100": v}``, ``{"g1000": v}`` match 50%, 10%, 1% and 0.1% of the rows
(each row's group values are uniform and independent of its vector; each query gets a random value). Methods:

- pgvector defaults: a plain index scan (no iterative scan, ``ef_search`` 40). The index finds 40 candidates and
  the filter keeps those that match: fewer than k rows once the filter is selective.
- iterative scan only: ``hnsw.iterative_scan = strict_order`` with pgvector's other defaults (what the store's
  connections do without `pgvecstore.search_tuning`).
- tuned: `pgvecstore.search_tuning` as `tuned_search` applies it: planner estimate, exact scan for very selective
  filters, wider candidate list for the index scan, exact re-run when the index scan comes back short.
- exact scan: index scans disabled; reads and sorts every matching row (the reference of speed, not of recall,
  which comes from numpy).

`tuned_search` is the prototype of `PgVectorStore.search`'s wiring of `search_tuning` (same SQL builders, same
decisions); once the store does it, `store.search` gives the same results.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import SELECTIVITY_GROUPS, Latencies, measure_queries
from pgvecstore.connection import set_local
from pgvecstore.filters import compile_filter
from pgvecstore.search_tuning import (
    EXACT_SCAN_SETTINGS,
    SearchOptions,
    parse_estimate,
    search_settings,
    should_retry_exact,
    use_exact_scan,
    wants_estimate,
)
from pgvecstore.sql import Params, TableSQL

METHODS = {
    "default": "pgvector defaults (no iterative scan, ef_search 40)",
    "iterative": "iterative scan only (strict_order, ef_search 40)",
    "tuned": "core tuned (`search_tuning` defaults)",
    "exact": "exact scan (index scans off)",
}
SELECTIVITY_LABEL = {"g2": "50%", "g10": "10%", "g100": "1%", "g1000": "0.1%"}


def _where(table: TableSQL, params: Params, filter: Mapping[str, Any] | None) -> str:
    compiled = compile_filter(filter, table, params)
    return "WHERE TRUE" if compiled == "TRUE" else f"WHERE ({compiled})"


async def _fetch(conn: asyncpg.Connection, sql: str, values: list[Any], settings: Mapping[str, str]) -> list[Any]:
    async with conn.transaction():
        await set_local(conn, settings)
        return await conn.fetch(sql, *values)


async def tuned_search(
    conn: asyncpg.Connection,
    table: TableSQL,
    query: np.ndarray,
    k: int,
    filter: Mapping[str, Any] | None,
    options: SearchOptions,
) -> tuple[list[Any], str]:
    """Search as `PgVectorStore.search` does with `search_tuning` wired in; returns rows and the path taken
    ('index', 'exact' or 'index+exact')."""
    filtered = filter is not None
    params = Params()
    query_ph, k_ph = params.add(query), params.add(k)
    sql = table.search(_where(table, params, filter), query_ph, k_ph, True)
    exact = False
    if wants_estimate(options, filtered=filtered):
        estimate = Params()
        where = _where(table, estimate, filter)
        plan = await conn.fetchval(table.estimate_rows(where), *estimate.values)
        matching, total = parse_estimate(plan)
        exact = use_exact_scan(options, matching, total, k)
    settings = EXACT_SCAN_SETTINGS if exact else search_settings(options, filtered=filtered, k=k)
    rows = await _fetch(conn, sql, params.values, settings)
    if should_retry_exact(options, len(rows), k, filtered=filtered, exact=exact):
        return await _fetch(conn, sql, params.values, EXACT_SCAN_SETTINGS), "index+exact"
    return rows, "exact" if exact else "index"


async def method_search(
    conn: asyncpg.Connection, table: TableSQL, method: str, query: np.ndarray, k: int,
    filter: Mapping[str, Any] | None, options: SearchOptions,
) -> tuple[list[Any], str]:
    """One search by `method` (a key of METHODS)."""
    if method == "tuned":
        return await tuned_search(conn, table, query, k, filter, options)
    params = Params()
    query_ph, k_ph = params.add(query), params.add(k)
    sql = table.search(_where(table, params, filter), query_ph, k_ph, True)
    settings = {
        "default": {"hnsw.iterative_scan": "off", "hnsw.ef_search": "40"},
        "iterative": {"hnsw.iterative_scan": "strict_order", "hnsw.ef_search": "40"},
        "exact": EXACT_SCAN_SETTINGS,
    }[method]
    return await _fetch(conn, sql, params.values, settings), method


def row_numbers(rows: Sequence[Any]) -> list[int]:
    """The data-set row numbers (metadata ``n``) of search results."""
    return [int(json.loads(row[1])["n"]) for row in rows]


async def measure(
    conn: asyncpg.Connection,
    table: TableSQL,
    queries: np.ndarray,
    values: dict[str, np.ndarray],
    truth: dict[str, np.ndarray],
    matches: dict[str, np.ndarray],
    k: int,
    options: SearchOptions,
    methods: Sequence[str] = tuple(METHODS),
) -> list[dict[str, Any]]:
    """For each filter group and method: rows returned, share of full answers, recall@k, speed, paths taken."""
    from common import recall

    results = []
    for key in SELECTIVITY_GROUPS:
        for method in methods:
            found: list[list[int]] = [[] for _ in queries]
            paths: list[str] = [""] * len(queries)

            async def one(i: int, key: str = key, method: str = method, found: list[list[int]] = found,
                          paths: list[str] = paths) -> None:
                rows, paths[i] = await method_search(
                    conn, table, method, queries[i], k, {key: int(values[key][i])}, options
                )
                found[i] = row_numbers(rows)

            for i in range(min(3, len(queries))):  # warm-up of this statement shape
                await one(i)
            timing: Latencies = await measure_queries(method, one, len(queries))
            full = [len(f) >= min(k, int(m)) for f, m in zip(found, matches[key], strict=True)]
            results.append(
                {
                    "group": key,
                    "selectivity": SELECTIVITY_LABEL[key],
                    "method": method,
                    "returned": float(np.mean([len(f) for f in found])),
                    "full": float(np.mean(full)),
                    "recall": recall(found, truth[key], k),
                    "qps": timing.qps,
                    "p50_ms": timing.p50_ms,
                    "p99_ms": timing.p99_ms,
                    "exact_share": float(np.mean([p != "index" for p in paths])),
                }
            )
    return results
