"""The five scenarios of `run_all.py`, each measured against raw asyncpg on the same server and data.

1. ingest: rows/s of raw COPY, raw executemany, the core, both adapters and both peers; peak memory of a streamed
   ingest through the core.
2. search: queries/s and p50/p99 latency at k=10, exact and HNSW, one client and 16 concurrent clients.
3. recall: recall@10 against exact ground truth as HNSW ef_search and IVFFlat probes grow, with queries/s.
4. filtered search: rows returned and recall@10 under filters matching 50% to 0.1% of the rows (`filtered.py`).
5. index build: HNSW build time with the core's build settings against pgvector's plain defaults.

Each scenario returns a `Section`: a Markdown table (with its notes) and the charts it drew.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import asyncpg
import numpy as np
from pgvector.asyncpg import register_vector

sys.path.insert(0, str(Path(__file__).resolve().parent))

import filtered as filtered_module
from common import (
    SELECTIVITY_GROUPS,
    Latencies,
    Timed,
    exact_top_k,
    fmt_rate,
    group_labels,
    insert_sql,
    make_clustered,
    make_clustered_queries,
    make_group_metadata,
    make_ids,
    markdown_table,
    measure_queries,
    measure_rounds,
    recall,
    save_chart,
    timed,
    try_checkpoint,
)
from pgvecstore import PgVectorStore
from pgvecstore.identifiers import DOCUMENT_COLUMNS, WRITE_COLUMNS
from pgvecstore.indexes import build_settings
from pgvecstore.search_tuning import SearchOptions

K = 10
SHARED_SCIFACT = Path(__file__).resolve().parents[2] / "shared" / "data" / "scifact"


# -- shared state ----------------------------------------------------------------------------------------------
@dataclass
class DataSet:
    """Vectors with their ids, metadata (row number ``n``, filter groups) and search queries."""

    name: str
    vectors: np.ndarray
    ids: list[str]
    labels: dict[str, np.ndarray]
    queries: np.ndarray
    texts: list[str] | None = None  # the rows' contents; default `texts_for` ("passage <n>")

    def metadata(self, start: int = 0, stop: int | None = None) -> list[dict[str, Any]]:
        return make_group_metadata(self.labels, start, stop)

    @property
    def rows(self) -> int:
        return len(self.vectors)


@dataclass
class Section:
    """One scenario's report: Markdown text and the PNG charts it refers to."""

    name: str
    title: str
    markdown: str
    charts: list[Path] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class Context:
    """Everything the scenarios of one run share: the server, a schema, sizes, data and peer results."""

    dsn: str
    schema: str
    dims: int
    rows_small: int
    rows_large: int
    stream_rows: int
    queries: int
    recall_queries: int
    filtered_queries: int
    repeats: int
    batch: int
    clients: int
    results_dir: Path
    peer_python: str | None
    peer_rows_large: int
    scifact_dir: Path | None
    search_rounds: int = 5
    quiet: bool = False
    small: DataSet | None = None
    large: DataSet | None = None
    large_truth: np.ndarray | None = None
    peer_records: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    tables: dict[str, str] = field(default_factory=dict)

    def log(self, message: str) -> None:
        if not self.quiet:
            print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    def store(self, table: str, **options: Any) -> PgVectorStore:
        base: dict[str, Any] = {
            "connection_string": self.dsn,
            "schema": self.schema,
            "table_name": table,
            "dimensions": self.dims,
            "pool_min_size": 1,
            "pool_max_size": self.clients,
        }
        base.update(options)
        return PgVectorStore(base)

    def qualified(self, table: str) -> str:
        return f'"{self.schema}"."{table}"'

    def data_small(self) -> DataSet:
        if self.small is None:
            self.small = make_dataset("small", self.rows_small, self.dims, self.queries, seed=0)
        return self.small

    def data_large(self) -> DataSet:
        if self.large is None:
            self.large = make_dataset("large", self.rows_large, self.dims, self.recall_queries, seed=0)
        return self.large

    def truth_large(self) -> np.ndarray:
        """The exact top K of the large data set's queries (computed once: two recall lines use it)."""
        if self.large_truth is None:
            data = self.data_large()
            self.large_truth = exact_top_k(data.vectors, data.queries, K)
        return self.large_truth


def make_dataset(name: str, rows: int, dims: int, queries: int, seed: int) -> DataSet:
    return DataSet(
        name=name,
        vectors=make_clustered(rows, dims, seed=seed),
        ids=make_ids(rows, seed=seed),
        labels=group_labels(rows, seed=seed),
        queries=make_clustered_queries(queries, dims, seed=seed),
    )


async def connect(ctx: Context) -> asyncpg.Connection:
    conn = await asyncpg.connect(ctx.dsn)
    await register_vector(conn)
    return conn


def texts_for(rows: int) -> list[str]:
    return [f"passage {i}" for i in range(rows)]


# -- peers -----------------------------------------------------------------------------------------------------
def run_peer(ctx: Context, lib: str, rows: int, queries: int) -> list[dict[str, Any]]:
    """Measure a peer library in its own interpreter (`peers.py`); its JSON records, or [] when unavailable."""
    if not ctx.peer_python:
        return []
    command = [
        ctx.peer_python, str(Path(__file__).resolve().parent / "peers.py"), "--lib", lib, "--dsn", ctx.dsn,
        "--rows", str(rows), "--dims", str(ctx.dims), "--queries", str(queries), "--batch", str(ctx.batch),
        "--clients", str(ctx.clients),
    ]
    ctx.log(f"peer {lib}: {rows:,} rows, {queries} queries")
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    if result.returncode != 0:
        ctx.notes.append(f"peer {lib} failed at {rows:,} rows: {result.stderr.strip().splitlines()[-1:]}")
        ctx.log(f"peer {lib} failed:\n{result.stderr[-3000:]}")
        return []
    records = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    ctx.peer_records.extend(records)
    return records


# -- 1. ingest -------------------------------------------------------------------------------------------------
ROWS_PER_DOCUMENT = 10  # the data's "source" changes every 10 rows: a document of 10 chunks
PEER_LABELS = {
    "langchain": "peer: langchain-postgres `PGVector.aadd_documents`",
    "llamaindex": "peer: llama-index-vector-stores-postgres `async_add`",
}


class PrecomputedEmbeddings:
    """A LangChain `Embeddings` that returns the data set's vectors for its texts (no model involved).

    LangChain embeddings return lists of floats. ``prepare(texts)`` turns those texts' vectors into lists ahead of
    the call that embeds them, as a model's output arrives before the store sees it; ``embed_documents`` then only
    looks each text up. Without ``prepare`` it converts in the call (numpy ``.tolist()``, which costs more than
    the whole COPY of the rows: 384 Python floats a row).
    """

    def __new__(cls, vectors: np.ndarray) -> Any:
        from langchain_core.embeddings import Embeddings

        lookup = {text: i for i, text in enumerate(texts_for(len(vectors)))}

        class _Precomputed(Embeddings):
            ready: dict[str, list[float]] | None = None

            def prepare(self, texts: list[str]) -> None:
                self.ready = dict(zip(texts, vectors[[lookup[t] for t in texts]].tolist(), strict=True))

            def embed_documents(self, texts: list[str]) -> list[list[float]]:
                ready = self.ready
                if ready:
                    return [ready[t] for t in texts]
                return vectors[[lookup[t] for t in texts]].tolist()

            def embed_query(self, text: str) -> list[float]:
                return self.embed_documents([text])[0]

        return _Precomputed()


def document_columns(data: DataSet) -> tuple[list[str], list[dict[str, Any]], list[str], list[int]]:
    """Texts, metadata, document_ids and chunk_indexes of the data set's rows as the adapters store them: the
    document is metadata ``source`` (a new one every `ROWS_PER_DOCUMENT` rows), the chunk its row within it."""
    texts = data.texts if data.texts is not None else texts_for(data.rows)
    meta = data.metadata()
    return texts, meta, [m["source"] for m in meta], [i % ROWS_PER_DOCUMENT for i in range(data.rows)]


def _hand_over_nothing(start: int, stop: int) -> None:
    return None


@dataclass
class IngestRun:
    """What every ingest strategy works with: the caller's inputs, the fresh table (its store and a raw connection
    to it), and the untimed hand-over between the calls of a batched method."""

    ctx: Context
    data: DataSet
    table: str
    store: PgVectorStore
    conn: asyncpg.Connection
    columns: list[str] = field(init=False)  # the written columns' names, in COPY order
    batches: list[tuple[int, int]] = field(init=False)  # (start, stop) of each call of a batched method
    texts: list[str] = field(init=False)
    meta: list[dict[str, Any]] = field(init=False)
    document_ids: list[str] = field(init=False)
    chunk_indexes: list[int] = field(init=False)
    untimed: float = 0.0  # seconds inside the run spent between calls (subtracted)
    # What the next call is handed, as handed[0]; the last call's is freed untimed, with this object.
    handed: list[Any] = field(default_factory=list)

    def __post_init__(self) -> None:
        n, batch = self.data.rows, self.ctx.batch
        self.columns = [self.store.table.columns[c] for c in WRITE_COLUMNS]
        self.batches = [(start, min(n, start + batch)) for start in range(0, n, batch)]
        self.texts, self.meta, self.document_ids, self.chunk_indexes = document_columns(self.data)

    def between_calls(self, hand_over: Callable[[], Any]) -> None:
        """Untimed, before each call of a batched method: what a pipeline hands over ready (`hand_over`, kept in
        `handed`), then a garbage collection, so one triggered by allocations outside the method (this setup, the
        last call's garbage) does not land in a random line's clock. Collections a call triggers itself count."""
        began = time.perf_counter()
        self.handed.clear()
        self.handed.append(hand_over())
        gc.collect()
        self.untimed += time.perf_counter() - began

    def batched(
        self, call: Callable[[int, int], Awaitable[Any]], hand_over: Callable[[int, int], Any] = _hand_over_nothing
    ) -> Timed:
        """The run of a batched method: `call(start, stop)` per batch, each after `between_calls` with what
        `hand_over(start, stop)` makes."""

        async def run() -> None:
            for start, stop in self.batches:
                self.between_calls(lambda: hand_over(start, stop))  # noqa: B023 - called now
                await call(start, stop)

        return run

    async def copy(self, records: list[tuple[Any, ...]]) -> None:
        """One binary COPY of `records` into the table (one transaction)."""
        await self.conn.copy_records_to_table(
            self.table, records=records, columns=self.columns, schema_name=self.ctx.schema
        )


# An ingest strategy: the set-up of one method, outside the clock, returning the work inside it.
IngestStrategy = Callable[[IngestRun], Awaitable[Timed]]


def _plain_records(r: IngestRun) -> list[tuple[Any, ...]]:
    """The rows a hand-written loader sends (id, vector, metadata), in the store's write-column order."""
    data, meta = r.data, r.meta
    return [(data.ids[i], data.vectors[i], None, json.dumps(meta[i]), None, None, None) for i in range(data.rows)]


async def _raw_copy(r: IngestRun) -> Timed:
    async def run() -> None:
        await r.copy(_plain_records(r))

    return run


async def _raw_executemany(r: IngestRun) -> Timed:
    insert = insert_sql(r.store.table.qualified, [r.store.table.col(c) for c in WRITE_COLUMNS])

    async def run() -> None:
        records = _plain_records(r)
        async with r.conn.transaction():
            await r.conn.executemany(insert, records)

    return run


async def _core(r: IngestRun) -> Timed:
    async def run() -> None:
        await r.store.add_vectors(r.data.vectors, r.data.ids, r.meta)

    return run


def _raw_copy_docs(
    vectors_of: Callable[[np.ndarray], Any],
    metadata_of: Callable[[IngestRun], Sequence[Mapping[str, Any]]] = lambda r: r.meta,
) -> IngestStrategy:
    """Document rows by one binary COPY (one transaction) per batch, as each adapter call is one transaction;
    `vectors_of` makes what each COPY is handed from the batch's vectors, before the call; `metadata_of` gives
    every row's metadata dict, made before the clock (by default the caller's metadata)."""

    async def prepare(r: IngestRun) -> Timed:
        data, texts, document_ids, chunk_indexes = r.data, r.texts, r.document_ids, r.chunk_indexes
        meta = metadata_of(r)

        async def call(start: int, stop: int) -> None:
            vectors = r.handed[0]  # freed with `handed`, between calls
            records = [
                (data.ids[i], vectors[i - start], texts[i], json.dumps(meta[i]), None, document_ids[i],
                 chunk_indexes[i])
                for i in range(start, stop)
            ]
            await r.copy(records)

        return r.batched(call, lambda start, stop: vectors_of(data.vectors[start:stop]))

    return prepare


def _node_rows_metadata(r: IngestRun) -> list[dict[str, Any]]:
    """The LlamaIndex adapter's metadata of each row: the node's metadata plus the serialised node."""
    from llama_index.vector_stores.pgvecstore.nodes import node_metadata

    return [node_metadata(node) for node in _llamaindex_nodes(r, 0, r.data.rows)]


async def _core_docs(r: IngestRun) -> Timed:
    data, texts, meta, document_ids, chunk_indexes = r.data, r.texts, r.meta, r.document_ids, r.chunk_indexes

    def call(start: int, stop: int) -> Awaitable[Any]:
        return r.store.add_vectors(
            data.vectors[start:stop], data.ids[start:stop], meta[start:stop], contents=texts[start:stop],
            document_ids=document_ids[start:stop], chunk_indexes=chunk_indexes[start:stop],
        )

    return r.batched(call)


def _langchain(prepared: bool) -> IngestStrategy:
    """The LangChain adapter's `aadd_documents` per batch. `prepared`: the embeddings, as lists, are ready before
    each call (untimed); otherwise the `Embeddings` object converts numpy to lists inside the call."""

    async def prepare(r: IngestRun) -> Timed:
        from langchain_core.documents import Document

        from langchain_pgvecstore import PgVecStore as LangChainStore

        texts, meta = r.texts, r.meta
        embeddings = PrecomputedEmbeddings(r.data.vectors)
        adapter = LangChainStore(embeddings, store=r.store)
        documents = [Document(page_content=texts[i], metadata=meta[i]) for i in range(r.data.rows)]

        def make_lists(start: int, stop: int) -> None:
            embeddings.prepare(texts[start:stop])

        return r.batched(lambda start, stop: adapter.aadd_documents(documents[start:stop]),
                         make_lists if prepared else _hand_over_nothing)

    return prepare


def _llamaindex_nodes(r: IngestRun, start: int, stop: int) -> list[Any]:
    """The rows `start:stop` as a pipeline hands them to LlamaIndex: text nodes with their embeddings (as lists),
    metadata and source document."""
    from llama_index.core.schema import NodeRelationship, RelatedNodeInfo, TextNode

    data, texts, meta, document_ids = r.data, r.texts, r.meta, r.document_ids
    lists = data.vectors[start:stop].tolist()
    return [
        TextNode(
            id_=data.ids[i], text=texts[i], metadata=meta[i], embedding=lists[i - start],
            relationships={NodeRelationship.SOURCE: RelatedNodeInfo(node_id=document_ids[i])},
        )
        for i in range(start, stop)
    ]


async def _llamaindex(r: IngestRun) -> Timed:
    from llama_index.vector_stores.pgvecstore import PgVecStore as LlamaStore

    adapter = LlamaStore(r.store)
    # The nodes come embedded from a pipeline: built outside the clock.
    return r.batched(lambda start, stop: adapter.async_add(r.handed[0]),
                     lambda start, stop: _llamaindex_nodes(r, start, stop))


class IngestMethod(NamedTuple):
    """One line of the ingest table: its label and strategy, and whether it writes document rows (content,
    document_id, chunk_index besides id, vector and metadata) into a table made with the adapters' options (text
    ids), compared with raw_copy_docs; the other lines are compared with raw_copy."""

    label: str
    prepare: IngestStrategy
    documents: bool = False


INGEST_STRATEGIES: dict[str, IngestMethod] = {
    "raw_copy": IngestMethod("raw asyncpg binary COPY", _raw_copy),
    "raw_executemany": IngestMethod("raw asyncpg `executemany` INSERT", _raw_executemany),
    "core": IngestMethod("core `add_vectors`", _core),
    "raw_copy_docs": IngestMethod("raw asyncpg binary COPY, document rows", _raw_copy_docs(lambda v: v), True),
    "raw_copy_docs_lists": IngestMethod(  # as the LangChain adapter gets them: lists of floats, made before the call
        "reference: raw asyncpg binary COPY, document rows, vectors as lists of floats",
        _raw_copy_docs(np.ndarray.tolist), True,
    ),
    "core_docs": IngestMethod("core `add_vectors`, document rows", _core_docs, True),
    "langchain_adapter": IngestMethod("LangChain adapter `aadd_documents`", _langchain(prepared=True), True),
    "langchain_tolist": IngestMethod(
        "reference: LangChain adapter, `Embeddings` calling `.tolist()` in each call", _langchain(prepared=False), True
    ),
    "llamaindex_adapter": IngestMethod("LlamaIndex adapter `async_add`", _llamaindex, True),
    "raw_copy_node_rows": IngestMethod(  # what the LlamaIndex adapter's rows cost the server, its Python apart
        "reference: raw asyncpg binary COPY of the LlamaIndex adapter's rows (the serialised node in the metadata)",
        _raw_copy_docs(lambda v: v, _node_rows_metadata), True,
    ),
}
INGEST_METHODS = {name: method.label for name, method in INGEST_STRATEGIES.items()}
DOC_METHODS = tuple(name for name, method in INGEST_STRATEGIES.items() if method.documents)


# What a caller may do to a fresh table before the clock starts (its store, a raw connection to it).
TableHook = Callable[[PgVectorStore, asyncpg.Connection], Awaitable[None]]


async def ingest_once(
    ctx: Context, data: DataSet, method: str, table: str, table_hook: TableHook | None = None
) -> float:
    """Load `data` into a fresh table by `method`; seconds taken. The table is left for the caller.

    The clock covers turning the caller's inputs (vectors array, ids, texts, metadata dicts, and for document
    rows their document ids and chunk numbers) into rows and writing them; making those inputs is outside it, and
    so is what a pipeline hands over ready: LlamaIndex nodes with their embeddings, LangChain's embeddings as lists.
    """
    strategy = INGEST_STRATEGIES[method]
    # Document rows go into a table made with the adapters' options (text ids; text search on, the default).
    store = ctx.store(table, pool_max_size=2, **({"id_type": "text"} if strategy.documents else {}))
    await store.initialize()
    conn = await connect(ctx)
    try:
        if table_hook is not None:
            await table_hook(store, conn)
        r = IngestRun(ctx, data, table, store, conn)
        run = await strategy.prepare(r)
        await store.count()
        await try_checkpoint(conn)
        # The setup's objects (data, documents, imported modules) are frozen out of the collector while the clock
        # runs: the collections between calls stay quick, and one inside a call walks only what the run made.
        gc.collect()
        gc.freeze()
        try:
            seconds = await timed(run) - r.untimed
        finally:
            gc.unfreeze()
        await check_ingested(r, method, strategy.documents)
        return seconds
    finally:
        await conn.close()
        await store.close()


async def check_ingested(r: IngestRun, method: str, documents: bool) -> None:
    """Every row landed; document rows as raw_copy_docs writes them: each with its text, document and chunk."""
    n, table = r.data.rows, r.store.table
    landed = await r.conn.fetchval(f"SELECT count(*) FROM {table.qualified}")
    if landed != n:
        raise RuntimeError(f"{method}: expected {n} rows in {r.table}, found {landed}")
    if documents:
        filled = " AND ".join(f"{table.col(c)} IS NOT NULL" for c in DOCUMENT_COLUMNS)
        complete = await r.conn.fetchval(f"SELECT count(*) FROM {table.qualified} WHERE {filled}")
        if complete != n:
            raise RuntimeError(f"{method}: {n - complete} rows of {r.table} lack content, document or chunk")


async def ingest_size(
    ctx: Context, data: DataSet, repeats: int, keep_core_as: str | None, methods: Sequence[str] = (),
    table_hook: TableHook | None = None,
) -> dict[str, list[float]]:
    """Every in-process method (or those of `methods`) at one size, `repeats` rounds (methods interleaved); the
    seconds of each run per method. `table_hook` runs on each fresh table before the clock."""
    seconds: dict[str, list[float]] = {m: [] for m in (methods or INGEST_METHODS)}
    admin = await asyncpg.connect(ctx.dsn)
    try:
        for round_ in range(repeats):
            for method in seconds:
                last = round_ == repeats - 1
                table = keep_core_as if (method == "core" and last and keep_core_as) else f"ing_{method}_{round_}"
                took = await ingest_once(ctx, data, method, table, table_hook)
                seconds[method].append(took)
                ctx.log(f"ingest {data.rows:,} {method}: {took:.2f} s ({data.rows / took:,.0f} rows/s)")
                if table != keep_core_as:
                    await admin.execute(f"DROP TABLE {ctx.qualified(table)}")
    finally:
        await admin.close()
    return seconds


async def scenario_ingest(ctx: Context) -> Section:
    small, large = ctx.data_small(), ctx.data_large()
    # Warm-up of every code path (imports, prepared statements, server caches), not reported.
    warm = make_dataset("warm", min(2000, ctx.rows_small), ctx.dims, 1, seed=5)
    await ingest_size(ctx, warm, 1, None)
    sizes: list[tuple[DataSet, int, str | None]] = [(small, ctx.repeats, "search_small")]
    if large.rows != small.rows:
        sizes.append((large, 1, "large"))
    rows_out: list[list[str]] = []
    chart: dict[str, dict[str, float]] = {}
    same_rows: dict[str, dict[str, float]] = {}  # per size: document-row method -> ratio to raw_copy_docs
    stream: dict[str, Any] | None = None
    for data, repeats, keep in sizes:
        seconds = await ingest_size(ctx, data, repeats, keep)
        rates = {m: data.rows / min(s) for m, s in seconds.items()}
        runs = {m: len(s) for m, s in seconds.items()}
        peers_here: dict[str, float] = {}
        for lib in PEER_LABELS:
            peer_rows = data.rows if data is small else min(data.rows, ctx.peer_rows_large)
            if data is small:
                records = [r for r in ctx.peer_records if r["lib"] == lib and r["kind"] == "ingest"
                           and r["rows"] == data.rows]
            else:
                records = run_peer(ctx, lib, peer_rows, 0) if peer_rows > 0 else []
            for r in records:
                if r["kind"] == "ingest":
                    peers_here[lib] = r["rows"] / r["seconds"]
                    runs[lib] = 1
                    if r["rows"] != data.rows:
                        ctx.notes.append(f"{PEER_LABELS[lib]} was measured at {r['rows']:,} rows, not {data.rows:,}")
        # Each line is compared with the raw COPY and the core line that write the same columns; peers (which
        # write their text too, into their own tables) with the document-row lines.
        plain = ("id, vector, metadata", rates["raw_copy"], rates["core"])
        documents = ("+ content, document_id, chunk_index", rates["raw_copy_docs"], rates["core_docs"])
        label_rates = [(INGEST_METHODS[m], r, runs[m], documents if m in DOC_METHODS else plain)
                       for m, r in rates.items()]
        label_rates += [(PEER_LABELS[lib], r, runs[lib], ("+ content (own tables)", *documents[1:]))
                        for lib, r in peers_here.items()]
        for label, rate, n_runs, (writes, limit, core) in label_rates:
            rows_out.append([
                label, writes, f"{data.rows:,}", f"{data.rows / rate:.2f}", fmt_rate(rate), f"{rate / limit:.2f}",
                f"{core / rate:.1f}x", f"best of {n_runs}",
            ])
        size = f"{data.rows:,} rows"
        chart[size] = {label: rate for label, rate, _, _ in label_rates}
        same_rows[size] = {m: rates[m] / rates["raw_copy_docs"] for m in DOC_METHODS}
    if ctx.stream_rows:
        stream = stream_ingest(ctx)
    table = markdown_table(
        ["method", "writes", "rows", "seconds", "rows/s", "ratio to raw COPY of the same rows",
         "core is ... times faster", "runs"],
        rows_out,
    )
    text = [
        f"Vectors of {ctx.dims} dimensions with small metadata (source name, row number, four filter-group keys), "
        f"loaded into a fresh table each (primary key and the store's b-tree indexes, no vector index). Two kinds "
        f"of rows, each line compared with the raw COPY (and the core line) that writes the same columns:",
        "",
        "- *id, vector, metadata*: raw and core take all rows in one call, into a table with uuid ids.",
        f"- *document rows* (`+ content, document_id, chunk_index`): the same plus each row's text in `content` "
        f"(which the table's text-search column, a generated tsvector with a GIN index, on by default, indexes), "
        f"its document (metadata `source`, a new one every {ROWS_PER_DOCUMENT} rows) and its chunk number in "
        f"that document, into a table made with the adapters' options (text ids). This is what the adapters "
        f"write, so their ratio is to the raw COPY of these same rows. Every document-row line takes "
        f"{ctx.batch:,} rows per call, as a loader batches: the raw COPY runs one `copy_records_to_table` (one "
        f"transaction) per {ctx.batch:,} rows, as each adapter call is one transaction.",
        "",
        "Each clock covers turning the caller's inputs (vectors array, ids, texts, metadata dicts, document ids and "
        "chunk numbers) into rows and writing them. The adapters get their embeddings as a pipeline hands them "
        "over, made before the call: LlamaIndex nodes with `embedding` set, and a LangChain `Embeddings` that "
        "returns lists of floats made ahead (a look-up per text in the call); turning those lists into float32 "
        "vectors is the adapters' own work, inside the clock, while the raw COPY starts from the numpy array. Two "
        "reference lines show what that costs: the raw COPY given the vectors as the same lists of floats (what a "
        "hand-written loader behind a LangChain `Embeddings` starts from), and the LangChain adapter with an "
        "`Embeddings` object that converts numpy to lists (`.tolist()`) inside each call; that conversion belongs "
        "to the embedding model's side (a real one does it after far longer inference) and costs more than the "
        "whole raw COPY of the rows. Before each timed call (outside the clock) "
        "a garbage collection runs, with the benchmark's own data frozen out of the collector, so a collection "
        "triggered by earlier allocations does not land in a random line; collections a call triggers itself count.",
        "",
        table,
    ]
    if stream:
        text += [
            "",
            f"Streamed ingest through the core: {stream['rows']:,} x {stream['dims']} vectors and metadata from "
            f"generators (never held whole: the vectors alone would be {stream['vectors_mib']:,.0f} MiB) in "
            f"{stream['seconds']:.1f} s ({stream['rows'] / stream['seconds']:,.0f} rows/s). Peak resident memory of "
            f"the process: {stream['peak_rss_before_mib']:.0f} MiB before, {stream['peak_rss_after_mib']:.0f} MiB "
            f"after (batch_size {stream['batch_size']:,}); what grows with the row count is the list of returned "
            f"ids and the set that checks them for duplicates (about 150 bytes a row).",
        ]
    path = ctx.results_dir / "1_ingest.png"

    def draw(ax: Any) -> None:
        labels = list(next(iter(chart.values())))
        width = 0.8 / len(chart)
        for j, (size, rates) in enumerate(chart.items()):
            ax.barh([i + j * width for i in range(len(labels))], [rates.get(lbl, 0) for lbl in labels],
                    height=width, label=size)
        ax.set_yticks([i + width * (len(chart) - 1) / 2 for i in range(len(labels))])
        ax.set_yticklabels([lbl.replace("`", "") for lbl in labels], fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel("rows/s")
        for container in ax.containers:
            ax.bar_label(container, labels=[f"{v:,.0f}" for v in container.datavalues], fontsize=6, padding=2)
        ax.legend()

    save_chart(path, draw, f"Ingest rate, {ctx.dims} dimensions", size=(9, 5))
    return Section("ingest", "1. Ingest", "\n".join(text), [path],
                   {"chart": chart, "stream": stream, "same_rows": same_rows})


def stream_ingest(ctx: Context) -> dict[str, Any] | None:
    ctx.log(f"streamed ingest of {ctx.stream_rows:,} rows (own process)")
    result = subprocess.run(
        [sys.executable, str(Path(__file__).resolve().parent / "ingest_stream.py"), "--dsn", ctx.dsn,
         "--rows", str(ctx.stream_rows), "--dims", str(ctx.dims)],
        capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    if result.returncode != 0:
        ctx.notes.append(f"streamed ingest failed: {result.stderr.strip().splitlines()[-1:]}")
        return None
    return json.loads(result.stdout.strip().splitlines()[-1])


def qps_key(method: str, index: str, clients: int) -> str:
    return f"{method}/{index}/{clients}"


# -- 2. search -------------------------------------------------------------------------------------------------
SEARCH_METHODS = {
    "raw": "raw SQL (asyncpg)",
    "raw_noreset": "reference: raw SQL, pool without reset",
    "core": "core `search`",
    "langchain_adapter": "LangChain adapter `asimilarity_search_by_vector`",
    "llamaindex_adapter": "LlamaIndex adapter `aquery`",
}


async def scenario_search(ctx: Context) -> Section:
    data = ctx.data_small()
    table = "search_small"
    store = ctx.store(table)
    await store.initialize()
    from llama_index.core.vector_stores.types import VectorStoreQuery

    from langchain_pgvecstore import PgVecStore as LangChainStore
    from llama_index.vector_stores.pgvecstore import PgVecStore as LlamaStore

    langchain = LangChainStore(PrecomputedEmbeddings(data.vectors), store=store)
    llama = LlamaStore(store)
    sql = (
        f"SELECT id::text, metadata::text, content, document_id, chunk_index, embedding <=> $1 AS distance "
        f"FROM {ctx.qualified(table)} ORDER BY embedding <=> $1 LIMIT $2"
    )

    async def init(conn: asyncpg.Connection) -> None:
        await register_vector(conn)

    async def no_reset(conn: asyncpg.Connection) -> None:
        return None

    raw_pool = await asyncpg.create_pool(ctx.dsn, min_size=ctx.clients, max_size=ctx.clients, init=init)
    bare_pool = await asyncpg.create_pool(
        ctx.dsn, min_size=ctx.clients, max_size=ctx.clients, init=init, reset=no_reset
    )
    queries = data.queries
    lists = [q.tolist() for q in queries]
    results: list[dict[str, Any]] = []
    try:
        admin = await asyncpg.connect(ctx.dsn)
        await admin.execute(f"ANALYZE {ctx.qualified(table)}")
        for index in ("exact", "hnsw"):
            if index == "hnsw":
                await store.create_index("hnsw", {"m": 16, "ef_construction": 64})
                await admin.execute(f"ANALYZE {ctx.qualified(table)}")
            for clients in (1, ctx.clients):
                single = await raw_pool.acquire() if clients == 1 else None
                try:

                    async def raw(i: int, single: Any = single) -> list[Any]:
                        if single is not None:
                            rows = await single.fetch(sql, queries[i], K)
                        else:
                            async with raw_pool.acquire() as conn:
                                rows = await conn.fetch(sql, queries[i], K)
                        return [(r[0], 1.0 - r[5], json.loads(r[1])) for r in rows]

                    async def raw_noreset(i: int) -> list[Any]:
                        async with bare_pool.acquire() as conn:
                            rows = await conn.fetch(sql, queries[i], K)
                        return [(r[0], 1.0 - r[5], json.loads(r[1])) for r in rows]

                    runners: dict[str, Callable[[int], Awaitable[Any]]] = {
                        "raw": raw,
                        "raw_noreset": raw_noreset,
                        "core": lambda i: store.search(queries[i], k=K),
                        "langchain_adapter": lambda i: langchain.asimilarity_search_by_vector(lists[i], k=K),
                        "llamaindex_adapter": lambda i: llama.aquery(
                            VectorStoreQuery(query_embedding=lists[i], similarity_top_k=K)
                        ),
                    }
                    for runner in runners.values():
                        for i in range(min(20, len(queries))):  # warm-up
                            await runner(i)
                    rounds = ctx.search_rounds if index == "hnsw" else max(1, ctx.search_rounds // 2)
                    timings = await measure_rounds(runners, len(queries), clients, rounds)
                    for method, timing in timings.items():
                        results.append({"method": SEARCH_METHODS[method], "key": method, "index": index,
                                        "clients": clients, "timing": timing})
                        ctx.log(f"search {index} c={clients} {method}: {timing.qps:,.0f} q/s")
                finally:
                    if single is not None:
                        await raw_pool.release(single)
        await admin.close()
    finally:
        await raw_pool.close()
        await bare_pool.close()
        await store.close()
    for record in ctx.peer_records:
        if record["kind"] == "search" and record.get("rows", data.rows) and record["lib"] in PEER_LABELS:
            timing = Latencies(record["lib"], record["seconds"], record["wall"], record["clients"])
            results.append({"method": PEER_LABELS[record["lib"]].split(" `")[0], "key": record["lib"],
                            "index": record["index"], "clients": record["clients"], "timing": timing})
    rows_out = []
    for index in ("exact", "hnsw"):
        for clients in (1, ctx.clients):
            group = [r for r in results if r["index"] == index and r["clients"] == clients]
            base = next(r["timing"].qps for r in group if r["key"] == "raw")
            for r in group:
                t: Latencies = r["timing"]
                rows_out.append([
                    r["method"], index.upper() if index == "hnsw" else "exact", str(clients), fmt_rate(t.qps),
                    f"{t.p50_ms:.2f}", f"{t.p99_ms:.2f}", f"{t.qps / base:.2f}",
                ])
    table_md = markdown_table(
        ["method", "index", "clients", "queries/s", "p50 ms", "p99 ms", "ratio to raw SQL"], rows_out
    )
    text = [
        f"k={K} nearest of {data.rows:,} clustered unit vectors ({ctx.dims} dimensions, cosine), {len(queries)} "
        f"queries per round, {ctx.search_rounds} rounds per line ({max(1, ctx.search_rounds // 2)} for exact) "
        f"after 20 warm-up queries, the methods taking turns round by round; queries/s is the median round. "
        f"Exact: no vector index (a scan of every row). HNSW: m=16, ef_construction=64, pgvector's default "
        f"ef_search (40). One client: the queries one after another (the raw "
        f"line on one connection it holds, everything else through its pool); {ctx.clients} clients: that many "
        f"concurrent tasks sharing a pool of {ctx.clients} connections (the raw line an asyncpg pool, the core and "
        f"adapters the store's, the peers their SQLAlchemy engine's). Every line returns ids, scores and metadata; "
        f"the raw line decodes the metadata JSON as the core does. The reference line acquires from an asyncpg "
        f"pool created with `reset=` a no-op: an asyncpg pool normally sends `RESET ALL` and friends (one round "
        f"trip) each time a connection goes back.",
        "",
        table_md,
    ]
    path = ctx.results_dir / "2_search.png"

    def draw(ax: Any) -> None:
        labels = list(dict.fromkeys(r["method"] for r in results))
        combos = [(i, c) for i in ("exact", "hnsw") for c in (1, ctx.clients)]
        width = 0.8 / len(combos)
        for j, (index, clients) in enumerate(combos):
            values = []
            for label in labels:
                match = [r["timing"].qps for r in results
                         if r["method"] == label and r["index"] == index and r["clients"] == clients]
                values.append(match[0] if match else 0)
            ax.barh([i + j * width for i in range(len(labels))], values, height=width,
                    label=f"{index}, {clients} client{'s' if clients > 1 else ''}")
        ax.set_yticks([i + width * (len(combos) - 1) / 2 for i in range(len(labels))])
        ax.set_yticklabels([lbl.replace("`", "") for lbl in labels], fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel("queries/s")
        ax.legend(fontsize=8)

    save_chart(path, draw, f"Search k={K}, {data.rows:,} x {ctx.dims}", size=(9, 5.5))
    summary = {qps_key(r["key"], r["index"], r["clients"]): r["timing"].qps for r in results}
    return Section("search", "2. Search", "\n".join(text), [path], {"qps": summary})


async def ensure_table(ctx: Context, table: str, data: DataSet) -> None:
    """Load `data` into `table` through the core unless an earlier scenario left it there (untimed)."""
    admin = await asyncpg.connect(ctx.dsn)
    try:
        exists = await admin.fetchval("SELECT to_regclass($1) IS NOT NULL", f'"{ctx.schema}"."{table}"')
        if exists and await admin.fetchval(f"SELECT count(*) FROM {ctx.qualified(table)}") == data.rows:
            return
    finally:
        await admin.close()
    ctx.log(f"loading {data.rows:,} rows into {table}")
    store = ctx.store(table, pool_max_size=2)
    try:
        await store.add_vectors(data.vectors, data.ids, data.metadata())
    finally:
        await store.close()


async def ensure_hnsw(ctx: Context, table: str) -> None:
    store = ctx.store(table, pool_max_size=2)
    try:
        await store.create_index("hnsw", {"m": 16, "ef_construction": 64})
    finally:
        await store.close()


# -- 5. index build --------------------------------------------------------------------------------------------
async def scenario_index_build(ctx: Context) -> Section:
    """HNSW build on the large table: pgvector's plain defaults, then the core's create_index (kept)."""
    data = ctx.data_large()
    table = "large"
    admin = await asyncpg.connect(ctx.dsn)
    store = ctx.store(table)
    try:
        memory, workers = await admin.fetchrow(
            "SELECT current_setting('maintenance_work_mem'), current_setting('max_parallel_maintenance_workers')"
        )
        mem_bytes = await admin.fetchval("SELECT pg_size_bytes(current_setting('maintenance_work_mem'))")
        params = {"m": 16, "ef_construction": 64}
        core_settings = build_settings("hnsw", params, data.rows, ctx.dims, int(mem_bytes), int(workers))
        await admin.execute(f"ANALYZE {ctx.qualified(table)}")
        notices: list[str] = []
        admin.add_log_listener(lambda _c, m: notices.append(m.message))
        await admin.execute("SET client_min_messages = notice")
        await try_checkpoint(admin)
        ctx.log(f"index build: pgvector defaults on {data.rows:,} rows")
        start = time.perf_counter()
        await admin.execute(
            f"CREATE INDEX bench_default_hnsw ON {ctx.qualified(table)} "
            "USING hnsw (embedding vector_cosine_ops) WITH (m = 16, ef_construction = 64)"
        )
        default_seconds = time.perf_counter() - start
        default_notes = [n for n in notices if "maintenance_work_mem" in n]
        await admin.execute(f'DROP INDEX "{ctx.schema}".bench_default_hnsw')
        await try_checkpoint(admin)
        ctx.log(f"index build: core settings {core_settings}")
        await store.initialize()
        start = time.perf_counter()
        await store.create_index("hnsw", params)
        core_seconds = time.perf_counter() - start
    finally:
        await store.close()
        await admin.close()
    shown = ", ".join(f"{k} = {v}" for k, v in core_settings.items()) or "(the session's values were higher)"
    rows_out = [
        ["pgvector defaults (plain `CREATE INDEX`)",
         f"maintenance_work_mem = {memory}, max_parallel_maintenance_workers = {workers}",
         f"{default_seconds:.1f}", f"{data.rows / default_seconds:,.0f}", "1.00"],
        ["core `create_index('hnsw')`", shown, f"{core_seconds:.1f}", f"{data.rows / core_seconds:,.0f}",
         f"{default_seconds / core_seconds:.2f}"],
    ]
    text = [
        f"HNSW (m=16, ef_construction=64, cosine) on the {data.rows:,}-row clustered table, {ctx.dims} dimensions. "
        "The core raises maintenance_work_mem for the build's transaction to what the graph needs "
        "(`pgvecstore.indexes.build_settings`) and sets max_parallel_maintenance_workers; the plain build runs "
        "with the server's settings.",
        "",
        markdown_table(["build", "settings", "seconds", "rows/s", "speed-up"], rows_out, align="llrrr"),
    ]
    if default_notes:
        text += ["", f"pgvector's notice during the plain build: \"{default_notes[0]}\""]
    path = ctx.results_dir / "5_index_build.png"

    def draw(ax: Any) -> None:
        ax.barh(["pgvector defaults", "core create_index"], [default_seconds, core_seconds],
                color=["#999999", "#1f77b4"])
        ax.invert_yaxis()
        ax.set_xlabel("seconds")

    save_chart(path, draw, f"HNSW build, {data.rows:,} x {ctx.dims}", size=(7, 2.6))
    return Section("index_build", "5. Index build", "\n".join(text), [path],
                   {"default": default_seconds, "core": core_seconds})


# -- 3. recall -------------------------------------------------------------------------------------------------
EF_SWEEP = (10, 20, 40, 64, 100, 150, 200)


def probe_sweep(lists: int) -> list[int]:
    values = sorted({p for p in (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256) if p <= lists} | {lists})
    return values


async def sweep(
    ctx: Context, store: PgVectorStore, queries: np.ndarray, truth: np.ndarray, row_of: dict[str, int],
    param: str, values: Sequence[int],
) -> list[dict[str, Any]]:
    out = []
    for value in values:
        found: list[list[int]] = [[] for _ in queries]

        async def one(i: int, value: int = value, found: list[list[int]] = found) -> None:
            hits = await store.search(queries[i], k=K, include_metadata=False, search_params={param: value})
            found[i] = [row_of[h[0]] for h in hits]

        for i in range(min(5, len(queries))):
            await one(i)
        timing = await measure_queries(param, one, len(queries))
        out.append({"param": param, "value": value, "recall": recall(found, truth, K), "qps": timing.qps,
                    "p50_ms": timing.p50_ms})
        ctx.log(f"recall {param}={value}: {out[-1]['recall']:.3f} at {timing.qps:,.0f} q/s")
    return out


async def scenario_recall_scifact(ctx: Context) -> list[dict[str, Any]]:
    if ctx.scifact_dir is None or not (ctx.scifact_dir / "corpus_minilm.npy").exists():
        ctx.notes.append("SciFact embeddings not found: recall measured on the synthetic set only")
        return []
    corpus = np.load(ctx.scifact_dir / "corpus_minilm.npy").astype(np.float32)
    queries = np.load(ctx.scifact_dir / "queries_minilm.npy").astype(np.float32)
    truth = np.load(ctx.scifact_dir / "exact_top100_rows.npy")[:, :K]
    if corpus.shape[1] != ctx.dims:
        store_dims = corpus.shape[1]
    else:
        store_dims = ctx.dims
    limit = ctx.recall_queries if ctx.recall_queries < len(queries) else len(queries)
    queries, truth = queries[:limit], truth[:limit]
    ids = make_ids(len(corpus), seed=11)
    row_of = {row_id: i for i, row_id in enumerate(ids)}
    store = ctx.store("scifact", dimensions=store_dims, pool_max_size=2)
    out: list[dict[str, Any]] = []
    try:
        await store.add_vectors(corpus, ids)
        await store.create_index("hnsw", {"m": 16, "ef_construction": 64})
        for r in await sweep(ctx, store, queries, truth, row_of, "ef_search", EF_SWEEP):
            out.append({"data": f"SciFact ({len(corpus):,})", "index": "HNSW", **r})
        await store.create_index("ivfflat")
        lists = int(await _ivfflat_lists(ctx, "scifact"))
        for r in await sweep(ctx, store, queries, truth, row_of, "probes", probe_sweep(lists)):
            out.append({"data": f"SciFact ({len(corpus):,})", "index": f"IVFFlat (lists={lists})", **r})
    finally:
        await store.close()
    return out


async def _ivfflat_lists(ctx: Context, table: str) -> int:
    conn = await asyncpg.connect(ctx.dsn)
    try:
        options = await conn.fetchval(
            "SELECT c.reloptions FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "JOIN pg_am a ON a.oid = c.relam WHERE n.nspname = $1 AND a.amname = 'ivfflat' "
            "AND c.relname LIKE $2",
            ctx.schema, f"{table}%",
        )
        return int(next(o.split("=")[1] for o in options if o.startswith("lists=")))
    finally:
        await conn.close()


async def recall_large(ctx: Context, index: str) -> list[dict[str, Any]]:
    """Recall against the exact answer on the large clustered table: "hnsw" sweeps ef_search over the table's HNSW
    index; "ivfflat" builds an IVFFlat index (replacing it) and sweeps probes."""
    data = ctx.data_large()
    truth = ctx.truth_large()
    row_of = {row_id: i for i, row_id in enumerate(data.ids)}
    store = ctx.store("large", pool_max_size=2)
    try:
        if index == "hnsw":
            label, param, values = "HNSW", "ef_search", EF_SWEEP
        else:
            start = time.perf_counter()
            await store.create_index("ivfflat")
            ctx.log(f"IVFFlat build on {data.rows:,} rows: {time.perf_counter() - start:.1f} s")
            lists = await _ivfflat_lists(ctx, "large")
            label, param, values = f"IVFFlat (lists={lists})", "probes", probe_sweep(lists)
        return [{"data": f"clustered synthetic ({data.rows:,})", "index": label, **r}
                for r in await sweep(ctx, store, data.queries, truth, row_of, param, values)]
    finally:
        await store.close()


def recall_section(ctx: Context, points: list[dict[str, Any]]) -> Section:
    rows_out = [
        [p["data"], p["index"], f"{p['param']}={p['value']}", f"{p['recall']:.3f}", fmt_rate(p["qps"]),
         f"{p['p50_ms']:.2f}"]
        for p in points
    ]
    text = [
        f"recall@{K}: the share of the exact top {K} (numpy, cosine) found in the index's top {K}, averaged over "
        f"the queries; queries/s by one client through the core's `search` (with `search_params`). SciFact: "
        f"its precomputed all-MiniLM-L6-v2 embeddings and exact top-100 from `../shared/data/scifact/`. "
        f"Synthetic: clustered unit vectors (100 Gaussian clusters), queries drawn from the same clusters. "
        f"HNSW m=16, ef_construction=64; IVFFlat with the core's default lists (rows / 1000).",
        "",
        markdown_table(["data", "index", "setting", f"recall@{K}", "queries/s", "p50 ms"], rows_out,
                       align="lllrrr"),
    ]
    path = ctx.results_dir / "3_recall.png"

    def draw(ax: Any) -> None:
        curves: dict[str, list[dict[str, Any]]] = {}
        for p in points:
            curves.setdefault(f"{p['data']}, {p['index']}", []).append(p)
        for label, pts in curves.items():
            ax.plot([p["recall"] for p in pts], [p["qps"] for p in pts], marker="o", label=label)
            for p in pts:
                ax.annotate(str(p["value"]), (p["recall"], p["qps"]), fontsize=6, xytext=(3, 3),
                            textcoords="offset points")
        ax.set_xlabel(f"recall@{K}")
        ax.set_ylabel("queries/s (one client, log scale)")
        ax.set_yscale("log")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)

    save_chart(path, draw, "Recall versus speed (labels: ef_search / probes)", size=(9, 5.5))
    return Section("recall", "3. Recall", "\n".join(text), [path], {"points": points})


# -- 4. filtered search ----------------------------------------------------------------------------------------
async def scenario_filtered(ctx: Context) -> Section:
    data = ctx.data_large()
    count = min(ctx.filtered_queries, len(data.queries))
    queries = data.queries[:count]
    rng = np.random.default_rng(3)
    values = {key: rng.integers(0, n, count) for key, n in SELECTIVITY_GROUPS.items()}
    truth: dict[str, np.ndarray] = {}
    matches: dict[str, np.ndarray] = {}
    for key in SELECTIVITY_GROUPS:
        truth[key] = np.full((count, K), -1, dtype=np.int64)
        matches[key] = np.zeros(count, dtype=np.int64)
        for i in range(count):
            mask = data.labels[key] == values[key][i]
            matches[key][i] = int(mask.sum())
            truth[key][i] = exact_top_k(data.vectors, queries[i : i + 1], K, mask)[0]
    store = ctx.store("large", pool_max_size=2)
    await store.initialize()
    conn = await connect(ctx)
    try:
        await conn.execute(f"ANALYZE {ctx.qualified('large')}")
        ctx.log(f"filtered search: {count} queries x {len(SELECTIVITY_GROUPS)} filters x "
                f"{len(filtered_module.METHODS)} methods")
        results = await filtered_module.measure(conn, store, queries, values, truth, matches, K)
    finally:
        await conn.close()
        await store.close()
    order = list(filtered_module.METHODS)
    labels = {name: method.label for name, method in filtered_module.METHODS.items()}
    results.sort(key=lambda r: (list(SELECTIVITY_GROUPS).index(r["group"]), order.index(r["method"])))
    rows_out = [
        [r["selectivity"], labels[r["method"]], f"{r['returned']:.1f}", f"{r['full'] * 100:.0f}%",
         f"{r['recall']:.3f}", fmt_rate(r["qps"]), f"{r['p50_ms']:.1f}", f"{r['p99_ms']:.1f}",
         f"{r['exact_share'] * 100:.0f}%" if r["exact_share"] is not None else ""]
        for r in results
    ]
    defaults = SearchOptions()
    fewest = int(min(m.min() for m in matches.values())) if count else K
    coverage = f"every filter matches at least {K} rows" if fewest >= K else f"the rarest match {fewest} rows"
    text = [
        f"{count} queries per line on the {data.rows:,}-row clustered table with its HNSW index (m=16, "
        f"ef_construction=64), k={K}, one client. Each query filters on one metadata key (`{{\"g100\": 7}}`: "
        f"equality, compiled to `metadata @> ...`) whose values are spread uniformly and independently of the "
        f"vectors; {coverage}. Recall is against the exact filtered top {K} (numpy). \"full answers\": queries "
        f"that got all {K} rows (or every matching row). The tuned line is `store.search` with its default search "
        f"options (`filtered_ef_search` {defaults.filtered_ef_search}, lengthened for selective filters; "
        f"`exact_selectivity` {defaults.exact_selectivity:g}); the other lines are raw SQL on the same table. "
        f"\"exact\": share of its searches answered by an exact scan (the planner estimated the filter at or "
        f"below `exact_selectivity`, or the index scan came back short). The planner's estimates come from a "
        f"fresh `ANALYZE` (a random sample), so which searches go exact varies a little from run to run.",
        "",
        markdown_table(
            ["filter matches", "method", "rows returned", "full answers", f"recall@{K}", "queries/s", "p50 ms",
             "p99 ms", "exact"],
            rows_out, align="llrrrrrrr",
        ),
    ]
    path = ctx.results_dir / "4_filtered.png"

    def draw(ax: Any) -> None:
        groups = [filtered_module.SELECTIVITY_LABEL[g] for g in SELECTIVITY_GROUPS]
        for method in order:
            pts = [r for r in results if r["method"] == method]
            if pts:
                ax.plot(groups, [p["recall"] for p in pts], marker="o", label=labels[method].replace("`", ""),
                        linewidth=2.5 if method == "tuned" else 1.5)
        ax.axhline(0.95, color="grey", linestyle=":", linewidth=1)
        ax.set_xlabel("share of rows the filter matches")
        ax.set_ylabel(f"recall@{K} (vs exact filtered)")
        ax.set_ylim(0, 1.02)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)

    save_chart(path, draw, "Filtered search with HNSW: recall by selectivity", size=(8, 4.5))
    return Section("filtered", "4. Filtered search", "\n".join(text), [path], {"results": results})


def new_schema() -> str:
    return f"bench_{uuid.uuid4().hex[:10]}"
