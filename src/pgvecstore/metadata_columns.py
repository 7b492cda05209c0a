"""Set-up of indexed metadata: the `indexed_metadata` columns (with their triggers and b-tree indexes, and the
``covering_metadata`` keys' covering indexes), the ``metadata_index="gin"`` index and the ``metadata_statistics``
target, made or checked once per store.

What is missing is made under the table's advisory lock, in one transaction: a column added to a table that has
rows is filled from their metadata (an UPDATE of the rows that have the key), and a value the column refuses fails
set-up with an error naming the row and the key, changing nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import asyncpg

from pgvecstore import covering, indexes
from pgvecstore.config import StoreConfig
from pgvecstore.errors import InvalidInputError, SchemaMismatchError
from pgvecstore.identifiers import INDEXED_METADATA_CATALOG_TYPES
from pgvecstore.sql import catalog, metadata_ddl
from pgvecstore.sql.table import TableRef

logger = logging.getLogger("pgvecstore")


def check_types(t: TableRef, columns: Mapping[str, str]) -> None:
    """A column that exists under an indexed key's name must have the key's type (`columns`: name -> type)."""
    for key, kind in t.indexed_metadata.items():
        name = metadata_ddl.column_name(key)
        found = columns.get(name)
        if found is not None and found != INDEXED_METADATA_CATALOG_TYPES[kind]:
            raise SchemaMismatchError(
                f"indexed_metadata[{key!r}] is {kind!r}, but column {name!r} of {t.display} is {found} (not "
                f"{INDEXED_METADATA_CATALOG_TYPES[kind]}); declare the key with the column's type, or drop the column "
                "to let the store make it again"
            )


async def install(
    conn: asyncpg.Connection, config: StoreConfig, t: TableRef, dimensions: int, vector_type: str
) -> None:
    """Make the indexed columns, covering indexes, GIN index and statistics target this store asks for, if
    missing."""
    if not _wanted(config):
        return
    covering.check_dimensions(config.covering_metadata, vector_type, dimensions)
    if not await _missing(conn, config, t):
        return
    async with conn.transaction():
        await indexes.lock_table(conn, t)
        columns = await _columns(conn, t)
        check_types(t, columns)  # again: another store may have added one while this one waited for the lock
        triggers, names, _ = await _state(conn, t)
        for key, kind in t.indexed_metadata.items():
            added = metadata_ddl.column_name(key) not in columns
            if added:
                await conn.execute(metadata_ddl.add_column(t, key, kind))
            cover = key in config.covering_metadata and t.indexed_object(key, "cov") not in names
            if added or cover or t.indexed_object(key, "trg") not in triggers:
                # The trigger checks a covered key's entries whichever store (re)makes it.
                covered = key in config.covering_metadata or t.indexed_object(key, "cov") in names
                await conn.execute(metadata_ddl.create_fill_function(t, key, kind, covered))
            if added or t.indexed_object(key, "trg") not in triggers:
                await conn.execute(metadata_ddl.create_fill_trigger(t, key))
                await conn.execute(metadata_ddl.back_fill(t, key))
                logger.info("pgvecstore: indexed metadata key %r of %s in column %r", key, t.display,
                            metadata_ddl.column_name(key))
            if t.indexed_object(key, "idx") not in names:
                await conn.execute(metadata_ddl.create_column_index(t, key))
            if cover:
                await _create_covering_index(conn, t, key, kind)
        if config.metadata_index == "gin" and t.metadata_gin_index_name not in names:
            await conn.execute(metadata_ddl.create_metadata_gin(t))
            logger.info("pgvecstore: created the GIN index on the metadata of %s", t.display)
        if config.metadata_statistics is not None:
            await conn.execute(metadata_ddl.set_metadata_statistics(t, config.metadata_statistics))


async def _create_covering_index(conn: asyncpg.Connection, t: TableRef, key: str, kind: str) -> None:
    """The key's covering index, after checking that every row's entry fits (an error naming a row that does not)."""
    oversized = await conn.fetchrow(metadata_ddl.oversized_entry(t, key, kind))
    if oversized is not None:
        row, size = oversized
        raise InvalidInputError(
            f"covering_metadata: metadata key {key!r} of row {row} takes {size} bytes with the row's id, domain_id "
            f"and vector, more than a b-tree entry of a covering index holds ({covering.BTREE_MAX_ENTRY:,} bytes "
            "with its overhead); shorten that value, or drop the key from covering_metadata"
        )
    await conn.execute(metadata_ddl.create_covering_index(t, key))
    logger.info("pgvecstore: covering index of metadata key %r of %s (its rows' ids and vectors)", key, t.display)


def _wanted(config: StoreConfig) -> bool:
    return bool(config.indexed_metadata) or config.metadata_index != "none" or config.metadata_statistics is not None


async def _missing(conn: asyncpg.Connection, config: StoreConfig, t: TableRef) -> bool:
    """Whether anything this store asks for is missing (read without the lock: the common case changes nothing)."""
    columns = await _columns(conn, t)
    check_types(t, columns)
    triggers, names, target = await _state(conn, t)
    for key in t.indexed_metadata:
        if metadata_ddl.column_name(key) not in columns or t.indexed_object(key, "trg") not in triggers:
            return True
        if t.indexed_object(key, "idx") not in names:
            return True
        if key in config.covering_metadata and t.indexed_object(key, "cov") not in names:
            return True
    if config.metadata_index == "gin" and t.metadata_gin_index_name not in names:
        return True
    return config.metadata_statistics is not None and target != config.metadata_statistics


async def _columns(conn: asyncpg.Connection, t: TableRef) -> dict[str, str]:
    statement = catalog.describe_columns(t)
    return {name: kind for name, kind in await conn.fetch(statement.sql, *statement.args)}


async def _state(conn: asyncpg.Connection, t: TableRef) -> tuple[set[str], set[str], int | None]:
    statement = catalog.metadata_index_state(t)
    row = await conn.fetchrow(statement.sql, *statement.args)
    if row is None:
        return set(), set(), None
    return set(row[0]), set(row[1]), row[2]
