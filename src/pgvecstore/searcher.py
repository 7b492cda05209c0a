"""`Searcher`: runs the plans of `pgvecstore.planner` through the store's pools and reads rows into results.

An unfiltered search is one statement (no transaction unless its settings need one). A filtered vector search
(a user filter or the store's domain) on a table with a vector index first takes the planner's estimate of the
filter's share (``EXPLAIN``, nothing read, cached). A very selective filter then gets an exact scan, one
statement like an unfiltered search (PostgreSQL plans it for its own values: `PoolRegistry.plans_each_statement`);
any other filter the index scan with a candidate list sized by that share, in a transaction that sets it, and
the exact scan again in that transaction when the index scan found fewer than ``k`` rows.
`pgvecstore.search_tuning` explains the numbers behind each step.

A vector search's plan (and a binary-quantized store's hybrid one) carries an exact twin (`SearchPlan.exact`):
the plan's statement serves the index scans, the twin every exact scan (a table without an index, a selective
filter, a short index scan). The twin orders by an expression no vector index serves, so PostgreSQL finds the
matching rows by the other indexes, and reads the other columns of the `k` nearest only; a binary-quantized
store's exact scans answer exactly rather than from Hamming candidates. Filtered plans are vector plans: they
always have one.
"""

from __future__ import annotations

import operator
from typing import Any

import asyncpg

from pgvecstore import search_tuning
from pgvecstore.connection import set_local
from pgvecstore.indexes import VectorIndexes
from pgvecstore.planner import SearchPlan, SearchPlanner, SearchRequest
from pgvecstore.pool import PoolRegistry
from pgvecstore.results import SearchResult, search_results
from pgvecstore.sql.params import Statement
from pgvecstore.text_search import TextSearch

_distance = operator.itemgetter(-1)  # the last column of a vector search's row

class Searcher:
    """Answers searches of one table: vector, filtered vector, text and hybrid."""

    def __init__(self, pools: PoolRegistry, planner: SearchPlanner, indexes: VectorIndexes, text: TextSearch) -> None:
        self._pools = pools
        self.planner = planner
        self._indexes = indexes
        self._text = text

    async def search(self, request: SearchRequest) -> list[SearchResult]:
        """The results of a search request, best first."""
        if request.mode == "vector":
            plan = self.planner.plan(request)
        else:
            self.planner.check(request)  # argument errors come before the look at the text-search column
            plan = self.planner.plan(request, await self._text.query_config())
        exact = plan.exact
        indexed = exact is not None and await self._indexes.has_index()  # text plans have no twin: no look
        if exact is None or (indexed and not plan.filtered):
            rows = await self._pools.replica_read("fetch", plan.sql, plan.args, plan.settings)
        elif not indexed:
            # No vector index: an exact scan of the matching rows in one statement, the exact twin (ids first).
            rows = await self._exact_scan(exact, filtered=plan.filtered)
        else:
            rows = await self._filtered(plan, exact)
        if plan.by_distance and len(rows) > 1:
            # IVFFlat's iterative scan may return rows slightly out of order; sorting k rows is cheap.
            rows = sorted(rows, key=_distance)
        return search_results(rows, plan.score, metadata=plan.metadata, vectors=plan.vectors, at=plan.at)

    async def _filtered(self, plan: SearchPlan, twin: Statement) -> list[Any]:
        """A filtered vector search on an indexed table (see the module docstring); `twin` is the plan's exact
        twin. The estimate (cached) decides; a selective filter's exact scan is one statement, the index scan
        and its exact re-run share a transaction with the index scan's settings."""
        share: float | None = None
        if plan.estimate is not None:
            matching, total = await self._estimate(plan)
            if search_tuning.use_exact_scan(plan.options, matching, total, plan.k):
                return await self._exact_scan(twin, filtered=True)
            share = search_tuning.estimated_share(matching, total)
        return await self._pools.replica_transaction(lambda conn: self._index_scan(conn, plan, twin, share))

    async def _exact_scan(self, twin: Statement, *, filtered: bool) -> list[Any]:
        """The exact twin, one statement. A filtered one must be planned for its own values (a generic plan
        picks the filter's index for one value and keeps it for all): the store's connections do that by
        themselves (`PoolRegistry.plans_each_statement`), else it sets `EXACT_SCAN_SETTINGS` in a transaction."""
        settings = None
        if filtered and not self._pools.plans_each_statement:
            settings = search_tuning.EXACT_SCAN_SETTINGS
        rows: list[Any] = await self._pools.replica_read("fetch", twin.sql, list(twin.args), settings)
        if filtered:
            search_tuning.note_path("exact")
        return rows

    async def _index_scan(self, conn: asyncpg.Connection, plan: SearchPlan, twin: Statement,
                          share: float | None) -> list[Any]:
        """The filtered index scan in the transaction of `conn`, with a candidate list sized by `share` (the
        estimated share of matching rows, or None), and the exact twin again when it returned fewer than k rows."""
        options, k = plan.options, plan.k
        scanned = plan.candidates or k  # the rows the index scan hands on (to the re-ranking, if any)
        await set_local(conn, search_tuning.search_settings(options, filtered=True, k=scanned, share=share))
        rows: list[Any] = await conn.fetch(plan.sql, *plan.args)
        path = "index"
        if search_tuning.should_retry_exact(options, len(rows), k, filtered=True, exact=False):
            await set_local(conn, search_tuning.EXACT_SCAN_SETTINGS)
            rows = await conn.fetch(twin.sql, *twin.args)
            path = "index+exact"
        search_tuning.note_path(path)
        return rows

    async def _estimate(self, plan: SearchPlan) -> tuple[float, float]:
        """The planner's estimate of the filter's matching rows and of the table's rows (cached; see
        `pgvecstore.planner.EstimateCache`)."""
        statement = plan.estimate
        assert statement is not None
        cache = self.planner.estimates
        key = cache.key(statement)
        cached = cache.get(key)
        if cached is not None:
            return cached
        plan_json = await self._pools.replica_read("fetchval", statement.sql, statement.args)
        matching, total = search_tuning.parse_estimate(plan_json)
        cache.put(key, matching, total)
        return matching, total
