"""Ingest benchmark: rows/s of the core's add_vectors against raw asyncpg loading, in the same run.

Methods, each into a fresh table shaped like the store's (no vector index), with the same data:

- raw COPY: ``copy_records_to_table`` of all rows in one call, pgvector's own asyncpg codec. Timed from the
  caller's inputs (vectors array, ids, metadata dicts) so it includes building the records and ``json.dumps``:
  the least a hand-written loader does. This is the limit every other line is a ratio of.
- raw executemany: one prepared ``INSERT ... VALUES ($1..$7)`` per row, in one transaction.
- core, generated ids: ``PgVectorStore.add_vectors(vectors, metadata=...)``.
- core, caller ids (new): ``add_vectors(vectors, ids, metadata)`` into an empty table.
- core, re-add existing ids: the same ids again, with new vectors (the upsert path); the table is filled first,
  untimed.
- reference: the raw COPY again with its records built before the clock starts (wire and server time only), to
  show how much of the raw COPY line is Python work.

One warm-up round first (not reported), then ``--repeats`` rounds; within a round every method runs once, so slow
drift on a shared machine hits all of them alike. The table shows the best repeat of each.

Usage::

    python benchmarks/ingest.py                      # 20,000 x 384 on a private embedded server
    python benchmarks/ingest.py --rows 2000 --dims 64 --repeats 1
    python benchmarks/ingest.py --output benchmarks/results/ingest.md
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import asyncpg
import numpy as np
from pgvector.asyncpg import register_vector

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    Timed,
    Timing,
    add_server_arguments,
    command_line,
    insert_sql,
    machine_description,
    make_ids,
    make_metadata,
    make_vectors,
    markdown_table,
    server_dsn,
    server_label,
    server_version,
    timed,
    try_checkpoint,
    write_markdown,
)
from pgvecstore import PgVectorStore, StoreConfig
from pgvecstore.identifiers import WRITE_COLUMNS
from pgvecstore.sql.catalog import VECTOR_EXTENSION_SCHEMA


@dataclass
class Bench:
    """Everything one benchmark run shares: server, schema, data and options."""

    dsn: str
    schema: str
    rows: int
    dims: int
    batch_size: int | None
    vectors: np.ndarray
    new_vectors: np.ndarray
    ids: list[str]
    metadata: list[dict[str, Any]]
    counter: int = 0

    def store(self, table: str) -> PgVectorStore:
        options: dict[str, Any] = {
            "connection_string": self.dsn,
            "schema": self.schema,
            "table_name": table,
            "dimensions": self.dims,
            "pool_min_size": 1,
            "pool_max_size": 2,
        }
        if self.batch_size is not None:
            options["batch_size"] = self.batch_size
        return PgVectorStore(options)

    def next_table(self, method: str) -> str:
        self.counter += 1
        return f"{method}_{self.counter}"


def raw_records(ids: list[str], vectors: np.ndarray, metadata: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """The rows a hand-written loader sends, in the store's write-column order."""
    return [
        (row_id, vector, None, json.dumps(meta), None, None, None)
        for row_id, vector, meta in zip(ids, vectors, metadata, strict=True)
    ]


@dataclass
class MethodRun:
    """What every method works with: the first `n` rows of the data, a fresh table (its store and a raw
    connection to it)."""

    bench: Bench
    table: str
    store: PgVectorStore
    conn: asyncpg.Connection
    n: int
    vectors: np.ndarray = field(init=False)
    ids: list[str] = field(init=False)
    metadata: list[dict[str, Any]] = field(init=False)
    columns: list[str] = field(init=False)  # the written columns' names, in COPY order

    def __post_init__(self) -> None:
        bench, n = self.bench, self.n
        self.vectors, self.ids, self.metadata = bench.vectors[:n], bench.ids[:n], bench.metadata[:n]
        self.columns = [self.store.table.columns[c] for c in WRITE_COLUMNS]

    def records(self) -> list[tuple[Any, ...]]:
        return raw_records(self.ids, self.vectors, self.metadata)

    async def copy(self, records: list[tuple[Any, ...]]) -> None:
        """One binary COPY of `records` into the table."""
        await self.conn.copy_records_to_table(
            self.table, records=records, columns=self.columns, schema_name=self.bench.schema
        )


# A method's strategy: its set-up, outside the clock, returning the work inside it.
Strategy = Callable[[MethodRun], Awaitable[Timed]]


async def _raw_copy(r: MethodRun) -> Timed:
    async def run() -> None:
        await r.copy(r.records())

    return run


async def _raw_executemany(r: MethodRun) -> Timed:
    insert = insert_sql(r.store.table.qualified, [r.store.table.col(c) for c in WRITE_COLUMNS])

    async def run() -> None:
        records = r.records()
        async with r.conn.transaction():
            await r.conn.executemany(insert, records)

    return run


async def _core_generated(r: MethodRun) -> Timed:
    async def run() -> None:
        await r.store.add_vectors(r.vectors, metadata=r.metadata)

    return run


async def _core_ids_new(r: MethodRun) -> Timed:
    async def run() -> None:
        await r.store.add_vectors(r.vectors, r.ids, r.metadata)

    return run


async def _core_ids_upsert(r: MethodRun) -> Timed:
    await r.store.add_vectors(r.vectors, r.ids, r.metadata)  # the rows to replace, untimed
    new_vectors = r.bench.new_vectors[: r.n]

    async def run() -> None:
        await r.store.add_vectors(new_vectors, r.ids, r.metadata)

    return run


async def _raw_copy_prebuilt(r: MethodRun) -> Timed:
    prebuilt = r.records()

    async def run() -> None:
        await r.copy(prebuilt)

    return run


class Method(NamedTuple):
    """One line of the table: its label and its strategy."""

    label: str
    prepare: Strategy


METHODS: dict[str, Method] = {
    "raw_copy": Method("raw asyncpg binary COPY (`copy_records_to_table`)", _raw_copy),
    "raw_executemany": Method("raw asyncpg `executemany` INSERT", _raw_executemany),
    "core_generated": Method("core `add_vectors`, generated ids", _core_generated),
    "core_ids_new": Method("core `add_vectors`, caller ids (new rows)", _core_ids_new),
    "core_ids_upsert": Method("core `add_vectors`, re-adding existing ids (upsert)", _core_ids_upsert),
    "raw_copy_prebuilt": Method("reference: raw COPY of records built before the clock", _raw_copy_prebuilt),
}


async def run_method(bench: Bench, method: str, n: int) -> float:
    """Set up a fresh table, time `method` writing the first `n` rows into it, drop the table; seconds taken."""
    table = bench.next_table(method)
    store = bench.store(table)
    await store.initialize()  # creates the table exactly as the store does (the raw methods use it too)
    conn = await asyncpg.connect(bench.dsn)
    try:
        await register_vector(conn, schema=await conn.fetchval(VECTOR_EXTENSION_SCHEMA.sql))
        run = await METHODS[method].prepare(MethodRun(bench, table, store, conn, n))
        await store.count()  # the store's pool is open and warm before the clock starts
        await try_checkpoint(conn)
        seconds = await timed(run)
        qualified = store.table.qualified
        landed = await conn.fetchval(f"SELECT count(*) FROM {qualified}")
        if landed != n:
            raise RuntimeError(f"{method}: expected {n} rows in {qualified}, found {landed}")
        await conn.execute(f"DROP TABLE {qualified}")
        return seconds
    finally:
        await conn.close()
        await store.close()


async def benchmark(args: argparse.Namespace) -> tuple[list[Timing], str]:
    dsn = server_dsn(args.dsn, args.data_dir)
    bench = Bench(
        dsn=dsn,
        schema=f"bench_ingest_{uuid.uuid4().hex[:8]}",
        rows=args.rows,
        dims=args.dims,
        batch_size=args.batch_size,
        vectors=make_vectors(args.rows, args.dims, seed=0),
        new_vectors=make_vectors(args.rows, args.dims, seed=1),
        ids=make_ids(args.rows, seed=0),
        metadata=make_metadata(args.rows),
    )
    admin = await asyncpg.connect(dsn)
    try:
        version = await server_version(admin)
        methods = list(METHODS)
        timings = {m: Timing(METHODS[m].label, args.rows, []) for m in methods}
        for method in methods:  # warm-up: server caches, prepared statements, Python imports and code paths
            await run_method(bench, method, min(args.rows, 5000))
        for _ in range(args.repeats):
            for method in methods:
                timings[method].seconds.append(await run_method(bench, method, args.rows))
                print(f"  {method}: {timings[method].seconds[-1]:.3f} s", file=sys.stderr, flush=True)
    finally:
        await admin.execute(f'DROP SCHEMA IF EXISTS "{bench.schema}" CASCADE')
        await admin.close()
    return [timings[m] for m in methods], version


def render(timings: list[Timing], args: argparse.Namespace, version: str) -> str:
    """The Markdown report: the table, then how and where it was measured."""
    limit = timings[0].rate
    table = markdown_table(
        ["method", "rows", "seconds", "rows/s", "ratio to raw COPY"],
        [
            [t.method, f"{t.rows:,}", f"{t.best:.3f}", f"{t.rate:,.0f}", f"{t.rate / limit:.2f}"]
            for t in timings
        ],
    )
    default_batch = StoreConfig.__dataclass_fields__["batch_size"].default
    batch = args.batch_size if args.batch_size is not None else f"{default_batch} (the default)"
    return (
        f"## Ingest: {args.rows:,} x {args.dims} float32 vectors with small metadata\n\n"
        f"{table}\n\n"
        f"Best of {args.repeats} repeat(s) after a warm-up, each into a fresh table without a vector index; "
        f"store batch_size={batch}. Ratios compare rates measured in this same run.\n"
        f"Server: {server_label(bool(args.dsn))}, {version}. Machine: {machine_description()}.\n"
        f"Command: `{command_line()}`\n"
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=20_000, help="vectors per run (default 20000)")
    parser.add_argument("--dims", type=int, default=384, help="dimensions of each vector (default 384)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each method; the best counts")
    parser.add_argument("--batch-size", type=int, default=None, help="the store's batch_size (default: its own)")
    parser.add_argument("--output", help="also write the Markdown report to this file (benchmarks/results/ingest.md)")
    add_server_arguments(parser)
    args = parser.parse_args(argv)
    for name in ("rows", "dims", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    timings, version = asyncio.run(benchmark(args))
    report = render(timings, args, version)
    print(report)
    if args.output:
        path = write_markdown(args.output, report)
        print(f"written to {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
