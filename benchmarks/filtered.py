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
- exact scan: the store's exact statement (its ORDER BY no vector index serves); reads and sorts every matching
  row (the reference of speed, not of recall, which comes from numpy).

The reference lines run the store's own vector-search statement (`pgvecstore.sql.queries.vector_search`) as raw
SQL, with the settings each names.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import asyncpg
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import SELECTIVITY_GROUPS, Latencies, measure_queries
from pgvecstore import PgVectorStore
from pgvecstore.connection import set_local
from pgvecstore.metric import Metric
from pgvecstore.search_tuning import EXACT_SCAN_SETTINGS, record_paths
from pgvecstore.sql import queries

Filter = Mapping[str, Any] | None
# One method's search: row numbers (metadata ``n``) of the `k` rows found for a query under a filter. `conn` is a
# raw connection to the store's table (for the raw-SQL reference lines), `store` the store itself.
Search = Callable[[asyncpg.Connection, PgVectorStore, np.ndarray, int, Filter], Awaitable[list[int]]]


def reference_search(settings: Mapping[str, str], exact: bool = False) -> Search:
    """A raw-SQL reference line: the store's own vector-search statement (`exact`: its exact scan's), run with
    these transaction-local `settings` instead of the store's search tuning."""

    async def search(
        conn: asyncpg.Connection, store: PgVectorStore, query: np.ndarray, k: int, filter: Filter
    ) -> list[int]:
        statement, _ = queries.vector_search(
            store.table, Metric(store.config.metric), store.config.domain_id, filter, query, k,
            metadata=True, vectors=False, exact=exact,
        )
        async with conn.transaction():
            await set_local(conn, settings)
            rows = await conn.fetch(statement.sql, *statement.args)
        return [int(json.loads(row[1])["n"]) for row in rows]  # rows: id, metadata (JSON text), ...

    return search


async def store_search(
    conn: asyncpg.Connection, store: PgVectorStore, query: np.ndarray, k: int, filter: Filter
) -> list[int]:
    """`store.search` with its default search options (`conn` unused)."""
    hits = await store.search(query, k=k, filter=filter)
    return [int(meta["n"]) for _id, _score, meta in hits if meta]


class Method(NamedTuple):
    """One line of the table: its label and its search."""

    label: str
    search: Search


METHODS: dict[str, Method] = {
    "default": Method(
        "pgvector defaults (no iterative scan, ef_search 40)",
        reference_search({"hnsw.iterative_scan": "off", "hnsw.ef_search": "40"}),
    ),
    "iterative": Method(
        "iterative scan only (strict_order, ef_search 40)",
        reference_search({"hnsw.iterative_scan": "strict_order", "hnsw.ef_search": "40"}),
    ),
    "tuned": Method("core tuned (`search_tuning` defaults): `store.search`", store_search),
    "exact": Method("exact scan (the store's exact statement)", reference_search(EXACT_SCAN_SETTINGS, exact=True)),
}
SELECTIVITY_LABEL = {"g2": "50%", "g10": "10%", "g100": "1%", "g1000": "0.1%"}


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

            async def one(
                i: int, key: str = key, search: Search = METHODS[method].search, found: list[list[int]] = found
            ) -> None:
                found[i] = await search(conn, store, queries[i], k, {key: int(values[key][i])})

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
