"""Retrieval quality on SciFact: nDCG@10 and recall@100 of vector, text and hybrid search, with time per query.

SciFact (BEIR layout) has 5,183 abstracts, 300 test claims and 339 relevance judgments; ``../shared/data/scifact``
beside the checkout also holds all-MiniLM-L6-v2 embeddings of every document (``title + " " + text``) and of every
query, so nothing is embedded here. The script loads them into a fresh table of an embedded server (or ``--dsn``),
with ``title + " " + text`` as each row's content (the text side searches it), runs every test query through each
method and scores the results against the judgments:

- vector, exact scan: the store without a vector index. Must reproduce the published 0.6451 within 0.002.
- vector, HNSW: the same after ``create_index("hnsw")`` (m=16, ef_construction=64; pgvector's ef_search 40).
- text: ``search(mode="text")``, BM25 over a bounded candidate set (docs/hybrid.md).
- hybrid, weighted: ``search(mode="hybrid")`` with its defaults: min-max normalised scores, equal weights
  (alpha=0.5).
- hybrid, RRF: ``search(mode="hybrid", rrf_k=60)``: reciprocal rank fusion.

The hybrid lines run once with the exact vector side (the store's default: no index) and once over HNSW.
nDCG@10 comes from a k=10 search and recall@100 from a k=100 search (what a user asking for that many gets; the
hybrid candidate depth follows k). nDCG@10 uses linear gains and the ideal ranking of all judged documents, as
pytrec_eval (BEIR, MTEB) computes it; a query without results scores 0. Times are the median wall-clock time of
one ``search`` call, sequentially, client and server on this machine; the methods take turns query by query, so
load from elsewhere hits them alike.

``--variants`` adds other ways to rank text in PostgreSQL on the same table (why the text side is built as it
is); ``--sweep`` adds a sensitivity table of the fusion settings. Both evaluate on the test split; the defaults
were chosen before, on principle (see docs/hybrid.md), not from these tables.

Usage::

    python benchmarks/retrieval_quality.py                       # the table, on a private embedded server
    python benchmarks/retrieval_quality.py --variants --sweep --output   # + both extra tables, written to results/
    python benchmarks/retrieval_quality.py --queries 50          # a quick look at the first 50 queries
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    RESULTS_DIR,
    add_server_arguments,
    command_line,
    machine_description,
    markdown_table,
    server_dsn,
    server_label,
    server_version,
    write_markdown,
)
from pgvecstore import PgVectorStore
from pgvecstore.identifiers import quote_ident

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "scifact"
DEFAULT_OUTPUT = RESULTS_DIR / "retrieval_quality.md"
REFERENCE_EXACT = 0.6451  # all-MiniLM-L6-v2, exact cosine, nDCG@10 on the SciFact test split (MTEB)
REFERENCE_TOLERANCE = 0.002
REFERENCE_BM25 = {"BM25 (BEIR paper)": 0.665, "BM25 (Anserini)": 0.679}


# -- data and metrics ----------------------------------------------------------------------------------------
@dataclass
class SciFact:
    """The corpus, the test queries with their embeddings, and the relevance judgments."""

    doc_ids: list[str]
    contents: list[str]
    doc_vectors: np.ndarray
    query_ids: list[str]
    query_texts: list[str]
    query_vectors: np.ndarray
    qrels: dict[str, dict[str, int]]


def load_scifact(path: Path, limit: int | None = None) -> SciFact:
    """Read the BEIR files and the precomputed embeddings, checking that their rows line up."""
    corpus = [json.loads(line) for line in (path / "corpus.jsonl").read_text().splitlines() if line.strip()]
    by_id = {doc["_id"]: doc for doc in corpus}
    doc_ids = (path / "corpus_ids.txt").read_text().split()
    doc_vectors = np.load(path / "corpus_minilm.npy")
    if len(doc_ids) != doc_vectors.shape[0] or set(doc_ids) != set(by_id):
        raise SystemExit(f"{path}: corpus_ids.txt, corpus_minilm.npy and corpus.jsonl do not line up")
    # The text each embedding was made from, and what the text side searches.
    contents = [f"{by_id[i]['title']} {by_id[i]['text']}" for i in doc_ids]
    texts = {
        q["_id"]: q["text"]
        for q in (json.loads(line) for line in (path / "queries.jsonl").read_text().splitlines() if line.strip())
    }
    qrels: dict[str, dict[str, int]] = {}
    for line in (path / "qrels" / "test.tsv").read_text().splitlines()[1:]:
        if line.strip():
            query_id, doc_id, score = line.split("\t")
            qrels.setdefault(query_id, {})[doc_id] = int(score)
    query_ids = (path / "query_ids.txt").read_text().split()
    query_vectors = np.load(path / "queries_minilm.npy")
    if len(query_ids) != query_vectors.shape[0]:
        raise SystemExit(f"{path}: query_ids.txt and queries_minilm.npy do not line up")
    keep = [i for i, query_id in enumerate(query_ids) if query_id in qrels][:limit]
    return SciFact(
        doc_ids=doc_ids,
        contents=contents,
        doc_vectors=doc_vectors,
        query_ids=[query_ids[i] for i in keep],
        query_texts=[texts[query_ids[i]] for i in keep],
        query_vectors=query_vectors[keep],
        qrels={query_ids[i]: qrels[query_ids[i]] for i in keep},
    )


def ndcg_at(ranked: Sequence[str], judged: Mapping[str, int], cut: int = 10) -> float:
    """nDCG@cut with linear gains (pytrec_eval's ndcg_cut): DCG of the ranking over the DCG of the ideal one."""
    dcg = sum(judged.get(doc, 0) / math.log2(rank + 2) for rank, doc in enumerate(ranked[:cut]))
    ideal = sorted((g for g in judged.values() if g > 0), reverse=True)[:cut]
    idcg = sum(gain / math.log2(rank + 2) for rank, gain in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0


def recall_at(ranked: Sequence[str], judged: Mapping[str, int], cut: int = 100) -> float:
    relevant = {doc for doc, gain in judged.items() if gain > 0}
    return len(relevant & set(ranked[:cut])) / len(relevant) if relevant else 0.0


def mean_metric(metric: Callable[..., float], runs: Sequence[Sequence[str]], data: SciFact, cut: int) -> float:
    return float(np.mean([metric(run, data.qrels[q], cut) for run, q in zip(runs, data.query_ids, strict=True)]))


# -- measuring -----------------------------------------------------------------------------------------------
Search = Callable[[int, int], Awaitable[list[str]]]  # (query number, k) -> ranked ids


@dataclass
class Result:
    label: str
    ndcg10: float
    recall100: float
    ms10: float
    ms100: float


async def evaluate(methods: Mapping[str, Search], data: SciFact, *, recall: bool = True) -> list[Result]:
    """nDCG@10 from k=10 searches and recall@100 from k=100 searches of each method, every call timed.

    The methods take turns query by query (method A on query 1, method B on query 1, ..., then query 2), so load
    from elsewhere on a shared machine hits all of them alike instead of whichever ran at the time.
    """
    count = len(data.query_ids)
    cuts = (10, 100) if recall else (10,)
    runs = {label: {k: [[] for _ in range(count)] for k in cuts} for label in methods}
    seconds = {label: {k: [0.0] * count for k in cuts} for label in methods}
    for search in methods.values():
        await search(0, 10)  # warm-up: prepared statements, caches
    for k in cuts:
        for i in range(count):
            for label, search in methods.items():
                started = time.perf_counter()
                runs[label][k][i] = await search(i, k)
                seconds[label][k][i] = time.perf_counter() - started
    results = []
    for label in methods:
        result = Result(
            label,
            mean_metric(ndcg_at, runs[label][10], data, 10),
            mean_metric(recall_at, runs[label][100], data, 100) if recall else float("nan"),
            float(np.median(seconds[label][10])) * 1000,
            float(np.median(seconds[label][100])) * 1000 if recall else float("nan"),
        )
        print(f"  {label}: nDCG@10 {result.ndcg10:.4f}", file=sys.stderr, flush=True)
        results.append(result)
    return results


def core_search(store: PgVectorStore, data: SciFact, **options: Any) -> Search:
    """A `Search` through the core's `search` with `options` (mode, alpha, ...)."""
    mode = options.get("mode", "vector")

    async def run(i: int, k: int) -> list[str]:
        vector = data.query_vectors[i] if mode != "text" else None
        text = data.query_texts[i] if mode != "vector" else None
        hits = await store.search(vector, k=k, include_metadata=False, query_text=text, **options)
        return [row_id for row_id, _score, _meta in hits]

    return run


def sql_search(pool: asyncpg.Pool, data: SciFact, sql: str) -> Search:
    """A `Search` by one raw SQL statement ($1 query text, $2 k) returning ids best first."""

    async def run(i: int, k: int) -> list[str]:
        return [row[0] for row in await pool.fetch(sql, data.query_texts[i], k)]

    return run


def text_variants(store: PgVectorStore) -> dict[str, str]:
    """Common ways to rank text in PostgreSQL, as raw SQL on the store's table ($1 text, $2 k)."""
    table = store.table
    tsv = f"t.{quote_ident(table.text_search_column)}"
    row_id = f"t.{table.col('id')}"
    any_terms = (
        f"FROM {table.qualified} AS t, (SELECT string_agg(array_to_tsvector(ARRAY[u.lexeme])::text, ' | ')"
        "::tsquery AS q FROM unnest(to_tsvector('english', $1)) AS u) AS s"
    )
    return {
        "`websearch_to_tsquery` (every term must match), `ts_rank`": (
            f"SELECT {row_id}::text FROM {table.qualified} AS t, "
            "(SELECT websearch_to_tsquery('english', $1) AS q) AS s "
            f"WHERE {tsv} @@ s.q ORDER BY ts_rank({tsv}, s.q) DESC, {row_id} LIMIT $2"
        ),
        "any term, `ts_rank_cd(..., 32)` (cover density)": (
            f"SELECT {row_id}::text {any_terms} WHERE {tsv} @@ s.q "
            f"ORDER BY ts_rank_cd({tsv}, s.q, 32) DESC, {row_id} LIMIT $2"
        ),
        "any term, `ts_rank(..., 1)` (length-normalised, no IDF)": (
            f"SELECT {row_id}::text {any_terms} WHERE {tsv} @@ s.q "
            f"ORDER BY ts_rank({tsv}, s.q, 1) DESC, {row_id} LIMIT $2"
        ),
    }


async def ingest(dsn: str, schema: str, data: SciFact) -> PgVectorStore:
    store = PgVectorStore(
        connection_string=dsn, schema=schema, table_name="scifact", dimensions=data.doc_vectors.shape[1],
        id_type="text", metric="cosine", pool_min_size=1, pool_max_size=2,
    )
    await store.add_vectors(data.doc_vectors, ids=data.doc_ids, contents=data.contents)
    pool = await store.get_pool()
    # What autovacuum does soon after a bulk load: statistics (the text side reads the row estimate from them) and
    # the visibility map (without it every heap page a text search touches is read, several times slower).
    await pool.execute(f"VACUUM ANALYZE {store.table.qualified}")
    return store


async def benchmark(args: argparse.Namespace, data: SciFact) -> dict[str, Any]:
    dsn = server_dsn(args.dsn, args.data_dir)
    schema = f"bench_quality_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(dsn)
    out: dict[str, Any] = {"version": await server_version(admin), "variants": [], "sweep": []}
    store: PgVectorStore | None = None
    try:
        print(f"  loading {len(data.doc_ids):,} documents", file=sys.stderr, flush=True)
        store = await ingest(dsn, schema, data)
        exact: dict[str, Search] = {
            "vector, exact scan": core_search(store, data),
            "text (BM25, k1 0.9, b 0.4)": core_search(store, data, mode="text"),
            "hybrid, weighted (alpha=0.5, the default), exact vector side": core_search(store, data, mode="hybrid"),
            "hybrid, RRF (rrf_k=60), exact vector side": core_search(store, data, mode="hybrid", rrf_k=60),
        }
        if args.variants:
            pool = await store.get_pool()
            variants = {label: sql_search(pool, data, sql) for label, sql in text_variants(store).items()}
            exact.update(variants)
        results = await evaluate(exact, data)
        main = results[:4]
        out["variants"] = results[4:]
        if args.sweep:
            sweep: dict[str, Search] = {}
            for rrf_k in (10, 30, 60, 100):
                for depth in (20, 40, 100):
                    sweep[f"RRF, rrf_k={rrf_k}, {depth} candidates per side"] = core_search(
                        store, data, mode="hybrid", rrf_k=rrf_k, vector_k=depth, text_k=depth)
            for alpha in (0.3, 0.4, 0.5, 0.6, 0.7):
                sweep[f"weighted, alpha={alpha}, 40 candidates per side"] = core_search(
                    store, data, mode="hybrid", alpha=alpha)
            out["sweep"] = await evaluate(sweep, data, recall=False)
        print("  building the HNSW index", file=sys.stderr, flush=True)
        await store.create_index("hnsw")
        hnsw = await evaluate({
            "vector, HNSW (m=16, ef_construction=64, ef_search=40)": core_search(store, data),
            "hybrid, weighted (alpha=0.5, the default), HNSW vector side": core_search(store, data, mode="hybrid"),
            "hybrid, RRF (rrf_k=60), HNSW vector side": core_search(store, data, mode="hybrid", rrf_k=60),
        }, data)
        out["main"] = [main[0], hnsw[0], *main[1:], *hnsw[1:]]
    finally:
        if store is not None:
            await store.close()
        await admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await admin.close()
    return out


# -- report --------------------------------------------------------------------------------------------------
def _num(value: float, digits: int = 4) -> str:
    return "" if math.isnan(value) else f"{value:.{digits}f}"


def render(out: dict[str, Any], args: argparse.Namespace, data: SciFact) -> str:
    main: list[Result] = out["main"]
    rows = [[r.label, _num(r.ndcg10), _num(r.recall100, 3), _num(r.ms10, 1), _num(r.ms100, 1)] for r in main]
    headers = ["method", "nDCG@10", "recall@100", "ms/query (k=10)", "ms/query (k=100)"]
    exact = main[0].ndcg10
    full = len(data.query_ids) == 300
    verdict = (
        f"Exact vector search scores {exact:.4f}: "
        + ("within" if abs(exact - REFERENCE_EXACT) <= REFERENCE_TOLERANCE else "NOT within")
        + f" {REFERENCE_TOLERANCE} of the published {REFERENCE_EXACT} (MTEB, all-MiniLM-L6-v2)."
        if full
        else f"Only {len(data.query_ids)} of the 300 queries were run: not comparable with the published figures."
    )
    parts = [
        f"## Retrieval quality: SciFact test split ({len(data.query_ids)} queries, {len(data.doc_ids):,} documents)",
        "",
        markdown_table(headers, rows),
        "",
        verdict + " Published BM25: " + ", ".join(f"{k} {v}" for k, v in REFERENCE_BM25.items()) + ".",
        "",
        "Embeddings: all-MiniLM-L6-v2 (384 dimensions, cosine), precomputed. Text side: `title + \" \" + text` "
        "in the content column, `english` configuration. nDCG@10 from k=10 searches, recall@100 from k=100 "
        "searches (hybrid candidates per side: max(k, 40)); linear gains as in pytrec_eval. Times: median of one "
        "`search` call, sequential, the methods of a table taking turns query by query; the table is vacuumed "
        "and analysed after the load, as autovacuum would.",
    ]
    if out["variants"]:
        variants = [r for r in main if r.label.startswith("text")] + out["variants"]
        parts += [
            "",
            "### Other ways to rank text in PostgreSQL (same table, same queries)",
            "",
            markdown_table(
                ["text ranking", "nDCG@10", "recall@100", "ms/query (k=10)"],
                [[r.label, _num(r.ndcg10), _num(r.recall100, 3), _num(r.ms10, 1)] for r in variants],
            ),
        ]
    if out["sweep"]:
        parts += [
            "",
            "### Sensitivity of the fusion settings (exact vector side; on the test split, not used to pick defaults)",
            "",
            markdown_table(["fusion", "nDCG@10", "ms/query (k=10)"],
                           [[r.label, _num(r.ndcg10), _num(r.ms10, 1)] for r in out["sweep"]]),
        ]
    parts += [
        "",
        f"Server: {server_label(bool(args.dsn))}, {out['version']}. Machine: {machine_description()}.",
        f"Command: `{command_line()}`",
    ]
    return "\n".join(parts) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help=f"SciFact directory (default {DEFAULT_DATA})")
    parser.add_argument("--queries", type=int, default=None, help="run only the first N test queries")
    parser.add_argument("--variants", action="store_true", help="also rank text the other common ways")
    parser.add_argument("--sweep", action="store_true", help="also run a sensitivity table of the fusion settings")
    parser.add_argument(
        "--output", nargs="?", const=str(DEFAULT_OUTPUT), default=None,
        help=f"also write the Markdown report to this file (default when given alone: {DEFAULT_OUTPUT})",
    )
    add_server_arguments(parser)
    args = parser.parse_args(argv)
    if args.queries is not None and args.queries < 1:
        parser.error("--queries must be at least 1")
    if not (args.data / "corpus.jsonl").exists():
        parser.error(f"--data: no SciFact files in {args.data} (expected corpus.jsonl, queries.jsonl, qrels/, *.npy)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    data = load_scifact(args.data, args.queries)
    out = asyncio.run(benchmark(args, data))
    report = render(out, args, data)
    print(report)
    if args.output:
        path = write_markdown(args.output, report)
        print(f"written to {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
