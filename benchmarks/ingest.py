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

With ``--documents`` every row is a document row instead: besides id, vector and metadata, its content (a
180-word synthetic chunk of `text_corpus.synthetic`, seed 0, made from SciFact's word distribution), document_id
(the metadata's ``source``) and chunk_index; the vectors stay the benchmark's own. These methods then run, with
the same rows, to show what text search costs at write time:

- raw_copy_off: the raw COPY above into a store table made with ``text_search=False`` (no text columns).
- core_off: core ``add_vectors(vectors, ids, metadata, contents=..., document_ids=..., chunk_indexes=...)`` into a
  ``text_search=False`` store.
- raw_copy_tsv: the raw COPY into a ``text_search=False`` table given, before the clock, the least any
  text-searchable table carries (the layout of pgvecstore 0.1): a generated, stored ``to_tsvector('english',
  content)`` column and a GIN index on it.
- raw_copy_on: the raw COPY into a ``text_search=True`` store's table: its triggers fire as for the core (the
  tsvector of each row, the term statistics of each statement).
- core_on: the core ``add_vectors`` as in core_off into a ``text_search=True`` store.

With ``--metadata-indexes`` the core ``add_vectors(vectors, ids, metadata)`` runs into five ``text_search=False``
stores, to show what indexing metadata costs at write time: none (plain), ``metadata_index="gin"`` (a
``jsonb_path_ops`` GIN index on the metadata), ``indexed_metadata`` of both metadata keys (``source`` as text, ``n``
as int: a column each, filled by a row trigger, with a b-tree), both, and ``indexed_metadata`` with ``n`` in
``covering_metadata`` (a second b-tree on ``n`` holding each row's id and vector); then into two stores with text
search on (the default, whose own row trigger already makes COPY insert row by row), without and with
``indexed_metadata``.

The report gives core_on / raw_copy_tsv (issue 16's target: >= 0.7), core_on / raw_copy_on (the library's own
overhead apart from the text work) and core_off / raw_copy_off (target: >= 0.8).

One warm-up round first (not reported), then ``--repeats`` rounds; within a round every method runs once, so slow
drift on a shared machine hits all of them alike. The table shows the best repeat of each.

Usage::

    python benchmarks/ingest.py                      # 20,000 x 384 on a private embedded server
    python benchmarks/ingest.py --rows 2000 --dims 64 --repeats 1
    python benchmarks/ingest.py --output benchmarks/results/ingest.md
    python benchmarks/ingest.py --documents --output benchmarks/results/ingest_text.md
    python benchmarks/ingest.py --metadata-indexes
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
from pgvecstore.identifiers import WRITE_COLUMNS, quote_ident
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
    documents: Documents | None = None  # --documents: the rows' document columns
    metadata_indexes: bool = False  # --metadata-indexes

    def store(self, table: str, text_search: bool = True, extra: dict[str, Any] | None = None) -> PgVectorStore:
        options: dict[str, Any] = {**(extra or {}),
            "connection_string": self.dsn,
            "schema": self.schema,
            "table_name": table,
            "dimensions": self.dims,
            "pool_min_size": 1,
            "pool_max_size": 2,
        }
        if self.batch_size is not None:
            options["batch_size"] = self.batch_size
        if not text_search:
            options["text_search"] = False
        return PgVectorStore(options)

    def next_table(self, method: str) -> str:
        self.counter += 1
        return f"{method}_{self.counter}"


@dataclass
class Documents:
    """The document columns of every row (--documents): content, document_id and chunk_index."""

    contents: list[str]
    document_ids: list[str]
    chunk_indexes: list[int]

    def first(self, n: int) -> Documents:
        return Documents(self.contents[:n], self.document_ids[:n], self.chunk_indexes[:n])


ROWS_PER_DOCUMENT = 10  # as `make_metadata`: a new ``source`` every 10 rows


def make_documents(metadata: list[dict[str, Any]], seed: int = 0) -> Documents:
    """180-word synthetic chunks (`text_corpus.synthetic`), one per row; document_id the metadata's ``source``,
    chunk_index the row's place in it."""
    import text_corpus  # only here: it reads the SciFact corpus

    if not text_corpus.DEFAULT_DATA.is_dir():
        raise SystemExit(f"--documents needs the SciFact corpus at {text_corpus.DEFAULT_DATA}")
    contents: list[str] = []
    for _, chunk, _ in text_corpus.synthetic(len(metadata), seed, corpus=text_corpus.scifact()):
        contents.extend(chunk)
    return Documents(
        contents, [m["source"] for m in metadata], [i % ROWS_PER_DOCUMENT for i in range(len(metadata))]
    )


def raw_records(
    ids: list[str], vectors: np.ndarray, metadata: list[dict[str, Any]], documents: Documents | None = None
) -> list[tuple[Any, ...]]:
    """The rows a hand-written loader sends, in the store's write-column order."""
    if documents is None:
        return [
            (row_id, vector, None, json.dumps(meta), None, None, None)
            for row_id, vector, meta in zip(ids, vectors, metadata, strict=True)
        ]
    return [
        (row_id, vector, content, json.dumps(meta), None, document_id, chunk_index)
        for row_id, vector, meta, content, document_id, chunk_index in zip(
            ids, vectors, metadata, documents.contents, documents.document_ids, documents.chunk_indexes, strict=True
        )
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
    documents: Documents | None = field(init=False)
    columns: list[str] = field(init=False)  # the written columns' names, in COPY order

    def __post_init__(self) -> None:
        bench, n = self.bench, self.n
        self.vectors, self.ids, self.metadata = bench.vectors[:n], bench.ids[:n], bench.metadata[:n]
        self.documents = bench.documents.first(n) if bench.documents is not None else None
        self.columns = [self.store.table.columns[c] for c in WRITE_COLUMNS]

    def records(self) -> list[tuple[Any, ...]]:
        return raw_records(self.ids, self.vectors, self.metadata, self.documents)

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


async def _core_documents(r: MethodRun) -> Timed:
    documents = r.documents
    if documents is None:
        raise RuntimeError("core document rows need --documents")

    async def run() -> None:
        await r.store.add_vectors(
            r.vectors, r.ids, r.metadata, contents=documents.contents, document_ids=documents.document_ids,
            chunk_indexes=documents.chunk_indexes,
        )

    return run


async def _raw_copy_tsv(r: MethodRun) -> Timed:
    """The raw COPY into a table given the text-searchable layout of pgvecstore 0.1 first (untimed): a generated
    tsvector column and a GIN index on it."""
    t = r.store.table
    await r.conn.execute(
        f"ALTER TABLE {t.qualified} ADD COLUMN {quote_ident(t.text_search_column)} tsvector GENERATED ALWAYS AS "
        f"(to_tsvector('english'::regconfig, coalesce({t.col('content')}, ''))) STORED"
    )
    await r.conn.execute(
        f"CREATE INDEX {quote_ident(t.text_search_index_name)} ON {t.qualified} "
        f"USING gin ({quote_ident(t.text_search_column)})"
    )
    return await _raw_copy(r)


class Method(NamedTuple):
    """One line of the table: its label, its strategy and whether its store has text search on (the store's
    default)."""

    label: str
    prepare: Strategy
    text_search: bool = True
    options: dict[str, Any] | None = None  # more store options


METHODS: dict[str, Method] = {
    "raw_copy": Method("raw asyncpg binary COPY (`copy_records_to_table`)", _raw_copy),
    "raw_executemany": Method("raw asyncpg `executemany` INSERT", _raw_executemany),
    "core_generated": Method("core `add_vectors`, generated ids", _core_generated),
    "core_ids_new": Method("core `add_vectors`, caller ids (new rows)", _core_ids_new),
    "core_ids_upsert": Method("core `add_vectors`, re-adding existing ids (upsert)", _core_ids_upsert),
    "raw_copy_prebuilt": Method("reference: raw COPY of records built before the clock", _raw_copy_prebuilt),
}

# --documents: every row a document row, with text search off, the minimal text-searchable layout, and on.
DOCUMENT_METHODS: dict[str, Method] = {
    "raw_copy_off": Method("raw asyncpg binary COPY, text search off (no text columns)", _raw_copy, False),
    "core_off": Method("core `add_vectors` with contents, text search off", _core_documents, False),
    "raw_copy_tsv": Method(
        "raw asyncpg binary COPY, generated tsvector column + GIN index (pgvecstore 0.1 layout)", _raw_copy_tsv, False
    ),
    "raw_copy_on": Method("raw asyncpg binary COPY, text search on (the store's triggers fire)", _raw_copy),
    "core_on": Method("core `add_vectors` with contents, text search on", _core_documents),
}

# --documents ratios: (numerator, denominator, issue 16's target or None).
DOCUMENT_RATIOS: list[tuple[str, str, float | None]] = [
    ("core_on", "raw_copy_tsv", 0.7),
    ("core_on", "raw_copy_on", None),
    ("core_off", "raw_copy_off", 0.8),
]


# --metadata-indexes: the core's add_vectors with and without indexes on the metadata.
INDEXED = {"source": "text", "n": "int"}
METADATA_INDEX_METHODS: dict[str, Method] = {
    "core_plain": Method("core `add_vectors`, no metadata index", _core_ids_new, False),
    "core_gin": Method('core `add_vectors`, metadata_index="gin"', _core_ids_new, False, {"metadata_index": "gin"}),
    "core_indexed": Method(
        "core `add_vectors`, indexed_metadata (2 keys)", _core_ids_new, False, {"indexed_metadata": INDEXED}
    ),
    "core_both": Method(
        "core `add_vectors`, both", _core_ids_new, False, {"metadata_index": "gin", "indexed_metadata": INDEXED}
    ),
    "core_covering": Method(
        "core `add_vectors`, indexed_metadata (2 keys), `n` covered", _core_ids_new, False,
        {"indexed_metadata": INDEXED, "covering_metadata": ["n"]},
    ),
    "core_text": Method("core `add_vectors`, text search on, no metadata index", _core_ids_new),
    "core_text_indexed": Method(
        "core `add_vectors`, text search on, indexed_metadata (2 keys)", _core_ids_new, True,
        {"indexed_metadata": INDEXED},
    ),
}


def methods_of(bench: Bench) -> dict[str, Method]:
    if bench.metadata_indexes:
        return METADATA_INDEX_METHODS
    return DOCUMENT_METHODS if bench.documents is not None else METHODS


async def check_text_filled(conn: asyncpg.Connection, method: str, qualified: str, column: str, n: int) -> None:
    """Every row of a table with a tsvector column has one (document rows only)."""
    filled = await conn.fetchval(f"SELECT count({quote_ident(column)}) FROM {qualified}")
    if filled != n:
        raise RuntimeError(f"{method}: expected {n} tsvectors in {qualified}.{column}, found {filled}")


async def run_method(bench: Bench, method: str, n: int) -> float:
    """Set up a fresh table, time `method` writing the first `n` rows into it, drop the table; seconds taken."""
    table = bench.next_table(method)
    strategy = methods_of(bench)[method]
    store = bench.store(table, strategy.text_search, strategy.options)
    await store.initialize()  # creates the table exactly as the store does (the raw methods use it too)
    conn = await asyncpg.connect(bench.dsn)
    try:
        await register_vector(conn, schema=await conn.fetchval(VECTOR_EXTENSION_SCHEMA.sql))
        run = await strategy.prepare(MethodRun(bench, table, store, conn, n))
        await store.count()  # the store's pool is open and warm before the clock starts
        await try_checkpoint(conn)
        seconds = await timed(run)
        qualified = store.table.qualified
        landed = await conn.fetchval(f"SELECT count(*) FROM {qualified}")
        if landed != n:
            raise RuntimeError(f"{method}: expected {n} rows in {qualified}, found {landed}")
        if bench.documents is not None and method != "raw_copy_off" and method != "core_off":
            await check_text_filled(conn, method, qualified, store.table.text_search_column, n)
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
    if args.documents:
        bench.documents = make_documents(bench.metadata)
    bench.metadata_indexes = args.metadata_indexes
    admin = await asyncpg.connect(dsn)
    try:
        version = await server_version(admin)
        table = methods_of(bench)
        methods = list(table)
        timings = {m: Timing(table[m].label, args.rows, []) for m in methods}
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
    if args.documents:
        return render_documents(timings, args, version)
    limit = timings[0].rate
    title = "with small metadata"
    if args.metadata_indexes:
        title = "with small metadata, with and without metadata indexes (text_search=False)"
    table = markdown_table(
        ["method", "rows", "seconds", "rows/s", f"ratio to {'no index' if args.metadata_indexes else 'raw COPY'}"],
        [
            [t.method, f"{t.rows:,}", f"{t.best:.3f}", f"{t.rate:,.0f}", f"{t.rate / limit:.2f}"]
            for t in timings
        ],
    )
    default_batch = StoreConfig.__dataclass_fields__["batch_size"].default
    batch = args.batch_size if args.batch_size is not None else f"{default_batch} (the default)"
    return (
        f"## Ingest: {args.rows:,} x {args.dims} float32 vectors {title}\n\n"
        f"{table}\n\n"
        f"Best of {args.repeats} repeat(s) after a warm-up, each into a fresh table without a vector index; "
        f"store batch_size={batch}. Ratios compare rates measured in this same run.\n"
        f"Server: {server_label(bool(args.dsn))}, {version}. Machine: {machine_description()}.\n"
        f"Command: `{command_line()}`\n"
    )


def render_documents(timings: list[Timing], args: argparse.Namespace, version: str) -> str:
    """The Markdown report of --documents: the methods' rates, the ratios, then how and where it was measured."""
    by_name = dict(zip(DOCUMENT_METHODS, timings, strict=True))
    table = markdown_table(
        ["method", "rows", "seconds", "rows/s"],
        [[t.method, f"{t.rows:,}", f"{t.best:.3f}", f"{t.rate:,.0f}"] for t in timings],
    )
    ratio_rows = []
    for top, bottom, target in DOCUMENT_RATIOS:
        ratio = by_name[top].rate / by_name[bottom].rate
        ratio_rows.append([
            f"{top} / {bottom}", f"{ratio:.2f}", f">= {target}" if target is not None else "-",
            ("met" if ratio >= target else "NOT met") if target is not None else "-",
        ])
    ratios = markdown_table(["ratio", "value", "target (issue 16)", "result"], ratio_rows)
    default_batch = StoreConfig.__dataclass_fields__["batch_size"].default
    batch = args.batch_size if args.batch_size is not None else f"{default_batch} (the default)"
    return (
        f"## Ingest of document rows: {args.rows:,} x {args.dims} float32 vectors, 180-word contents\n\n"
        f"{table}\n\n{ratios}\n\n"
        "Every row: a random uuid, a random vector, small metadata, a 180-word synthetic chunk as content "
        "(`benchmarks/text_corpus.py`, seed 0: words drawn from SciFact's unigram distribution), document_id and "
        "chunk_index. raw COPY: one `copy_records_to_table` call of all rows, timed from the caller's inputs; core: "
        "`add_vectors(vectors, ids, metadata, contents=, document_ids=, chunk_indexes=)`, one transaction of "
        "batch_size-row COPYs. off: a store made with `text_search=False` (no text columns); tsv: the same table "
        "given, before the clock, a generated stored `to_tsvector('english', content)` column and a GIN index on it "
        "(the layout of pgvecstore 0.1); on: a store made with `text_search=True` (tsvector set by a BEFORE row "
        "trigger, GIN index, term statistics kept by statement-level triggers), which "
        "the raw COPY goes through too.\n\n"
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
    parser.add_argument(
        "--documents",
        action="store_true",
        help="document rows (180-word contents): raw COPY and core with text search off, on, and against a "
        "generated tsvector column with a GIN index (benchmarks/results/ingest_text.md)",
    )
    parser.add_argument(
        "--metadata-indexes",
        action="store_true",
        help='core add_vectors without metadata indexes, with metadata_index="gin", with indexed_metadata, and both',
    )
    add_server_arguments(parser)
    args = parser.parse_args(argv)
    if args.documents and args.metadata_indexes:
        parser.error("--documents and --metadata-indexes are separate reports: give one")
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
