"""Table set-up: make sure the schema, table, support indexes and tenant policy exist, check a table that was
there, and return what was found as an immutable `TableState`.

It runs once per store, on a connection of its own, before the store's pools open. Creating objects happens
under the table's advisory lock, so many store instances starting at once create each object exactly once.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, replace

import asyncpg

from pgvecstore import column_storage, covering, indexes, metadata_columns, text_search
from pgvecstore.compact import DEFAULT_VECTOR_TYPE
from pgvecstore.config import StoreConfig
from pgvecstore.errors import PermissionDeniedError, SchemaMismatchError, TableNotFoundError
from pgvecstore.identifiers import DEFAULT_TEXT_SEARCH_CONFIG
from pgvecstore.layout import CURRENT_LAYOUT
from pgvecstore.metric import Metric
from pgvecstore.primary_key import DOMAIN_KEY, ID_KEY, PRIMARY_KEYS, show_key
from pgvecstore.sql import catalog, ddl, text_ddl, upgrade_ddl
from pgvecstore.sql.params import Statement
from pgvecstore.sql.table import TableRef

logger = logging.getLogger("pgvecstore")
_VECTOR_TYPE = re.compile(r"(vector|halfvec)\((\d+)\)")


@dataclass(frozen=True)
class TableState:
    """What set-up found, fixed for the store's life.

    - ``dimensions``: the vector length (the option, or read from the table's vector column).
    - ``session_tenant``: the tenant every connection and transaction carries, when the table has row-level
      security and the store a ``domain_id``; else None.
    - ``copy_direct``: whether rows may be copied straight into the table (PostgreSQL refuses COPY FROM into a
      table whose row-level security applies to the current role).
    - ``text_config``: the explicit ``text_search_config``, resolved to its canonical name, or None.
    - ``index_built``: whether set-up built the vector index (``auto_create_index`` with HNSW).
    - ``vector_type``: the vector column's type, ``vector`` or ``halfvec`` (the option, or read from the table).
    - ``primary_key``: the table's key, ``("id",)`` or ``("domain_id", "id")`` (the option, or read from the table).
    """

    dimensions: int
    session_tenant: str | None
    copy_direct: bool
    text_config: str | None
    index_built: bool
    vector_type: str = DEFAULT_VECTOR_TYPE
    primary_key: tuple[str, ...] = ID_KEY


class TableBootstrap:
    """Set-up of one store's table, from its configuration."""

    def __init__(self, config: StoreConfig, table: TableRef) -> None:
        self.config = config
        self.table = table

    async def run(self, conn: asyncpg.Connection, vector_schema: str) -> TableState:
        """Create what is missing, check what exists, and say what was found."""
        config, t = self.config, self.table
        text_config = None
        if config.text_search_config is not None:
            text_config = await text_search.resolve_config(conn, config.text_search_config)
        created = False
        if not await indexes.relation_exists(conn, t.schema, t.name):
            created = await self._create_table(conn, text_config)
        dimensions, vector_type = await self._check_table(conn)
        self.table = t = replace(t, primary_key=await self._check_key(conn))
        await metadata_columns.install(conn, config, t, dimensions, vector_type)  # indexed keys, the metadata GIN
        if not created:
            await self._keep_searched_columns_in_heap(conn)
        # A column of the text-search column's name must be a tsvector. An older layout is used as it is
        # (never rewritten here): text search says to run upgrade().
        version = (await text_search.read_layout(conn, t)).version
        if not version.current:
            logger.info("pgvecstore: table %s has layout %d%s; text and hybrid search need layout %d: run "
                        "'await store.upgrade()' or 'pgvecstore upgrade' (docs/upgrading.md)", t.display,
                        version.version, " (an upgrade is unfinished)" if version.upgrading_to else "", CURRENT_LAYOUT)
        tenant, copy_direct = await self._row_security(conn)
        built = False
        if config.auto_create_index and config.index_type == "hnsw":
            await indexes.build_index(conn, t, Metric(config.metric), dimensions, "hnsw", config.index_params,
                                      vector_type=vector_type, quantization=config.quantization)
            built = True
        return TableState(dimensions, tenant, copy_direct, text_config, built, vector_type, t.primary_key)

    async def _create_table(self, conn: asyncpg.Connection, text_config: str | None) -> bool:
        """Create the table with its parts under the table's lock; False when another store created it first."""
        config, t = self.config, self.table
        if not config.auto_create_table:
            raise TableNotFoundError(
                f"table {t.display} does not exist and auto_create_table is False; "
                "create it or set auto_create_table=True"
            )
        if config.dimensions is None:
            raise TableNotFoundError(
                f"table {t.display} does not exist yet, and the store has no 'dimensions' to create it with: "
                "give dimensions=<the length of your vectors> (stores on an existing table read it from there)"
            )
        # The column's type is known now: a covering index it cannot hold fails before the table is made.
        covering.check_dimensions(config.covering_metadata, config.vector_type or DEFAULT_VECTOR_TYPE,
                                  config.dimensions)
        async with conn.transaction():
            await indexes.lock_table(conn, t)
            exists = catalog.schema_exists(t.schema)
            if not await conn.fetchval(exists.sql, *exists.args):
                await conn.execute(ddl.create_schema(t))
            if await indexes.relation_exists(conn, t.schema, t.name):
                return False  # another store created it while this one waited for the lock
            text_columns = text_ddl.column_definitions(t) if config.text_search else []
            await conn.execute(
                ddl.create_table(t, config.dimensions, text_columns, config.vector_type or DEFAULT_VECTOR_TYPE)
            )
            await conn.execute(ddl.keep_searched_columns_in_heap(t))
            await conn.execute(upgrade_ddl.set_comment(t, CURRENT_LAYOUT))
            for statement in ddl.support_indexes(t):
                await conn.execute(statement)
            if config.text_search:
                text_config = text_config or await text_search.resolve_config(conn, DEFAULT_TEXT_SEARCH_CONFIG)
                await text_search.install(conn, t, text_config, row_security=False, fill=False)
            logger.info("pgvecstore: created table %s", t.display)
        return True

    async def _keep_searched_columns_in_heap(self, conn: asyncpg.Connection) -> None:
        """Storage MAIN for an existing table's vector and metadata columns, as new tables have
        (`column_storage`); left as it is, with a log line, when the table is busy, the role does not own it or
        the server is a read-only replica."""
        t = self.table
        try:
            changed = await column_storage.keep_searched_columns_in_heap(conn, t)
        except (asyncpg.LockNotAvailableError, asyncpg.InsufficientPrivilegeError,
                asyncpg.ReadOnlySQLTransactionError) as error:  # busy, not the owner, or a read-only replica
            logger.info("pgvecstore: storage of %s's vector and metadata left as it is (%s)", t.display, error)
            return
        if changed:
            logger.info("pgvecstore: vector and metadata columns of %s set to storage MAIN (rows written from now "
                        "on)", t.display)

    async def _check_table(self, conn: asyncpg.Connection) -> tuple[int, str]:
        """Fail clearly when an existing table does not fit this store's configuration; return its dimensions
        and vector type."""
        config, t = self.config, self.table
        statement = catalog.describe_columns(t)
        found = {name: kind for name, kind in await conn.fetch(statement.sql, *statement.args)}
        missing = [f"{logical} -> {column!r}" for logical, column in t.columns.items() if column not in found]
        if missing:
            raise SchemaMismatchError(
                f"table {t.display} has no column for {', '.join(missing)}; "
                f"its columns are {', '.join(sorted(found))}. Map them with the 'columns' option"
            )
        embedding = t.columns["embedding"]
        match = _VECTOR_TYPE.fullmatch(found[embedding])
        if match is None:
            raise SchemaMismatchError(
                f"column {embedding!r} of {t.display} is {found[embedding]}, not a pgvector vector(n) or "
                "halfvec(n) column"
            )
        vector_type, dimensions = match.group(1), int(match.group(2))
        if config.vector_type is not None and vector_type != config.vector_type:
            raise SchemaMismatchError(
                f"column {embedding!r} of {t.display} is {found[embedding]}, but this store has "
                f"vector_type={config.vector_type!r}: its column would be {config.vector_type}({dimensions}). Leave "
                f"vector_type out (or set vector_type={vector_type!r}) to use this table, or give another table_name"
            )
        if config.dimensions is not None and dimensions != config.dimensions:
            raise SchemaMismatchError(
                f"table {t.display} holds {dimensions}-dimensional vectors (column {embedding!r} is "
                f"{found[embedding]}), but this store has dimensions={config.dimensions}. Vectors of another "
                f"model need a table of their own: give another table_name (or schema); or leave dimensions out "
                f"to use this table's {dimensions}; or, to replace its rows, drop the table "
                f"(DROP TABLE {t.qualified}) and let the store create it again"
            )
        id_kind = found[t.columns["id"]]
        is_uuid = id_kind == "uuid"
        if is_uuid != (t.id_type == "uuid"):
            raise SchemaMismatchError(
                f"column {t.columns['id']!r} of {t.display} is {id_kind}, but this store has "
                f"id_type={t.id_type!r}; set id_type={'uuid' if is_uuid else 'text'!r}"
            )
        return dimensions, vector_type

    async def _check_key(self, conn: asyncpg.Connection) -> tuple[str, ...]:
        """The table's key: (domain_id, id) when that is its primary key, else id (as before the option existed);
        a `SchemaMismatchError` when the ``primary_key`` option names the other one."""
        config, t = self.config, self.table
        statement = catalog.primary_key_columns(t)
        columns: list[str] = list(await conn.fetchval(statement.sql, *statement.args) or [])
        logical = {column: name for name, column in t.columns.items()}
        key = DOMAIN_KEY if tuple(logical.get(c, c) for c in columns) == DOMAIN_KEY else ID_KEY
        if config.primary_key is not None and PRIMARY_KEYS[config.primary_key] != key:
            found = f"the primary key ({', '.join(columns)})" if columns else "no primary key"
            raise SchemaMismatchError(
                f"table {t.display} has {found}, but this store has primary_key={config.primary_key!r}: "
                f"its key would be ({show_key(PRIMARY_KEYS[config.primary_key])}). Leave primary_key out (or set "
                f"primary_key={show_key(key)!r}) to use this table, or give another table_name; docs/citus.md "
                "shows how to move a table to the key (domain_id, id)"
            )
        return key

    async def _row_security(self, conn: asyncpg.Connection) -> tuple[str | None, bool]:
        """With ``row_level_security=True``, enable row-level security and the tenant policy (once, under the
        table's advisory lock). Returns the tenant this store's sessions carry and whether it may COPY directly.

        A store with a domain_id carries the tenant whenever the table has row-level security, even one that did
        not ask for it, since a role subject to the policy would otherwise see no row at all.
        """
        config, t = self.config, self.table
        statement = catalog.row_security_state(t)
        state = await self._fetch_row(conn, statement)
        if config.row_level_security and not (state[0] and state[3]):
            try:
                async with conn.transaction():
                    await indexes.lock_table(conn, t)
                    enabled, _, _, has_policy = await self._fetch_row(conn, statement)
                    if not has_policy:
                        await conn.execute(ddl.create_tenant_policy(t))
                    if not enabled:
                        await conn.execute(ddl.enable_row_security(t))
                    if (await text_search.read_layout(conn, t)).has_statistics:
                        for text_statement in text_ddl.statistics_row_security(t):
                            await conn.execute(text_statement)
                    logger.info("pgvecstore: enabled row-level security on %s", t.display)
            except (asyncpg.InsufficientPrivilegeError, PermissionDeniedError):
                raise SchemaMismatchError(
                    f"row_level_security=True, but table {t.display} has no row-level security policy "
                    f"{t.policy_name!r} yet and this role is not its owner, so it cannot add one. Initialize one "
                    "store with row_level_security=True as the table owner first (see docs/tenancy.md)"
                ) from None
            state = await self._fetch_row(conn, statement)
        enabled, forced, active, _ = state
        if config.row_level_security and not active:
            logger.warning(
                "pgvecstore: row_level_security=True, but this role bypasses row-level security on %s "
                "(it is the table owner%s, a superuser or has BYPASSRLS): PostgreSQL will not enforce tenant "
                "isolation for this store, only its own WHERE clauses will. Connect as a non-owner role",
                t.display, "" if forced else " and the policy is not forced",
            )
        tenant = config.domain_id if enabled and config.domain_id is not None else None
        return tenant, not active

    async def _fetch_row(self, conn: asyncpg.Connection, statement: Statement) -> asyncpg.Record:
        """The row of a catalog statement about the table, which exists by now."""
        row = await conn.fetchrow(statement.sql, *statement.args)
        if row is None:
            raise TableNotFoundError(f"table {self.table.display} disappeared while the store was being set up")
        return row
