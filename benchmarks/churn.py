"""Recall and speed of an HNSW index after churn (issue 19): updates, deletes and re-adds, then VACUUM and
`reindex()` in both orders, against fresh builds of the same final rows. One command per size:

    python benchmarks/churn.py --rows 200000 --data-dir /tmp/pgvecstore-bench --output

Data: ``rows`` clustered unit vectors of 384 dimensions (`common.make_clustered`, seed 0; row ``i`` has the id
``str(i)``) and 200 queries from the same distribution (`common.make_clustered_queries`). Two tables of the store
(``churned``: VACUUM first; ``churned_b``: reindex first) get the same rows, an HNSW index (m=16,
ef_construction=64), autovacuum off (each stage is measured as it stands), and the same churn:

1. **fresh**: loaded, indexed, ``VACUUM ANALYZE`` (measured on the first table);
2. **after churn**: half the rows (seeded at random) get a new vector (``add_vectors`` on their ids: an upsert),
   then a quarter of the rows (another seeded draw) are deleted and added again with new vectors; new vectors are
   drawn from the same clusters (`common.make_clustered_more`); the step's seconds are the first table's;
3. first table: **after VACUUM** (``VACUUM`` of the table, timed: the vacuum time the issue asks for), then
   **after VACUUM, then reindex()**;
4. second table: **after reindex()** (``store.reindex()``: ``REINDEX INDEX CONCURRENTLY``, timed), then **after
   reindex(), then VACUUM** (pgvector's advice: the vacuum has no graph left to repair);
5. **fresh build of the final rows**, twice (``--fresh-builds N``): new tables loaded with the rows as they are
   after the churn, indexed and vacuumed. HNSW builds are not deterministic (random levels, parallel workers), so
   the reference of recall is the mean of the builds, and their range shows how far builds of the same rows fall
   apart. ``--only-fresh`` runs only these builds (``--only-fresh --fresh-builds 6``: the spread, in minutes).

Each stage: recall@10 against the exact cosine top 10 of the live rows (numpy) at ef_search 40 (the default), 100
and 200 (``search_params``); p50 latency and queries/s of ``store.search(q, k=10)`` at the default after an
untimed warm-up, the same for a raw asyncpg ``ORDER BY embedding <=> $1 LIMIT 10`` on a held connection (the
ratio column); the table's and index's sizes. Writes ``benchmarks/results/churn.md`` with ``--output`` (or the
path given).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
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
    timed,
    write_markdown,
)
from pgvecstore import PgVectorStore

DIMS = 384
QUERIES = 200
K = 10
BATCH = 5000
UPDATED, DELETED = 0.5, 0.25
EF_SEARCHES = (40, 100, 200)
FRESH_PREFIX = "fresh build of the final rows"
FRESH_BUILD = FRESH_PREFIX + " ({})"
REMEDIES = ("after VACUUM", "after VACUUM, then reindex()", "after reindex()", "after reindex(), then VACUUM")
DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results" / "churn.md"


Stage = dict[str, Any]  # one measured stage: name, recall per ef_search, p50, q/s, raw q/s, sizes, step seconds


class Churn:
    """The churn of one run: which rows are updated, deleted and re-added, their new vectors, and the live rows
    after it (`final`)."""

    def __init__(self, data: np.ndarray, seed: int = 1) -> None:
        rows = len(data)
        rng = np.random.default_rng(seed)
        self.ids = [str(i) for i in range(rows)]
        self.updated = rng.choice(rows, int(rows * UPDATED), replace=False)
        self.deleted = rng.choice(rows, int(rows * DELETED), replace=False)
        new = make_clustered_more(len(self.updated) + len(self.deleted), DIMS, seed=0)
        self.updated_vectors = new[:len(self.updated)]
        self.readded_vectors = new[len(self.updated):]
        self.final = data.copy()
        self.final[self.updated] = self.updated_vectors
        self.final[self.deleted] = self.readded_vectors

    async def apply(self, store: PgVectorStore) -> None:
        """Run the churn's writes on `store`."""
        for start in range(0, len(self.updated), BATCH):
            chosen = self.updated[start:start + BATCH]
            await store.add_vectors(self.updated_vectors[start:start + BATCH], [self.ids[i] for i in chosen])
        for start in range(0, len(self.deleted), BATCH):
            await store.delete_vectors([self.ids[i] for i in self.deleted[start:start + BATCH]])
        for start in range(0, len(self.deleted), BATCH):
            chosen = self.deleted[start:start + BATCH]
            await store.add_vectors(self.readded_vectors[start:start + BATCH], [self.ids[i] for i in chosen])


async def measure(
    name: str, store: PgVectorStore, conn: asyncpg.Connection, current: np.ndarray, queries: np.ndarray,
    step_seconds: float | None,
) -> Stage:
    """Recall@10 at each ef_search against the exact answer over `current` (row i = id str(i)), latency and q/s
    of the store and of raw SQL, and the sizes of the store's table and index."""
    truth = exact_top_k(current, queries, K)
    table = store.table.qualified
    raw_sql = f"SELECT id FROM {table} ORDER BY embedding <=> $1 LIMIT {K}"
    recalls: dict[int, float] = {}
    for ef in EF_SEARCHES:  # also the warm-up of the timed runs: the index in the cache
        found = [[int(hit.id) for hit in await store.search(q, k=K, include_metadata=False,
                                                            search_params={"ef_search": ef})] for q in queries]
        recalls[ef] = recall(found, truth, K)

    async def core(i: int) -> None:
        await store.search(queries[i], k=K, include_metadata=False)

    async def raw(i: int) -> None:
        await conn.fetch(raw_sql, queries[i])

    for i in range(len(queries)):
        await raw(i)
    core_timing = await measure_queries("core", core, len(queries))
    raw_timing = await measure_queries("raw", raw, len(queries))
    sizes = await conn.fetchrow(
        "SELECT pg_table_size($1::regclass), pg_relation_size($2::regclass)",
        table, f'"{store.table.schema}"."{store.table.index_name("hnsw")}"',
    )
    assert sizes is not None
    print(f"{name}: recall " + ", ".join(f"{recalls[ef]:.4f} at ef {ef}" for ef in EF_SEARCHES), flush=True)
    return {"stage": name, "recall": recalls, "p50_ms": core_timing.p50_ms, "qps": core_timing.qps,
            "raw_qps": raw_timing.qps, "table_mb": sizes[0] / 2**20, "index_mb": sizes[1] / 2**20,
            "seconds": step_seconds}


async def load_and_build(store: PgVectorStore, conn: asyncpg.Connection, vectors: np.ndarray,
                         ids: Sequence[str]) -> None:
    """Load `vectors` under `ids`, build the HNSW index, VACUUM ANALYZE."""
    for start in range(0, len(ids), BATCH):
        await store.add_vectors(vectors[start:start + BATCH], ids[start:start + BATCH])
    await store.create_index("hnsw", {"m": 16, "ef_construction": 64})
    await conn.execute(f"VACUUM ANALYZE {store.table.qualified}")


async def vacuum(store: PgVectorStore, conn: asyncpg.Connection) -> None:
    await conn.execute(f"VACUUM {store.table.qualified}")


async def rebuild(store: PgVectorStore) -> None:
    assert await store.reindex() == "hnsw"


async def benchmark(args: argparse.Namespace) -> tuple[str, list[Stage]]:
    dsn = server_dsn(args.dsn, args.data_dir)
    data = make_clustered(args.rows, DIMS, seed=0)
    queries = make_clustered_queries(args.queries, DIMS, seed=0)
    churn = Churn(data)
    ids = churn.ids
    schema = f"churn_{uuid.uuid4().hex[:8]}"
    options = {"connection_string": dsn, "schema": schema, "dimensions": DIMS, "id_type": "text",
               "text_search": False, "pool_max_size": 2, "statement_timeout": None}
    conn = await asyncpg.connect(dsn)
    await register_vector(conn)
    stages: list[Stage] = []
    try:
        version = await server_version(conn)
        if not args.only_fresh:
            await churn_stages(conn, options, data, queries, churn, stages)
        for number in range(1, args.fresh_builds + 1):
            async with PgVectorStore(options, table_name=f"rebuilt_{number}") as fresh:
                seconds = await timed(lambda: load_and_build(fresh, conn, churn.final, ids))
                stages.append(await measure(FRESH_BUILD.format(number), fresh, conn, churn.final, queries, seconds))
    finally:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await conn.close()
    return version, stages


async def churn_stages(
    conn: asyncpg.Connection, options: dict[str, Any], data: np.ndarray,
    queries: np.ndarray, churn: Churn, stages: list[Stage],
) -> None:
    """The two churned tables' stages (see the module docstring), appended to `stages`."""
    ids = churn.ids
    async with PgVectorStore(options, table_name="churned") as first, \
            PgVectorStore(options, table_name="churned_b") as second:
        for store in (first, second):
            await conn.execute(f"ALTER TABLE {store.table.qualified} SET (autovacuum_enabled = off)")
            await load_and_build(store, conn, data, ids)
        stages.append(await measure("fresh", first, conn, data, queries, None))
        seconds = await timed(lambda: churn.apply(first))
        await churn.apply(second)
        stages.append(await measure("after churn", first, conn, churn.final, queries, seconds))

        seconds = await timed(lambda: vacuum(first, conn))
        stages.append(await measure("after VACUUM", first, conn, churn.final, queries, seconds))
        seconds = await timed(lambda: rebuild(first))
        stages.append(await measure("after VACUUM, then reindex()", first, conn, churn.final, queries, seconds))

        seconds = await timed(lambda: rebuild(second))
        stages.append(await measure("after reindex()", second, conn, churn.final, queries, seconds))
        seconds = await timed(lambda: vacuum(second, conn))
        stages.append(await measure("after reindex(), then VACUUM", second, conn, churn.final, queries,
                                    seconds))


def render(args: argparse.Namespace, version: str, stages: list[Stage]) -> str:
    by_name = {s["stage"]: s for s in stages}
    builds = [s["recall"] for s in stages if s["stage"].startswith(FRESH_PREFIX)]
    reference = {ef: float(np.mean([build[ef] for build in builds])) for ef in EF_SEARCHES}
    spread = {ef: max(build[ef] for build in builds) - min(build[ef] for build in builds) for ef in EF_SEARCHES}
    measured = markdown_table(
        ["stage", "step seconds", *(f"recall@10 ef {ef}" for ef in EF_SEARCHES), "p50 ms", "queries/s",
         "raw asyncpg q/s", "ratio to raw", "table MB", "index MB"],
        [[s["stage"], "" if s["seconds"] is None else f"{s['seconds']:.1f}",
          *(f"{s['recall'][ef]:.4f}" for ef in EF_SEARCHES), f"{s['p50_ms']:.2f}", fmt_rate(s["qps"]),
          fmt_rate(s["raw_qps"]), f"{s['qps'] / s['raw_qps']:.2f}", f"{s['table_mb']:.0f}",
          f"{s['index_mb']:.0f}"] for s in stages],
    )
    compared = markdown_table(
        ["stage", *(f"ef {ef}" for ef in EF_SEARCHES)],
        [[f"mean of the {len(builds)} fresh builds (the reference)", *(f"{reference[ef]:.4f}" for ef in EF_SEARCHES)],
         ["highest minus lowest fresh build", *(f"{spread[ef]:.4f}" for ef in EF_SEARCHES)],
         *([name, *(f"{by_name[name]['recall'][ef] - reference[ef]:+.4f}" for ef in EF_SEARCHES)]
           for name in ("after churn", *REMEDIES) if name in by_name)],
    )
    return (
        "## HNSW after churn: updates, deletes, VACUUM, reindex()\n\n"
        f"{machine_description()}; {version}. Command: `{command_line()}`.\n\n"
        f"{args.rows:,} clustered rows of {DIMS} dimensions (seed 0), {args.queries} queries, k={K}, HNSW m=16 "
        "ef_construction=64, one client, autovacuum off on the tables. Churn: "
        f"{UPDATED:.0%} of the rows updated with new vectors, then {DELETED:.0%} deleted and re-added with new "
        "vectors"
        + (" (only fresh builds of the rows after it were made in this run)" if args.only_fresh else
           ", on two tables alike: the first is vacuumed and then reindexed, the second reindexed and then "
           "vacuumed")
        + ". Step seconds: the churn's writes (one table), the VACUUM, the reindex(), each fresh table's "
        "load and build. Recall against the exact top 10 of the live rows at three ef_search values; latency and "
        "queries/s at the default ef_search (40).\n\n"
        f"{measured}\n\n"
        f"Recall@10 compared with the mean of the {len(builds)} fresh builds of the final rows:\n\n"
        f"{compared}\n"
    )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=200_000, help="rows to load (default 200,000)")
    parser.add_argument("--queries", type=int, default=QUERIES, help=f"queries (default {QUERIES})")
    parser.add_argument("--fresh-builds", type=int, default=2,
                        help="fresh builds of the final rows, the reference of recall (default 2)")
    parser.add_argument("--only-fresh", action="store_true",
                        help="only the fresh builds: how far builds of the same rows fall apart")
    parser.add_argument("--output", nargs="?", const=str(DEFAULT_OUTPUT), default=None,
                        help=f"write the table there (default path {DEFAULT_OUTPUT})")
    add_server_arguments(parser)
    args = parser.parse_args(argv)
    if args.rows < 100 or args.queries < 1 or args.fresh_builds < 1:
        parser.error("--rows must be at least 100, --queries and --fresh-builds at least 1")
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
