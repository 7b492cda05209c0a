"""Every benchmark scenario on one server, with the same data, in one run; Markdown tables and PNG charts.

    python benchmarks/run_all.py                         # default sizes (about 20 minutes on 2 CPUs)
    python benchmarks/run_all.py --quick                 # small sizes, a few minutes
    python benchmarks/run_all.py --only search filtered  # some scenarios

Writes ``benchmarks/results/`` (or ``--results-dir``): ``README.md`` (the whole report: machine, command, a
summary of the targets, every table and chart), ``1_ingest.md`` ... ``5_index_build.md`` with their ``.png``
charts, and ``results.json``. Every figure is also given as a ratio to raw asyncpg measured in the same run.

The peers (langchain-postgres, llama-index-vector-stores-postgres) need ``pgvector<0.4`` and ``sqlalchemy<2.1``,
which pgvecstore's own environment does not allow; they run in a virtualenv of their own, created on first use
from `requirements-peers.txt` (``--peer-python PATH`` to use another, ``--no-peers`` to skip them).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
import venv
from pathlib import Path
from typing import Any

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent))

import scenarios
from common import (
    RESULTS_DIR,
    add_server_arguments,
    command_line,
    machine_info,
    markdown_table,
    server_dsn,
    server_label,
    server_version,
    write_markdown,
)
from scenarios import Context, Section

SCENARIOS = ("ingest", "search", "recall", "filtered", "index_build")
REQUIREMENTS = Path(__file__).resolve().parent / "requirements-peers.txt"
PEER_VENV = Path.home() / ".cache" / "pgvecstore-bench" / "peers-venv"

DEFAULTS = {
    "rows_small": 20_000, "rows_large": 200_000, "stream_rows": 1_000_000, "queries": 300, "recall_queries": 200,
    "filtered_queries": 100, "repeats": 3, "peer_rows_large": None, "search_rounds": 6,
}
QUICK = {
    "rows_small": 5_000, "rows_large": 20_000, "stream_rows": 100_000, "queries": 100, "recall_queries": 50,
    "filtered_queries": 30, "repeats": 1, "peer_rows_large": None, "search_rounds": 2,
}
TINY = {  # the smoke test's sizes: every code path, no meaningful numbers
    "rows_small": 300, "rows_large": 1_200, "stream_rows": 500, "queries": 8, "recall_queries": 8,
    "filtered_queries": 4, "repeats": 1, "peer_rows_large": None, "search_rounds": 1,
}


def peer_python(args: argparse.Namespace, log: Any) -> str | None:
    """The interpreter that runs the peers: --peer-python, this one if it has them, else the peers' venv."""
    if args.no_peers:
        return None
    if args.peer_python:
        return str(args.peer_python)
    probe = "import langchain_postgres, llama_index.vector_stores.postgres"
    if subprocess.run([sys.executable, "-c", probe], capture_output=True).returncode == 0:
        return sys.executable
    python = PEER_VENV / "bin" / "python"
    if not python.exists() or subprocess.run([str(python), "-c", probe], capture_output=True).returncode != 0:
        log(f"creating the peers' virtualenv in {PEER_VENV} (pip install -r {REQUIREMENTS.name})")
        venv.create(PEER_VENV, with_pip=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "-r", str(REQUIREMENTS)], check=True)
    return str(python)


def render(ctx: Context, sections: list[Section], args: argparse.Namespace, version: str, seconds: float) -> str:
    machine = machine_info()
    lines = [
        "# pgvecstore benchmarks",
        "",
        f"Machine: {machine['cpu']}, {machine['cpus']} CPUs, {machine['memory']} RAM, {machine['os']}; "
        f"Python {machine['python']}, numpy {machine['numpy']}, asyncpg {machine['asyncpg']}.",
        f"Server: {server_label(bool(args.dsn))}, {version}, on the same machine.",
        f"Sizes: {ctx.rows_small:,} rows (ingest, search), {ctx.rows_large:,} rows (ingest, recall, filtered "
        f"search, index build), {ctx.stream_rows:,} rows streamed; {ctx.dims} dimensions. "
        f"Run took {seconds / 60:.0f} min.",
        f"Command: `{command_line()}`",
        "",
        "Absolute numbers belong to this machine (shared with other work while measured); ratios compare "
        "methods measured in the same run on the same server and data.",
        "",
    ]
    summary = summary_table(ctx, sections)
    if summary:
        lines += ["## Targets", "", summary, ""]
    for section in sorted(sections, key=lambda s: s.title):
        lines += [f"## {section.title}", "", section.markdown, ""]
        lines += [f"![{section.title}]({chart.name})" for chart in section.charts]
        lines.append("")
    if ctx.notes:
        lines += ["## Notes", "", *[f"- {note}" for note in ctx.notes], ""]
    return "\n".join(lines)


def summary_table(ctx: Context, sections: list[Section]) -> str:
    by_name = {s.name: s for s in sections}
    rows: list[list[str]] = []

    def check(ok: bool) -> str:
        return "met" if ok else "**missed**"

    ingest = by_name.get("ingest")
    if ingest:
        for size, rates in ingest.data["chart"].items():
            core = rates[scenarios.INGEST_METHODS["core"]]
            raw = rates[scenarios.INGEST_METHODS["raw_copy"]]
            rows.append([f"core ingest / raw COPY ({size})", ">= 0.8", f"{core / raw:.3f}", check(core / raw >= 0.8)])
            same = ingest.data.get("same_rows", {}).get(size, {})
            if "langchain_adapter" in same:  # issue 4: against raw COPY of the same document rows
                ratio = same["langchain_adapter"]
                rows.append([f"LangChain adapter ingest / raw COPY of the same rows ({size})", ">= 0.8",
                             f"{ratio:.3f}", check(ratio >= 0.8)])
                if same.get("raw_copy_docs_lists"):  # what bounds it: LangChain hands vectors over as lists
                    lists = ratio / same["raw_copy_docs_lists"]
                    rows.append([f"(reference) the same, raw COPY fed the same lists of floats ({size})", ">= 0.8",
                                 f"{lists:.3f}", check(lists >= 0.8)])
            if "llamaindex_adapter" in same:  # issue 17
                ratio = same["llamaindex_adapter"]
                rows.append([f"LlamaIndex adapter ingest / raw COPY of the same rows ({size})", ">= 0.7",
                             f"{ratio:.3f}", check(ratio >= 0.7)])
                if same.get("raw_copy_node_rows"):  # its Python alone: against a raw COPY of its own rows
                    own = ratio / same["raw_copy_node_rows"]
                    rows.append([f"(reference) the same, raw COPY of the adapter's own rows ({size})", ">= 0.7",
                                 f"{own:.3f}", check(own >= 0.7)])
            # The peers write document rows (text included): compared with the core writing the same.
            core_docs = rates.get(scenarios.INGEST_METHODS["core_docs"], core)
            for lib, label in scenarios.PEER_LABELS.items():
                if label in rates:
                    ratio = core_docs / rates[label]
                    rows.append([f"core ingest of document rows / {lib} peer ({size})", ">= 10", f"{ratio:.1f}",
                                 check(ratio >= 10)])
        stream = ingest.data.get("stream")
        if stream:
            growth = stream["peak_rss_after_mib"] - stream["peak_rss_before_mib"]
            rows.append([f"peak memory, {stream['rows']:,}-row streamed ingest", "bounded",
                         f"{stream['peak_rss_after_mib']:.0f} MiB, +{growth:.0f} MiB "
                         f"(the vectors: {stream['vectors_mib']:,.0f} MiB)",
                         check(growth < max(64.0, stream["vectors_mib"] / 4))])
    search = by_name.get("search")
    if search:
        qps = search.data["qps"]
        for clients in (1, ctx.clients):
            raw = qps.get(scenarios.qps_key("raw", "hnsw", clients))
            if not raw:
                continue
            core = qps[scenarios.qps_key("core", "hnsw", clients)]
            rows.append([f"core HNSW search / raw SQL, {clients} client(s)", ">= 0.9", f"{core / raw:.3f}",
                         check(core / raw >= 0.9)])
            for key in ("langchain_adapter", "llamaindex_adapter"):
                value = qps[scenarios.qps_key(key, "hnsw", clients)] / raw
                rows.append([f"{key.replace('_', ' ')} HNSW search / raw SQL, {clients} client(s)", ">= 0.8",
                             f"{value:.3f}", check(value >= 0.8)])
    filtered = by_name.get("filtered")
    if filtered:
        for r in filtered.data["results"]:
            if r["method"] == "tuned":
                ok = r["full"] >= 1.0 and r["recall"] >= 0.95
                rows.append([f"filtered search at {r['selectivity']}: full answers, recall@10", "100%, >= 0.95",
                             f"{r['full'] * 100:.0f}%, {r['recall']:.3f}", check(ok)])
    build = by_name.get("index_build")
    if build:
        speedup = build.data["default"] / build.data["core"]
        rows.append(["HNSW build, core settings vs pgvector defaults", "faster", f"{speedup:.2f}x", check(speedup > 1)])
    return markdown_table(["target", "wanted", "measured", ""], rows, align="lrrl") if rows else ""


async def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    sizes = {**DEFAULTS, **(QUICK if args.quick else {}), **(TINY if args.tiny else {})}
    for name in sizes:
        if getattr(args, name) is not None:
            sizes[name] = getattr(args, name)
    results_dir = Path(args.results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    dsn = server_dsn(args.dsn, args.data_dir)
    chosen = args.only or list(SCENARIOS)

    def log(message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    ctx = Context(
        dsn=dsn, schema=scenarios.new_schema(), dims=args.dims, rows_small=sizes["rows_small"],
        rows_large=sizes["rows_large"], stream_rows=sizes["stream_rows"], queries=sizes["queries"],
        recall_queries=sizes["recall_queries"], filtered_queries=sizes["filtered_queries"],
        repeats=sizes["repeats"], batch=args.batch, clients=args.clients, results_dir=results_dir,
        peer_python=peer_python(args, log) if {"ingest", "search"} & set(chosen) else None,
        peer_rows_large=sizes["peer_rows_large"] or sizes["rows_large"],
        scifact_dir=Path(args.scifact) if args.scifact else None, search_rounds=sizes["search_rounds"],
    )
    admin = await asyncpg.connect(dsn)
    version = await server_version(admin)
    await admin.execute(f'CREATE SCHEMA "{ctx.schema}"')
    sections: list[Section] = []
    try:
        if ctx.peer_python:
            for lib in scenarios.PEER_LABELS:  # peers' ingest and search at the small size, in one go each
                scenarios.run_peer(ctx, lib, ctx.rows_small, ctx.queries if "search" in chosen else 0)
        if "ingest" in chosen:
            sections.append(await scenarios.scenario_ingest(ctx))
        await scenarios.ensure_table(ctx, "search_small", ctx.data_small())
        if "search" in chosen:
            sections.append(await scenarios.scenario_search(ctx))
        if {"recall", "filtered", "index_build"} & set(chosen):
            await scenarios.ensure_table(ctx, "large", ctx.data_large())
        if "index_build" in chosen:
            sections.append(await scenarios.scenario_index_build(ctx))
        elif {"recall", "filtered"} & set(chosen):
            await scenarios.ensure_hnsw(ctx, "large")
        recall_points: list[dict[str, Any]] = []
        if "recall" in chosen:
            recall_points += await scenarios.scenario_recall_scifact(ctx)
            recall_points += await scenarios.recall_large(ctx, "hnsw")
        if "filtered" in chosen:
            sections.append(await scenarios.scenario_filtered(ctx))
        if "recall" in chosen:
            recall_points += await scenarios.recall_large(ctx, "ivfflat")
            sections.append(scenarios.recall_section(ctx, recall_points))
    finally:
        if not args.keep:
            await admin.execute(f'DROP SCHEMA IF EXISTS "{ctx.schema}" CASCADE')
        await admin.close()
    report = render(ctx, sections, args, version, time.perf_counter() - started)
    write_markdown(results_dir / "README.md", report)
    for section in sections:  # 1_ingest.md ... 5_index_build.md, beside their charts
        stem = f"{section.title.split('.')[0]}_{section.name}"
        write_markdown(results_dir / f"{stem}.md", f"## {section.title}\n\n{section.markdown}\n")
    (results_dir / "results.json").write_text(json.dumps(
        {"machine": machine_info(), "server": version, "sizes": sizes, "dims": args.dims,
         "sections": {s.name: s.data for s in sections}, "notes": ctx.notes},
        indent=1, default=_jsonable,
    ))
    print(report)
    log(f"written to {results_dir}")
    return 0


def _jsonable(value: Any) -> Any:
    if isinstance(value, scenarios.Latencies):
        return {"qps": value.qps, "p50_ms": value.p50_ms, "p99_ms": value.p99_ms, "clients": value.clients}
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", choices=SCENARIOS, help="run only these scenarios")
    parser.add_argument("--quick", action="store_true", help="small sizes (a few minutes)")
    parser.add_argument("--tiny", action="store_true", help="tiny sizes: checks that everything runs")
    parser.add_argument("--rows-small", type=int, help=f"rows of ingest and search (default {DEFAULTS['rows_small']})")
    parser.add_argument("--rows-large", type=int, help="rows of the large ingest, recall, filtered search and "
                        f"index build (default {DEFAULTS['rows_large']})")
    parser.add_argument("--stream-rows", type=int,
                        help=f"rows of the streamed ingest (default {DEFAULTS['stream_rows']}; 0 skips it)")
    parser.add_argument("--peer-rows-large", type=int, help="rows of the peers' large ingest (default: --rows-large)")
    parser.add_argument("--queries", type=int, help=f"queries per search line (default {DEFAULTS['queries']})")
    parser.add_argument("--recall-queries", type=int,
                        help=f"queries per recall point (default {DEFAULTS['recall_queries']})")
    parser.add_argument("--filtered-queries", type=int,
                        help=f"queries per filtered line (default {DEFAULTS['filtered_queries']})")
    parser.add_argument("--search-rounds", type=int, help="rounds per search line (default 6; exact: half)")
    parser.add_argument("--repeats", type=int, help="ingest rounds at the small size; the best counts (default 3)")
    parser.add_argument("--dims", type=int, default=384)
    parser.add_argument("--batch", type=int, default=5000, help="rows per add call of adapters and peers")
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients of the concurrent search lines")
    parser.add_argument("--results-dir", default=str(RESULTS_DIR))
    parser.add_argument("--scifact", default=str(scenarios.SHARED_SCIFACT), help="SciFact embeddings directory")
    parser.add_argument("--peer-python", help="Python of a virtualenv with the peers installed")
    parser.add_argument("--no-peers", action="store_true", help="skip langchain-postgres and llama-index-...-postgres")
    parser.add_argument("--keep", action="store_true", help="keep the benchmark schema afterwards")
    add_server_arguments(parser)
    args = parser.parse_args(argv)
    for name in ("rows_small", "rows_large", "queries", "recall_queries", "filtered_queries", "repeats",
                 "search_rounds"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.dims < 1 or args.batch < 1 or args.clients < 1:
        parser.error("--dims, --batch and --clients must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    return asyncio.run(run(parse_args(argv)))


if __name__ == "__main__":
    raise SystemExit(main())
