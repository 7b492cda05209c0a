"""``pgvecstore ingest``: chunk, embed and store files; a changed file's chunks replace the old ones.

Ctrl-C stops it cleanly: the file being stored when the signal comes is stored whole first (its write is never
cut in half, so the count reported is exact), then the command says how many files are stored and exits with
status 130. Running it again continues, since the stored files are skipped as unchanged.
"""

from __future__ import annotations

import contextlib
import hashlib
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import numpy as np
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from pgvecstore.chunking import DEFAULT_MAX_CHARS, DEFAULT_MIN_CHARS, Chunk, chunk_document, find_files, load_file
from pgvecstore.cli.app import (
    DEFAULT_SCHEMA,
    DEFAULT_TABLE,
    DsnOption,
    ModelOption,
    SchemaOption,
    TableOption,
    Target,
    TenantOption,
    announce_dsn_source,
    err,
    fail,
    friendly_errors,
    load_embedder,
    note,
    open_store,
    out,
)
from pgvecstore.cli.remove import PruneReport, prune_missing
from pgvecstore.errors import InvalidInputError
from pgvecstore.store import PgVectorStore
from pgvecstore.sync import run_sync

if TYPE_CHECKING:
    from pgvecstore.embeddings import SentenceTransformerEmbedder

MAX_DOCUMENT_ID = 255
EMBED_SLICE = 64


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

    @property
    def stored(self) -> int:
        """Files whose rows are now up to date: written by this run, or found unchanged."""
        return self.written_files + self.unchanged_files


class IngestInterrupted(KeyboardInterrupt):
    """Ctrl-C during `ingest_files`; ``report`` says what was done until then (every file it counts is stored
    whole)."""

    def __init__(self, report: IngestReport) -> None:
        super().__init__(f"interrupted: {report.stored} of {report.files} files stored")
        self.report = report


@contextlib.contextmanager
def _interrupt_after() -> Iterator[None]:
    """Hold back Ctrl-C (SIGINT) until the block is done, then deliver it: a file's write is never abandoned
    halfway, with its transaction still running on the store's loop. Only in the main thread (where Python
    handles signals); elsewhere the block runs as is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        signal.raise_signal(signal.SIGINT)  # as the previous handler would have had it: KeyboardInterrupt by default


@dataclass
class _Planned:
    """A file to (re)write: its chunks, the metadata every chunk gets, and how many rows it has now."""

    document_id: str
    path: Path
    chunks: list[Chunk]
    metadata: dict[str, Any]
    existing: int


def _fingerprint(file_sha256: str, max_chars: int, min_chars: int, model_name: str) -> str:
    """Identifies a file's content together with how it was chunked and embedded."""
    key = f"{file_sha256}|{max_chars}|{min_chars}|{model_name}"
    return hashlib.sha256(key.encode()).hexdigest()[:32]


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
    replaced and no stale chunk survives. Ctrl-C raises `IngestInterrupted` with the report so far.
    """
    started = time.perf_counter()
    report = IngestReport(files=len(files))
    plans: list[_Planned] = []
    try:
        for path, document_id in files:
            plan = _plan_file(store, path, document_id, max_chars, min_chars, embedder.model_name, force)
            if plan is None:
                report.unchanged_files += 1
            else:
                plans.append(plan)
        _write_plans(store, embedder, plans, report, progress)
    except KeyboardInterrupt:
        report.seconds = time.perf_counter() - started
        raise IngestInterrupted(report) from None
    report.seconds = time.perf_counter() - started
    return report


def _plan_file(
    store: PgVectorStore, path: Path, document_id: str, max_chars: int, min_chars: int, model_name: str, force: bool
) -> _Planned | None:
    """What to write for one file, or None when its rows already hold this content, chunking and model."""
    if len(document_id) > MAX_DOCUMENT_ID:
        raise InvalidInputError(f"{path}: its path is longer than {MAX_DOCUMENT_ID} characters, the limit of the "
                                "document_id column; move the file to a shorter path")
    document = load_file(path)
    chunks = chunk_document(document, max_chars, min_chars)
    fingerprint = _fingerprint(document.sha256, max_chars, min_chars, model_name)
    existing = run_sync(store.count({"document_id": document_id}))
    if not force and existing == len(chunks):
        same = run_sync(store.count({"document_id": document_id, "fingerprint": fingerprint}))
        if same == existing:
            return None
    metadata: dict[str, Any] = {"file_name": path.name, "format": document.format, "fingerprint": fingerprint}
    if document.title:
        metadata["title"] = document.title
    return _Planned(document_id, path, chunks, metadata, existing)


def _write_plans(
    store: PgVectorStore, embedder: SentenceTransformerEmbedder, plans: list[_Planned], report: IngestReport,
    progress: bool,
) -> None:
    """Embed and store every planned file, with a progress bar of the chunks on stderr."""
    total = sum(len(plan.chunks) for plan in plans)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err, disable=not progress or total == 0) as bar:
        task = bar.add_task("embedding chunks", total=total)
        for plan in plans:
            bar.update(task, description=f"embedding {plan.path.name}")
            texts = [chunk.text for chunk in plan.chunks]
            vectors = _embed(embedder, texts, lambda done: bar.advance(task, done))
            with _interrupt_after():
                _store_plan(store, plan, vectors, texts, report)


def _embed(embedder: SentenceTransformerEmbedder, texts: list[str], advance: Callable[[int], None]) -> np.ndarray:
    """The vectors of `texts`, embedded `EMBED_SLICE` at a time so that `advance` can move the progress bar."""
    parts = []
    for start in range(0, len(texts), EMBED_SLICE):
        parts.append(embedder.embed(texts[start : start + EMBED_SLICE], show_progress=False))
        advance(len(parts[-1]))
    return np.concatenate(parts) if parts else np.empty((0, 0), dtype=np.float32)


def _store_plan(
    store: PgVectorStore, plan: _Planned, vectors: np.ndarray, texts: list[str], report: IngestReport
) -> None:
    """Upsert the file's chunks, then delete its rows past the new chunk count."""
    prefix = f"{store.config.domain_id}:" if store.config.domain_id else ""
    if plan.chunks:
        run_sync(store.add_vectors(
            vectors,
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


@friendly_errors
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
    prune: Annotated[
        bool,
        typer.Option("--prune", help="Then delete the chunks of files ingested from under PATH that are gone from "
                     "the disk (as 'pgvecstore prune PATH')."),
    ] = False,
    dsn: DsnOption = None,
    schema: SchemaOption = DEFAULT_SCHEMA,
    table: TableOption = DEFAULT_TABLE,
    model: ModelOption = None,
    tenant: TenantOption = None,
) -> None:
    """Chunk, embed and store text, Markdown and HTML files; re-ingesting a changed file replaces its chunks.

    The document id of a file is its absolute path; each chunk's chunk_index is its position in the file.
    Ctrl-C stops after the file being stored; run the command again to continue.
    """
    if min_chunk > chunk_size:
        fail(f"--min-chunk ({min_chunk}) must not exceed --chunk-size ({chunk_size})", 2)
    files = find_files(paths)
    if not files:
        fail("no .txt, .md or .html files found in " + ", ".join(map(str, paths)))
    target = Target(dsn, schema, table, model, tenant)
    report: IngestReport | None = None
    announce_dsn_source(dsn)
    try:
        embedder = load_embedder(model)
        note(f"ingesting {len(files)} file(s) into {target.describe()}")
        with open_store(target, embedder.dimensions, create=True) as store:
            report = ingest_files(
                store, embedder, [(path, path.as_posix()) for path in files],
                max_chars=chunk_size, min_chars=min_chunk, force=force,
            )
            pruned = prune_missing(store, paths) if prune else None
            rows = run_sync(store.count())
    except IngestInterrupted as stopped:
        fail_interrupted(f"interrupted: {stopped.report.stored} of {len(files)} files stored; run again to continue")
    except KeyboardInterrupt:
        if report is None:
            fail_interrupted("interrupted before storing any file; run again to continue")
        fail_interrupted(f"interrupted: {report.stored} of {len(files)} files stored"
                         + ("; run again to prune" if prune else ""))
    _print_ingest_report(report, rows, pruned)


def fail_interrupted(message: str) -> NoReturn:
    """End an interrupted command: `message` on stderr, status 130 (128 + SIGINT, as shells report Ctrl-C)."""
    note(message)
    raise typer.Exit(130)


def _print_ingest_report(report: IngestReport, rows: int, pruned: PruneReport | None) -> None:
    summary = Table(show_header=False, box=None, pad_edge=False)
    summary.add_column(style="bold")
    summary.add_column()
    summary.add_row("files", str(report.files))
    summary.add_row("ingested (new or changed)", str(report.written_files))
    summary.add_row("unchanged, skipped", str(report.unchanged_files))
    summary.add_row("chunks written", str(report.chunks_written))
    summary.add_row("stale chunks removed", str(report.chunks_removed))
    if pruned is not None:
        summary.add_row("deleted files pruned", f"{len(pruned.documents)} ({pruned.chunks} chunks)")
    summary.add_row("rows in the table", str(rows))
    summary.add_row("time", f"{report.seconds:.1f} s")
    out.print(summary)
