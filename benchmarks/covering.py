"""A covering index (`covering_metadata`) against the heap's bitmap scan, for one selective filter, on one table.

    python benchmarks/covering.py --rows 1000000 --data-dir /tmp/pgvecstore-bench --output

Data: ``--rows`` random unit vectors (`common.make_vectors`, seed 0, normalised), loaded by ``add_vectors`` into a
store with ``indexed_metadata={"c": "int"}`` and ``metadata_index="gin"``; row ``i`` has the metadata
``{"c": i % share, "j": i % share}`` (``--share 100``: each value matches 1% of the rows), so ``c`` is an indexed
column and ``j`` the same values as a jsonb key. Then a second store with ``covering_metadata=["c"]`` opens the
table (its ``initialize()`` builds the covering index: timed), and ``VACUUM ANALYZE``.

Measured, ``--queries`` random query vectors, the methods taking turns query by query, two passes (the second
timed): the store's exact statement for the filter on ``c`` (raw asyncpg, in a transaction with the exact path's
settings; the statement alone timed) as the planner runs it (an index-only scan of the covering index), the same
statement with index scans off (a bitmap heap scan of the column's b-tree, what the exact path did before covering
indexes), the exact statement for the filter on ``j`` (a bitmap heap scan of the GIN, each row re-checked), and
``store.search`` with each filter (the whole call: the planner's estimate, cached, the transaction and its
settings). Every filtered search is exact here (`search_tuning.exact_selectivity`: 3.5%). The EXPLAIN (ANALYZE,
BUFFERS) of the first query's statements is printed under the table.

For figures at scale, give the embedded server room for the table and both of its copies of the vectors:
``compact_scale.py --shared-buffers`` sets ``shared_buffers`` in a ``--data-dir`` that this script can reuse.
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
from compact_report import short_plan
from pgvecstore import PgVectorStore
from pgvecstore.connection import set_local
from pgvecstore.planner import SearchPlanner, SearchRequest
from pgvecstore.search_tuning import EXACT_SCAN_SETTINGS

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results" / "covering.md"
TABLE = "covering_bench"
K = 10
HEAP_SETTINGS = {**EXACT_SCAN_SETTINGS, "enable_indexscan": "off", "enable_indexonlyscan": "off"}


def store_options(dsn: str, dims: int) -> dict[str, Any]:
    return {"connection_string": dsn, "dimensions": dims, "id_type": "text", "table_name": TABLE,
            "text_search": False, "indexed_metadata": {"c": "int"}, "metadata_index": "gin",
            "statement_timeout": None, "pool_min_size": 1, "pool_max_size": 2}


async def load(store: PgVectorStore, rows: int, dims: int, share: int) -> None:
    """The rows, in batches, unless the table holds them already (a kept --data-dir)."""
    if await store.count() != rows:
        await load_unit_vectors(store, rows, dims, lambda i: {"c": i % share, "j": i % share})


async def run(args: argparse.Namespace) -> str:
    dsn = server_dsn(args.dsn, args.data_dir)
    options = store_options(dsn, args.dims)
    plain = PgVectorStore(**options)
    await load(plain, args.rows, args.dims, args.share)
    started = time.perf_counter()
    store = PgVectorStore(**options, covering_metadata=["c"])
    await store.initialize()
    build_s = time.perf_counter() - started
    planner = SearchPlanner(store.config, store.table, args.dims)
    queries = make_vectors(args.queries, args.dims, seed=1)
    pool = await store.get_pool()
    async with pool.acquire() as conn:
        await conn.execute(f"VACUUM (ANALYZE) {store.table.qualified}")

        def exact(key: str, settings: dict[str, str]) -> Callable[[int], Awaitable[float]]:
            """The statement alone is timed (planned before, its settings set before the clock)."""
            plans = [planner.plan(SearchRequest(q, k=K, filter={key: i % args.share})).exact
                     for i, q in enumerate(queries)]

            async def statement(i: int) -> float:
                plan = plans[i]
                assert plan is not None
                async with conn.transaction():
                    await set_local(conn, settings)
                    started = time.perf_counter()
                    await conn.fetch(plan.sql, *plan.args)
                    return time.perf_counter() - started
            return statement

        def search(key: str) -> Callable[[int], Awaitable[float]]:
            async def call(i: int) -> float:
                started = time.perf_counter()
                await store.search(queries[i], k=K, filter={key: i % args.share})
                return time.perf_counter() - started
            return call

        methods = {
            "exact statement, indexed column, covering index (index-only scan)": exact("c", EXACT_SCAN_SETTINGS),
            "exact statement, indexed column, index scans off (bitmap heap scan)": exact("c", HEAP_SETTINGS),
            "exact statement, jsonb key (GIN bitmap heap scan)": exact("j", EXACT_SCAN_SETTINGS),
            "`store.search`, indexed column (covered)": search("c"),
            "`store.search`, jsonb key": search("j"),
        }
        times: dict[str, list[float]] = {name: [] for name in methods}
        for timed_pass in (False, True):
            for i in range(args.queries):
                for name, method in methods.items():
                    seconds = await method(i)
                    if timed_pass:
                        times[name].append(seconds * 1000)
        plans = []
        for key, settings in (("c", EXACT_SCAN_SETTINGS), ("c", HEAP_SETTINGS), ("j", EXACT_SCAN_SETTINGS)):
            plan = planner.plan(SearchRequest(queries[0], k=K, filter={key: 0}))
            assert plan.exact is not None
            async with conn.transaction():
                await set_local(conn, settings)
                lines = await conn.fetch(f"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) {plan.exact.sql}", *plan.exact.args)
            plans.append("\n".join(short_plan([line[0] for line in lines])))
    await store.close()
    await plain.close()
    rows = [
        [name, f"{statistics.median(values):.2f}", f"{sorted(values)[int(len(values) * 0.9)]:.2f}"]
        for name, values in times.items()
    ]
    return "\n".join([
        f"## Covering index against the heap: a {100 / args.share:g}% filter, {args.rows:,} x {args.dims} rows",
        "",
        markdown_table(["method", "p50 ms", "p90 ms"], rows),
        "",
        f"{args.queries} queries a method, the methods taking turns, the second of two passes timed; k={K}. "
        f"The covering index was built by `initialize()` in {build_s:.1f} s.",
        f"Machine: {machine_description()}.",
        f"Command: `{command_line()}`",
        "",
        "<details><summary>EXPLAIN (ANALYZE, BUFFERS) of the first query: covering index, index scans off, "
        "jsonb key</summary>",
        "",
        *[f"```\n{plan}\n```\n" for plan in plans],
        "</details>",
    ])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000, help="rows in the table (default 200,000)")
    parser.add_argument("--dims", type=int, default=384, help="vector dimensions (default 384)")
    parser.add_argument("--share", type=int, default=100, help="each filter value matches 1/SHARE of the rows")
    parser.add_argument("--queries", type=int, default=60, help="queries a method (default 60)")
    parser.add_argument("--output", nargs="?", const=str(DEFAULT_OUTPUT), default=None,
                        help=f"write the report there (default: {DEFAULT_OUTPUT})")
    add_server_arguments(parser)
    args = parser.parse_args(argv)
    if args.rows < args.share or args.share < 2 or args.queries < 1 or args.dims < 1:
        parser.error("--rows must be at least --share, --share at least 2, --queries and --dims at least 1")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    print_report(asyncio.run(run(args)), args.output)


if __name__ == "__main__":
    main()
