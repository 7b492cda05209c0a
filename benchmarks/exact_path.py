"""The round trips of a selective filter's exact scan: one statement, against the same in a transaction.

    python benchmarks/exact_path.py --rows 1000000 --data-dir /tmp/pgvecstore-bench --output

Data: ``--rows`` random unit vectors (`common.make_vectors`, seed 0, normalised), loaded by ``add_vectors`` into a
store with ``indexed_metadata={"c": "int"}``, ``metadata_index="gin"`` and an IVFFlat index of one list (a vector
index, so that filtered searches take the estimate and choose their path, cheap to build); row ``i`` has the
metadata ``{"c": i % 100, "j": i % 100, "r": i % 1000}``: ``c`` a 1% indexed column, ``j`` the same values as a
jsonb key (the GIN), ``r`` a 0.1% jsonb key. Every filter is estimated under 3.5%, so every search is exact.

Measured, ``--queries`` random query vectors, each filter, the methods taking turns query by query (which goes
first rotating: the later runs of a query find its pages in the CPU's caches), two passes (the second timed), the
whole call timed:

- ``store.search`` as the store runs it on its own connections: the estimate (cached), then the exact statement
  alone (the connections plan every statement for its own values: `PoolRegistry.plans_each_statement`);
- ``store.search`` of a second store on the same table made with ``transaction_pooler=True`` (and the statement
  cache on): its exact scan runs in a transaction that first sets ``plan_cache_mode`` (``BEGIN``, ``set_config``,
  the statement, ``COMMIT``), as every store's did before, and as a store on an application's pool still does;
- the exact statement alone on a held connection (raw asyncpg, the store's SQL and arguments).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    add_server_arguments,
    command_line,
    load_unit_vectors,
    machine_description,
    make_vectors,
    markdown_table,
    print_report,
    server_dsn,
)
from pgvecstore import PgVectorStore
from pgvecstore.planner import SearchPlanner, SearchRequest
from pgvecstore.search_tuning import record_paths

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results" / "exact_path.md"
TABLE = "exact_path_bench"
K = 10
FILTERS: dict[str, tuple[str, int]] = {  # label -> (metadata key, values: the filter matches 1 / values)
    "indexed column, 1%": ("c", 100),
    "jsonb key (GIN), 1%": ("j", 100),
    "jsonb key (GIN), 0.1%": ("r", 1000),
}
METHODS = ("`store.search`, one statement (the store's own connections)",
           "`store.search`, in a transaction setting plan_cache_mode (before; an application's pool)",
           "the exact statement alone, raw asyncpg")


def store_options(dsn: str, dims: int) -> dict[str, Any]:
    return {"connection_string": dsn, "dimensions": dims, "id_type": "text", "table_name": TABLE,
            "text_search": False, "indexed_metadata": {"c": "int"}, "metadata_index": "gin",
            "index_type": "ivfflat", "index_params": {"lists": 1}, "statement_timeout": None,
            "pool_min_size": 1, "pool_max_size": 2}


async def load(store: PgVectorStore, rows: int, dims: int) -> None:
    """The rows, in batches, and the vector index, unless the table holds them already (a kept --data-dir)."""
    if await store.count() == rows and await store.index_info() is not None:
        return
    await load_unit_vectors(store, rows, dims, lambda i: {"c": i % 100, "j": i % 100, "r": i % 1000})
    await store.create_index()


async def run(args: argparse.Namespace) -> str:
    dsn = server_dsn(args.dsn, args.data_dir)
    options = store_options(dsn, args.dims)
    store = PgVectorStore(**options)
    before = PgVectorStore(**options, transaction_pooler=True)
    try:
        await load(store, args.rows, args.dims)
        pool = await store.get_pool()
        planner = SearchPlanner(store.config, store.table, args.dims)
        queries = make_vectors(args.queries, args.dims, seed=1)
        queries /= np.linalg.norm(queries, axis=1, keepdims=True)
        times: dict[tuple[str, str], list[float]] = {}
        async with pool.acquire() as held:
            await held.execute(f"VACUUM (ANALYZE) {store.table.qualified}")
            server = await held.fetchval("SELECT 'PostgreSQL ' || current_setting('server_version') "
                                         "|| ', shared_buffers ' || current_setting('shared_buffers')")

            def search(s: PgVectorStore) -> Callable[[np.ndarray, dict[str, int]], Awaitable[Any]]:
                return lambda q, f: s.search(q, k=K, filter=f)

            async def statement(q: np.ndarray, f: dict[str, int]) -> Any:
                exact = planner.plan(SearchRequest(q, k=K, filter=f)).exact
                assert exact is not None
                return await held.fetch(exact.sql, *exact.args)

            methods = dict(zip(METHODS, (search(store), search(before), statement), strict=True))
            with record_paths() as paths:
                for timed_pass in (False, True):
                    for i, query in enumerate(queries):
                        for label, (key, values) in FILTERS.items():
                            turn = list(methods.items())
                            for name, method in turn[i % 3:] + turn[:i % 3]:  # each first in turn (warm caches)
                                started = time.perf_counter()
                                await method(query, {key: i % values})
                                if timed_pass:
                                    elapsed = (time.perf_counter() - started) * 1000
                                    times.setdefault((label, name), []).append(elapsed)
    finally:
        await store.close()
        await before.close()
    rows = []
    for label in FILTERS:
        raw = statistics.median(times[(label, METHODS[2])])
        for name in METHODS:
            values = sorted(times[(label, name)])
            p50 = statistics.median(values)
            rows.append([label, name, f"{p50:.2f}", f"{values[int(len(values) * 0.9)]:.2f}", f"{p50 - raw:+.2f}"])
    return "\n".join([
        f"## A selective filter's exact scan: one statement against a transaction, {args.rows:,} x {args.dims} rows",
        "",
        markdown_table(["filter", "method", "p50 ms", "p90 ms", "p50 over the statement alone, ms"], rows, "llrrr"),
        "",
        f"{args.queries} queries a filter, the methods taking turns query by query (the first rotating), the "
        "second of two passes "
        f"timed; k={K}; the stores' searches took the exact path {paths.count('exact')} times in "
        f"{len(paths)} (`search_tuning.record_paths`). Data and methods: the docstring of "
        "`benchmarks/exact_path.py`.",
        f"Server: {server}. Machine: {machine_description()}.",
        f"Command: `{command_line()}`",
    ])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000, help="rows in the table (default 200,000)")
    parser.add_argument("--dims", type=int, default=384, help="vector dimensions (default 384)")
    parser.add_argument("--queries", type=int, default=100, help="queries a filter (default 100)")
    parser.add_argument("--output", nargs="?", const=str(DEFAULT_OUTPUT), default=None,
                        help=f"write the report there (default: {DEFAULT_OUTPUT})")
    add_server_arguments(parser)
    args = parser.parse_args(argv)
    if args.rows < 1000 or args.queries < 1 or args.dims < 1:
        parser.error("--rows must be at least 1,000 (the 0.1% filter's values), --queries and --dims at least 1")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    print_report(asyncio.run(run(args)), args.output)


if __name__ == "__main__":
    main()
