"""Recall and speed of an HNSW index after churn (issue 19): updates, deletes and re-adds, then VACUUM, then
`reindex()`, against a fresh build of the same final rows. One command per size:

    python benchmarks/churn.py --rows 200000 --data-dir /tmp/pgvecstore-bench --output

Data: ``rows`` clustered unit vectors of 384 dimensions (`common.make_clustered`, seed 0; row ``i`` has the id
``str(i)``) and 200 queries from the same distribution (`common.make_clustered_queries`). The store's table has
an HNSW index (m=16, ef_construction=64) and autovacuum off, so that each stage is measured as it stands:

1. **fresh**: loaded, indexed, ``VACUUM ANALYZE``;
2. **after churn**: half the rows (seeded at random) get a new vector (``add_vectors`` on their ids: an upsert),
   then a quarter of the rows (another seeded draw) are deleted and added again with new vectors; new vectors are
   drawn from the same clusters (`common.make_clustered_more`);
3. **after VACUUM**: ``VACUUM`` of the table (timed: the vacuum time the issue asks for);
4. **after reindex()**: ``store.reindex()`` (``REINDEX INDEX CONCURRENTLY``, timed);
5. **fresh build of the final rows**: a new table loaded with the rows as they are after the churn, indexed and
   vacuumed: the reference of recall.

Each stage: recall@10 against the exact cosine top 10 of the live rows (numpy), p50 latency and queries/s of
``store.search(q, k=10)`` at the default ef_search (40) after an untimed warm-up, the same for a raw asyncpg
``ORDER BY embedding <=> $1 LIMIT 10`` on a held connection (the ratio column), and the table's and index's sizes.
Writes ``benchmarks/results/churn.md`` with ``--output`` (or the path given).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np
from pgvector.asyncpg import register_vector

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    add_server_arguments,
    command_line,
    exact_top_k,
    fmt_rate,
    machine_description,
    make_clustered,
    make_clustered_more,
    make_clustered_queries,
    markdown_table,
    measure_queries,
    recall,
    server_dsn,
    server_version,
    write_markdown,
)
from pgvecstore import PgVectorStore

DIMS = 384
QUERIES = 200
K = 10
BATCH = 5000
UPDATED, DELETED = 0.5, 0.25
DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results" / "churn.md"


Stage = dict[str, Any]  # one measured stage: name, recall, p50, q/s, raw q/s, sizes, seconds of its step


async def measure(
    name: str, store: PgVectorStore, conn: asyncpg.Connection, current: np.ndarray, queries: np.ndarray,
    step_seconds: float | None,
) -> Stage:
    """Recall@10 against the exact answer over `current` (row i = id str(i)), latency and q/s of the store and of
    raw SQL, and the sizes of the store's table and index."""
    truth = exact_top_k(current, queries, K)
    table = store.table.qualified
    raw_sql = f"SELECT id FROM {table} ORDER BY embedding <=> $1 LIMIT {K}"
    found: list[list[int]] = [[] for _ in queries]

    async def core(i: int) -> None:
        found[i] = [int(hit.id) for hit in await store.search(queries[i], k=K, include_metadata=False)]

    async def raw(i: int) -> None:
        await conn.fetch(raw_sql, queries[i])

    for run in (core, raw):  # warm-up: the index in the cache
        for i in range(len(queries)):
            await run(i)
    core_timing = await measure_queries("core", core, len(queries))
    raw_timing = await measure_queries("raw", raw, len(queries))
    sizes = await conn.fetchrow(
        "SELECT pg_table_size($1::regclass), pg_relation_size($2::regclass)",
        table, f'"{store.table.schema}"."{store.table.index_name("hnsw")}"',
    )
    assert sizes is not None
    return {"stage": name, "recall": recall(found, truth, K), "p50_ms": core_timing.p50_ms, "qps": core_timing.qps,
            "raw_qps": raw_timing.qps, "table_mb": sizes[0] / 2**20, "index_mb": sizes[1] / 2**20,
            "seconds": step_seconds}


async def load(store: PgVectorStore, vectors: np.ndarray, ids: Sequence[str]) -> None:
    for start in range(0, len(ids), BATCH):
        await store.add_vectors(vectors[start:start + BATCH], ids[start:start + BATCH])


async def build(store: PgVectorStore, conn: asyncpg.Connection) -> None:
    await store.create_index("hnsw", {"m": 16, "ef_construction": 64})
    await conn.execute(f"VACUUM ANALYZE {store.table.qualified}")


async def benchmark(args: argparse.Namespace) -> tuple[str, list[Stage]]:
    rows = args.rows
    dsn = server_dsn(args.dsn, args.data_dir)
    data = make_clustered(rows, DIMS, seed=0)
    queries = make_clustered_queries(args.queries, DIMS, seed=0)
    rng = np.random.default_rng(1)
    updated = rng.choice(rows, int(rows * UPDATED), replace=False)
    deleted = rng.choice(rows, int(rows * DELETED), replace=False)
    fresh_vectors = make_clustered_more(len(updated) + len(deleted), DIMS, seed=0)  # the churn's new vectors
    ids = [str(i) for i in range(rows)]
    schema = f"churn_{uuid.uuid4().hex[:8]}"
    options = {"connection_string": dsn, "schema": schema, "dimensions": DIMS, "id_type": "text",
               "text_search": False, "pool_max_size": 2, "statement_timeout": None}
    conn = await asyncpg.connect(dsn)
    await register_vector(conn)
    stages: list[Stage] = []
    try:
        version = await server_version(conn)
        async with PgVectorStore(options, table_name="churned") as store:
            await conn.execute(f"ALTER TABLE {store.table.qualified} SET (autovacuum_enabled = off)")
            current = data.copy()
            await load(store, data, ids)
            await build(store, conn)
            stages.append(await measure("fresh", store, conn, current, queries, None))
            print(f"fresh: recall {stages[-1]['recall']:.4f}", flush=True)

            started = time.perf_counter()
            new = iter(fresh_vectors)
            for start in range(0, len(updated), BATCH):
                chosen = updated[start:start + BATCH]
                vectors = np.stack([next(new) for _ in chosen])
                current[chosen] = vectors
                await store.add_vectors(vectors, [ids[i] for i in chosen])
            for start in range(0, len(deleted), BATCH):
                chosen = deleted[start:start + BATCH]
                await store.delete_vectors([ids[i] for i in chosen])
            for start in range(0, len(deleted), BATCH):
                chosen = deleted[start:start + BATCH]
                vectors = np.stack([next(new) for _ in chosen])
                current[chosen] = vectors
                await store.add_vectors(vectors, [ids[i] for i in chosen])
            stages.append(await measure("after churn", store, conn, current, queries,
                                        time.perf_counter() - started))
            print(f"after churn: recall {stages[-1]['recall']:.4f}", flush=True)

            started = time.perf_counter()
            await conn.execute(f"VACUUM {store.table.qualified}")
            stages.append(await measure("after VACUUM", store, conn, current, queries,
                                        time.perf_counter() - started))
            print(f"after VACUUM: recall {stages[-1]['recall']:.4f}", flush=True)

            started = time.perf_counter()
            assert await store.reindex() == "hnsw"
            stages.append(await measure("after reindex()", store, conn, current, queries,
                                        time.perf_counter() - started))
            print(f"after reindex(): recall {stages[-1]['recall']:.4f}", flush=True)

        async with PgVectorStore(options, table_name="rebuilt") as fresh:
            started = time.perf_counter()
            await load(fresh, current, ids)
            await build(fresh, conn)
            stages.append(await measure("fresh build of the final rows", fresh, conn, current, queries,
                                        time.perf_counter() - started))
            print(f"fresh build: recall {stages[-1]['recall']:.4f}", flush=True)
    finally:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await conn.close()
    return version, stages


def render(args: argparse.Namespace, version: str, stages: list[Stage]) -> str:
    reference = stages[-1]["recall"]
    table = markdown_table(
        ["stage", "step seconds", "recall@10", "vs fresh build", "p50 ms", "queries/s", "raw asyncpg q/s",
         "ratio to raw", "table MB", "index MB"],
        [[s["stage"], "" if s["seconds"] is None else f"{s['seconds']:.1f}", f"{s['recall']:.4f}",
          f"{s['recall'] - reference:+.4f}", f"{s['p50_ms']:.2f}", fmt_rate(s["qps"]), fmt_rate(s["raw_qps"]),
          f"{s['qps'] / s['raw_qps']:.2f}", f"{s['table_mb']:.0f}", f"{s['index_mb']:.0f}"] for s in stages],
    )
    return (
        "## HNSW after churn: updates, deletes, VACUUM, reindex()\n\n"
        f"{machine_description()}; {version}. Command: `{command_line()}`.\n\n"
        f"{args.rows:,} clustered rows of {DIMS} dimensions (seed 0), {args.queries} queries, k={K}, HNSW m=16 "
        f"ef_construction=64, ef_search 40, one client, autovacuum off on the table. Churn: {UPDATED:.0%} of the "
        f"rows updated with new vectors, then {DELETED:.0%} deleted and re-added with new vectors. Step seconds: "
        "the churn's writes, the VACUUM, the reindex(), the fresh table's load and build. Recall against the exact "
        "top 10 of the live rows; 'vs fresh build' compares with the last line.\n\n"
        f"{table}\n"
    )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=200_000, help="rows to load (default 200,000)")
    parser.add_argument("--queries", type=int, default=QUERIES, help=f"queries (default {QUERIES})")
    parser.add_argument("--output", nargs="?", const=str(DEFAULT_OUTPUT), default=None,
                        help=f"write the table there (default path {DEFAULT_OUTPUT})")
    add_server_arguments(parser)
    args = parser.parse_args(argv)
    if args.rows < 100 or args.queries < 1:
        parser.error("--rows must be at least 100 and --queries at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    version, stages = asyncio.run(benchmark(args))
    text = render(args, version, stages)
    print(text)
    if args.output:
        write_markdown(args.output, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
