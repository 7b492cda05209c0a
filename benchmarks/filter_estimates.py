"""How right the planner's estimates of metadata filters are, by the metadata column's statistics target.

    python benchmarks/filter_estimates.py --rows 1000000 --data-dir /tmp/pgvecstore-bench --output

A filtered search asks the planner how many rows its filter matches and, at or below ``exact_selectivity`` (3.5%),
scans the matching rows exactly; above, it takes the vector index (`pgvecstore.search_tuning`). PostgreSQL
estimates ``metadata @> '{"key": value}'`` by testing the histogram of whole metadata documents it sampled, so
with the default statistics target (100: about 100 documents) a 1% filter is estimated at 0, 1, 2, 3, 4 ... in
100, and now and then goes to the index, a path that at 1% is slower and less right than the exact scan
(docs/selective-filters.md). The store's ``metadata_statistics`` option raises the target. This script measures,
for each target:

- ``ANALYZE`` of the table (its sample is 300 x the largest target of its columns, so the metadata's target
  decides how many rows every column's statistics read), each run timed, and the peak memory of the server
  process that ran them (``VmHWM``, on the embedded server only; the sample's rows are held in memory whole,
  vectors included);
- after each ``ANALYZE`` (a new random sample): the estimate of every filter value, by the store's own estimate
  statement (`SearchPlanner`) and decision (`search_tuning.use_exact_scan`, default options, k=10): how many
  searches of each filter family would take the exact scan and how many the index, the range of the estimates,
  and the time of one estimate (an ``EXPLAIN``, planning only; the store caches it per filter for 60 s).

Data: ``--rows`` random unit vectors (`common.load_unit_vectors`, seed 0) in a store with
``metadata_index="gin"``, ``text_search=False``; row ``i`` has the metadata ``{"n": i, "tenth": v % 10,
"bucket": v % 100, "rare": v % 1000}`` where ``v`` is row i's place in a seeded random permutation of the rows:
``n`` makes every document distinct, as a chunk's own metadata does, and the filter keys do not follow it (the
histogram is in ``n``'s order: keys made from ``i`` itself would repeat along it and every sample of the whole
table would see one value). The filters: ``tenth`` (10%, 10 values), ``bucket`` (1%, 100 values) and ``rare``
(0.1%, 1,000 values).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    add_server_arguments,
    command_line,
    load_unit_vectors,
    machine_description,
    markdown_table,
    print_report,
    server_dsn,
)
from pgvecstore import PgVectorStore
from pgvecstore.planner import SearchPlanner, SearchRequest
from pgvecstore.search_tuning import SearchOptions, parse_estimate, use_exact_scan

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results" / "filter_estimates.md"
TABLE = "filter_estimates_bench"
K = 10
FILTERS: dict[str, int] = {"tenth": 10, "bucket": 100, "rare": 1000}  # metadata key -> values (share 1 / values)


def store_options(dsn: str, dims: int, target: int | None) -> dict[str, Any]:
    return {"connection_string": dsn, "dimensions": dims, "id_type": "text", "table_name": TABLE,
            "text_search": False, "metadata_index": "gin", "metadata_statistics": target,
            "statement_timeout": None, "pool_min_size": 1, "pool_max_size": 1}


def metadata_maker(rows: int) -> Callable[[int], dict[str, int]]:
    """Row i's metadata: ``n`` = i, the filter keys from a seeded permutation of the rows (see the docstring)."""
    order = np.random.default_rng(1).permutation(rows)

    def metadata_of(i: int) -> dict[str, int]:
        v = int(order[i])
        return {"n": i, "tenth": v % 10, "bucket": v % 100, "rare": v % 1000}

    return metadata_of


async def measure(store: PgVectorStore, dims: int, runs: int, *, local: bool) -> dict[str, Any]:
    """ANALYZE `runs` times; after each, every filter value's estimate and the path it would choose. `local`: the
    server runs on this machine (the embedded one), so its process's memory can be read."""
    planner = SearchPlanner(store.config, store.table, dims)
    query = np.ones(dims, dtype=np.float32) / np.sqrt(dims)
    options = SearchOptions()
    analyze_s: list[float] = []
    estimate_ms: list[float] = []
    shares: dict[str, list[float]] = {key: [] for key in FILTERS}
    index_paths: dict[str, list[int]] = {key: [] for key in FILTERS}
    pool = await store.get_pool()
    async with pool.acquire() as conn:  # a new server process: each store has its own pool of one
        pid = await conn.fetchval("SELECT pg_backend_pid()")
        for _ in range(runs):
            started = time.perf_counter()
            await conn.execute(f"ANALYZE {store.table.qualified}")
            analyze_s.append(time.perf_counter() - started)
            for key, values in FILTERS.items():
                to_index = 0
                for value in range(values):
                    estimate = planner.plan(SearchRequest(query, k=K, filter={key: value})).estimate
                    assert estimate is not None
                    started = time.perf_counter()
                    plan = await conn.fetchval(estimate.sql, *estimate.args)
                    estimate_ms.append((time.perf_counter() - started) * 1000)
                    matching, total = parse_estimate(plan)
                    shares[key].append(matching / total)
                    to_index += not use_exact_scan(options, matching, total, K)
                index_paths[key].append(to_index)
    return {"analyze_s": analyze_s, "estimate_ms": estimate_ms, "shares": shares, "index_paths": index_paths,
            "peak_mib": peak_memory_mib(pid) if local else None}


def peak_memory_mib(pid: int) -> float | None:
    """The peak resident memory (``VmHWM``) of this machine's process `pid` (None if it cannot be read). ANALYZE
    reads through a small ring of shared buffers, so its server process's peak is mostly its sample."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def pct(share: float) -> str:
    return f"{share * 100:.2f}%"


async def run(args: argparse.Namespace) -> str:
    dsn = server_dsn(args.dsn, args.data_dir)
    results: dict[int, dict[str, Any]] = {}
    first = PgVectorStore(**store_options(dsn, args.dims, None))
    try:
        if await first.count() != args.rows:
            await load_unit_vectors(first, args.rows, args.dims, metadata_maker(args.rows))
        pool = await first.get_pool()
        async with pool.acquire() as conn:
            await conn.execute(f"VACUUM {first.table.qualified}")  # merges the GIN's pending list
            server = await conn.fetchval("SELECT 'PostgreSQL ' || current_setting('server_version')")
    finally:
        await first.close()
    for target in args.targets:
        store = PgVectorStore(**store_options(dsn, args.dims, target))  # initialize() sets the target
        try:
            print(f"  metadata_statistics={target}", file=sys.stderr, flush=True)
            results[target] = await measure(store, args.dims, args.runs, local=args.dsn is None)
        finally:
            await store.close()
    rows = []
    for target, r in results.items():
        peak = "n/a" if r["peak_mib"] is None else f"{r['peak_mib']:,.0f}"
        row = [f"{target:,}", f"{statistics.median(r['analyze_s']):.2f}", peak,
               f"{statistics.median(r['estimate_ms']):.2f}"]
        for key, values in FILTERS.items():
            sent = r["index_paths"][key]
            row.append(f"{sum(sent)} of {values * len(sent):,}")
            row.append(f"{pct(min(r['shares'][key]))} - {pct(max(r['shares'][key]))}")
        rows.append(row)
    headers = ["metadata_statistics", "ANALYZE s (median)", "ANALYZE peak MiB", "estimate ms (median)"]
    for key, values in FILTERS.items():
        headers += [f"`{key}` ({pct(1 / values)}): to the index", f"`{key}`: estimates"]
    return "\n".join([
        f"## The planner's estimates of metadata filters by statistics target, {args.rows:,} x {args.dims} rows",
        "",
        markdown_table(headers, rows),
        "",
        f"Each target: {args.runs} runs of `ANALYZE` (each a new random sample), after each the store's estimate of "
        f"every value of each filter and the path it chooses (default options: exact at or below 3.5%, k={K}); "
        "'to the index': estimates above that (for `tenth`, the right path; for `bucket` and `rare`, the slower, "
        "less right one). Data and methods: the docstring of `benchmarks/filter_estimates.py`.",
        f"Server: {server}. Machine: {machine_description()}.",
        f"Command: `{command_line()}`",
    ])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000, help="rows in the table (default 200,000)")
    parser.add_argument("--dims", type=int, default=384, help="vector dimensions (default 384)")
    parser.add_argument("--targets", default="100,300,1000",
                        help="metadata statistics targets measured, comma-separated (default 100,300,1000)")
    parser.add_argument("--runs", type=int, default=3, help="ANALYZE runs per target (default 3)")
    parser.add_argument("--output", nargs="?", const=str(DEFAULT_OUTPUT), default=None,
                        help=f"write the report there (default: {DEFAULT_OUTPUT})")
    add_server_arguments(parser)
    args = parser.parse_args(argv)
    if args.rows < 1000 or args.runs < 1 or args.dims < 1:
        parser.error("--rows must be at least 1,000 (the 0.1% filter's values), --runs and --dims at least 1")
    try:
        targets = [int(t) for t in args.targets.split(",")]
    except ValueError:
        parser.error(f"--targets must be integers separated by commas, got {args.targets!r}")
    if not all(1 <= t <= 10_000 for t in targets):
        parser.error(f"--targets must be from 1 to 10,000 (PostgreSQL's range), got {args.targets!r}")
    args.targets = targets
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    print_report(asyncio.run(run(args)), args.output)


if __name__ == "__main__":
    main()
