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

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np
from pgvector.asyncpg import register_vector

sys.path.insert(0, str(Path(__file__).resolve().parent))

import filtered as filtered_module
from common import (
    SELECTIVITY_GROUPS,
    Latencies,
    exact_top_k,
    fmt_rate,
    group_labels,
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
INGEST_METHODS = {
    "raw_copy": "raw asyncpg binary COPY",
    "raw_executemany": "raw asyncpg `executemany` INSERT",
    "core": "core `add_vectors`",
    "langchain_adapter": "LangChain adapter `aadd_documents`",
    "llamaindex_adapter": "LlamaIndex adapter `async_add`",
}
PEER_LABELS = {
    "langchain": "peer: langchain-postgres `PGVector.aadd_documents`",
    "llamaindex": "peer: llama-index-vector-stores-postgres `async_add`",
}


class PrecomputedEmbeddings:
    """A LangChain `Embeddings` that returns the data set's vectors for its texts (no model involved)."""

    def __new__(cls, vectors: np.ndarray) -> Any:
        from langchain_core.embeddings import Embeddings

        lookup = {text: i for i, text in enumerate(texts_for(len(vectors)))}

        class _Precomputed(Embeddings):
            def embed_documents(self, texts: list[str]) -> list[list[float]]:
                return [vectors[lookup[t]].tolist() for t in texts]

            def embed_query(self, text: str) -> list[float]:
                return self.embed_documents([text])[0]

        return _Precomputed()


async def ingest_once(ctx: Context, data: DataSet, method: str, table: str) -> float:
    """Load `data` into a fresh table by `method`; seconds taken. The table is left for the caller."""
    n = data.rows
    if method in ("raw_copy", "raw_executemany", "core"):
        store = ctx.store(table, pool_max_size=2)
    elif method == "langchain_adapter":
        store = ctx.store(table, pool_max_size=2, id_type="text")
    else:
        store = ctx.store(table, pool_max_size=2, id_type="text")
    await store.initialize()
    conn = await connect(ctx)
    try:
        columns = [store.table.columns[c] for c in store.table.write_columns]
        batches = range(0, n, ctx.batch)
        run: Callable[[], Awaitable[Any]]
        if method in ("raw_copy", "raw_executemany"):
            placeholders = ", ".join(f"${i + 1}" for i in range(len(columns)))
            insert = f"INSERT INTO {store.table.qualified_table} ({', '.join(columns)}) VALUES ({placeholders})"

            async def run() -> None:
                meta = data.metadata()
                records = [
                    (data.ids[i], data.vectors[i], None, json.dumps(meta[i]), None, None, None) for i in range(n)
                ]
                if method == "raw_copy":
                    await conn.copy_records_to_table(table, records=records, columns=columns, schema_name=ctx.schema)
                else:
                    async with conn.transaction():
                        await conn.executemany(insert, records)

        elif method == "core":

            async def run() -> None:
                await store.add_vectors(data.vectors, data.ids, data.metadata())

        elif method == "langchain_adapter":
            from langchain_core.documents import Document

            from langchain_pgvecstore import PgVecStore as LangChainStore

            adapter = LangChainStore(PrecomputedEmbeddings(data.vectors), store=store)
            texts = texts_for(n)
            meta = data.metadata()
            docs = [Document(page_content=texts[i], metadata=meta[i]) for i in range(n)]

            async def run() -> None:
                for start in batches:
                    await adapter.aadd_documents(docs[start : start + ctx.batch])

        else:
            from llama_index.core.schema import TextNode

            from llama_index.vector_stores.pgvecstore import PgVecStore as LlamaStore

            adapter = LlamaStore(store)
            texts = texts_for(n)
            meta = data.metadata()
            elapsed = 0.0

            async def run() -> None:
                nonlocal elapsed
                for start in batches:  # nodes are built outside the clock: a pipeline hands them over embedded
                    stop = min(n, start + ctx.batch)
                    nodes = [
                        TextNode(id_=data.ids[i], text=texts[i], metadata=meta[i], embedding=data.vectors[i].tolist())
                        for i in range(start, stop)
                    ]
                    began = time.perf_counter()
                    await adapter.async_add(nodes)
                    elapsed += time.perf_counter() - began

        await store.count()
        await try_checkpoint(conn)
        seconds = await timed(run)
        if method == "llamaindex_adapter":
            seconds = elapsed
        landed = await conn.fetchval(f"SELECT count(*) FROM {store.table.qualified_table}")
        if landed != n:
            raise RuntimeError(f"{method}: expected {n} rows in {table}, found {landed}")
        return seconds
    finally:
        await conn.close()
        await store.close()


async def ingest_size(ctx: Context, data: DataSet, repeats: int, keep_core_as: str | None) -> dict[str, list[float]]:
    """Every in-process method at one size, `repeats` rounds (methods interleaved); best seconds per method."""
    seconds: dict[str, list[float]] = {m: [] for m in INGEST_METHODS}
    admin = await asyncpg.connect(ctx.dsn)
    try:
        for round_ in range(repeats):
            for method in INGEST_METHODS:
                last = round_ == repeats - 1
                table = keep_core_as if (method == "core" and last and keep_core_as) else f"ing_{method}_{round_}"
                took = await ingest_once(ctx, data, method, table)
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
        limit = rates["raw_copy"]
        core = rates["core"]
        label_rates = [(INGEST_METHODS[m], r, runs[m]) for m, r in rates.items()]
        label_rates += [(PEER_LABELS[lib], r, runs[lib]) for lib, r in peers_here.items()]
        for label, rate, n_runs in label_rates:
            rows_out.append([
                label, f"{data.rows:,}", f"{data.rows / rate:.2f}", fmt_rate(rate), f"{rate / limit:.2f}",
                f"{core / rate:.1f}x", f"best of {n_runs}",
            ])
        chart[f"{data.rows:,} rows"] = {label: rate for label, rate, _ in label_rates}
    if ctx.stream_rows:
        stream = stream_ingest(ctx)
    table = markdown_table(
        ["method", "rows", "seconds", "rows/s", "ratio to raw COPY", "core is ... times faster", "runs"], rows_out
    )
    text = [
        f"Vectors of {ctx.dims} dimensions with small metadata (source name, row number, four filter-group keys), "
        f"loaded into a fresh table each (primary key and the store's b-tree indexes, no vector index). Adapters "
        f"and peers get the vectors precomputed (LangChain: an `Embeddings` that returns them; LlamaIndex: nodes "
        f"with `embedding` set, built outside the clock) and are called with {ctx.batch:,} rows per call, as a "
        f"loader batches; raw and core take all rows in one call.",
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
    return Section("ingest", "1. Ingest", "\n".join(text), [path], {"chart": chart, "stream": stream})


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


async def recall_large_hnsw(ctx: Context) -> list[dict[str, Any]]:
    data = ctx.data_large()
    truth = exact_top_k(data.vectors, data.queries, K)
    row_of = {row_id: i for i, row_id in enumerate(data.ids)}
    store = ctx.store("large", pool_max_size=2)
    try:
        return [{"data": f"clustered synthetic ({data.rows:,})", "index": "HNSW", **r}
                for r in await sweep(ctx, store, data.queries, truth, row_of, "ef_search", EF_SWEEP)]
    finally:
        await store.close()


async def recall_large_ivfflat(ctx: Context) -> list[dict[str, Any]]:
    data = ctx.data_large()
    truth = exact_top_k(data.vectors, data.queries, K)
    row_of = {row_id: i for i, row_id in enumerate(data.ids)}
    store = ctx.store("large", pool_max_size=2)
    try:
        start = time.perf_counter()
        await store.create_index("ivfflat")
        ctx.log(f"IVFFlat build on {data.rows:,} rows: {time.perf_counter() - start:.1f} s")
        lists = await _ivfflat_lists(ctx, "large")
        return [{"data": f"clustered synthetic ({data.rows:,})", "index": f"IVFFlat (lists={lists})", **r}
                for r in await sweep(ctx, store, data.queries, truth, row_of, "probes", probe_sweep(lists))]
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
        options = SearchOptions()
        ctx.log(f"filtered search: {count} queries x {len(SELECTIVITY_GROUPS)} filters x "
                f"{len(filtered_module.METHODS)} methods")
        results = await filtered_module.measure(conn, store.table, queries, values, truth, matches, K, options)
        core_today = await filtered_store_today(store, queries, values, truth, matches)
    finally:
        await conn.close()
        await store.close()
    results += core_today
    order = [*filtered_module.METHODS, "store"]
    results.sort(key=lambda r: (list(SELECTIVITY_GROUPS).index(r["group"]), order.index(r["method"])))
    labels = {**filtered_module.METHODS, "store": "core `store.search` as it is now"}
    rows_out = [
        [r["selectivity"], labels[r["method"]], f"{r['returned']:.1f}", f"{r['full'] * 100:.0f}%",
         f"{r['recall']:.3f}", fmt_rate(r["qps"]), f"{r['p50_ms']:.1f}", f"{r['p99_ms']:.1f}",
         f"{r['exact_share'] * 100:.0f}%" if r["method"] == "tuned" else ""]
        for r in results
    ]
    text = [
        f"{count} queries per line on the {data.rows:,}-row clustered table with its HNSW index (m=16, "
        f"ef_construction=64), k={K}, one client. Each query filters on one metadata key (`{{\"g100\": 7}}`: "
        f"equality, compiled to `metadata @> ...`) whose values are spread uniformly and independently of the "
        f"vectors; every filter matches at least {K} rows. Recall is against the exact filtered top {K} (numpy). "
        f"\"full answers\": queries that got all {K} rows. \"exact\": share of tuned queries answered by an exact "
        f"scan (planner estimate at or below `exact_selectivity`, or an index scan that came back short).",
        "",
        markdown_table(
            ["filter matches", "method", "rows returned", "full answers", f"recall@{K}", "queries/s", "p50 ms",
             "p99 ms", "exact"],
            rows_out, align="llrrrrrrr",
        ),
    ]
    path = ctx.results_dir / "4_filtered.png"

    def draw(ax: Any) -> None:
        groups = [SELECTIVITY_GROUPS and filtered_module.SELECTIVITY_LABEL[g] for g in SELECTIVITY_GROUPS]
        for method in order:
            pts = [r for r in results if r["method"] == method]
            if pts:
                ax.plot(groups, [p["recall"] for p in pts], marker="o", label=labels[method].replace("`", ""),
                        linestyle="--" if method == "store" else "-")
        ax.axhline(0.95, color="grey", linestyle=":", linewidth=1)
        ax.set_xlabel("share of rows the filter matches")
        ax.set_ylabel(f"recall@{K} (vs exact filtered)")
        ax.set_ylim(0, 1.02)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)

    save_chart(path, draw, "Filtered search with HNSW: recall by selectivity", size=(8, 4.5))
    return Section("filtered", "4. Filtered search", "\n".join(text), [path], {"results": results})


async def filtered_store_today(
    store: PgVectorStore, queries: np.ndarray, values: dict[str, np.ndarray], truth: dict[str, np.ndarray],
    matches: dict[str, np.ndarray],
) -> list[dict[str, Any]]:
    """The same filtered queries through `store.search` (whatever the store does in this checkout)."""
    out = []
    for key in SELECTIVITY_GROUPS:
        found: list[list[int]] = [[] for _ in queries]

        async def one(i: int, key: str = key, found: list[list[int]] = found) -> None:
            hits = await store.search(queries[i], k=K, filter={key: int(values[key][i])})
            found[i] = [int(meta["n"]) for _id, _score, meta in hits if meta]

        for i in range(min(3, len(queries))):
            await one(i)
        timing = await measure_queries("store", one, len(queries))
        full = [len(f) >= min(K, int(m)) for f, m in zip(found, matches[key], strict=True)]
        out.append({
            "group": key, "selectivity": filtered_module.SELECTIVITY_LABEL[key], "method": "store",
            "returned": float(np.mean([len(f) for f in found])), "full": float(np.mean(full)),
            "recall": recall(found, truth[key], K), "qps": timing.qps, "p50_ms": timing.p50_ms,
            "p99_ms": timing.p99_ms, "exact_share": 0.0,
        })
    return out


def new_schema() -> str:
    return f"bench_{uuid.uuid4().hex[:10]}"
