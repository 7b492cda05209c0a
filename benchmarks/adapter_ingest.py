"""Adapter ingest against raw COPY of the same rows, and how the columns' storage changes it.

The ingest lines of `run_all.py`'s first scenario (`scenarios.INGEST_STRATEGIES`), alone and quicker: each method
loads the same document rows (id, vector, content, metadata, document_id, chunk_index) into a fresh table made
with the adapters' options (text ids, text search on: the default), in calls of ``--batch`` rows, one transaction
each; the raw COPY (``raw_copy_docs``) is one ``copy_records_to_table`` per batch. Best of ``--repeats`` rounds;
within a round every line runs once, so drift on a shared machine hits them alike. Ratios compare lines of the
same run only. ``raw_copy_node_rows`` is a reference: the raw COPY of the LlamaIndex adapter's own rows (their
metadata holds the serialised node, made before the clock), so the adapter's line against it is its Python alone.

``--contents short`` is the scenario's rows ("passage <n>", rows just under 2 kB with the LlamaIndex node);
``--contents long`` gives each row a 180-word synthetic chunk (`text_corpus.synthetic`, seed 0; rows of 3-4 kB).

``--storage`` compares the columns' storage, set on each fresh table before the clock: ``store`` (what the
store makes: vector and metadata MAIN, kept in the heap unless the row would not fit in a page); the others give
the metadata its type's storage (EXTENDED: moved to TOAST when a row is over 2 kB) and the vector ``external``
(pgvector's type default: a long row's vector goes to TOAST), ``main`` (the store's layout before the metadata
was MAIN too), ``target`` (``external`` with the table's ``toast_tuple_target`` at 8160: nothing of a row under
a page is compressed or moved out), or ``main_target`` (both). With ``--search N``,
each storage also gets a table loaded by the core, and N exact searches (no vector index), unfiltered and
filtered (metadata ``g10 = 0``, a tenth of the rows), are timed on it (queries/s, best of 3 rounds).

Usage::

    python benchmarks/adapter_ingest.py                          # 20,000 rows, best of 3, embedded server
    python benchmarks/adapter_ingest.py --contents long --storage store main --search 50
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent))

import scenarios
from common import (
    add_server_arguments,
    command_line,
    fmt_rate,
    machine_description,
    markdown_table,
    server_dsn,
    server_version,
    write_markdown,
)
from pgvecstore import PgVectorStore

METHODS = ("raw_copy_docs", "core_docs", "llamaindex_adapter", "raw_copy_node_rows", "langchain_adapter")
DEFAULT_METHODS = METHODS[:4]
STORAGES = ("store", "external", "main", "target", "main_target")
FULL_PAGE_TARGET = 8160  # the largest toast_tuple_target: rows up to a page are left whole


def storage_hook(storage: str) -> scenarios.TableHook | None:
    """What `--storage` does to a fresh table before the clock (None: leave it as the store made it)."""
    if storage == "store":
        return None

    async def hook(store: PgVectorStore, conn: asyncpg.Connection) -> None:
        t = store.table
        kind = "MAIN" if storage.startswith("main") else "EXTERNAL"
        await conn.execute(f"ALTER TABLE {t.qualified} ALTER COLUMN {t.col('embedding')} SET STORAGE {kind}, "
                           f"ALTER COLUMN {t.col('metadata')} SET STORAGE EXTENDED")
        if storage.endswith("target"):
            await conn.execute(f"ALTER TABLE {t.qualified} SET (toast_tuple_target = {FULL_PAGE_TARGET})")

    return hook


def long_contents(rows: int) -> list[str]:
    """180-word synthetic chunks, one per row (SciFact's word distribution, seed 0)."""
    import text_corpus  # only here: it reads the SciFact corpus

    if not text_corpus.DEFAULT_DATA.is_dir():
        raise SystemExit(f"--contents long needs the SciFact corpus at {text_corpus.DEFAULT_DATA}")
    contents: list[str] = []
    for _, chunk, _ in text_corpus.synthetic(rows, 0, corpus=text_corpus.scifact()):
        contents.extend(chunk)
    return contents


async def measure_search(ctx: scenarios.Context, data: scenarios.DataSet, storage: str) -> dict[str, float]:
    """Queries/s of exact searches (unfiltered, and filtered on ``g10 = 0``) over a table the core loaded."""
    table = f"search_{storage}"
    await scenarios.ingest_once(ctx, data, "core_docs", table, storage_hook(storage))
    store = ctx.store(table, id_type="text", pool_max_size=2)
    await store.initialize()
    rates: dict[str, float] = {}
    try:
        for label, where in (("exact", None), ("filtered exact", {"g10": 0})):
            best = float("inf")
            for _ in range(3):
                began = time.perf_counter()
                for query in data.queries:
                    await store.search(query, k=scenarios.K, filter=where)
                best = min(best, time.perf_counter() - began)
            rates[label] = len(data.queries) / best
            ctx.log(f"search {storage} {label}: {rates[label]:,.1f} queries/s")
    finally:
        await store.close()
    return rates


async def table_sizes(conn: asyncpg.Connection, ctx: scenarios.Context, table: str) -> tuple[float, float]:
    """MiB of the table's heap and of its TOAST table."""
    row = await conn.fetchrow(
        "SELECT pg_relation_size(c.oid), pg_relation_size(c.reltoastrelid) FROM pg_class c WHERE c.oid = $1::regclass",
        ctx.qualified(table),
    )
    return row[0] / 2**20, row[1] / 2**20


async def benchmark(args: argparse.Namespace) -> str:
    dsn = server_dsn(args.dsn, args.data_dir)
    ctx = scenarios.Context(
        dsn=dsn, schema=scenarios.new_schema(), dims=args.dims, rows_small=args.rows, rows_large=args.rows,
        stream_rows=0, queries=max(args.search, 1), recall_queries=1, filtered_queries=1, repeats=args.repeats,
        batch=args.batch, clients=2, results_dir=Path("."), peer_python=None, peer_rows_large=0, scifact_dir=None,
    )
    data = ctx.data_small()
    if args.contents == "long":
        data.texts = long_contents(args.rows)
    admin = await asyncpg.connect(dsn)
    version = await server_version(admin)
    await admin.execute(f'CREATE SCHEMA "{ctx.schema}"')
    seconds: dict[tuple[str, str], list[float]] = {}
    searches: dict[str, dict[str, float]] = {}
    try:
        warm = scenarios.make_dataset("warm", min(2000, args.rows), args.dims, 1, seed=5)
        warm.texts = data.texts[: warm.rows] if data.texts else None
        await scenarios.ingest_size(ctx, warm, 1, None, args.methods)
        for _ in range(args.repeats):  # rounds outermost: every (storage, method) once per round
            for storage in args.storage:
                runs = await scenarios.ingest_size(ctx, data, 1, None, args.methods, storage_hook(storage))
                for method, took in runs.items():
                    seconds.setdefault((storage, method), []).extend(took)
        if args.search:
            for storage in args.storage:
                searches[storage] = await measure_search(ctx, data, storage)
            for storage in args.storage:
                heap, toast = await table_sizes(admin, ctx, f"search_{storage}")
                searches[storage].update({"heap MiB": heap, "TOAST MiB": toast})
    finally:
        await admin.execute(f'DROP SCHEMA IF EXISTS "{ctx.schema}" CASCADE')
        await admin.close()
    return render(args, version, data, seconds, searches)


def render(
    args: argparse.Namespace, version: str, data: scenarios.DataSet, seconds: dict[tuple[str, str], list[float]],
    searches: dict[str, dict[str, float]],
) -> str:
    rows: list[list[str]] = []
    for (storage, method), took in seconds.items():
        best = min(took)
        raw = min(seconds[(storage, "raw_copy_docs")]) if (storage, "raw_copy_docs") in seconds else None
        ratio = f"{raw / best:.2f}" if raw else "-"
        rows.append([scenarios.INGEST_METHODS[method], storage, f"{data.rows:,}", f"{best:.2f}",
                     fmt_rate(data.rows / best), ratio, f"best of {len(took)}"])
    text = [
        "## Adapter ingest vs raw COPY of the same rows",
        "",
        f"{machine_description()}; {version}. Command: `{command_line()}`.",
        "",
        f"{data.rows:,} document rows of {args.dims} dimensions, contents {args.contents!r}, {args.batch:,} rows "
        f"per call, text search on; each storage's lines compared with its own raw COPY.",
        "",
        markdown_table(["method", "storage", "rows", "seconds", "rows/s", "ratio to raw COPY", "runs"], rows),
    ]
    if searches:
        labels = ["exact", "filtered exact", "heap MiB", "TOAST MiB"]
        table = [[storage] + [f"{values[label]:,.1f}" for label in labels] for storage, values in searches.items()]
        text += ["", f"Exact search (no vector index), k={scenarios.K}, {args.search} queries, best of 3 rounds, "
                 "over a table the core loaded (queries/s), and the table's size:", "",
                 markdown_table(["storage", "exact", "filtered exact (g10 = 0)", "heap MiB", "TOAST MiB"],
                                table)]
    return "\n".join(text)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=20_000, help="rows per run (default 20000)")
    parser.add_argument("--dims", type=int, default=384)
    parser.add_argument("--repeats", type=int, default=3, help="rounds; the best counts (default 3)")
    parser.add_argument("--batch", type=int, default=5000, help="rows per call (default 5000)")
    parser.add_argument("--contents", choices=("short", "long"), default="short")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(DEFAULT_METHODS),
                        help=f"lines to run (default {' '.join(DEFAULT_METHODS)})")
    parser.add_argument("--storage", nargs="+", choices=STORAGES, default=["store"],
                        help="column storage of each table (default: what the store makes)")
    parser.add_argument("--search", type=int, default=0, help="exact searches timed per storage (default 0: none)")
    parser.add_argument("--output", help="also write the Markdown report to this file")
    add_server_arguments(parser)
    args = parser.parse_args(argv)
    if args.rows < 1 or args.repeats < 1 or args.batch < 1 or args.dims < 1 or args.search < 0:
        parser.error("--rows, --repeats, --batch and --dims must be at least 1, --search at least 0")
    if "raw_copy_docs" not in args.methods:
        args.methods = ["raw_copy_docs", *args.methods]
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    report = asyncio.run(benchmark(args))
    if args.output:
        write_markdown(args.output, report)
    print(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

