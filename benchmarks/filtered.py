"""Filtered search with an HNSW index: rows returned and recall@10 against the exact filtered answer.

Filters ``{"g2": v}``, ``{"g10": v}``, ``{"g100": v}``, ``{"g1000": v}`` match 50%, 10%, 1% and 0.1% of the rows
(each row's group values are uniform and independent of its vector; each query gets a random value). Methods:

- pgvector defaults: a plain index scan (no iterative scan, ``ef_search`` 40). The index finds 40 candidates and
  the filter keeps those that match: fewer than k rows once the filter is selective.
- iterative scan only: ``hnsw.iterative_scan = strict_order`` with pgvector's other defaults (what the store's
  connections do without `pgvecstore.search_tuning`).
- tuned: `PgVectorStore.search` itself with its default search options (`pgvecstore.search_tuning`): planner
  estimate, exact scan for very selective filters, a candidate list sized by the estimate for the index scan,
  exact re-run when the index scan comes back short. The share of its searches that ended in an exact scan
  comes from `search_tuning.record_paths`.
- exact scan: index scans disabled; reads and sorts every matching row (the reference of speed, not of recall,
  which comes from numpy).

The reference lines are raw SQL built by the store's own `TableSQL`, with the settings each names.
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
from pgvecstore import PgVectorStore
from pgvecstore.connection import set_local
from pgvecstore.filters import compile_filter
from pgvecstore.search_tuning import EXACT_SCAN_SETTINGS, record_paths
from pgvecstore.sql import Params, TableSQL

METHODS = {
    "default": "pgvector defaults (no iterative scan, ef_search 40)",
    "iterative": "iterative scan only (strict_order, ef_search 40)",
    "tuned": "core tuned (`search_tuning` defaults): `store.search`",
    "exact": "exact scan (index scans off)",
}
# Transaction-local settings of the raw-SQL reference methods.
REFERENCE_SETTINGS: dict[str, dict[str, str]] = {
    "default": {"hnsw.iterative_scan": "off", "hnsw.ef_search": "40"},
    "iterative": {"hnsw.iterative_scan": "strict_order", "hnsw.ef_search": "40"},
    "exact": EXACT_SCAN_SETTINGS,
}
SELECTIVITY_LABEL = {"g2": "50%", "g10": "10%", "g100": "1%", "g1000": "0.1%"}


def _where(table: TableSQL, params: Params, filter: Mapping[str, Any] | None) -> str:
    compiled = compile_filter(filter, table, params)
    return "WHERE TRUE" if compiled == "TRUE" else f"WHERE ({compiled})"


async def reference_search(
    conn: asyncpg.Connection, table: TableSQL, method: str, query: np.ndarray, k: int,
    filter: Mapping[str, Any] | None,
) -> list[int]:
    """Row numbers (metadata ``n``) found by one raw-SQL search of a reference `method` (not "tuned")."""
    params = Params()
    query_ph, k_ph = params.add(query), params.add(k)
    sql = table.search(_where(table, params, filter), query_ph, k_ph, True)
    async with conn.transaction():
        await set_local(conn, REFERENCE_SETTINGS[method])
        rows = await conn.fetch(sql, *params.values)
    return [int(json.loads(row[1])["n"]) for row in rows]


async def store_search(store: PgVectorStore, query: np.ndarray, k: int, filter: Mapping[str, Any] | None) -> list[int]:
    """Row numbers (metadata ``n``) found by `store.search` with its default search options."""
    hits = await store.search(query, k=k, filter=filter)
    return [int(meta["n"]) for _id, _score, meta in hits if meta]


async def measure(
    conn: asyncpg.Connection,
    store: PgVectorStore,
    queries: np.ndarray,
    values: dict[str, np.ndarray],
    truth: dict[str, np.ndarray],
    matches: dict[str, np.ndarray],
    k: int,
    methods: Sequence[str] = tuple(METHODS),
) -> list[dict[str, Any]]:
    """For each filter group and method: rows returned, share of full answers, recall@k, speed, and for the
    store the share of searches answered by an exact scan. `conn` runs the reference methods' raw SQL on the
    store's table; `store` runs "tuned"."""
    from common import recall

    results = []
    for key in SELECTIVITY_GROUPS:
        for method in methods:
            found: list[list[int]] = [[] for _ in queries]

            async def one(i: int, key: str = key, method: str = method, found: list[list[int]] = found) -> None:
                filter = {key: int(values[key][i])}
                if method == "tuned":
                    found[i] = await store_search(store, queries[i], k, filter)
                else:
                    found[i] = await reference_search(conn, store.table, method, queries[i], k, filter)

            for i in range(min(3, len(queries))):  # warm-up of this statement shape
                await one(i)
            with record_paths() as paths:
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
                    # Searches that ended in an exact scan (the estimate chose it, or the index scan came back short).
                    "exact_share": float(np.mean([p != "index" for p in paths])) if paths else None,
                }
            )
    return results
