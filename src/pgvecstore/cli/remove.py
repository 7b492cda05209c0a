"""``pgvecstore delete`` and ``pgvecstore prune``: remove chunks by document or filter, or the chunks of files
that are gone from the disk (also ``ingest --prune``).

Neither embeds anything, so neither loads the model; both need the table to exist and create nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.text import Text

from pgvecstore.cli.app import (
    DEFAULT_SCHEMA,
    DEFAULT_TABLE,
    DsnOption,
    FilterOption,
    SchemaOption,
    TableOption,
    Target,
    TenantOption,
    display_path,
    fail,
    friendly_errors,
    note,
    open_store,
    out,
    parse_filter,
)
from pgvecstore.inventory import document_chunks, like_prefix
from pgvecstore.store import PgVectorStore
from pgvecstore.sync import run_sync

# Documents deleted per statement (one `$in` list each).
DELETE_BATCH = 200


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def _scope(target: Target) -> str:
    return target.name + (f" (tenant {target.tenant!r})" if target.tenant else "")


# -- delete ------------------------------------------------------------------------------------------------------
def resolve_document(store: PgVectorStore, value: str) -> str | None:
    """The document_id `value` names in the store: `value` itself when the store has rows with that id, else the
    absolute path of `value` read as a file path (what ingest stores), else None."""
    candidates = [value]
    absolute = Path(value).expanduser().resolve().as_posix()
    if absolute != value:
        candidates.append(absolute)
    for candidate in candidates:
        if run_sync(store.count({"document_id": candidate})):
            return candidate
    return None


@friendly_errors
def delete(
    documents: Annotated[
        list[str] | None,
        typer.Option(
            "--document", "-d", metavar="PATH_OR_ID", show_default=False,
            help="Delete this document's chunks (repeatable): its document id, or the path of an ingested file.",
        ),
    ] = None,
    filter: FilterOption = None,
    dsn: DsnOption = None,
    schema: SchemaOption = DEFAULT_SCHEMA,
    table: TableOption = DEFAULT_TABLE,
    tenant: TenantOption = None,
) -> None:
    """Delete chunks by document (--document) or by metadata filter (--filter), or both (chunks of those
    documents that match the filter). A filter that restricts nothing is refused."""
    if not documents and filter is None:
        fail("say what to delete: --document PATH_OR_ID (repeatable) and/or --filter JSON; nothing was deleted", 2)
    core_filter = parse_filter(filter)
    target = Target(dsn, schema, table, tenant=tenant)
    with open_store(target) as store:
        conditions: list[dict[str, Any]] = []
        found: list[str] = []
        if documents:
            for value in documents:
                document_id = resolve_document(store, value)
                if document_id is None:
                    note(f"no chunks of document {value!r} in {_scope(target)}")
                else:
                    found.append(document_id)
            conditions.append({"document_id": {"$in": found}})
        if core_filter is not None:
            conditions.append(core_filter)
        # With none of the documents there, {"$in": []} matches nothing: the core still checks the filter.
        deleted = run_sync(store.delete(conditions[0] if len(conditions) == 1 else {"$and": conditions}))
    out.print(Text(f"deleted {_plural(deleted, 'chunk')} from {_scope(target)}"))


# -- prune -------------------------------------------------------------------------------------------------------
@dataclass
class PruneReport:
    """What a prune removed: the documents whose files are gone (document_id -> its chunks, as listed before the
    delete) and the chunks deleted."""

    documents: dict[str, int] = field(default_factory=dict)
    chunks: int = 0


def _under(document_id: str, root: str) -> bool:
    """Whether `document_id` is the path `root` or a path inside it."""
    return document_id == root or document_id.startswith(root if root.endswith("/") else root + "/")


def missing_documents(store: PgVectorStore, roots: Iterable[Path]) -> dict[str, int]:
    """The documents of the store (in its domain) ingested from under `roots` (files or folders; ingest stores
    a file's absolute path as its document_id) whose file no longer exists, with their chunk counts."""
    gone: dict[str, int] = {}
    for root in roots:
        base = Path(root).expanduser().resolve().as_posix()
        for document_id, chunks in run_sync(document_chunks(store, like_prefix(base))).items():
            if _under(document_id, base) and not Path(document_id).exists():
                gone[document_id] = chunks
    return dict(sorted(gone.items()))


def prune_missing(store: PgVectorStore, roots: Sequence[Path]) -> PruneReport:
    """Delete the chunks of every document ingested from under `roots` whose file is gone from the disk."""
    report = PruneReport(missing_documents(store, roots))
    gone = list(report.documents)
    for start in range(0, len(gone), DELETE_BATCH):
        report.chunks += run_sync(store.delete({"document_id": {"$in": gone[start : start + DELETE_BATCH]}}))
    return report


@friendly_errors
def prune(
    paths: Annotated[
        list[Path],
        typer.Argument(metavar="PATH", help="Folders (or files) that were ingested; their deleted files are pruned."),
    ],
    dsn: DsnOption = None,
    schema: SchemaOption = DEFAULT_SCHEMA,
    table: TableOption = DEFAULT_TABLE,
    tenant: TenantOption = None,
) -> None:
    """Delete the chunks of files that were ingested from under PATH but are gone from the disk."""
    for path in paths:
        if not path.expanduser().exists():
            note(f"{path} does not exist: pruning every document ingested from under it")
    target = Target(dsn, schema, table, tenant=tenant)
    with open_store(target) as store:
        report = prune_missing(store, paths)
    print_prune_report(report, target)


def print_prune_report(report: PruneReport, target: Target) -> None:
    if not report.documents:
        out.print(Text(f"nothing to prune in {_scope(target)}: every file ingested from there still exists"))
        return
    for document_id, chunks in report.documents.items():
        out.print(Text(f"removed {display_path(document_id)} ({_plural(chunks, 'chunk')})"))
    out.print(Text(
        f"pruned {_plural(len(report.documents), 'document')} ({_plural(report.chunks, 'chunk')}) whose files are "
        f"gone from {_scope(target)}"
    ))
