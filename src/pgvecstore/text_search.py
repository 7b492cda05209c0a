"""Full-text search's knowledge of the table: its generated tsvector column and the configuration queries use.

Set-up only looks the column up by name in the catalog (no lock on the table). The first text or hybrid search
settles which text-search configuration the column is generated with (reading it takes a lock that set-up must
not wait for) and every query then stems words the same way. `enable_text_search` adds the column and its GIN
index to an existing table.
"""

from __future__ import annotations

import logging

import asyncpg

from pgvecstore.config import StoreConfig
from pgvecstore.connection import set_local
from pgvecstore.errors import InvalidOptionError, PermissionDeniedError, SchemaMismatchError
from pgvecstore.identifiers import DEFAULT_TEXT_SEARCH_CONFIG
from pgvecstore.pool import PoolRegistry
from pgvecstore.sql import catalog, ddl
from pgvecstore.sql.table import TableRef

logger = logging.getLogger("pgvecstore")


async def resolve_config(conn: asyncpg.Connection, name: str) -> str:
    """The canonical name of text-search configuration `name`; a clear error when the server has none."""
    statement = catalog.resolve_text_search_config(name)
    try:
        async with conn.transaction():  # a savepoint when called inside the caller's transaction, which survives
            return str(await conn.fetchval(statement.sql, *statement.args))
    except asyncpg.UndefinedObjectError:
        known = await conn.fetch(catalog.TEXT_SEARCH_CONFIGS.sql)
        raise InvalidOptionError(
            f"text_search_config={name!r}: the server has no such text-search configuration; "
            f"it has {', '.join(row[0] for row in known)}"
        ) from None


async def has_column(conn: asyncpg.Connection, t: TableRef) -> bool:
    """Whether the table has its text-search column (by name, from the catalog); a column of that name that is
    not a tsvector is an error."""
    statement = catalog.column_type(t, t.text_search_column)
    kind = await conn.fetchval(statement.sql, *statement.args)
    if kind is not None and kind != "tsvector":
        raise SchemaMismatchError(
            f"column {t.text_search_column!r} of {t.display} is {kind}, but this store uses it for full-text "
            "search (tsvector); name another column with the 'text_search_column' option"
        )
    return kind is not None


class TextSearch:
    """Whether text and hybrid search can run, and with which configuration (settled at the first search)."""

    def __init__(self, config: StoreConfig, table: TableRef, pools: PoolRegistry, explicit_config: str | None) -> None:
        self._config = config
        self._table = table
        self._pools = pools
        # The explicit text_search_config, resolved to its canonical name at set-up (None: take the column's).
        self._explicit = explicit_config
        self._settled: str | None = None  # the configuration queries use, once the column has been read

    async def query_config(self) -> str:
        """The configuration queries use. The first call reads it from the column (another store may have added
        the column since this one started); a table without the column is an error that says how to add it."""
        if self._settled is not None:
            return self._settled
        t = self._table
        async with self._pools.connection() as conn:
            if not await has_column(conn, t):
                raise SchemaMismatchError(
                    f"table {t.display} has no text-search column {t.text_search_column!r}, which text and hybrid "
                    "search need. Add it with 'await store.enable_text_search()' (as the table owner; it rewrites "
                    "the table) or create new tables with text_search=True (see docs/hybrid.md)"
                )
            statement = catalog.text_search_config_used(t)
            used = await conn.fetchval(statement.sql, *statement.args)
        if used is not None and self._explicit is not None and used != self._explicit:
            raise SchemaMismatchError(
                f"column {t.text_search_column!r} of {t.display} is generated with text-search configuration "
                f"{used!r}, but this store has text_search_config={self._config.text_search_config!r}; set "
                f"text_search_config={used!r} (or leave it unset to use the column's)"
            )
        self._settled = used or self._explicit or DEFAULT_TEXT_SEARCH_CONFIG
        return self._settled

    async def enable(self) -> bool:
        """Add the text-search column and its GIN index unless both exist; True when this call added either.
        Runs once, under the table's advisory lock, without the session's statement_timeout."""
        t = self._table
        changed = False
        try:
            async with self._pools.connection(transaction=True) as conn:
                lock = catalog.table_lock(t)
                await conn.execute(lock.sql, *lock.args)
                await set_local(conn, {"statement_timeout": "0"})
                if not await has_column(conn, t):
                    config = await resolve_config(conn, self._explicit or DEFAULT_TEXT_SEARCH_CONFIG)
                    logger.info("pgvecstore: adding text-search column %s to %s (rewrites the table)",
                                t.text_search_column, t.display)
                    await conn.execute(ddl.add_text_search_column(t, config))
                    changed = True
                exists = catalog.relation_exists(t.schema, t.text_search_index_name)
                if not await conn.fetchval(exists.sql, *exists.args):
                    await conn.execute(ddl.create_text_search_index(t))
                    changed = True
        except PermissionDeniedError:
            raise SchemaMismatchError(
                f"enable_text_search: this role may not alter table {t.display}; run it as the table's owner "
                "(see docs/hybrid.md)"
            ) from None
        self._settled = None
        return changed
