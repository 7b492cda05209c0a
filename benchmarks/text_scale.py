"""Text, vector and hybrid search latency and quality by corpus size: SciFact plus synthetic chunks, one command.

    python benchmarks/text_scale.py --rows 20000
    python benchmarks/text_scale.py --rows 200000 --data-dir /tmp/pgvecstore-bench --output
    python benchmarks/text_scale.py --rows 1000000 --data-dir /tmp/pgvecstore-bench --output --explain

One table of `rows` chunks: the 5,183 SciFact documents and ``rows - 5183`` synthetic chunks made from SciFact's
own word distribution and embeddings (`text_corpus.py` says exactly how). It is loaded through the core
``PgVectorStore.add_vectors(vectors, ids=..., contents=...)`` (text ids, full-text search on, as a user's table),
in batches of ``--batch`` rows; then ``create_index("hnsw")`` (pgvector's m=16, ef_construction=64) and
``VACUUM ANALYZE`` (what autovacuum does soon after a bulk load: the statistics, which the text side's row count
reads, and the visibility map). Each step is timed.

Then the first ``--queries`` SciFact test queries (default 100 of 300), one client, k=10, each method in turn on
each query, in an order that rotates from query to query (so load from elsewhere hits them alike, and no method
always runs right after the text searches that push the vector index out of shared buffers), after an untimed
warm-up (both vector methods on every query, text and hybrid on 3):

- vector, raw asyncpg: ``SELECT id, metadata, content, document_id, chunk_index, embedding <=> $1 ... ORDER BY
  embedding <=> $1 LIMIT 10`` on one connection it holds (metadata JSON decoded, as the core does): the baseline
  of the vector side (ratio 1.00);
- vector, core: ``store.search(query, k=10)``;
- text, core: ``store.search(mode="text", query_text=..., k=10)``;
- hybrid, core: ``store.search(query, mode="hybrid", query_text=..., k=10)`` (its defaults: weighted fusion, alpha 0.5).

Reported: p50 / p90 / p99 of each method's wall-clock time per call, nDCG@10 of each against SciFact's qrels over
the mixed corpus (synthetic chunks are never relevant; linear gains as pytrec_eval), the load, index and vacuum
times. ``--output`` merges this run into ``benchmarks/results/6_text_scale.md`` (one line per corpus size, the
latest run of each size; the data lives in a comment at the end of that file) and draws ``6_text_scale.png`` when
matplotlib is installed. ``--explain`` adds ``EXPLAIN (ANALYZE, BUFFERS)`` of the slowest text query.
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
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np
from pgvector.asyncpg import register_vector

sys.path.insert(0, str(Path(__file__).resolve().parent))

import text_corpus
from common import (
    RESULTS_DIR,
    Latencies,
    add_server_arguments,
    command_line,
    machine_description,
    markdown_table,
    save_chart,
    server_dsn,
    server_label,
    server_version,
    write_markdown,
)
from pgvecstore import PgVectorStore
from retrieval_quality import DEFAULT_DATA, SciFact, ndcg_at

DEFAULT_OUTPUT = RESULTS_DIR / "6_text_scale.md"
K = 10
WARM_UP = 3
METHODS = {
    "raw": "vector, raw asyncpg (held connection): baseline",
    "vector": "vector, core `search`",
    "text": 'text, core `search(mode="text")`',
    "hybrid": 'hybrid, core `search(mode="hybrid")` (default fusion)',
}
CHART_LABELS = {"raw": "vector, raw asyncpg", "vector": "vector, core", "text": "text, core",
                "hybrid": "hybrid, core"}
COLORS = {"raw": "tab:gray", "vector": "tab:blue", "text": "tab:orange", "hybrid": "tab:green"}
# Issue 16's targets for text and hybrid search, one client, k=10: rows -> (p50 ms, p99 ms).
TARGETS = {200_000: (20, 80), 1_000_000: (30, 120)}
DATA_MARK = "<!-- text_scale data: "
CAVEAT = (
    "The machine has 2 CPUs and other work may have run at the same time, so the figures are indicative: compare "
    "lines of one run (the methods took turns query by query) more than runs of different days."
)


def log(message: str) -> None:
    print(f"  {message}", file=sys.stderr, flush=True)


# -- loading -------------------------------------------------------------------------------------------------
async def load(store: PgVectorStore, data: SciFact, rows: int, seed: int, batch: int) -> dict[str, float]:
    """SciFact's documents, then `rows - len(SciFact)` synthetic chunks, through `add_vectors`; progress on
    stderr about every 5%. Returns the seconds spent in `add_vectors` and in making the synthetic data."""
    step = max(1, rows // 20)
    next_report = step
    started = time.perf_counter()
    in_store = 0.0
    done = 0

    async def add(vectors: np.ndarray, ids: list[str], contents: list[str]) -> None:
        nonlocal in_store, done, next_report
        t0 = time.perf_counter()
        await store.add_vectors(vectors, ids=ids, contents=contents)
        in_store += time.perf_counter() - t0
        done += len(ids)
        if done >= next_report or done == rows:
            elapsed = time.perf_counter() - started
            rate = done / elapsed
            log(f"loaded {done:,} / {rows:,} rows ({100 * done / rows:.0f}%), {elapsed:,.0f} s, {rate:,.0f} rows/s, "
                f"about {(rows - done) / rate:,.0f} s left")
            while next_report <= done:
                next_report += step

    await add(data.doc_vectors, data.doc_ids, data.contents)
    chunks = text_corpus.synthetic(rows - len(data.doc_ids), seed=seed, batch=batch, corpus=data)
    for ids, contents, vectors in chunks:
        await add(vectors, ids, contents)
    total = time.perf_counter() - started
    return {"load_s": in_store, "generate_s": total - in_store}


# -- measuring -----------------------------------------------------------------------------------------------
Search = Callable[[int], Awaitable[list[str]]]  # query number -> ranked ids


async def measure(
    runners: dict[str, Search], count: int, warm_all: tuple[str, ...] = ()
) -> tuple[dict[str, Latencies], dict[str, list[list[str]]]]:
    """Every runner on queries 0..count-1, taking turns query by query in a rotating order; each call timed.
    Returns the latencies and the ranked ids of every call. Warm-up, untimed: the runners named in `warm_all`
    on every query (a new connection's backend is slower until it has touched the pages it reads), the others
    on `WARM_UP` queries."""
    for i in range(count):
        for name, run in runners.items():
            if name in warm_all or i < WARM_UP:
                await run(i)
    seconds: dict[str, list[float]] = {name: [] for name in runners}
    ranked: dict[str, list[list[str]]] = {name: [] for name in runners}
    started = time.perf_counter()
    step = max(1, count // 10)
    names = list(runners)
    for i in range(count):
        # The order rotates query by query, so that no method always runs right after the text and hybrid
        # searches (which push the vector index's pages out of shared buffers) or always before them.
        for name in names[i % len(names):] + names[: i % len(names)]:
            run = runners[name]
            t0 = time.perf_counter()
            ids = await run(i)
            seconds[name].append(time.perf_counter() - t0)
            ranked[name].append(ids)
        if (i + 1) % step == 0 or i + 1 == count:
            medians = ", ".join(f"{name} {np.median(s) * 1000:,.1f}" for name, s in seconds.items())
            log(f"queries {i + 1}/{count}, {time.perf_counter() - started:,.0f} s; p50 ms so far: {medians}")
    wall = time.perf_counter() - started
    return {name: Latencies(name, s, wall) for name, s in seconds.items()}, ranked


async def explain_text(store: PgVectorStore, admin: asyncpg.Connection, text: str) -> list[str]:
    """EXPLAIN (ANALYZE, BUFFERS) of the statement the core runs for a text search of `text`. The statement
    comes from the core's own planner (internal API: if it has changed, the reason is returned instead)."""
    try:
        from pgvecstore.planner import SearchPlanner, SearchRequest
        from pgvecstore.text_search import DEFAULT_TEXT_SEARCH_CONFIG

        dims = store.dimensions
        assert dims is not None
        config = store.config.text_search_config or DEFAULT_TEXT_SEARCH_CONFIG
        plan = SearchPlanner(store.config, store.table, dims).plan(
            SearchRequest(None, K, mode="text", query_text=text), config
        )
        rows = await admin.fetch(f"EXPLAIN (ANALYZE, BUFFERS) {plan.sql}", *plan.args)
    except Exception as exc:  # the planner is internal; a change there must not lose the measurements
        return [f"(EXPLAIN not available: {type(exc).__name__}: {exc})"]
    return [row[0] for row in rows]


async def benchmark(args: argparse.Namespace, data: SciFact) -> dict[str, Any]:
    dsn = server_dsn(args.dsn, args.data_dir)
    schema = f"bench_text_scale_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(dsn)
    await register_vector(admin)
    out: dict[str, Any] = {"version": await server_version(admin)}
    store = PgVectorStore(
        connection_string=dsn, schema=schema, table_name="chunks", dimensions=data.doc_vectors.shape[1],
        id_type="text", metric="cosine", pool_min_size=1, pool_max_size=2,
        statement_timeout=None,  # a slow search is a result here, not an error
    )
    try:
        log(f"loading {args.rows:,} rows ({len(data.doc_ids):,} SciFact, {args.rows - len(data.doc_ids):,} synthetic)")
        out.update(await load(store, data, args.rows, args.seed, args.batch))
        log("building the HNSW index")
        t0 = time.perf_counter()
        await store.create_index("hnsw")
        out["index_s"] = time.perf_counter() - t0
        log(f"index built in {out['index_s']:,.1f} s; VACUUM ANALYZE")
        table = store.table.qualified
        t0 = time.perf_counter()
        await admin.execute(f"VACUUM ANALYZE {table}")
        out["vacuum_s"] = time.perf_counter() - t0
        out["table_bytes"] = await admin.fetchval(f"SELECT pg_total_relation_size('{table}'::regclass)")
        out["rows"] = await admin.fetchval(f"SELECT count(*) FROM {table}")

        col = store.table.col
        raw_sql = (
            f"SELECT {col('id')}::text, {col('metadata')}::text, {col('content')}, {col('document_id')}, "
            f"{col('chunk_index')}, {col('embedding')} <=> $1 AS distance FROM {table} "
            f"ORDER BY {col('embedding')} <=> $1 LIMIT {K}"
        )
        held = await asyncpg.connect(dsn)
        await register_vector(held)
        queries, texts = data.query_vectors, data.query_texts

        async def raw(i: int) -> list[str]:
            rows = await held.fetch(raw_sql, queries[i])
            for r in rows:
                if r[1] is not None:
                    json.loads(r[1])  # as the core decodes metadata
            return [r[0] for r in rows]

        async def core(i: int, **options: Any) -> list[str]:
            mode = options.get("mode", "vector")
            vector = None if mode == "text" else queries[i]
            text = None if mode == "vector" else texts[i]
            return [hit[0] for hit in await store.search(vector, k=K, query_text=text, **options)]

        runners: dict[str, Search] = {
            "raw": raw,
            "vector": core,
            "text": lambda i: core(i, mode="text"),
            "hybrid": lambda i: core(i, mode="hybrid"),
        }
        log(f"measuring {len(data.query_ids)} queries, k={K}, methods in turn: {', '.join(runners)}")
        try:
            timings, ranked = await measure(runners, len(data.query_ids), warm_all=("raw", "vector"))
        finally:
            await held.close()
        out["methods"] = {}
        for name, timing in timings.items():
            ndcg = float(np.mean([ndcg_at(run, data.qrels[q], 10)
                                  for run, q in zip(ranked[name], data.query_ids, strict=True)]))
            out["methods"][name] = {
                "p50": timing.percentile(50) * 1000, "p90": timing.percentile(90) * 1000,
                "p99": timing.percentile(99) * 1000, "ndcg10": ndcg,
            }
        if args.explain:
            slowest = int(np.argmax(timings["text"].seconds))
            log(f"EXPLAIN ANALYZE of the slowest text query (query {slowest})")
            out["explain"] = {
                "query": texts[slowest],
                "ms": timings["text"].seconds[slowest] * 1000,
                "plan": await explain_text(store, admin, texts[slowest]),
            }
    finally:
        await store.close()
        await admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await admin.close()
    return out


# -- report --------------------------------------------------------------------------------------------------
def _ms(value: float) -> str:
    return f"{value:,.1f}" if value >= 10 else f"{value:.2f}"


def _duration(seconds: float) -> str:
    return f"{seconds:,.1f}" if seconds < 100 else f"{seconds:,.0f}"


def render(entries: list[dict[str, Any]]) -> str:
    """The report of `entries` (one per corpus size, smallest first)."""
    latency_rows, build_rows, runs = [], [], []
    for e in entries:
        raw_p50 = e["methods"]["raw"]["p50"]
        for name, label in METHODS.items():
            m = e["methods"][name]
            ratio = f"{raw_p50 / m['p50']:.2f}" if name in ("raw", "vector") else ""
            latency_rows.append([f"{e['rows']:,}", label, _ms(m["p50"]), _ms(m["p90"]), _ms(m["p99"]), ratio,
                                 f"{m['ndcg10']:.4f}"])
        build_rows.append([
            f"{e['rows']:,}", f"{e['synthetic']:,}", _duration(e["load_s"]), f"{e['rows'] / e['load_s']:,.0f}",
            _duration(e["index_s"]), _duration(e["vacuum_s"]), f"{e['table_bytes'] / 2**30:.2f}",
            _duration(e["generate_s"]),
        ])
        runs.append([f"{e['rows']:,}", e["date"], str(e["queries"]), f"`{e['command']}`"])
    parts = [
        "## 6. Text and hybrid search by corpus size",
        "",
        f"SciFact test queries against SciFact's 5,183 documents plus synthetic chunks like them, one table per "
        f"size, one client, k={K}, HNSW on the vector side (m=16, ef_construction=64, ef_search 40). {CAVEAT}",
        "",
        markdown_table(["rows", "method", "p50 ms", "p90 ms", "p99 ms", "ratio to raw (p50)", "nDCG@10"],
                       latency_rows, align="llrrrrr"),
        "",
        "*ratio to raw*: the raw asyncpg vector query's p50 over the line's p50 (1.00 = as fast as the baseline), "
        "for the vector side only; text and hybrid search have no raw baseline here (their SQL is the core's "
        "own). nDCG@10: SciFact's qrels over the mixed corpus (a synthetic chunk in the top 10 counts as not "
        "relevant; compare sizes measured with the same number of queries, last table); all 300 queries on the "
        "5,183 documents alone score vector 0.645, text 0.689, hybrid 0.731 "
        "([retrieval_quality.md](retrieval_quality.md)). Issue 16's targets for text and hybrid: "
        + "; ".join(f"{rows:,} rows p50 <= {p50} ms, p99 <= {p99} ms" for rows, (p50, p99) in TARGETS.items())
        + ".",
        "",
        markdown_table(["rows", "synthetic", "load s", "load rows/s", "HNSW build s", "VACUUM ANALYZE s",
                        "table + indexes GiB", "data generation s"], build_rows),
        "",
        "Load: `add_vectors(vectors, ids=..., contents=...)` in batches (text ids; the text-search columns, their "
        "GIN index and the term statistics maintained as rows arrive), timed inside the calls only; making the "
        "synthetic chunks is timed apart. HNSW: `create_index(\"hnsw\")`. Then `VACUUM ANALYZE`, as autovacuum "
        "would after a bulk load. Each method runs on every query in turn, in an order that rotates from query to "
        "query (raw, vector, text, hybrid on query 1; vector, text, hybrid, raw on query 2; ...: no method always "
        "runs right after the text searches, which push the vector index's pages out of shared buffers), after an "
        "untimed "
        "warm-up (both vector lines on every query: a new connection is slower until its "
        f"backend has touched the pages it reads; text and hybrid on {WARM_UP} queries); times are wall-clock "
        "per call, client and server on one machine.",
        "",
        text_corpus.describe(entries[-1].get("seed", 0) if entries else 0),
    ]
    if any("png" in e for e in entries):
        parts += ["", "![Latency by corpus size](6_text_scale.png)"]
    for e in entries:
        if e.get("explain"):
            x = e["explain"]
            parts += [
                "",
                f"### Where a slow text search spends its time ({e['rows']:,} rows)",
                "",
                f"`EXPLAIN (ANALYZE, BUFFERS)` of the statement the core runs for the slowest text query of the "
                f"run ({x['ms']:,.0f} ms when measured): \"{x['query']}\".",
                "",
                f"<details><summary>the plan ({len(x['plan'])} lines)</summary>",
                "",
                "```",
                *x["plan"],
                "```",
                "",
                "</details>",
            ]
    parts += [
        "",
        markdown_table(["rows", "measured", "queries", "command"], runs, align="rlrl"),
        "",
        f"Server: {entries[-1]['server']}. Machine: {entries[-1]['machine']}.",
    ]
    return "\n".join(parts) + "\n"


def read_entries(path: Path) -> list[dict[str, Any]]:
    """The runs recorded in an earlier report at `path` (none if there is none or it has no data)."""
    if not path.exists():
        return []
    match = re.search(re.escape(DATA_MARK) + r"(.*?) -->", path.read_text(), re.DOTALL)
    return json.loads(match.group(1)) if match else []


def draw_chart(path: Path, entries: list[dict[str, Any]]) -> bool:
    """p50 (solid) and p99 (dotted) of each method by corpus size; False when matplotlib is not installed."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    rows = [e["rows"] for e in entries]

    def draw(ax: Any) -> None:
        for name, label in CHART_LABELS.items():
            color = COLORS[name]
            ax.plot(rows, [e["methods"][name]["p50"] for e in entries], "o-", color=color, label=label)
            ax.plot(rows, [e["methods"][name]["p99"] for e in entries], ":", color=color)
        for size, (p50, p99) in TARGETS.items():
            first = size == min(TARGETS)
            ax.plot([size], [p50], "kx", markersize=9, label="issue 16 target, p50" if first else None)
            ax.plot([size], [p99], "k+", markersize=9, label="issue 16 target, p99" if first else None)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("rows (SciFact + synthetic chunks)")
        ax.set_ylabel("ms per search (one client, k=10)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))

    save_chart(path, draw, "Search latency by corpus size: p50 (solid), p99 (dotted)", size=(10.5, 5.5))
    return True


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=20_000, help="rows in the table, SciFact's 5,183 included")
    parser.add_argument("--queries", type=int, default=100, help="the first N of SciFact's 300 test queries")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic chunks")
    parser.add_argument("--batch", type=int, default=5000, help="rows per add_vectors call")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help=f"SciFact directory (default {DEFAULT_DATA})")
    parser.add_argument("--explain", action="store_true", help="also EXPLAIN ANALYZE the slowest text query")
    parser.add_argument(
        "--output", nargs="?", const=str(DEFAULT_OUTPUT), default=None,
        help=f"merge this run into this Markdown report and draw its chart beside it (default: {DEFAULT_OUTPUT})",
    )
    add_server_arguments(parser)
    args = parser.parse_args(argv)
    if not (args.data / "corpus.jsonl").exists():
        parser.error(f"--data: no SciFact files in {args.data}")
    if args.rows < 5183:
        parser.error("--rows must be at least 5183 (SciFact's documents)")
    if not 1 <= args.queries <= 300:
        parser.error("--queries must be between 1 and 300")
    if args.batch < 1:
        parser.error("--batch must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    data = text_corpus.scifact(args.data, args.queries)
    if args.rows < len(data.doc_ids):
        raise SystemExit(f"--rows must be at least {len(data.doc_ids)} (SciFact's documents)")
    out = asyncio.run(benchmark(args, data))
    entry = {
        "rows": out["rows"], "synthetic": out["rows"] - len(data.doc_ids), "queries": len(data.query_ids),
        "seed": args.seed, "load_s": out["load_s"], "generate_s": out["generate_s"], "index_s": out["index_s"],
        "vacuum_s": out["vacuum_s"], "table_bytes": out["table_bytes"], "methods": out["methods"],
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"), "command": command_line(),
        "server": f"{server_label(bool(args.dsn))}, {out['version']}", "machine": machine_description(),
    }
    if "explain" in out:
        entry["explain"] = out["explain"]
    print(render([entry]))
    if args.output:
        path = Path(args.output)
        entries = {e["rows"]: e for e in read_entries(path)}
        entries[entry["rows"]] = entry
        ordered = [entries[rows] for rows in sorted(entries)]
        if draw_chart(path.with_suffix(".png"), ordered):
            for e in ordered:
                e["png"] = True
        report = render(ordered) + f"\n{DATA_MARK}{json.dumps(ordered)} -->\n"
        write_markdown(path, report)
        log(f"written to {path}" + (f" and {path.with_suffix('.png')}" if ordered[-1].get("png") else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
