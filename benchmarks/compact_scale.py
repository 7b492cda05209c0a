"""Compact vectors and selective filters at scale (issue 17): vector / halfvec / binary, one command per size.

    python benchmarks/compact_scale.py --rows 200000 --data-dir /tmp/pgvecstore-bench --output
    python benchmarks/compact_scale.py --rows 1000000 --data-dir /tmp/pgvecstore-bench --output \\
        --variants vector,halfvec,binary --filter-indexes gin,column
    python benchmarks/compact_scale.py --rows 1000000 --data-dir /tmp/pgvecstore-bench --output \\
        --variants vector --filter-indexes gin,covering --shared-buffers 8GB

Data: SciFact's 5,183 MiniLM document embeddings and ``rows - 5183`` synthetic vectors around them
(`text_corpus.synthetic_vectors`, the vectors of `text_corpus.synthetic`: ``normalize(e_j + noise)``, cosine about
0.5 to a random SciFact document), seeded; queries: SciFact's test query embeddings. Row ``i`` (its id is
``str(i)``) has the metadata ``{"n": i, "bucket": i % 100, "rare": i % 1000}``: query ``q`` filters on
``bucket = q % 100`` (1% of the rows, exactly when 100 divides `rows`) and ``rare = q % 1000`` (0.1%). Ground
truth: the exact cosine top 10 in numpy (blocked matrix products), of all rows and of the rows matching each filter.

Each variant is a set of store options (`VARIANTS`; the filter keys' indexes are `FILTER_INDEX_OPTIONS`), in a
table of its own, measured in turn and dropped after:

- load: ``add_vectors`` in batches (timed inside the calls); once per run, a raw asyncpg binary COPY of the same
  rows into a table made ``LIKE`` the store's (the load's ratio 1.00);
- ``create_index("hnsw")`` (m=16, ef_construction=64), then ``VACUUM ANALYZE``; the table's size
  (``pg_table_size``: heap, TOAST, maps) and the HNSW index's (``pg_relation_size``);
- unfiltered: ``store.search(q, k=10)`` on every query after an untimed warm-up pass, at the default ef_search and
  at ``--ef-high``, and for a quantized variant at each ``--rerank-factors``: recall@10, p50 / p99, queries/s; a
  raw asyncpg ``ORDER BY embedding <=> $1 LIMIT 10`` on a held connection where the index is on the column itself;
- filtered: ``store.search(q, k=10, filter=...)`` with the 1% and 0.1% filters on jsonb keys (and on indexed
  columns with ``--filter-indexes column``, or ``covering``: the same columns with ``covering_metadata``): p50 /
  p99, rows returned, recall@10 against the exact filtered top 10, the paths the searches took
  (`search_tuning.record_paths`);
- the server's memory: the sum of the proportional set sizes (PSS, ``/proc/PID/smaps_rollup``) of the embedded
  server's processes after the variant's queries (shared buffers counted once); not measured with ``--dsn``.

``--output`` merges the run into ``benchmarks/results/7_compact_scale.md`` (the latest run of each size and
variant; the data in a comment at its end) and draws ``7_compact_scale.png``. ``--explain`` adds
``EXPLAIN (ANALYZE, BUFFERS)`` of the core's filtered statement on query 0, by the path the core takes and by the
other. ``--sql-index gin`` adds, by raw SQL after the load, a GIN index (``jsonb_path_ops``) on the metadata, as a
user can today (what the exact path's bitmap scan then uses).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import re
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np
from pgvector.asyncpg import register_vector

sys.path.insert(0, str(Path(__file__).resolve().parent))

import compact_report
import text_corpus
from common import (
    Latencies,
    add_server_arguments,
    command_line,
    machine_description,
    measure_queries,
    recall,
    server_dsn,
    server_label,
    server_version,
)
from pgvecstore import PgVectorStore
from pgvecstore.connection import set_local
from pgvecstore.errors import PgVecStoreError
from pgvecstore.search_tuning import EXACT_SCAN_SETTINGS, record_paths
from retrieval_quality import DEFAULT_DATA, SciFact

K = 10
# Store options of each variant: the one place to change when issue 17's options settle on other names.
VARIANTS: dict[str, dict[str, Any]] = {
    "vector": {},
    "halfvec": {"vector_type": "halfvec"},
    "binary": {"quantization": "binary"},
}
QUANTIZED = ("binary",)  # variants whose searches re-rank; swept over RERANK_OPTION
RERANK_OPTION = "rerank_factor"  # store option: candidates per requested row of a quantized search
# Store options that index the filter keys (--filter-indexes), added to every variant. "column" also measures the
# filters on the keys it indexes (the same values as "bucket" and "rare", under these names); "covering" is
# "column" with covering indexes on those keys (their rows' ids and vectors in the b-tree).
COLUMN_KEYS = {"bucket": "c_bucket", "rare": "c_rare"}
COLUMN_OPTIONS = {"indexed_metadata": {name: "int" for name in COLUMN_KEYS.values()}}
FILTER_INDEX_OPTIONS: dict[str, dict[str, Any]] = {
    "gin": {"metadata_index": "gin"},
    "column": COLUMN_OPTIONS,
    "covering": {**COLUMN_OPTIONS, "covering_metadata": list(COLUMN_KEYS.values())},
}
MIB_BYTES = 2**20
FILTERS = {"bucket": 100, "rare": 1000}  # metadata key -> modulus: the filter matches 1 / modulus of the rows


class Rejected(Exception):
    """The store refused a variant's options (they are not on this branch yet)."""


class RunAgain(Exception):
    """A server setting was changed for the server's next start (--shared-buffers): run the command again."""


def log(message: str) -> None:
    print(f"  {message}", file=sys.stderr, flush=True)


# -- data ----------------------------------------------------------------------------------------------------
def make_vectors(data: SciFact, rows: int, seed: int) -> np.ndarray:
    """SciFact's document embeddings, then ``rows - 5183`` synthetic vectors around them; unit vectors."""
    parts = [np.asarray(data.doc_vectors, dtype=np.float32)]
    parts += list(text_corpus.synthetic_vectors(rows - len(data.doc_ids), seed=seed, corpus=data))
    vectors = np.concatenate(parts)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors


def metadata(start: int, stop: int, columns: bool) -> list[dict[str, int]]:
    """The metadata of rows `start:stop` (see the module doc); with `columns`, the indexed keys' copies too."""
    out = []
    for i in range(start, stop):
        meta = {"n": i, **{key: i % mod for key, mod in FILTERS.items()}}
        if columns:
            meta.update({COLUMN_KEYS[key]: i % mod for key, mod in FILTERS.items()})
        out.append(meta)
    return out


def filter_value(key: str, query: int) -> int:
    return query % FILTERS[key]


def top_k(data: np.ndarray, queries: np.ndarray, k: int, rows: np.ndarray | None = None,
          block: int = 100_000) -> np.ndarray:
    """Row numbers of the exact cosine top `k` of each query (unit vectors), best first, among `rows` (default
    all), by blocks of `block` rows so that 1,000,000 rows need no more than a block's scores in memory."""
    rows = np.arange(len(data)) if rows is None else rows
    best_scores = np.full((len(queries), 0), -np.inf, dtype=np.float32)
    best_rows = np.zeros((len(queries), 0), dtype=np.int64)
    for start in range(0, len(rows), block):
        part = rows[start:start + block]
        scores = np.concatenate([best_scores, queries @ data[part].T], axis=1)
        candidates = np.concatenate([best_rows, np.broadcast_to(part, (len(queries), len(part)))], axis=1)
        take = min(k, scores.shape[1])
        top = np.argpartition(-scores, take - 1, axis=1)[:, :take]
        best_scores = np.take_along_axis(scores, top, axis=1)
        best_rows = np.take_along_axis(candidates, top, axis=1)
    order = np.argsort(-best_scores, axis=1, kind="stable")
    return np.take_along_axis(best_rows, order, axis=1)


def filtered_truth(data: np.ndarray, queries: np.ndarray, key: str) -> np.ndarray:
    """The exact top `K` of each query among the rows its `key` filter matches."""
    mod = FILTERS[key]
    return np.concatenate([
        top_k(data, queries[q:q + 1], K, np.arange(filter_value(key, q), len(data), mod))
        for q in range(len(queries))
    ])


# -- the server ----------------------------------------------------------------------------------------------
def server_pss_mib(data_directory: str | None) -> float | None:
    """Proportional set size (MiB) of the server whose data directory this is: its postmaster and every child
    (shared memory counted once across them); None when not readable (another machine, or no /proc)."""
    if not data_directory:
        return None
    try:
        postmaster = int(Path(data_directory, "postmaster.pid").read_text().split()[0])
        pids = [postmaster]
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == postmaster:
                pids.append(int(stat.parent.name))
        total_kib = 0
        for pid in pids:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total_kib += int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return total_kib / 1024


# -- one variant ---------------------------------------------------------------------------------------------
Search = Callable[[int], Awaitable[list[int]]]  # query number -> ranked row numbers


async def timed_queries(run: Search, count: int, warm: int) -> tuple[Latencies, list[list[int]]]:
    """`run` on queries 0..count-1, after an untimed warm-up on the first `warm`; latencies and results."""
    for i in range(min(warm, count)):
        await run(i)
    found: list[list[int]] = [[] for _ in range(count)]

    async def one(i: int) -> None:
        found[i] = await run(i)

    return await measure_queries("", one, count), found


def summary(timing: Latencies, found: list[list[int]], truth: np.ndarray) -> dict[str, Any]:
    return {
        "recall": recall(found, truth[: len(found)], K), "p50": timing.p50_ms, "p99": timing.p99_ms,
        "qps": timing.qps, "returned_min": min(len(f) for f in found),
        "returned_mean": float(np.mean([len(f) for f in found])),
    }


def extra_options(filter_indexes: list[str]) -> dict[str, Any]:
    """The store options of the filter keys' indexes named by --filter-indexes."""
    extra: dict[str, Any] = {}
    for name in filter_indexes:
        extra.update(FILTER_INDEX_OPTIONS[name])
    return extra


def make_store(variant: str, extra: Mapping[str, Any], **more: Any) -> PgVectorStore:
    """A store with the variant's options (and `extra`, `more`); `Rejected` when the store does not take them
    (checked when it is made, before it connects)."""
    options = {**VARIANTS[variant], **extra, **more}
    try:
        return PgVectorStore(
            dimensions=384, id_type="text", metric="cosine", text_search=False, pool_min_size=1, pool_max_size=2,
            statement_timeout=None,  # a slow search is a result here, not an error
            **options,
        )
    except PgVecStoreError as exc:
        shown = {k: v for k, v in options.items() if k not in ("connection_string", "schema", "table_name")}
        raise Rejected(f"variant {variant!r}: the store rejects its options {shown}: {exc}") from exc


def check_variants(args: argparse.Namespace) -> None:
    """Every variant's options, checked by the store before any work (`Rejected` names the first refused)."""
    for variant in args.variants:
        more = {RERANK_OPTION: args.rerank_factors[0]} if variant in QUANTIZED else {}
        make_store(variant, extra_options(args.filter_indexes), **more)


class Bench:
    """One run: the server, the data, the ground truth, the options of every variant."""

    def __init__(self, args: argparse.Namespace, data: SciFact, vectors: np.ndarray, dsn: str) -> None:
        self.args, self.data, self.vectors, self.dsn = args, data, vectors, dsn
        self.queries = np.asarray(data.query_vectors, dtype=np.float32)
        self.queries /= np.linalg.norm(self.queries, axis=1, keepdims=True)
        self.schema = f"bench_compact_{uuid.uuid4().hex[:8]}"
        self.extra = extra_options(args.filter_indexes)
        self.columns = "column" in args.filter_indexes or "covering" in args.filter_indexes
        self.data_directory: str | None = None  # the embedded server's, for its memory (None with --dsn)
        log("ground truth: exact top 10 of every query, all rows and each filter")
        self.truth = top_k(vectors, self.queries, K)
        self.filter_truth = {key: filtered_truth(vectors, self.queries[: args.filter_queries], key) for key in FILTERS}

    def store(self, variant: str, **more: Any) -> PgVectorStore:
        """A store on the variant's table; `Rejected` when the store does not take the variant's options."""
        return make_store(variant, self.extra, connection_string=self.dsn, schema=self.schema,
                          table_name=f"c_{variant}", **more)

    async def load(self, store: PgVectorStore) -> float:
        """Every row through ``add_vectors`` in batches; the seconds inside the calls."""
        rows, batch, spent = len(self.vectors), self.args.batch, 0.0
        step, next_report = max(1, rows // 10), max(1, rows // 10)
        for start in range(0, rows, batch):
            stop = min(rows, start + batch)
            ids, meta = [str(i) for i in range(start, stop)], metadata(start, stop, self.columns)
            t0 = time.perf_counter()
            await store.add_vectors(self.vectors[start:stop], ids=ids, metadata=meta)
            spent += time.perf_counter() - t0
            if stop >= next_report:
                log(f"loaded {stop:,} / {rows:,} rows, {spent:,.0f} s in add_vectors")
                next_report += step
        return spent

    async def raw_copy(self, admin: asyncpg.Connection, store: PgVectorStore) -> float:
        """The same rows by raw binary COPY (same batches, one transaction each) into a table made LIKE the
        store's (its keys and support indexes); seconds, records built inside the clock."""
        t = store.table
        # A name of its own per table made: asyncpg caches the COPY's column types by the table's name, and the
        # variants' columns differ in type (vector, halfvec).
        name = f"raw_copy_{t.name}"
        like = f'"{self.schema}"."{name}"'
        await admin.execute(f"CREATE TABLE {like} (LIKE {t.qualified} INCLUDING ALL)")
        columns = [t.columns[c] for c in ("id", "embedding", "metadata")]
        rows, batch = len(self.vectors), self.args.batch
        t0 = time.perf_counter()
        for start in range(0, rows, batch):
            stop = min(rows, start + batch)
            records = [(str(i), v, json.dumps(m)) for i, v, m in
                       zip(range(start, stop), self.vectors[start:stop], metadata(start, stop, self.columns),
                           strict=True)]
            async with admin.transaction():
                await admin.copy_records_to_table(name, records=records, columns=columns,
                                                  schema_name=self.schema)
        spent = time.perf_counter() - t0
        await admin.execute(f"DROP TABLE {like}")
        return spent


async def sizes(admin: asyncpg.Connection, store: PgVectorStore) -> dict[str, Any]:
    """Bytes of the table (heap, TOAST, maps) and of its HNSW index, and whether that index is on the column."""
    table = store.table.qualified
    row = await admin.fetchrow(
        "SELECT pg_table_size(c.oid) AS table_bytes, pg_relation_size(i.indexrelid) AS index_bytes, "
        "i.indexprs IS NULL AS on_column FROM pg_class c JOIN pg_index i ON i.indrelid = c.oid "
        "JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_am am ON am.oid = ic.relam "
        "WHERE c.oid = $1::regclass AND am.amname = 'hnsw'", table,
    )
    if row is None:
        raise RuntimeError(f"no HNSW index on {table} after create_index")
    return dict(row)


@contextmanager
def paths_of(out: dict[str, Any]) -> Iterator[None]:
    """Count the filtered searches' paths into ``out["paths"]``."""
    with record_paths() as paths:
        yield
    out["paths"] = {p: paths.count(p) for p in sorted(set(paths))}


async def raw_search(admin: asyncpg.Connection, store: PgVectorStore, dsn: str) -> tuple[asyncpg.Connection, str]:
    """A held raw connection and the raw ``ORDER BY embedding <=> $1 LIMIT 10`` statement of the table (the
    query cast to the column's type, which the catalog names)."""
    t = store.table
    column_type = await admin.fetchval(
        "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = $1::regclass AND attname = $2",
        t.qualified, t.columns["embedding"],
    )
    emb = t.col("embedding")
    query = f"$1::vector::{column_type}"
    sql = (f"SELECT {t.col('id')}, {t.col('metadata')}::text, {emb} <=> {query} AS distance FROM {t.qualified} "
           f"ORDER BY {emb} <=> {query} LIMIT {K}")
    held = await asyncpg.connect(dsn)
    await register_vector(held)
    return held, sql


async def interleaved(runners: dict[str, Search], count: int) -> dict[str, tuple[Latencies, list[list[int]]]]:
    """Every runner on every query untimed, then timed taking turns query by query (the order rotating), so that
    load from elsewhere on a shared machine hits them alike; each runner's latencies and results."""
    for i in range(count):
        for run in runners.values():
            await run(i)
    names = list(runners)
    seconds: dict[str, list[float]] = {name: [] for name in names}
    found: dict[str, list[list[int]]] = {name: [] for name in names}
    for i in range(count):
        for name in names[i % len(names):] + names[: i % len(names)]:
            t0 = time.perf_counter()
            ids = await runners[name](i)
            seconds[name].append(time.perf_counter() - t0)
            found[name].append(ids)
    # One client: its queries/s is one over the mean latency (the wall time here covers every runner).
    return {name: (Latencies(name, seconds[name], sum(seconds[name])), found[name]) for name in names}


async def unfiltered(bench: Bench, admin: asyncpg.Connection, store: PgVectorStore, variant: str,
                     on_column: bool) -> list[dict[str, Any]]:
    """Recall, latency and queries/s of unfiltered searches: core at each ef_search (and rerank factor) and the
    raw query beside it, taking turns query by query."""
    args, queries, count = bench.args, bench.queries, bench.args.queries
    lines: list[dict[str, Any]] = []

    def core(s: PgVectorStore, params: Mapping[str, Any] | None) -> Search:
        async def run(i: int) -> list[int]:
            return [int(hit[0]) for hit in await s.search(queries[i], k=K, search_params=params)]
        return run

    async def measure(runners: dict[str, Search], **labels: Any) -> None:
        for name, (timing, found) in (await interleaved(runners, count)).items():
            lines.append({"method": name, **labels, **summary(timing, found, bench.truth)})
            log(f"{variant}: {name} {labels}: recall@10 {lines[-1]['recall']:.4f}, p50 {timing.p50_ms:.2f} ms")

    held, raw_sql = await raw_search(admin, store, bench.dsn) if on_column else (None, "")
    try:
        for ef in (None, args.ef_high):
            runners = {"core": core(store, None if ef is None else {"ef_search": ef})}
            if held is not None:
                await held.execute("SELECT set_config('hnsw.ef_search', $1, false)", str(ef or 40))

                async def raw(i: int, conn: asyncpg.Connection = held) -> list[int]:
                    rows = await conn.fetch(raw_sql, queries[i])
                    for r in rows:
                        json.loads(r[1])  # as the core decodes metadata
                    return [int(r[0]) for r in rows]

                runners["raw"] = raw
            await measure(runners, ef_search=ef or 40)
    finally:
        if held is not None:
            await held.close()
    if variant in QUANTIZED:
        for factor in args.rerank_factors:
            swept = bench.store(variant, **{RERANK_OPTION: factor})
            try:
                await measure({"core": core(swept, None)}, ef_search=40, rerank_factor=factor)
            finally:
                await swept.close()
    return lines


async def filtered(bench: Bench, store: PgVectorStore, variant: str) -> list[dict[str, Any]]:
    """The 1% and 0.1% filters on jsonb keys (and indexed columns): latency, rows, recall, the paths taken."""
    count, queries = bench.args.filter_queries, bench.queries
    kinds = {"jsonb": {key: key for key in FILTERS}}
    if bench.columns:
        kinds["column"] = dict(COLUMN_KEYS)
    lines = []
    for kind, names in kinds.items():
        for key, name in names.items():
            async def run(i: int, key: str = key, name: str = name) -> list[int]:
                hits = await store.search(queries[i], k=K, filter={name: filter_value(key, i)})
                return [int(hit[0]) for hit in hits]

            out: dict[str, Any] = {"kind": kind, "key": name, "share": 1 / FILTERS[key]}
            for i in range(min(3, count)):  # warm-up of this filter's statement, untimed and not counted
                await run(i)
            with paths_of(out):
                timing, found = await timed_queries(run, count, warm=0)
            out.update(summary(timing, found, bench.filter_truth[key]))
            # Searches that got k rows, or every matching row when fewer match (small tables).
            matching = [len(range(filter_value(key, i), len(bench.vectors), FILTERS[key])) for i in range(count)]
            out["full"] = float(np.mean([len(f) >= min(K, m) for f, m in zip(found, matching, strict=True)]))
            lines.append(out)
            log(f"{variant}: {kind} {name} ({100 / FILTERS[key]:g}%): recall@10 {out['recall']:.4f}, "
                f"p50 {timing.p50_ms:.1f} ms, p99 {timing.p99_ms:.1f} ms, paths {out['paths']}")
    return lines


async def explain(bench: Bench, store: PgVectorStore) -> list[dict[str, Any]]:
    """EXPLAIN (ANALYZE, BUFFERS) of the core's filtered statement on query 0, by the exact and the index path.
    The statement comes from the core's planner (internal API: a change there is reported, not raised)."""
    from pgvecstore.planner import SearchPlanner, SearchRequest
    from pgvecstore.search_tuning import search_settings

    out = []
    names = {key: key for key in FILTERS}
    names.update({name: key for key, name in COLUMN_KEYS.items()} if bench.columns else {})
    for name, key in names.items():
        mod = FILTERS[key]
        f = {name: filter_value(key, 0)}
        try:
            plan = SearchPlanner(store.config, store.table, bench.vectors.shape[1]).plan(
                SearchRequest(bench.queries[0], K, filter=f))
            exact = plan.exact
            assert exact is not None  # every vector plan has its exact twin
            by_path = {"exact": (EXACT_SCAN_SETTINGS, exact.sql, exact.args),
                       "index": (search_settings(plan.options, filtered=True, k=K, share=1 / mod), plan.sql,
                                 plan.args)}
            for path, (settings, sql, sql_args) in by_path.items():
                # The store's own connection: the plan's arguments are in the core's wire format.
                async with (await store.get_pool()).acquire() as conn, conn.transaction():
                    await set_local(conn, settings)
                    rows = await conn.fetch(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", *sql_args)
                out.append({"filter": f, "path": path, "settings": dict(settings),
                            "plan": compact_report.short_plan([r[0] for r in rows])})
        except Exception as exc:  # the planner is internal; a change there must not lose the measurements
            out.append({"filter": f, "path": "-", "settings": {}, "plan": [f"(not available: {exc!r})"]})
    return out


async def build(bench: Bench, admin: asyncpg.Connection, store: PgVectorStore, out: dict[str, Any]) -> None:
    """Load (raw COPY first, for the ratio), index, vacuum; timings into `out`."""
    if not bench.args.no_raw_copy:
        log("raw COPY of the same rows (the load's baseline)")
        out["raw_copy_s"] = await bench.raw_copy(admin, store)
    out["load_s"] = await bench.load(store)
    log(f"load {out['load_s']:,.1f} s; building the HNSW index")
    t0 = time.perf_counter()
    await store.create_index("hnsw")
    out["index_s"] = time.perf_counter() - t0
    table = store.table.qualified
    if bench.args.sql_index == "gin":
        t0 = time.perf_counter()
        await admin.execute(f"CREATE INDEX ON {table} USING gin ({store.table.col('metadata')} jsonb_path_ops)")
        out["sql_index_s"] = time.perf_counter() - t0
    log(f"index {out['index_s']:,.1f} s; VACUUM ANALYZE")
    t0 = time.perf_counter()
    await admin.execute(f"VACUUM ANALYZE {table}")
    out["vacuum_s"] = time.perf_counter() - t0
    out.update(await sizes(admin, store))


async def run_variant(bench: Bench, admin: asyncpg.Connection, variant: str) -> dict[str, Any]:
    store = bench.store(variant)
    out: dict[str, Any] = {"options": {**VARIANTS[variant], **bench.extra}}
    try:
        try:
            await store.initialize()
        except PgVecStoreError as exc:
            raise Rejected(f"variant {variant!r}: the store rejects its options {out['options']}: {exc}") from exc
        await build(bench, admin, store, out)
        out["unfiltered"] = await unfiltered(bench, admin, store, variant, out["on_column"])
        out["filtered"] = await filtered(bench, store, variant)
        if bench.args.explain:
            out["explain"] = await explain(bench, store)
        out["memory_mib"] = server_pss_mib(bench.data_directory)
    finally:
        await store.close()
        await admin.execute(f"DROP TABLE IF EXISTS {store.table.qualified}")
    return out


async def set_shared_buffers(admin: asyncpg.Connection, size: str) -> None:
    """`RunAgain` unless the server runs with shared_buffers `size` (checked by `parse_args`); it is then set
    (ALTER SYSTEM) for the next start of the kept data directory, which the next run does."""
    wanted = await admin.fetchval("SELECT pg_size_bytes($1)", size)
    current = await admin.fetchval("SELECT pg_size_bytes(current_setting('shared_buffers'))")
    if wanted != current:
        await admin.execute(f"ALTER SYSTEM SET shared_buffers = '{size}'")
        await admin.close()
        raise RunAgain(f"shared_buffers is {current // MIB_BYTES} MB; it is set to {size} from the server's next "
                       "start: run the same command again (the server stops when this one exits)")


async def benchmark(args: argparse.Namespace, data: SciFact, vectors: np.ndarray) -> dict[str, Any]:
    dsn = server_dsn(args.dsn, args.data_dir)
    bench = Bench(args, data, vectors, dsn)
    admin = await asyncpg.connect(dsn)
    await register_vector(admin)
    bench.data_directory = None if args.dsn else await admin.fetchval("SHOW data_directory")
    if args.shared_buffers:
        await set_shared_buffers(admin, args.shared_buffers)
    out: dict[str, Any] = {"version": await server_version(admin),
                           "shared_buffers": await admin.fetchval("SHOW shared_buffers"), "variants": {}}
    await admin.execute(f'CREATE SCHEMA "{bench.schema}"')
    try:
        for variant in args.variants:
            log(f"variant {variant}: {len(vectors):,} rows")
            out["variants"][variant] = await run_variant(bench, admin, variant)
    finally:
        await admin.execute(f'DROP SCHEMA IF EXISTS "{bench.schema}" CASCADE')
        await admin.close()
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=20_000, help="rows in each table, SciFact's 5,183 included")
    parser.add_argument("--variants", default="vector",
                        help=f"comma-separated, of {', '.join(VARIANTS)} (default: vector)")
    parser.add_argument("--filter-indexes", default="",
                        help=f"store options indexing the filter keys, comma-separated, of: "
                             f"{', '.join(FILTER_INDEX_OPTIONS)}")
    parser.add_argument("--sql-index", choices=("none", "gin"), default="none",
                        help="add a GIN (jsonb_path_ops) index on the metadata by raw SQL after the load")
    parser.add_argument("--queries", type=int, default=300, help="unfiltered: the first N of SciFact's 300 queries")
    parser.add_argument("--filter-queries", type=int, default=100, help="filtered: the first N queries")
    parser.add_argument("--ef-high", type=int, default=100, help="the higher ef_search measured (default 100)")
    parser.add_argument("--rerank-factors", default="16,32,48,64", help="quantized variants: factors swept")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic vectors")
    parser.add_argument("--batch", type=int, default=10_000, help="rows per add_vectors call")
    parser.add_argument("--no-raw-copy", action="store_true", help="skip the raw COPY baseline of the load")
    parser.add_argument("--shared-buffers", help="e.g. 4GB: the embedded server's shared_buffers (needs --data-dir; "
                        "the first run sets it and asks to be run again)")
    parser.add_argument("--explain", action="store_true", help="EXPLAIN ANALYZE the filtered searches of query 0")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help=f"SciFact directory (default {DEFAULT_DATA})")
    parser.add_argument(
        "--output", nargs="?", const=str(compact_report.DEFAULT_OUTPUT), default=None,
        help=f"merge this run into this Markdown report and its chart (default: {compact_report.DEFAULT_OUTPUT})",
    )
    add_server_arguments(parser)
    args = parser.parse_args(argv)
    args.variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    args.filter_indexes = [v.strip() for v in args.filter_indexes.split(",") if v.strip()]
    for name in args.variants:
        if name not in VARIANTS:
            parser.error(f"--variants: unknown variant {name!r} (known: {', '.join(VARIANTS)})")
    for name in args.filter_indexes:
        if name not in FILTER_INDEX_OPTIONS:
            parser.error(f"--filter-indexes: unknown {name!r} (known: {', '.join(FILTER_INDEX_OPTIONS)})")
    try:
        args.rerank_factors = [int(v) for v in args.rerank_factors.split(",")]
    except ValueError:
        parser.error("--rerank-factors must be comma-separated integers")
    if not (args.data / "corpus.jsonl").exists():
        parser.error(f"--data: no SciFact files in {args.data}")
    if args.rows < 5183:
        parser.error("--rows must be at least 5183 (SciFact's documents)")
    if not 1 <= args.queries <= 300 or not 1 <= args.filter_queries <= 300:
        parser.error("--queries and --filter-queries must be between 1 and 300")
    if args.shared_buffers is not None and (
        args.dsn or not args.data_dir or not re.fullmatch(r"[1-9][0-9]*(MB|GB)", args.shared_buffers)
    ):
        parser.error("--shared-buffers takes a size such as 512MB or 4GB, with --data-dir and without --dsn")
    if not args.variants or args.batch < 1:
        parser.error("--variants must name one variant at least, --batch must be at least 1")
    return args


def label(variant: str, args: argparse.Namespace) -> str:
    """The variant's name in the report: with the filter keys' indexes when the run added any, so a run with
    them does not replace one without."""
    extra = [f"{name} (store option)" for name in args.filter_indexes]
    extra += ["GIN by SQL"] if args.sql_index == "gin" else []
    return " + ".join([variant, *extra])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        check_variants(args)
    except Rejected as exc:
        print(f"compact_scale.py: error: {exc}", file=sys.stderr)
        return 2
    data = text_corpus.scifact(args.data)
    log(f"making {args.rows:,} vectors ({len(data.doc_ids):,} SciFact, {args.rows - len(data.doc_ids):,} synthetic)")
    vectors = make_vectors(data, args.rows, args.seed)
    try:
        out = asyncio.run(benchmark(args, data, vectors))
    except Rejected as exc:
        print(f"compact_scale.py: error: {exc}", file=sys.stderr)
        return 2
    except RunAgain as exc:
        print(f"compact_scale.py: {exc}", file=sys.stderr)
        return 3
    run = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"), "command": command_line(),
        "server": f"{server_label(bool(args.dsn))}, {out['version']}, shared_buffers {out['shared_buffers']}",
        "machine": machine_description(), "queries": args.queries, "filter_queries": args.filter_queries,
        "seed": args.seed, "sql_index": args.sql_index,
    }
    entry = {"rows": args.rows, "variants": {label(name, args): {**v, **run} for name, v in out["variants"].items()}}
    print(compact_report.render([entry]))
    if args.output:
        written = compact_report.merge(Path(args.output), entry)
        log(f"written to {', '.join(map(str, written))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
