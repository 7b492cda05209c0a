"""Searches per second with 0, 1 and 2 read replicas, against raw asyncpg on the primary (docs/replicas.md).

One command: it starts an embedded primary of its own and two streaming hot standbys of it (``pg_basebackup -R``)
in a temporary directory, loads rows with an HNSW index, then measures, round by round so that a burst of other
work hits every method alike (`common.measure_rounds`):

- raw asyncpg on the primary (the reference of every ratio): a pool and the store's search statement;
- the store with no replica (every search on the primary);
- the store with one replica, and with two (read_your_writes on: after the load, the replicas have replayed it).

On one machine every server shares the same cores, so this measures what routing costs, not how replicas scale;
docs/replicas.md gives the expected scaling on separate machines. Writes benchmarks/results/replicas.md.

    python benchmarks/replicas.py                      # the reported run
    python benchmarks/replicas.py --rows 300 --queries 20 --rounds 1 --output /tmp/r.md   # a smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np
from pgvector.asyncpg import register_vector

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.servers: the private primary and standbys

from tests.servers import PrivateServer, Standby

from common import (
    RESULTS_DIR,
    command_line,
    machine_description,
    make_clustered,
    make_clustered_queries,
    markdown_table,
    measure_queries,
    measure_rounds,
    write_markdown,
)
from pgvecstore import PgVectorStore

K = 10
METHODS = {
    "raw": "raw asyncpg pool on the primary (reference)",
    "replicas_0": "store, no read replica (primary)",
    "replicas_1": "store, 1 read replica",
    "replicas_2": "store, 2 read replicas",
}


async def wait_replayed(primary: str, standbys: list[Standby]) -> None:
    position = await _fetch(primary, "SELECT pg_current_wal_lsn()")
    for standby in standbys:
        while not await _fetch(standby.dsn, "SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn", position):
            await asyncio.sleep(0.05)


async def _fetch(dsn: str, sql: str, *args: Any) -> Any:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(sql, *args)
    finally:
        await conn.close()


async def served(standby: Standby) -> int:
    """Transactions the standby has committed (its own statistics): proof that it served searches."""
    return int(await _fetch(standby.dsn, "SELECT sum(xact_commit) FROM pg_stat_database"))


async def measure(args: argparse.Namespace, primary: PrivateServer, standbys: list[Standby]) -> dict[str, Any]:
    options = {"connection_string": primary.dsn, "schema": "bench_replicas", "dimensions": args.dims,
               "index_type": "hnsw", "pool_min_size": args.clients, "pool_max_size": args.clients}
    loader = PgVectorStore(options)
    data = make_clustered(args.rows, args.dims, seed=1)
    await loader.add_vectors(data)
    await loader.create_index()
    await loader.close()
    queries = make_clustered_queries(args.queries, args.dims, seed=2)
    await wait_replayed(primary.dsn, standbys)
    stores = {
        "replicas_0": PgVectorStore(options),
        "replicas_1": PgVectorStore(options, read_replicas=[standbys[0].dsn]),
        "replicas_2": PgVectorStore(options, read_replicas=[s.dsn for s in standbys]),
    }
    sql = (f"SELECT id::text, metadata::text, content, document_id, chunk_index, embedding <=> $1 AS distance "
           f"FROM bench_replicas.knowledge_embeddings ORDER BY embedding <=> $1 LIMIT {K}")
    raw_pool = await asyncpg.create_pool(primary.dsn, min_size=args.clients, max_size=args.clients,
                                         init=register_vector)

    async def raw(i: int) -> list[Any]:
        async with raw_pool.acquire() as conn:
            return list(await conn.fetch(sql, queries[i]))

    runners: dict[str, Callable[[int], Awaitable[Any]]] = {"raw": raw}
    for name, store in stores.items():
        await store.initialize()
        runners[name] = lambda i, store=store: store.search(queries[i], k=K)
    try:
        before = [await served(s) for s in standbys]
        client_cpu: dict[str, float] = {}
        for name, runner in runners.items():
            # Warm-up, with every client (the pools open all their connections), which also measures this
            # process's CPU per query: the application's share of each search, the rest is the servers'.
            cpu = time.process_time()
            await measure_queries(name, runner, args.queries, args.clients)
            client_cpu[name] = (time.process_time() - cpu) / args.queries
        timings = await measure_rounds(runners, args.queries, args.clients, args.rounds)
    finally:
        for store in stores.values():
            await store.close()
        await raw_pool.close()
    await asyncio.sleep(1.0)  # the standbys' sessions ended: their statistics are flushed
    after = [await served(s) for s in standbys]
    commits = [a - b for a, b in zip(after, before, strict=True)]
    return {"timings": timings, "standby_commits": commits, "client_cpu": client_cpu}


def report(args: argparse.Namespace, result: dict[str, Any], seconds: float) -> str:
    timings = result["timings"]
    reference = timings["raw"].qps
    cpu = result["client_cpu"]
    rows = [
        [METHODS[key], f"{t.qps:,.0f}", f"{t.qps / reference:.2f}", f"{t.p50_ms:.2f}", f"{t.p99_ms:.2f}",
         f"{cpu[key] * 1000:.3f}"]
        for key, t in timings.items()
    ]
    table = markdown_table(["method", "queries/s", "ratio to raw", "p50 ms", "p99 ms", "client CPU ms/query"], rows)
    commits = ", ".join(f"{n:,}" for n in result["standby_commits"])
    return "\n".join([
        "# Read replicas: searches per second with 0, 1 and 2 replicas",
        "",
        f"{args.rows:,} rows of {args.dims} dimensions, HNSW (m=16, ef_construction=64), k={K}, {args.queries} "
        f"queries per round, {args.clients} concurrent clients, median of {args.rounds} rounds (methods take "
        "turns round by round). One embedded primary and two streaming hot standbys (`pg_basebackup -R`) on the "
        "same machine: every server shares its cores, so this shows what routing costs, not how replicas scale "
        "(see docs/replicas.md for the expected scaling on separate machines).",
        "",
        table,
        "",
        f"Transactions the two standbys committed during warm-up and measurement (their own `pg_stat_database`: the "
        f"searches they served and the health probes): {commits}.",
        "",
        f"Machine: {machine_description()}. Run took {seconds:.0f} s.",
        "",
        f"Command: `{command_line()}`",
        "",
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--dims", type=int, default=64)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--output", default=str(RESULTS_DIR / "replicas.md"))
    args = parser.parse_args()
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="pgvecstore-replicas-") as root:
        primary = PrivateServer(Path(root))
        standbys: list[Standby] = []
        try:
            standbys = [Standby(primary), Standby(primary)]
            result = asyncio.run(measure(args, primary, standbys))
        finally:
            for standby in standbys:
                standby.close()
            primary.close()
    text = report(args, result, time.monotonic() - start)
    write_markdown(args.output, text)
    print(text)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
