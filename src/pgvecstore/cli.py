"""The ``pgvecstore`` command: ingest files, query them, inspect and index the table, and run the demo.

Every command works on one table (``--schema``/``--table``, default ``pgvecstore.documents``; the demo uses
``pgvecstore.demo``) on the server of ``--dsn``, else ``$DATABASE_URL``, else the embedded PostgreSQL. Texts are
embedded offline by the packaged all-MiniLM-L6-v2 (or ``--model``), so ``pgvecstore demo`` runs from nothing.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import hashlib
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, TypeVar

import numpy as np
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from pgvecstore.chunking import (
    DEFAULT_MAX_CHARS,
    DEFAULT_MIN_CHARS,
    chunk_document,
    demo_corpus_path,
    find_files,
    load_file,
)
from pgvecstore.config import redact_dsn
from pgvecstore.embeddings import EmbeddingModelError, SentenceTransformerEmbedder
from pgvecstore.errors import PgVecStoreError
from pgvecstore.server import EmbeddedServerError, data_directory
from pgvecstore.store import PgVectorStore
from pgvecstore.sync import run_sync

DEFAULT_SCHEMA = "pgvecstore"
DEFAULT_TABLE = "documents"
DEMO_TABLE = "demo"
MAX_DOCUMENT_ID = 255
EMBED_SLICE = 64
DEMO_QUESTIONS = (
    "How does a forager bee tell the hive where the flowers are?",
    "Which volcanic eruption caused the year without a summer?",
    "What does ef_search change in an HNSW index?",
    "Where did people first drink tea?",
    "How can readers and writers use PostgreSQL at the same time?",
    "Who made the first practical pneumatic tyre?",
)

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)

app = typer.Typer(
    name="pgvecstore",
    help="PostgreSQL + pgvector as the retrieval layer of RAG applications: ingest files, query them, run the demo.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)
index_app = typer.Typer(help="Create or drop the vector index of the table.", no_args_is_help=True)
app.add_typer(index_app, name="index")

DsnOption = Annotated[
    str | None,
    typer.Option("--dsn", help="PostgreSQL URL. Default: $DATABASE_URL, else the embedded server.", show_default=False),
]
SchemaOption = Annotated[str, typer.Option("--schema", help="Schema of the table.")]
TableOption = Annotated[str, typer.Option("--table", help="Table holding the chunks and their vectors.")]
ModelOption = Annotated[
    str | None,
    typer.Option(
        "--model",
        help="sentence-transformers model directory or a name already in the Hugging Face cache. "
        "Default: the packaged all-MiniLM-L6-v2.",
        show_default=False,
    ),
]
TenantOption = Annotated[
    str | None,
    typer.Option("--tenant", help="Tenant (domain_id): write and read only this tenant's rows.", show_default=False),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


class Mode(enum.StrEnum):
    vector = "vector"
    text = "text"
    hybrid = "hybrid"


class IndexType(enum.StrEnum):
    hnsw = "hnsw"
    ivfflat = "ivfflat"


@dataclass(frozen=True)
class Target:
    """Where a command reads and writes: server, table, tenant, and which model embeds the texts."""

    dsn: str | None
    schema: str
    table: str
    model: str | None = None
    tenant: str | None = None

    def describe(self) -> str:
        dsn = self.dsn or _env_dsn()
        where = redact_dsn(dsn) if dsn else f"the embedded PostgreSQL (data in {data_directory()})"
        tenant = f", tenant {self.tenant!r}" if self.tenant else ""
        return f"{self.schema}.{self.table} on {where}{tenant}"


def _env_dsn() -> str | None:
    return os.environ.get("DATABASE_URL") or None


T = TypeVar("T")
_verbose = False


def _friendly_errors(command: Callable[..., T]) -> Callable[..., T]:
    """Report expected failures (bad input, database, model) as one line on stderr and exit with status 1."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            return command(*args, **kwargs)
        except (PgVecStoreError, EmbeddingModelError, EmbeddedServerError, ValueError, OSError, ImportError) as exc:
            if _verbose:
                raise  # --verbose: the whole traceback
            err.print(Text(f"error: {exc}", style="bold red"))
            raise typer.Exit(1) from None

    return wrapper


@app.callback()
def _main_options(
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Log what the store does; show tracebacks of errors.")
    ] = False,
) -> None:
    """PostgreSQL + pgvector as the retrieval layer of RAG applications."""
    global _verbose
    _verbose = verbose
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
    logging.getLogger("pgvecstore").setLevel(logging.INFO if verbose else logging.WARNING)


# -- helpers -----------------------------------------------------------------------------------------------------
def _embedder(model: str | None) -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder(model)


@contextlib.contextmanager
def _open_store(target: Target, dimensions: int) -> Iterator[PgVectorStore]:
    """A connected store for `target` (closed afterwards); all its calls run through `run_sync`."""
    options: dict[str, Any] = {
        "dimensions": dimensions,
        "schema": target.schema,
        "table_name": target.table,
        "id_type": "text",
        "pool_min_size": 1,
        "pool_max_size": 4,
    }
    if target.dsn:
        options["connection_string"] = target.dsn
    if target.tenant:
        options["domain_id"] = target.tenant
    store = PgVectorStore(options)
    try:
        run_sync(store.initialize())
        yield store
    finally:
        run_sync(store.close())


def _display_path(document_id: str) -> str:
    """A document id (an absolute path for ingested files) shown relative to the working directory if inside it."""
    path = Path(document_id)
    if path.is_absolute():
        with contextlib.suppress(ValueError):
            return str(path.relative_to(Path.cwd()))
    return document_id


def _print_json(data: Any) -> None:
    """Plain JSON on stdout (no colours or wrapping), for scripts."""
    sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2, default=str) + "\n")
    sys.stdout.flush()


def _passage(text: str | None, limit: int = 420) -> Text:
    flat = " ".join((text or "").split())
    return Text(flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…")


def _fingerprint(file_sha256: str, max_chars: int, min_chars: int, model_name: str) -> str:
    """Identifies a file's content together with how it was chunked and embedded."""
    key = f"{file_sha256}|{max_chars}|{min_chars}|{model_name}"
    return hashlib.sha256(key.encode()).hexdigest()[:32]


# -- ingest ------------------------------------------------------------------------------------------------------
@dataclass
class IngestReport:
    """What an ingest run did."""

    files: int = 0
    written_files: int = 0
    unchanged_files: int = 0
    chunks_written: int = 0
    chunks_removed: int = 0
    seconds: float = 0.0
    written: list[str] = field(default_factory=list)


@dataclass
class _Planned:
    document_id: str
    path: Path
    chunks: list[Any]
    metadata: dict[str, Any]
    existing: int


def ingest_files(
    store: PgVectorStore,
    embedder: SentenceTransformerEmbedder,
    files: Sequence[tuple[Path, str]],
    *,
    max_chars: int = DEFAULT_MAX_CHARS,
    min_chars: int = DEFAULT_MIN_CHARS,
    force: bool = False,
    progress: bool = True,
) -> IngestReport:
    """Chunk, embed and store `files` (pairs of path and document id); a file whose content, chunking and model
    are unchanged is skipped unless `force`.

    A changed file's chunks are upserted by id (``document_id#chunk_index``) in one transaction, then the rows of
    that document beyond its new chunk count are deleted, so the document never disappears from search while it is
    replaced and no stale chunk survives.
    """
    started = time.perf_counter()
    report = IngestReport(files=len(files))
    plans: list[_Planned] = []
    for path, document_id in files:
        if len(document_id) > MAX_DOCUMENT_ID:
            raise ValueError(f"{path}: its path is longer than {MAX_DOCUMENT_ID} characters, the limit of the "
                             "document_id column; move the file to a shorter path")
        document = load_file(path)
        chunks = chunk_document(document, max_chars, min_chars)
        fingerprint = _fingerprint(document.sha256, max_chars, min_chars, embedder.model_name)
        existing = run_sync(store.count({"document_id": document_id}))
        if not force and existing == len(chunks):
            same = run_sync(store.count({"document_id": document_id, "fingerprint": fingerprint}))
            if same == existing:
                report.unchanged_files += 1
                continue
        metadata: dict[str, Any] = {"file_name": path.name, "format": document.format, "fingerprint": fingerprint}
        if document.title:
            metadata["title"] = document.title
        plans.append(_Planned(document_id, path, chunks, metadata, existing))

    total = sum(len(plan.chunks) for plan in plans)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err, disable=not progress or total == 0) as bar:
        task = bar.add_task("embedding chunks", total=total)
        for plan in plans:
            bar.update(task, description=f"embedding {plan.path.name}")
            texts = [chunk.text for chunk in plan.chunks]
            parts = []
            for start in range(0, len(texts), EMBED_SLICE):
                parts.append(embedder.embed(texts[start : start + EMBED_SLICE], show_progress=False))
                bar.advance(task, len(parts[-1]))
            prefix = f"{store.config.domain_id}:" if store.config.domain_id else ""
            if plan.chunks:
                run_sync(store.add_vectors(
                    np.concatenate(parts),
                    ids=[f"{prefix}{plan.document_id}#{chunk.index}" for chunk in plan.chunks],
                    metadata=[
                        {**plan.metadata, **({"heading": chunk.heading} if chunk.heading else {})}
                        for chunk in plan.chunks
                    ],
                    contents=texts,
                    document_ids=[plan.document_id] * len(texts),
                    chunk_indexes=[chunk.index for chunk in plan.chunks],
                ))
            if plan.existing > len(plan.chunks) or (plan.existing and not plan.chunks):
                stale = {"document_id": plan.document_id, "chunk_index": {"$gte": len(plan.chunks)}}
                report.chunks_removed += run_sync(store.delete(stale))
            report.written_files += 1
            report.chunks_written += len(plan.chunks)
            report.written.append(plan.document_id)
    report.seconds = time.perf_counter() - started
    return report


@app.command()
@_friendly_errors
def ingest(
    paths: Annotated[
        list[Path], typer.Argument(metavar="PATH", help="Files or folders (.txt, .md, .html; folders recursively).")
    ],
    chunk_size: Annotated[int, typer.Option("--chunk-size", min=50, help="Largest chunk, in characters.")] = (
        DEFAULT_MAX_CHARS
    ),
    min_chunk: Annotated[
        int, typer.Option("--min-chunk", min=0, help="Shorter paragraphs join the next one into a chunk.")
    ] = DEFAULT_MIN_CHARS,
    force: Annotated[bool, typer.Option("--force", help="Re-embed files even when they have not changed.")] = False,
    dsn: DsnOption = None,
    schema: SchemaOption = DEFAULT_SCHEMA,
    table: TableOption = DEFAULT_TABLE,
    model: ModelOption = None,
    tenant: TenantOption = None,
) -> None:
    """Chunk, embed and store text, Markdown and HTML files; re-ingesting a changed file replaces its chunks.

    The document id of a file is its absolute path; each chunk's chunk_index is its position in the file.
    """
    if min_chunk > chunk_size:
        raise typer.BadParameter(f"--min-chunk ({min_chunk}) must not exceed --chunk-size ({chunk_size})")
    files = find_files(paths)
    if not files:
        err.print("no .txt, .md or .html files found in " + ", ".join(map(str, paths)))
        raise typer.Exit(1)
    target = Target(dsn, schema, table, model, tenant)
    embedder = _embedder(model)
    err.print(Text(f"ingesting {len(files)} file(s) into {target.describe()}", style="dim"))
    with _open_store(target, embedder.dimensions) as store:
        report = ingest_files(
            store, embedder, [(path, path.as_posix()) for path in files],
            max_chars=chunk_size, min_chars=min_chunk, force=force,
        )
        rows = run_sync(store.count())
    _print_ingest_report(report, rows)


def _print_ingest_report(report: IngestReport, rows: int) -> None:
    summary = Table(show_header=False, box=None, pad_edge=False)
    summary.add_column(style="bold")
    summary.add_column()
    summary.add_row("files", str(report.files))
    summary.add_row("ingested (new or changed)", str(report.written_files))
    summary.add_row("unchanged, skipped", str(report.unchanged_files))
    summary.add_row("chunks written", str(report.chunks_written))
    summary.add_row("stale chunks removed", str(report.chunks_removed))
    summary.add_row("rows in the table", str(rows))
    summary.add_row("time", f"{report.seconds:.1f} s")
    out.print(summary)


# -- query -------------------------------------------------------------------------------------------------------
def _parse_filter(raw: str | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(f"not valid JSON ({exc})", param_hint="--filter") from None
    if not isinstance(value, dict):
        raise typer.BadParameter(f"must be a JSON object such as '{{\"file_name\": \"a.md\"}}', got {raw!r}",
                                 param_hint="--filter")
    return value


def _result_rows(results: list[tuple[str, float, dict[str, Any] | None]]) -> list[dict[str, Any]]:
    rows = []
    for rank, (row_id, score, meta) in enumerate(results, 1):
        meta = dict(meta or {})
        rows.append({
            "rank": rank,
            "id": row_id,
            "score": round(float(score), 6),
            "document_id": meta.pop("document_id", None),
            "chunk_index": meta.pop("chunk_index", None),
            "content": meta.pop("content", None),
            "metadata": meta,
        })
    return rows


def _results_table(title: str, rows: list[dict[str, Any]]) -> Table:
    table = Table(title=Text(title), title_justify="left", show_lines=True)
    table.add_column("#", justify="right", style="dim")
    table.add_column("score", justify="right", style="cyan")
    table.add_column("passage", overflow="fold", ratio=1)
    for row in rows:
        passage = Text(f"{_display_path(str(row['document_id']))}#{row['chunk_index']}\n", style="green")
        passage.append_text(_passage(row["content"]))
        table.add_row(str(row["rank"]), f"{row['score']:.3f}", passage)
    return table


@app.command()
@_friendly_errors
def query(
    text: Annotated[str, typer.Argument(metavar="TEXT", help="The question or text to search for.")],
    k: Annotated[int, typer.Option("-k", "--k", min=1, max=1000, help="How many passages to return.")] = 5,
    filter: Annotated[
        str | None,
        typer.Option("--filter", help='Metadata filter as JSON, e.g. \'{"file_name": "notes.md"}\'.',
                     show_default=False),
    ] = None,
    mode: Annotated[
        Mode, typer.Option("--mode", help="vector (embeddings), text (full-text) or hybrid (both, fused by RRF).")
    ] = Mode.vector,
    ef_search: Annotated[
        int | None, typer.Option("--ef-search", min=1, max=1000, help="HNSW candidate list size for this query.")
    ] = None,
    json_output: JsonOption = False,
    dsn: DsnOption = None,
    schema: SchemaOption = DEFAULT_SCHEMA,
    table: TableOption = DEFAULT_TABLE,
    model: ModelOption = None,
    tenant: TenantOption = None,
) -> None:
    """Find the passages that best answer TEXT."""
    core_filter = _parse_filter(filter)
    target = Target(dsn, schema, table, model, tenant)
    embedder = _embedder(model)
    with _open_store(target, embedder.dimensions) as store:
        vector = None if mode is Mode.text else embedder.embed_query(text)
        params = {"ef_search": ef_search} if ef_search else None
        results = run_sync(store.search(vector, k=k, filter=core_filter, search_params=params, mode=mode.value,
                                        query_text=None if mode is Mode.vector else text))
        empty = not results and run_sync(store.count()) == 0
    rows = _result_rows(results)
    if json_output:
        _print_json(rows)
        return
    if empty:
        err.print(f"{target.schema}.{target.table} is empty: run 'pgvecstore ingest PATH' first")
        return
    out.print(_results_table(f"top {len(rows)} for {text!r}", rows))


# -- stats -------------------------------------------------------------------------------------------------------
def _human_bytes(size: int | None) -> str:
    if size is None:
        return "n/a"
    value = float(size)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1024 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"  # pragma: no cover


def collect_stats(store: PgVectorStore) -> dict[str, Any]:
    """Rows, documents, tenants, index and sizes of the store's table.

    Rows, documents and tenants count what the store may see (its tenant's rows with ``--tenant``).
    """
    return run_sync(store.stats())


@app.command()
@_friendly_errors
def stats(
    json_output: JsonOption = False,
    dsn: DsnOption = None,
    schema: SchemaOption = DEFAULT_SCHEMA,
    table: TableOption = DEFAULT_TABLE,
    model: ModelOption = None,
    tenant: TenantOption = None,
) -> None:
    """Rows, documents, tenants, index state and size of the table."""
    target = Target(dsn, schema, table, model, tenant)
    embedder = _embedder(model)
    with _open_store(target, embedder.dimensions) as store:
        found = collect_stats(store)
    found = {"table": f"{schema}.{table}", "dimensions": embedder.dimensions, **found}
    if json_output:
        _print_json(found)
        return
    shown = Table(title=Text(target.describe()), title_justify="left", show_header=False)
    shown.add_column(style="bold")
    shown.add_column()
    shown.add_row("rows" + (f" (tenant {tenant!r})" if tenant else ""), str(found.get("rows")))
    shown.add_row("documents", "n/a" if found.get("documents") is None else str(found["documents"]))
    shown.add_row("tenants", "n/a" if found.get("tenants") is None else str(found["tenants"]))
    shown.add_row("vector index", found.get("index_type") or "none (exact search)")
    shown.add_row("table size", _human_bytes(found.get("table_bytes")))
    shown.add_row("total size (with indexes)", _human_bytes(found.get("total_bytes")))
    shown.add_row("dimensions", str(embedder.dimensions))
    out.print(shown)


# -- index -------------------------------------------------------------------------------------------------------
@index_app.command("create")
@_friendly_errors
def index_create(
    type: Annotated[IndexType, typer.Option("--type", help="Index method.")] = IndexType.hnsw,
    m: Annotated[int | None, typer.Option("--m", help="HNSW links per vector (2..100, default 16).")] = None,
    ef_construction: Annotated[
        int | None, typer.Option("--ef-construction", help="HNSW build candidate list (4..1000, default 64).")
    ] = None,
    lists: Annotated[int | None, typer.Option("--lists", help="IVFFlat lists (default rows / 1000).")] = None,
    dsn: DsnOption = None,
    schema: SchemaOption = DEFAULT_SCHEMA,
    table: TableOption = DEFAULT_TABLE,
    model: ModelOption = None,
) -> None:
    """Build the vector index (HNSW by default); replaces an index of the other type."""
    given = {"m": m, "ef_construction": ef_construction, "lists": lists}
    params = {name: value for name, value in given.items() if value is not None}
    target = Target(dsn, schema, table, model)
    embedder = _embedder(model)
    with _open_store(target, embedder.dimensions) as store:
        started = time.perf_counter()
        built = run_sync(store.create_index(type.value, params or None))
        elapsed = time.perf_counter() - started
    if built:
        out.print(f"built a {type.value} index on {schema}.{table} in {elapsed:.1f} s")
    else:
        out.print(f"{schema}.{table} already has a {type.value} index")


@index_app.command("drop")
@_friendly_errors
def index_drop(
    dsn: DsnOption = None,
    schema: SchemaOption = DEFAULT_SCHEMA,
    table: TableOption = DEFAULT_TABLE,
    model: ModelOption = None,
) -> None:
    """Drop the vector index (searches then scan the table exactly)."""
    target = Target(dsn, schema, table, model)
    embedder = _embedder(model)
    with _open_store(target, embedder.dimensions) as store:
        dropped = run_sync(store.drop_index())
    out.print(f"dropped the vector index of {schema}.{table}" if dropped else f"{schema}.{table} has no vector index")


# -- demo --------------------------------------------------------------------------------------------------------
def demo_files() -> list[tuple[Path, str]]:
    """The shipped corpus as (path, document id) pairs; ids are ``demo_corpus/<file name>``."""
    root = demo_corpus_path()
    return [(path, f"demo_corpus/{path.name}") for path in find_files([root])]


Hits = dict[str, float] | str  # row id -> score, or why the framework is unavailable


def _langchain_search(store: PgVectorStore, embedder: SentenceTransformerEmbedder, k: int
                      ) -> Callable[[str], Hits] | str:
    """A function from question to the passages the LangChain retriever returns, with their scores from the
    same LangChain vector store; or why LangChain is unavailable."""
    try:
        from langchain_pgvecstore import PgVecStore
    except ImportError:
        return 'not installed (pip install "pgvecstore[langchain]")'
    vector_store = PgVecStore(embedder.as_langchain(), store=store)
    retriever = vector_store.as_retriever(search_kwargs={"k": k})

    def search(question: str) -> Hits:
        documents = retriever.invoke(question)
        scores = {doc.id: score for doc, score in vector_store.similarity_search_with_score(question, k=k)}
        return {str(doc.id): scores.get(doc.id, float("nan")) for doc in documents}

    return search


def _llamaindex_search(store: PgVectorStore, embedder: SentenceTransformerEmbedder, k: int
                       ) -> Callable[[str], Hits] | str:
    """A function from question to the source nodes (id -> score) of a LlamaIndex query engine over the store,
    with MockLLM (nothing to download); or why LlamaIndex is unavailable."""
    try:
        from llama_index.core import VectorStoreIndex
        from llama_index.core.llms import MockLLM

        from llama_index.vector_stores.pgvecstore import PgVecStore
    except ImportError:
        return 'not installed (pip install "pgvecstore[llamaindex]")'
    index = VectorStoreIndex.from_vector_store(PgVecStore(store), embed_model=embedder.as_llamaindex())
    engine = index.as_query_engine(llm=MockLLM(), similarity_top_k=k)

    def search(question: str) -> Hits:
        response = engine.query(question)
        return {node.node.node_id: float(node.score or 0.0) for node in response.source_nodes}

    return search


def _scores_cell(core: float, lc_hits: Hits, li_hits: Hits, row_id: str) -> Text:
    """The core's score, then the LangChain and LlamaIndex scores of the same passage (or why there is none)."""
    cell = Text(f"{core:.3f}", style="bold cyan")
    for label, hits in (("LC", lc_hits), ("LI", li_hits)):
        cell.append(f"\n{label} ", style="dim")
        if isinstance(hits, str):
            cell.append("—", style="dim")
        elif row_id not in hits:
            cell.append("miss", style="yellow")
        else:
            cell.append(f"{hits[row_id]:.3f}", style="cyan")
    return cell


@app.command()
@_friendly_errors
def demo(
    question: Annotated[
        list[str] | None,
        typer.Option("--question", "-q", help="Ask your own question (repeatable) instead of the built-in ones."),
    ] = None,
    k: Annotated[int, typer.Option("-k", "--k", min=1, max=20, help="Passages per question.")] = 3,
    dsn: DsnOption = None,
    schema: SchemaOption = DEFAULT_SCHEMA,
    table: TableOption = DEMO_TABLE,
) -> None:
    """Ingest the shipped corpus, then answer questions through the core, LangChain and LlamaIndex."""
    questions = list(question or DEMO_QUESTIONS)
    target = Target(dsn, schema, table)
    files = demo_files()
    out.rule("[bold]pgvecstore demo")
    out.print(Text(f"store:  {target.describe()}"))
    embedder = _embedder(None)
    source = "packaged, offline" if embedder.is_packaged_model else embedder.source
    out.print(Text(f"model:  {embedder.model_name} ({embedder.dimensions} dimensions, {source})"))
    started = time.perf_counter()
    with err.status("loading the embedding model"):
        embedder.load()
    out.print(Text(f"        loaded in {time.perf_counter() - started:.1f} s"))
    with _open_store(target, embedder.dimensions) as store:
        report = ingest_files(store, embedder, files)
        rows = run_sync(store.count())
        out.print(Text(
            f"corpus: {len(files)} files, {rows} passages ({report.written_files} file(s) embedded now, "
            f"{report.unchanged_files} unchanged) from {demo_corpus_path()}"
        ))
        out.print(Text("Each question goes to the core (PgVectorStore.search), the LangChain retriever (LC) and a "
                       "LlamaIndex query engine with MockLLM (LI); scores are cosine similarities, the LC and LI "
                       "lines give each one's score for the same passage.", style="dim"))
        searches = {"LangChain": _langchain_search(store, embedder, k),
                    "LlamaIndex": _llamaindex_search(store, embedder, k)}
        for name, search in searches.items():
            if isinstance(search, str):
                out.print(Text(f"{name}: {search}; its scores are left out", style="yellow"))
        agree = 0
        for number, text in enumerate(questions, 1):
            rows_shown = _result_rows(run_sync(store.search(embedder.embed_query(text), k=k)))
            hits = {name: search if isinstance(search, str) else search(text) for name, search in searches.items()}
            table_view = Table(title=Text(f"{number}. {text}", style="bold"), title_justify="left", show_lines=True)
            table_view.add_column("#", justify="right", style="dim")
            table_view.add_column("score", justify="right", no_wrap=True)
            table_view.add_column("passage", overflow="fold", ratio=1)
            for row in rows_shown:
                passage = Text(f"{row['document_id']}#{row['chunk_index']}\n", style="green")
                # The best passage in full (it holds the answer), the others shortened.
                passage.append_text(_passage(row["content"], 2000 if row["rank"] == 1 else 200))
                scores = _scores_cell(row["score"], hits["LangChain"], hits["LlamaIndex"], row["id"])
                table_view.add_row(str(row["rank"]), scores, passage)
            out.print(table_view)
            ids = sorted(row["id"] for row in rows_shown)
            if all(isinstance(h, str) or sorted(h) == ids for h in hits.values()):
                agree += 1
    names = ["The core", *(name for name, search in searches.items() if not isinstance(search, str))]
    compared = " and ".join(names) if len(names) < 3 else f"{', '.join(names[:-1])} and {names[-1]}"
    out.print(Text(f"{compared} returned the same passages for {agree} of {len(questions)} questions.",
                   style="bold"))
    out.print(Text(f'Next: pgvecstore query "your question" --table {table}    (or ingest your own files: '
                   "pgvecstore ingest PATH, then pgvecstore query ...)"))


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``pgvecstore`` console script; returns the exit status."""
    try:
        app(args=argv, prog_name="pgvecstore")
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
