"""Vector index management: found by deterministic name in the catalog, built once under an advisory lock.

Many store instances may start at once (web workers, pods); each takes a transaction-level advisory lock on the
table before looking for its index, so exactly one builds it and the others find it. Builds are exempt from
``statement_timeout``.
"""

from __future__ import annotations

import logging
import math

import asyncpg

from pgvecstore.config import HNSW_DEFAULTS, validate_index_params
from pgvecstore.sql import TableSQL

logger = logging.getLogger("pgvecstore")

VECTOR_INDEX_TYPES = ("hnsw", "ivfflat")


async def lock_table(conn: asyncpg.Connection, table: TableSQL) -> None:
    """Serialise DDL on this table across sessions until the current transaction ends."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", table.lock_key)


async def relation_exists(conn: asyncpg.Connection, schema: str, name: str) -> bool:
    return bool(await conn.fetchval(TableSQL.relation_exists(), schema, name))


async def existing_index_type(conn: asyncpg.Connection, table: TableSQL) -> str | None:
    """Which of this table's vector indexes exists (by its deterministic name), if any."""
    for index_type in VECTOR_INDEX_TYPES:
        if await relation_exists(conn, table.schema, table.index_name(index_type)):
            return index_type
    return None


def default_lists(rows: int) -> int:
    """pgvector's guidance for IVFFlat lists: rows / 1000 up to a million rows, sqrt(rows) beyond."""
    if rows <= 1_000_000:
        return max(1, rows // 1000)
    return max(1, int(math.sqrt(rows)))


async def build_index(
    conn: asyncpg.Connection, table: TableSQL, index_type: str, params: dict[str, int] | None = None
) -> bool:
    """Create the vector index of `index_type` unless it exists; replaces an index of the other type.

    Returns True when this call built the index. Runs in its own transaction under the table's advisory lock.
    """
    if index_type not in VECTOR_INDEX_TYPES:
        raise ValueError(f"index_type must be one of {', '.join(map(repr, VECTOR_INDEX_TYPES))}, got {index_type!r}")
    chosen = validate_index_params(index_type, params or {})
    async with conn.transaction():
        await lock_table(conn, table)
        current = await existing_index_type(conn, table)
        if current == index_type:
            return False
        if current is not None:
            await conn.execute(table.drop_vector_index(current))
        if index_type == "hnsw":
            defaults = dict(HNSW_DEFAULTS)
            defaults["ef_construction"] = max(defaults["ef_construction"], 2 * chosen.get("m", defaults["m"]))
            chosen = validate_index_params("hnsw", {**defaults, **chosen})
        elif "lists" not in chosen:
            chosen["lists"] = default_lists(int(await conn.fetchval(table.total_rows())))
        # An index build may take long on big tables: never cut it off with the session's statement_timeout.
        await conn.execute("SELECT set_config('statement_timeout', '0', true)")
        logger.info("pgvecstore: building %s index on %s.%s %s", index_type, table.schema, table.table, chosen)
        await conn.execute(table.create_vector_index(index_type, chosen))
        return True


async def drop_index(conn: asyncpg.Connection, table: TableSQL) -> bool:
    """Drop this table's vector index, whichever type it is; True when one was dropped."""
    async with conn.transaction():
        await lock_table(conn, table)
        current = await existing_index_type(conn, table)
        if current is None:
            return False
        await conn.execute(table.drop_vector_index(current))
        return True
