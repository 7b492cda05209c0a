"""What lives on a server: the tables that hold vectors, and the documents of a store's table.

Read-only: nothing here creates a schema, a table or the pgvector extension. The command line uses it for
``pgvecstore tables``, for the "no such table; tables here: ..." error of its read-only commands, and for
``pgvecstore prune``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NoReturn

import asyncpg

from pgvecstore.config import StoreConfig
from pgvecstore.connection import connect_once, resolve_dsn
from pgvecstore.driver import store_error
from pgvecstore.sql import catalog, queries
from pgvecstore.store import PgVectorStore

# Tables are counted exactly up to this many rows; beyond it, PostgreSQL's estimate stands in.
EXACT_COUNT_LIMIT = 1_000_000


@dataclass(frozen=True)
class TableInfo:
    """A table with a pgvector ``vector`` column.

    ``rows`` is exact when ``rows_exact``; otherwise it is PostgreSQL's estimate (at least `EXACT_COUNT_LIMIT`
    when the count stopped there), or None when there is neither (a table this role may not read and that was
    never analysed).
    """

    schema: str
    table: str
    column: str
    dimensions: int | None
    rows: int | None
    rows_exact: bool

    @property
    def qualified(self) -> str:
        """``schema.table``, as messages show it."""
        return f"{self.schema}.{self.table}"


async def list_tables(
    conn: asyncpg.Connection, *, exact_up_to: int = EXACT_COUNT_LIMIT, count_rows: bool = True
) -> list[TableInfo]:
    """The tables of `conn`'s database that have a pgvector ``vector`` column, ordered by schema and table.

    Rows are counted exactly up to `exact_up_to` per table (what the connection's role may see, row-level
    security included); bigger tables, and tables the role may not read, get PostgreSQL's estimate.
    """
    found = []
    listing = catalog.vector_tables()
    for schema, table, column, dimensions, estimate in await conn.fetch(listing.sql, *listing.args):
        rows, exact = await _count(conn, schema, table, exact_up_to) if count_rows else (None, False)
        if not exact:
            rows = max(estimate, rows or 0) if estimate is not None and estimate >= 0 else rows
        found.append(TableInfo(schema, table, column, dimensions, rows, exact))
    return found


async def _count(conn: asyncpg.Connection, schema: str, table: str, limit: int) -> tuple[int | None, bool]:
    """The table's row count and True when below `limit`; else `limit` (or None when unreadable) and False."""
    statement = catalog.count_rows_up_to(schema, table, limit)
    try:
        async with conn.transaction():  # a refused count must not leave the connection's transaction aborted
            counted = int(await conn.fetchval(statement.sql, *statement.args))
    except asyncpg.InsufficientPrivilegeError:
        return None, False
    return (counted, True) if counted < limit else (limit, False)


async def server_tables(config: StoreConfig, *, count_rows: bool = True) -> list[TableInfo]:
    """`list_tables` on the server a store of `config` would use (its connection string, else
    ``$DATABASE_URL``, else the embedded server, started if needed), on a connection of its own. Without
    `count_rows`, rows are only PostgreSQL's estimates (for listing names)."""
    dsn = resolve_dsn(config)
    conn = await connect_once(dsn, config)
    try:
        return await list_tables(conn, count_rows=count_rows)
    except Exception as exc:
        _reraise(exc)
    finally:
        await conn.close()


async def document_chunks(store: PgVectorStore, like: str) -> dict[str, int]:
    """The documents of `store`'s table in its domain whose document_id matches the LIKE pattern `like` (``\\``
    escapes ``%`` and ``_``), each with its number of rows, in document_id order."""
    statement = queries.document_chunk_counts(store.table, store.config.domain_id, like)
    pool = await store.get_pool()
    try:
        rows = await pool.fetch(statement.sql, *statement.args)
    except Exception as exc:
        _reraise(exc)
    return {str(document_id): int(count) for document_id, count in rows}


def _reraise(exc: Exception) -> NoReturn:
    """Raise the store's error for a driver error (as the store's own operations do), else `exc` itself."""
    error = store_error(exc)
    if error is exc:
        raise exc
    raise error from exc


def like_prefix(prefix: str) -> str:
    """A LIKE pattern for the strings that start with `prefix` (its ``\\``, ``%`` and ``_`` escaped)."""
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"
