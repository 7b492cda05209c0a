"""Vector index management: found by deterministic name in the catalog, built once under an advisory lock.

Many store instances may start at once (web workers, pods); each takes a transaction-level advisory lock on the
table before looking for its index, so exactly one builds it and the others find it. Builds are exempt from
``statement_timeout``.

Build settings: pgvector builds an HNSW graph fast only while it fits in ``maintenance_work_mem`` (64 MB by
default, about 28,000 rows of 384 dimensions); past that it warns "hnsw graph no longer fits into
maintenance_work_mem" and the build gets several times slower. So each build raises ``maintenance_work_mem`` for
its own transaction to what the graph needs (estimated from the row count, dimensions and ``m``), capped at
`BUILD_MEMORY_CAP`, and ``max_parallel_maintenance_workers`` to `BUILD_PARALLEL_WORKERS`. Both are only ever
raised, never lowered below the session's values, and both end with the transaction (``set_config(..., true)``).
A parallel build keeps its graph in shared memory; where that is small (a container's 64 MB ``/dev/shm``) the
build fails with "could not resize shared memory segment", and is retried without parallel workers.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping

import asyncpg

from pgvecstore.compact import BINARY_HNSW_DEFAULTS, check_index, index_kind
from pgvecstore.config import HNSW_DEFAULTS, StoreConfig, validate_index_params
from pgvecstore.connection import set_local, set_session
from pgvecstore.errors import InvalidInputError
from pgvecstore.metric import Metric
from pgvecstore.pool import PoolRegistry
from pgvecstore.sql import catalog, ddl, queries
from pgvecstore.sql.ddl import VECTOR_INDEX_KINDS, VECTOR_INDEX_TYPES
from pgvecstore.sql.table import TableRef

logger = logging.getLogger("pgvecstore")

# How long the store trusts what it read from the catalog about whether the table has a vector index (another
# process may build or drop one).
INDEX_PROBE_TTL = 30.0

MIB = 1024 * 1024
# Most maintenance_work_mem a build raises the setting to (a higher session or server value is kept as it is).
BUILD_MEMORY_CAP = 2048 * MIB
# Floor of the raised setting: pgvector's parallel build wants 32 MB per participant.
BUILD_MEMORY_FLOOR = 128 * MIB
# Parallel workers of a build (plus the leader, which builds too); PostgreSQL starts fewer on small tables or
# when max_parallel_workers / max_worker_processes leave fewer free. A higher session value is kept.
BUILD_PARALLEL_WORKERS = 2


async def lock_table(conn: asyncpg.Connection, table: TableRef) -> None:
    """Serialise DDL on this table across sessions until the current transaction ends."""
    lock = catalog.table_lock(table)
    await conn.execute(lock.sql, *lock.args)


async def relation_exists(conn: asyncpg.Connection, schema: str, name: str) -> bool:
    statement = catalog.relation_exists(schema, name)
    return bool(await conn.fetchval(statement.sql, *statement.args))


async def existing_index_type(conn: asyncpg.Connection, table: TableRef) -> str | None:
    """Which of this table's vector indexes exists (by its deterministic name), if any: its kind, 'hnsw',
    'ivfflat' or 'hnsw_binary' (`pgvecstore.compact.index_kind`)."""
    for kind in VECTOR_INDEX_KINDS:
        if await relation_exists(conn, table.schema, table.index_name(kind)):
            return kind
    return None


def default_lists(rows: int) -> int:
    """pgvector's guidance for IVFFlat lists: rows / 1000 up to a million rows, sqrt(rows) beyond."""
    if rows <= 1_000_000:
        return max(1, rows // 1000)
    return max(1, int(math.sqrt(rows)))


def hnsw_build_memory(rows: int, dimensions: int, m: int) -> int:
    """Bytes an HNSW graph of `rows` vectors takes while pgvector builds it, with a margin.

    Per row: the vector (4 bytes a dimension plus an 8-byte header), neighbour lists of about 52 bytes per unit
    of ``m`` over all layers, and about 100 bytes of element bookkeeping. Checked against pgvector 0.8's notice
    (64 MB held 28,359 rows of 384 dimensions at m=16: 2,366 bytes a row; this formula gives 2,468).
    """
    per_row = 4 * dimensions + 8 + 52 * m + 100
    return int(rows * per_row * 1.1)


def ivfflat_build_memory(rows: int, dimensions: int, lists: int) -> int:
    """Bytes an IVFFlat build uses: its k-means sample (50 rows a list, at most every row) and the centers."""
    sample = min(rows, 50 * lists)
    return int((sample + lists) * (4 * dimensions + 8) * 1.2)


def build_settings(
    index_type: str,
    params: Mapping[str, int],
    rows: int,
    dimensions: int,
    current_memory: int,
    current_workers: int,
) -> dict[str, str]:
    """The transaction-local settings (for ``set_config``) of one index build: ``maintenance_work_mem`` in kB
    sized to the index, between `BUILD_MEMORY_FLOOR` and `BUILD_MEMORY_CAP`, and
    ``max_parallel_maintenance_workers``; neither below the session's `current_memory` (bytes) and
    `current_workers`. Empty when the session's values are already at least these."""
    if index_type == "hnsw":
        wanted = hnsw_build_memory(rows, dimensions, int(params.get("m", HNSW_DEFAULTS["m"])))
    else:
        wanted = ivfflat_build_memory(rows, dimensions, int(params.get("lists", default_lists(rows))))
    memory = min(max(wanted, BUILD_MEMORY_FLOOR), BUILD_MEMORY_CAP)
    settings: dict[str, str] = {}
    if memory > current_memory:
        settings["maintenance_work_mem"] = f"{memory // 1024}kB"
    if BUILD_PARALLEL_WORKERS > current_workers:
        settings["max_parallel_maintenance_workers"] = str(BUILD_PARALLEL_WORKERS)
    return settings


async def session_build_settings(
    conn: asyncpg.Connection, index_type: str, params: Mapping[str, int], rows: int, dimensions: int
) -> dict[str, str]:
    """`build_settings` for a build of `rows` rows, against the session's current memory and workers."""
    now = await conn.fetchrow(catalog.BUILD_SETTINGS_NOW.sql)
    assert now is not None  # a SELECT without FROM returns one row
    memory, workers = now
    return build_settings(index_type, params, rows, dimensions, int(memory), int(workers))


async def build_index(
    conn: asyncpg.Connection, table: TableRef, metric: Metric, dimensions: int, index_type: str,
    params: Mapping[str, int] | None = None, *, vector_type: str = "vector", quantization: str | None = None,
) -> bool:
    """Create the vector index of `index_type` (on a `vector_type` column; with ``quantization="binary"``, on
    its binary-quantized vectors) unless it exists; replaces an index of another kind.

    Returns True when this call built the index. Runs in its own transaction under the table's advisory lock,
    with build settings sized to the table (see the module docstring).
    """
    if index_type not in VECTOR_INDEX_TYPES:
        raise InvalidInputError(
            f"index_type must be one of {', '.join(map(repr, VECTOR_INDEX_TYPES))}, got {index_type!r}"
        )
    check_index(index_type, vector_type, quantization, dimensions)
    chosen = validate_index_params(index_type, params or {})
    kind = index_kind(index_type, quantization)
    async with conn.transaction():
        await lock_table(conn, table)
        current = await existing_index_type(conn, table)
        if current == kind:
            return False
        if current is not None:
            await conn.execute(ddl.drop_vector_index(table, current))
        rows = int(await conn.fetchval(queries.total_rows(table).sql))
        if index_type == "hnsw":
            defaults = dict(BINARY_HNSW_DEFAULTS if quantization == "binary" else HNSW_DEFAULTS)
            defaults["ef_construction"] = max(defaults["ef_construction"], 2 * chosen.get("m", defaults["m"]))
            chosen = validate_index_params("hnsw", {**defaults, **chosen})
        elif "lists" not in chosen:
            chosen["lists"] = default_lists(rows)
        settings = await session_build_settings(conn, index_type, chosen, rows, dimensions)
        # An index build may take long on big tables: never cut it off with the session's statement_timeout.
        settings["statement_timeout"] = "0"
        logger.info(
            "pgvecstore: building %s index on %s.%s %s (%d rows, %s)",
            kind, table.schema, table.name, chosen, rows, settings,
        )
        create = ddl.create_vector_index(table, metric, index_type, chosen, vector_type=vector_type,
                                         quantization=quantization, dimensions=dimensions)
        try:
            async with conn.transaction():  # a savepoint: a failed parallel build can be retried
                await set_local(conn, settings)
                await conn.execute(create)
        except (asyncpg.DiskFullError, asyncpg.OutOfMemoryError) as exc:
            # A parallel build keeps its graph in shared memory; a small /dev/shm (containers) refuses it.
            logger.warning(
                "pgvecstore: parallel %s index build failed (%s); building without parallel workers",
                index_type, exc,
            )
            await set_local(conn, {**settings, "max_parallel_maintenance_workers": "0"})
            await conn.execute(create)
        return True


async def drop_index(conn: asyncpg.Connection, table: TableRef) -> bool:
    """Drop this table's vector index, whichever type it is; True when one was dropped."""
    async with conn.transaction():
        await lock_table(conn, table)
        current = await existing_index_type(conn, table)
        if current is None:
            return False
        await conn.execute(ddl.drop_vector_index(table, current))
        return True


class VectorIndexes:
    """The table's vector index: build, drop, look up, the automatic IVFFlat build, and what searches know of it.

    Every call runs through the store's pools (so a lost connection is a `ConnectionLostError` and renews them).
    `has_index` answers from what this store did, else from the catalog, read at most every `INDEX_PROBE_TTL`.
    """

    def __init__(
        self, config: StoreConfig, table: TableRef, pools: PoolRegistry, dimensions: int, built: bool,
        vector_type: str = "vector",
    ) -> None:
        self._config = config
        self._table = table
        self._pools = pools
        self._dimensions = dimensions
        self._vector_type = vector_type
        # What this store knows of the index: (monotonic time of the look, answer); time inf when it built one.
        self._known: tuple[float, bool] | None = (math.inf, True) if built else None

    async def create(self, index_type: str | None = None, params: Mapping[str, int] | None = None) -> bool:
        """Build the vector index (default: the configured type and index_params); True when this call built it."""
        config = self._config
        chosen_type = index_type or config.index_type
        if chosen_type == "none":
            raise InvalidInputError(
                "create_index needs index_type 'hnsw' or 'ivfflat' (the store's index_type is 'none')"
            )
        if params is not None:
            chosen = validate_index_params(chosen_type, dict(params))
        elif chosen_type == config.index_type:
            chosen = dict(config.index_params)
        else:
            chosen = {}
        async with self._pools.connection(write=True) as conn:
            built = await build_index(conn, self._table, Metric(config.metric), self._dimensions, chosen_type, chosen,
                                      vector_type=self._vector_type, quantization=config.quantization)
        self._known = (math.inf, True)
        return built

    async def drop(self) -> bool:
        """Drop the table's vector index; True when there was one."""
        async with self._pools.connection(write=True) as conn:
            dropped = await drop_index(conn, self._table)
        self._known = None
        return dropped

    async def reindex(self) -> str | None:
        """Rebuild the table's vector index with ``REINDEX ... CONCURRENTLY`` (reads and writes go on; the old
        index serves searches until the new one replaces it), with the build settings of a new index and no
        statement_timeout; returns its kind, None when the table has no vector index. Invalid leftovers of an
        interrupted rebuild are dropped first."""
        config, table = self._config, self._table
        async with self._pools.own_connection() as conn:
            kind = await existing_index_type(conn, table)
            if kind is None:
                return None
            name = table.index_name(kind)
            leftovers = catalog.reindex_leftovers(table, name)
            for row in await conn.fetch(leftovers.sql, *leftovers.args):
                logger.info("pgvecstore: dropping %s, left invalid by an interrupted rebuild", row[0])
                await conn.execute(ddl.drop_index_concurrently(table, row[0]))
            if not config.pooled_transactions:  # behind a transaction pooler a session setting would outlive us
                rows = int(await conn.fetchval(queries.total_rows(table).sql))
                index_type = "ivfflat" if kind == "ivfflat" else "hnsw"
                params = dict(config.index_params) if index_type == config.index_type else {}
                settings = await session_build_settings(conn, index_type, params, rows, self._dimensions)
                await set_session(conn, {**settings, "statement_timeout": "0"})
            started = time.monotonic()
            logger.info("pgvecstore: rebuilding the %s index of %s (reads and writes go on)", kind, table.display)
            await conn.execute(ddl.reindex_vector_index(table, kind))
            logger.info("pgvecstore: rebuilt the %s index of %s in %.1f s", kind, table.display,
                        time.monotonic() - started)
        self._known = (math.inf, True)
        return kind

    async def info(self) -> str | None:
        """The kind of the table's vector index ('hnsw', 'ivfflat' or 'hnsw_binary'), or None."""
        async with self._pools.connection() as conn:
            return await existing_index_type(conn, self._table)

    async def auto_ivfflat(self) -> None:
        """With ``auto_create_index`` and IVFFlat: build the index once the table holds `min_rows_for_index` rows
        (IVFFlat needs data to train on)."""
        config = self._config
        if not (config.auto_create_index and config.index_type == "ivfflat") or self._known == (math.inf, True):
            return
        threshold = max(config.min_rows_for_index, 1)
        async with self._pools.connection(write=True) as conn:
            if await existing_index_type(conn, self._table) != "ivfflat":
                capped = queries.count_up_to(self._table, threshold)
                if await conn.fetchval(capped.sql, *capped.args) < threshold:
                    return
                await build_index(conn, self._table, Metric(config.metric), self._dimensions, "ivfflat",
                                  dict(config.index_params), vector_type=self._vector_type)
        self._known = (math.inf, True)

    async def has_index(self) -> bool:
        """Whether the table has a vector index (HNSW or IVFFlat, any name). Without one, a filtered search needs
        no estimate and no index settings: an exact scan is all PostgreSQL can do."""
        now = time.monotonic()
        known = self._known
        if known is not None and now - known[0] < INDEX_PROBE_TTL:
            return known[1]
        statement = catalog.has_vector_index(self._table)
        found = bool(await self._pools.read("fetchval", statement.sql, statement.args))
        self._known = (now, found)
        return found
