"""Full-text search's knowledge of the table: its text-search columns, statistics and triggers, and the
configuration queries use.

Set-up only looks the column up by name in the catalog (no lock on the table). The first text or hybrid search
checks the table has every part (`pgvecstore.sql.text_ddl`) and settles which text-search configuration its row
trigger uses, so every query stems words the same way; a table of an older layout (`pgvecstore.layout`) is an error
naming `upgrade()`. `enable_text_search` adds the parts to an existing table in one transaction, including one of
the pgvecstore 0.1 layout (a generated tsvector column, no statistics); `pgvecstore.upgrade` does that online.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import asyncpg

from pgvecstore.config import StoreConfig
from pgvecstore.connection import set_local
from pgvecstore.errors import InvalidOptionError, PermissionDeniedError, SchemaMismatchError
from pgvecstore.identifiers import DEFAULT_TEXT_SEARCH_CONFIG
from pgvecstore.layout import CURRENT_LAYOUT, LayoutVersion, read_version
from pgvecstore.pool import PoolRegistry
from pgvecstore.sql import catalog, text_ddl, upgrade_ddl
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


@dataclass(frozen=True)
class Layout:
    """The full-text search parts a table has (see `catalog.text_search_layout`)."""

    column_type: str | None
    generated: bool
    has_terms_column: bool
    has_statistics: bool
    config: str | None  # the row trigger's configuration; None without the trigger
    comment: str | None = None  # the table's comment (its layout record)

    @property
    def complete(self) -> bool:
        """Every part of the current layout, and no term-frequency column (layout 2's)."""
        return (self.column_type == "tsvector" and not self.generated and not self.has_terms_column
                and self.has_statistics and self.config is not None)

    @property
    def version(self) -> LayoutVersion:
        """The table's layout version (`pgvecstore.layout`): recorded in its comment, else inferred."""
        return read_version(self.comment, has_text_column=self.column_type is not None, generated=self.generated,
                            text_complete=self.complete, has_terms_column=self.has_terms_column)


async def read_layout(conn: asyncpg.Connection, t: TableRef) -> Layout:
    """The table's full-text search parts, from the catalog (no lock on the table); a column of the text-search
    column's name that is not a tsvector is an error."""
    statement = catalog.text_search_layout(t)
    row = await conn.fetchrow(statement.sql, *statement.args)
    if row is None:
        return Layout(None, False, False, False, None)
    layout = Layout(row[0], bool(row[1]), bool(row[2]), bool(row[3]), row[4], row[5])
    if layout.column_type not in (None, "tsvector"):
        raise SchemaMismatchError(
            f"column {t.text_search_column!r} of {t.display} is {layout.column_type}, but this store uses it for "
            "full-text search (tsvector); name another column with the 'text_search_column' option"
        )
    return layout


async def install(conn: asyncpg.Connection, t: TableRef, config: str, *, row_security: bool, fill: bool) -> None:
    """Create the statistics tables, functions and triggers and the GIN index, and keep the tsvector in the heap
    (the column must exist), inside the caller's transaction; with `fill`, set the tsvector of rows written before
    the triggers existed; then count the statistics from the table's rows (statistics tables left by a dropped
    table of the same name start over). With `row_security`, the statistics tables get the tenant policy too."""
    statements = [
        text_ddl.keep_terms_in_heap(t),
        *text_ddl.create_statistics_tables(t),
        text_ddl.create_row_function(t),
        text_ddl.create_statistics_function(t),
        *text_ddl.create_triggers(t, config),
        text_ddl.create_index(t),
    ]
    if row_security:
        statements += text_ddl.statistics_row_security(t)
    if fill:
        statements.append(text_ddl.fill_rows(t))
    for statement in statements:
        await conn.execute(statement)
    for statement in text_ddl.rebuild_statistics(t):
        await conn.execute(statement)


class TextSearch:
    """Whether text and hybrid search can run, and with which configuration (settled at the first search)."""

    def __init__(self, config: StoreConfig, table: TableRef, pools: PoolRegistry, explicit_config: str | None) -> None:
        self._config = config
        self._table = table
        self._pools = pools
        # The explicit text_search_config, resolved to its canonical name at set-up (None: take the table's).
        self._explicit = explicit_config
        self._settled: str | None = None  # the configuration queries use, once the table has been read

    async def query_config(self) -> str:
        """The configuration queries use. The first call reads the table's parts (another store may have added
        them since this one started); a table without them is an error that says how to add them."""
        if self._settled is not None:
            return self._settled
        t = self._table
        async with self._pools.connection() as conn:
            layout = await read_layout(conn, t)
        if layout.column_type is None:
            raise SchemaMismatchError(
                f"table {t.display} has no text-search column {t.text_search_column!r}, which text and hybrid "
                "search need. Add it with 'await store.enable_text_search()' (as the table owner; it fills the "
                "column from every row) or create new tables with text_search=True (see docs/hybrid.md)"
            )
        version = layout.version
        if not version.current:
            raise await self._older_layout(version)
        if not layout.complete or layout.config is None:
            raise SchemaMismatchError(
                f"table {t.display} has a text-search column but not the term statistics that text and hybrid "
                "search use since pgvecstore 0.2 (a table made by an older version). Add them with "
                "'await store.enable_text_search()' (as the table owner; it fills them from every row, and "
                "writes wait while it runs)"
            )
        if self._explicit is not None and layout.config != self._explicit:
            raise SchemaMismatchError(
                f"table {t.display} indexes its text with text-search configuration {layout.config!r}, but this "
                f"store has text_search_config={self._config.text_search_config!r}; set "
                f"text_search_config={layout.config!r} (or leave it unset to use the table's)"
            )
        self._settled = layout.config
        return self._settled

    def forget(self) -> None:
        """Read the table's parts again at the next text search (after an upgrade changed them)."""
        self._settled = None

    async def _older_layout(self, version: LayoutVersion) -> SchemaMismatchError:
        """The error of a text search on a table of an older layout, or one an upgrade has not finished."""
        t = self._table
        how = ("with 'await store.upgrade()' or 'pgvecstore upgrade' (online, as the table owner; see "
               "docs/upgrading.md)")
        if version.upgrading_to is None:
            return SchemaMismatchError(
                f"table {t.display} has layout {version.version} (made by an older pgvecstore), without the term "
                f"statistics that text and hybrid search use since layout {CURRENT_LAYOUT}. Bring it to layout "
                f"{CURRENT_LAYOUT} {how}; vector search, reads and writes work meanwhile"
            )
        return SchemaMismatchError(
            f"table {t.display}: an upgrade to layout {version.upgrading_to} is in progress or was interrupted "
            f"(its term statistics are being counted); text and hybrid search work once it has finished. If no "
            f"upgrade is running, finish it {how}"
        )

    async def enable(self) -> bool:
        """Add whatever of the text-search parts the table lacks and fill them from its rows; True when this call
        added anything. Runs once, under the table's advisory lock and a lock that makes writers wait (readers go
        on), without the session's statement_timeout."""
        t = self._table
        try:
            async with self._pools.connection(transaction=True, write=True) as conn:
                lock = catalog.table_lock(t)
                await conn.execute(lock.sql, *lock.args)
                await set_local(conn, {"statement_timeout": "0"})
                await conn.execute(text_ddl.lock_writers(t))
                layout = await read_layout(conn, t)
                if layout.complete and layout.version.current:
                    exists = catalog.relation_exists(t.schema, t.text_search_index_name)
                    if await conn.fetchval(exists.sql, *exists.args):
                        return False
                config = await self.config_for(conn, layout)
                logger.info("pgvecstore: adding full-text search to %s (fills it from every row)", t.display)
                for statement in text_ddl.add_columns(t):
                    await conn.execute(statement)
                if layout.generated:
                    await conn.execute(text_ddl.drop_generation(t))
                if layout.has_terms_column:
                    await conn.execute(text_ddl.drop_terms_column(t))
                security = catalog.row_security_state(t)
                state = await conn.fetchrow(security.sql, *security.args)
                row_security = state is not None and bool(state[0])
                fill = not (layout.complete and layout.version.current)
                await install(conn, t, config, row_security=row_security, fill=fill)
                await conn.execute(upgrade_ddl.set_comment(t, CURRENT_LAYOUT))
        except PermissionDeniedError:
            raise SchemaMismatchError(
                f"enable_text_search: this role may not alter table {t.display}; run it as the table's owner "
                "(see docs/hybrid.md)"
            ) from None
        self._settled = None
        return True

    async def config_for(self, conn: asyncpg.Connection, layout: Layout) -> str:
        """The configuration of the table's text: the one its row trigger already uses (a store that names another
        is an error: the rows were indexed with it), else the explicit one, else the expression of a generated
        column's, else the default."""
        if layout.config is not None:
            if self._explicit is not None and layout.config != self._explicit:
                raise SchemaMismatchError(
                    f"table {self._table.display} indexes its text with text-search configuration "
                    f"{layout.config!r}, but this store has text_search_config={self._config.text_search_config!r}; "
                    f"set text_search_config={layout.config!r} (or leave it unset to use the table's)"
                )
            return layout.config
        if self._explicit is not None:
            return self._explicit
        if layout.generated:
            statement = catalog.text_search_config_used(self._table)
            used = await conn.fetchval(statement.sql, *statement.args)
            if used is not None:
                return str(used)
        return await resolve_config(conn, DEFAULT_TEXT_SEARCH_CONFIG)
