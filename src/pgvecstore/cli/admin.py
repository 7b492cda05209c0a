"""``pgvecstore stats`` and ``pgvecstore index create|drop|rebuild``: inspect the table and manage its vector index.

None of them embeds anything, so none loads the embedding model: the store reads the vector length from the
table, which must exist.
"""

from __future__ import annotations

import enum
import time
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from pgvecstore.cli.app import (
    DEFAULT_SCHEMA,
    DEFAULT_TABLE,
    DsnOption,
    IgnoredModelOption,
    JsonOption,
    SchemaOption,
    TableOption,
    Target,
    TenantOption,
    friendly_errors,
    open_store,
    out,
    print_json,
)
from pgvecstore.store import PgVectorStore
from pgvecstore.sync import run_sync


class IndexType(enum.StrEnum):
    hnsw = "hnsw"
    ivfflat = "ivfflat"


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


@friendly_errors
def stats(
    json_output: JsonOption = False,
    dsn: DsnOption = None,
    schema: SchemaOption = DEFAULT_SCHEMA,
    table: TableOption = DEFAULT_TABLE,
    model: IgnoredModelOption = None,
    tenant: TenantOption = None,
) -> None:
    """Rows, documents, tenants, index state and size of the table."""
    target = Target(dsn, schema, table, tenant=tenant)
    with open_store(target) as store:
        found = collect_stats(store)
        dimensions = store.dimensions
    found = {"table": f"{schema}.{table}", "dimensions": dimensions, **found}
    if json_output:
        print_json(found)
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
    shown.add_row("dimensions", str(dimensions))
    out.print(shown)


# -- index -------------------------------------------------------------------------------------------------------
@friendly_errors
def index_create(
    type: Annotated[IndexType, typer.Option("--type", help="Index method.")] = IndexType.hnsw,
    m: Annotated[int | None, typer.Option("--m", help="HNSW links per vector (2..100, default 16).")] = None,
    ef_construction: Annotated[
        int | None, typer.Option("--ef-construction", help="HNSW build candidate list (4..1000, default 64).")
    ] = None,
    lists: Annotated[int | None, typer.Option("--lists", help="IVFFlat lists (default rows / 1000).")] = None,
    binary: Annotated[
        bool, typer.Option("--binary", help="HNSW on the binary-quantized vectors (stores with quantization='binary').")
    ] = False,
    dsn: DsnOption = None,
    schema: SchemaOption = DEFAULT_SCHEMA,
    table: TableOption = DEFAULT_TABLE,
    model: IgnoredModelOption = None,
) -> None:
    """Build the vector index (HNSW by default); replaces an index of the other type."""
    given = {"m": m, "ef_construction": ef_construction, "lists": lists}
    params = {name: value for name, value in given.items() if value is not None}
    extra = {"quantization": "binary"} if binary else None
    kind = f"{type.value}_binary" if binary else type.value
    with open_store(Target(dsn, schema, table), extra=extra) as store:
        started = time.perf_counter()
        built = run_sync(store.create_index(type.value, params or None))
        elapsed = time.perf_counter() - started
    if built:
        out.print(f"built a {kind} index on {schema}.{table} in {elapsed:.1f} s")
    else:
        out.print(f"{schema}.{table} already has a {kind} index")


@friendly_errors
def index_drop(
    dsn: DsnOption = None,
    schema: SchemaOption = DEFAULT_SCHEMA,
    table: TableOption = DEFAULT_TABLE,
    model: IgnoredModelOption = None,
) -> None:
    """Drop the vector index (searches then scan the table exactly)."""
    with open_store(Target(dsn, schema, table)) as store:
        dropped = run_sync(store.drop_index())
    out.print(f"dropped the vector index of {schema}.{table}" if dropped else f"{schema}.{table} has no vector index")


@friendly_errors
def index_rebuild(
    dsn: DsnOption = None,
    schema: SchemaOption = DEFAULT_SCHEMA,
    table: TableOption = DEFAULT_TABLE,
    model: IgnoredModelOption = None,
) -> None:
    """Rebuild the vector index online (REINDEX CONCURRENTLY: searches and writes go on), e.g. after much churn."""
    with open_store(Target(dsn, schema, table)) as store:
        started = time.perf_counter()
        kind = run_sync(store.reindex())
        elapsed = time.perf_counter() - started
    if kind is None:
        out.print(f"{schema}.{table} has no vector index")
    else:
        out.print(f"rebuilt the {kind} index of {schema}.{table} in {elapsed:.1f} s")
