"""`PgVectorStore`: the async core that stores, finds and manages vectors in one PostgreSQL table."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import asyncpg
import numpy as np

from pgvecstore import indexes, search_tuning
from pgvecstore.config import StoreConfig, validate_index_params
from pgvecstore.connection import (
    connect_failed,
    connect_once,
    connection_lost,
    create_pool,
    ensure_extension,
    is_connection_lost,
    resolve_dsn,
    set_local,
)
from pgvecstore.errors import ConnectionLostError, SchemaMismatchError, StoreClosedError
from pgvecstore.filters import compile_filter
from pgvecstore.rows import RowBatch, encode_metadata, iter_row_batches, normalize_id
from pgvecstore.sql import (
    DEFAULT_TEXT_SEARCH_CONFIG,
    MAX_TEXT_QUERY_TERMS,
    TENANT_SETTING,
    TEXT_SEARCH_CONFIGS,
    Params,
    TableSQL,
)

logger = logging.getLogger("pgvecstore")
T = TypeVar("T")

SearchResult = tuple[str, float, dict[str, Any] | None]

SEARCH_MODES = ("vector", "text", "hybrid")
# Candidates each side of a hybrid search contributes by default: at least k (so either side alone can fill the
# result), and at least pgvector's default hnsw.ef_search (40), the list an HNSW scan builds anyway.
DEFAULT_CANDIDATES = 40
MAX_CANDIDATES = 10_000
# Query text beyond this many characters is ignored (only the first MAX_TEXT_QUERY_TERMS terms count anyway).
MAX_QUERY_TEXT_CHARS = 100_000
# How long a filtered search trusts what it read from the catalog: whether the table has a vector index (another
# process may build one), and the planner's estimate of a filter (it moves as the table grows; autovacuum's
# ANALYZE refreshes it every so often anyway).
INDEX_PROBE_TTL = 30.0
ESTIMATE_TTL = 60.0
MAX_CACHED_ESTIMATES = 1024


class PgVectorStore:
    """Vectors with metadata in one PostgreSQL table, searched by pgvector.

    Build it from a `StoreConfig`, a dict of options, or keyword options; call `initialize()` (or use
    ``async with``) before the first operation, and `close()` when done. A store with ``domain_id`` reads and
    writes only that domain's rows; with ``row_level_security=True`` PostgreSQL enforces that too (see
    docs/tenancy.md).
    """

    def __init__(self, config: StoreConfig | Mapping[str, Any] | None = None, /, **options: Any) -> None:
        if isinstance(config, StoreConfig):
            if options:
                config = StoreConfig.from_options({**_config_dict(config), **options})
            self.config = config
        else:
            self.config = StoreConfig.from_options(config or {}, **options)
        self.table = TableSQL.from_config(self.config)
        self._pools: dict[asyncio.AbstractEventLoop, asyncpg.Pool] = {}
        self._set_up = False
        self._set_up_lock = _LoopAgnosticLock()
        self._dsn: str | None = None
        self._vector_schema: str | None = None
        self._closed = False
        self._index_ready = False
        # Set at initialize from the table's row-level security: whether each operation (and each pooled session)
        # carries the tenant setting, and whether rows may be copied straight into the table (PostgreSQL refuses
        # COPY FROM into a table whose row-level security applies to the current role).
        self._tenant_scoped = False
        self._copy_direct = True
        # Full-text search: whether the table has its text-search column (found at initialize), and the text-search
        # configuration queries use: the one the column is generated with, read at the first text or hybrid search
        # (reading it takes a lock on the table, which set-up must not wait for).
        self._text_ready = False
        self._text_config_known = False
        self._text_config = self.config.text_search_config or DEFAULT_TEXT_SEARCH_CONFIG
        # SQL of an unfiltered vector search, by include_metadata; the store's search options.
        self._plain_search_sql: dict[bool, str] = {}
        self._default_options: search_tuning.SearchOptions | None = None
        # Whether the table has a vector index, as last read from the catalog: (monotonic time, answer).
        self._index_probe: tuple[float, bool] | None = None
        # The planner's estimates of filters (rows matching, table rows, monotonic time), by estimate SQL and values.
        self._estimates: dict[tuple[str, str], tuple[float, float, float]] = {}

    def __repr__(self) -> str:
        return f"PgVectorStore({self.config!r})"

    # -- life cycle ----------------------------------------------------------------------------------------
    async def __aenter__(self) -> PgVectorStore:
        await self.initialize()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def is_initialized(self) -> bool:
        return self._set_up and not self._closed

    async def initialize(self) -> None:
        """Connect, make sure pgvector, the schema, the table and (if configured) the index exist.

        Set-up runs once per store; each event loop that uses the store later gets its own pool, since an
        asyncpg pool belongs to the loop that created it.
        """
        if self._closed:
            raise StoreClosedError()
        loop = asyncio.get_running_loop()
        if self._set_up and loop in self._pools:
            return
        async with self._set_up_lock:
            if self._closed:
                raise StoreClosedError()
            if not self._set_up:
                self._dsn = await asyncio.to_thread(resolve_dsn, self.config)
                conn = await connect_once(self._dsn, self.config)
                try:
                    self._vector_schema = await ensure_extension(conn)
                    await self._prepare_table(conn)
                    await self._prepare_row_security(conn)
                    if self.config.auto_create_index and self.config.index_type == "hnsw":
                        await indexes.build_index(conn, self.table, "hnsw", dict(self.config.index_params))
                        self._index_ready = True
                except Exception as exc:
                    if is_connection_lost(exc, conn):  # a restart during set-up: the next initialize() redoes it
                        raise connection_lost(self._dsn, exc, transaction=True) from None
                    raise
                finally:
                    await conn.close()
                self._set_up = True
            if loop not in self._pools:
                self._sweep_dead_pools()
                assert self._dsn is not None and self._vector_schema is not None
                tenant = self.config.domain_id if self._tenant_scoped else None
                pool = await create_pool(self._dsn, self.config, self._vector_schema, tenant)
                if self._closed:  # close() ran while the pool was opening: it must not outlive the store
                    await pool.close()
                    raise StoreClosedError()
                self._pools[loop] = pool
        if self.config.auto_create_index and self.config.index_type == "ivfflat":
            await self._maybe_create_ivfflat()

    async def close(self) -> None:
        """Close every pool of this store; later calls raise `StoreClosedError`. Closing twice is harmless."""
        self._closed = True
        pools, self._pools = self._pools, {}
        current = asyncio.get_running_loop()
        for loop, pool in pools.items():
            if loop is current:
                await pool.close()
            elif loop.is_closed() or not loop.is_running():
                _terminate(pool)
            else:
                # That loop may be blocked waiting for this very call (a sync close() made inside a running loop,
                # as in Jupyter): hand it the close without waiting, or the two would wait on each other forever.
                asyncio.run_coroutine_threadsafe(pool.close(), loop)

    def _sweep_dead_pools(self) -> None:
        """Drop pools whose event loop has been closed (their connections are closed without a loop)."""
        for loop in [loop for loop in self._pools if loop.is_closed()]:
            _terminate(self._pools.pop(loop))

    async def _prepare_table(self, conn: asyncpg.Connection) -> None:
        table = self.table
        exists = await indexes.relation_exists(conn, table.schema, table.table)
        if not exists:
            if not self.config.auto_create_table:
                raise SchemaMismatchError(
                    f"table {table.schema}.{table.table} does not exist and auto_create_table is False; "
                    "create it or set auto_create_table=True"
                )
            async with conn.transaction():
                await indexes.lock_table(conn, table)
                if not await conn.fetchval(
                    "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)", table.schema
                ):
                    await conn.execute(table.create_schema())
                if not await indexes.relation_exists(conn, table.schema, table.table):
                    if table.text_search:
                        await self._resolve_text_config(conn)
                    await conn.execute(table.create_table())
                    for statement in table.create_support_indexes():
                        await conn.execute(statement)
                    if table.text_search:
                        await conn.execute(table.create_text_search_index())
                    logger.info("pgvecstore: created table %s.%s", table.schema, table.table)
        await self._check_table(conn)
        await self._inspect_text_search(conn)

    async def _resolve_text_config(self, conn: asyncpg.Connection) -> str:
        """The canonical name of the configured text-search configuration; a clear error when there is none."""
        name = self.config.text_search_config or DEFAULT_TEXT_SEARCH_CONFIG
        try:
            async with conn.transaction():  # a savepoint when called inside the caller's transaction, which survives
                return str(await conn.fetchval(self.table.resolve_text_search_config(), name))
        except asyncpg.UndefinedObjectError:
            known = await conn.fetch(TEXT_SEARCH_CONFIGS)
            raise ValueError(
                f"text_search_config={name!r}: the server has no such text-search configuration; "
                f"it has {', '.join(row[0] for row in known)}"
            ) from None

    async def _inspect_text_search(self, conn: asyncpg.Connection) -> None:
        """Find the table's text-search column by name in the catalog (no lock on the table).

        A table without it is fine (vector search needs none; `enable_text_search` adds it); a column of that name
        that is not a tsvector is an error. An explicit ``text_search_config`` must exist on the server.
        """
        table = self.table
        kind = await conn.fetchval(table.text_search_state(), table.schema, table.table, table.text_search_column)
        if kind is not None and kind != "tsvector":
            raise SchemaMismatchError(
                f"column {table.text_search_column!r} of {table.schema}.{table.table} is {kind}, but this store "
                "uses it for full-text search (tsvector); name another column with the 'text_search_column' option"
            )
        if self.config.text_search_config is not None and not self._text_config_known:
            self._text_config = await self._resolve_text_config(conn)
        self._text_ready = kind is not None

    async def _settle_text_config(self, conn: asyncpg.Connection) -> None:
        """Use the configuration the text-search column is generated with; an explicit, different
        ``text_search_config`` is an error (queries would stem words differently from the column)."""
        table = self.table
        used = await conn.fetchval(
            table.text_search_config_used(), table.schema, table.table, table.text_search_column
        )
        if used is not None:
            if self.config.text_search_config is not None and used != self._text_config:
                raise SchemaMismatchError(
                    f"column {table.text_search_column!r} of {table.schema}.{table.table} is generated with "
                    f"text-search configuration {used!r}, but this store has "
                    f"text_search_config={self.config.text_search_config!r}; set text_search_config={used!r} "
                    "(or leave it unset to use the column's)"
                )
            self._text_config = used
        self._text_config_known = True

    async def _prepare_row_security(self, conn: asyncpg.Connection) -> None:
        """With ``row_level_security=True``, enable row-level security and the tenant policy (once, under the
        table's advisory lock); then note whether this store must carry its tenant setting and may COPY directly.

        A store with a domain_id carries the setting whenever the table has row-level security, even one that
        did not ask for it, since a role subject to the policy would otherwise see no row at all.
        """
        table = self.table
        args = (table.schema, table.table, table.policy_name)
        state = await conn.fetchrow(table.rls_state(), *args)
        if self.config.row_level_security and not (state[0] and state[3]):
            try:
                async with conn.transaction():
                    await indexes.lock_table(conn, table)
                    enabled, _, _, has_policy = await conn.fetchrow(table.rls_state(), *args)
                    if not has_policy:
                        await conn.execute(table.create_policy())
                    if not enabled:
                        await conn.execute(table.enable_rls())
                    logger.info("pgvecstore: enabled row-level security on %s.%s", table.schema, table.table)
            except asyncpg.InsufficientPrivilegeError:
                raise SchemaMismatchError(
                    f"row_level_security=True, but table {table.schema}.{table.table} has no row-level security "
                    f"policy {table.policy_name!r} yet and this role is not its owner, so it cannot add one. "
                    "Initialize one store with row_level_security=True as the table owner first "
                    "(see docs/tenancy.md)"
                ) from None
            state = await conn.fetchrow(table.rls_state(), *args)
        enabled, forced, active, _ = state
        self._tenant_scoped = bool(enabled) and self.config.domain_id is not None
        self._copy_direct = not active
        if self.config.row_level_security and not active:
            logger.warning(
                "pgvecstore: row_level_security=True, but this role bypasses row-level security on %s.%s "
                "(it is the table owner%s, a superuser or has BYPASSRLS): PostgreSQL will not enforce tenant "
                "isolation for this store, only its own WHERE clauses will. Connect as a non-owner role",
                table.schema, table.table, "" if forced else " and the policy is not forced",
            )

    async def _check_table(self, conn: asyncpg.Connection) -> None:
        """Fail clearly when an existing table does not fit this store's configuration."""
        table = self.table
        found = {name: kind for name, kind in await conn.fetch(table.describe_columns(), table.schema, table.table)}
        missing = [f"{logical} -> {column!r}" for logical, column in table.columns.items() if column not in found]
        if missing:
            raise SchemaMismatchError(
                f"table {table.schema}.{table.table} has no column for {', '.join(missing)}; "
                f"its columns are {', '.join(sorted(found))}. Map them with the 'columns' option"
            )
        emb_type = found[table.columns["embedding"]]
        if emb_type != f"vector({table.dimensions})":
            raise SchemaMismatchError(
                f"column {table.columns['embedding']!r} of {table.schema}.{table.table} is {emb_type}, "
                f"but this store has dimensions={table.dimensions}"
            )
        id_kind = found[table.columns["id"]]
        is_uuid = id_kind == "uuid"
        if is_uuid != (table.id_type == "uuid"):
            raise SchemaMismatchError(
                f"column {table.columns['id']!r} of {table.schema}.{table.table} is {id_kind}, but this store has "
                f"id_type={table.id_type!r}; set id_type={'uuid' if is_uuid else 'text'!r}"
            )

    async def _ready_pool(self) -> asyncpg.Pool:
        """The pool of the running event loop, initialising the store or that loop's pool on first use."""
        if self._closed:
            raise StoreClosedError()
        pool = self._pools.get(asyncio.get_running_loop())
        if pool is None:
            await self.initialize()
            pool = self._pools.get(asyncio.get_running_loop())
            if pool is None:  # close() ran while this call was initialising the store
                raise StoreClosedError()
        return pool

    async def get_pool(self) -> asyncpg.Pool:
        """The asyncpg pool of the running event loop, for SQL of your own (the store initialises on first use).

        When the table has row-level security and the store a domain_id, every connection of this pool carries
        the store's tenant at session level, so the policy limits raw SQL through it to the store's domain too.
        """
        return await self._ready_pool()

    # -- scoping -------------------------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def _connection(
        self, *, transaction: bool = False, settings: Mapping[str, str] | None = None
    ) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection for one operation.

        Plain (no transaction, no extra round trip) unless the operation needs a transaction or settings; with
        row-level security in force, always inside a transaction that first sets the tenant, together with any
        other `settings`, in one ``set_config`` statement (transaction-local, so nothing outlives the operation).

        A server that cannot be reached, or a connection lost mid-operation (restart, failover, terminated
        backend), raises `ConnectionFailedError`; after a loss the pool replaces all its connections, since the
        other idle ones are most likely dead too, so the next call works once the server is back.
        """
        pool = await self._ready_pool()
        configs = dict(settings or {})
        if self._tenant_scoped:
            assert self.config.domain_id is not None
            configs[TENANT_SETTING] = self.config.domain_id
        assert self._dsn is not None
        try:
            conn = await pool.acquire()
        except asyncpg.InterfaceError:
            if self._closed:  # close() ran while this call was on its way to the pool
                raise StoreClosedError() from None
            raise
        except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
            raise connect_failed(self._dsn, self.config, exc) from None
        try:
            if self._closed:  # close() ran while this call waited in the pool's queue: the pool is closing it
                raise StoreClosedError()
            conn.mark_store_only()
            if not configs and not transaction:
                yield conn
            else:
                async with conn.transaction():
                    await set_local(conn, configs)
                    yield conn
        except Exception as exc:
            lost = is_connection_lost(exc, conn)
            if self._closed and (lost or isinstance(exc, asyncpg.InterfaceError | asyncpg.InternalClientError)):
                raise StoreClosedError("this store was closed while the call was running") from None
            if not lost:
                raise
            await pool.expire_connections()
            raise connection_lost(self._dsn, exc, transaction=transaction or bool(configs)) from None
        finally:
            try:
                await pool.release(conn)
            except Exception:
                # asyncpg resets a connection as it goes back to the pool; when the server ended the session just
                # after the operation finished (a shutdown), the reset fails and asyncpg discards the connection.
                # The operation itself completed, so its result stands; the pool renews its other connections.
                logger.debug("pgvecstore: a connection could not be reset on release; discarded", exc_info=True)
                await pool.expire_connections()

    async def _read(self, method: str, sql: str, values: Sequence[Any],
                    settings: Mapping[str, str] | None = None) -> Any:
        """Run one read statement (see `_retry_once`)."""

        async def once() -> Any:
            async with self._connection(settings=settings) as conn:
                return await getattr(conn, method)(sql, *values)

        return await _retry_once(once)

    def _where(self, params: Params, filter: Mapping[str, Any] | None = None, alias: str = "") -> str:
        """WHERE clause for this store's domain and a user filter (both as bound parameters)."""
        prefix = f"{alias}." if alias else ""
        conditions = []
        if self.config.domain_id is not None:
            conditions.append(f"{prefix}{self.table.col('domain_id')} = {params.add(self.config.domain_id, 'text')}")
        compiled = compile_filter(filter, self.table, params, alias)
        if compiled != "TRUE":
            conditions.append(f"({compiled})")
        return ("WHERE " + " AND ".join(conditions)) if conditions else "WHERE TRUE"

    def _normalize_ids(self, ids: Iterable[Any]) -> list[str]:
        if isinstance(ids, str | bytes) or not isinstance(ids, Iterable):
            raise ValueError(f"ids must be a list of ids, got {type(ids).__name__}")
        return [normalize_id(value, self.table.id_type, i) for i, value in enumerate(ids)]

    # -- writes --------------------------------------------------------------------------------------------
    async def add_vectors(
        self,
        vectors: np.ndarray | Iterable[Sequence[float]],
        ids: Iterable[Any] | None = None,
        metadata: Iterable[Mapping[str, Any] | None] | None = None,
        *,
        contents: Iterable[str | None] | None = None,
        document_ids: Iterable[str | None] | None = None,
        chunk_indexes: Iterable[int | None] | None = None,
    ) -> list[str]:
        """Insert or replace vectors; returns their ids (generated where not given), in input order.

        The whole call is one transaction: it lands whole or not at all. Rows go by binary COPY in batches of
        ``batch_size``; an id that exists already is replaced (vector, metadata and columns). Metadata keys
        ``content``, ``document_id`` and ``chunk_index`` fill their columns unless the explicit lists are given.
        """
        await self._ready_pool()
        batches = iter_row_batches(
            vectors,
            dimensions=self.config.dimensions,
            id_type=self.config.id_type,
            domain_id=self.config.domain_id,
            batch_size=self.config.batch_size,
            ids=ids,
            metadata=metadata,
            contents=contents,
            document_ids=document_ids,
            chunk_indexes=chunk_indexes,
        )
        written: list[str] = []
        async with self._connection(transaction=True) as conn:
            staging: str | None = None
            for batch in batches:
                staging = await self._write_batch(conn, batch, staging)
                written.extend(batch.ids)
        if written and self.config.auto_create_index and self.config.index_type == "ivfflat":
            await self._maybe_create_ivfflat()
        return written

    async def _write_batch(self, conn: asyncpg.Connection, batch: RowBatch, staging: str | None) -> str | None:
        """Write one batch inside the caller's transaction: COPY straight in when no id exists yet, else upsert.

        Returns the name of the staging table once one was made (it lives until commit).
        """
        table = self.table
        columns = [table.columns[c] for c in table.write_columns]
        if batch.caller_ids:
            existing = await conn.fetch(table.existing_ids(), batch.ids)
            foreign = [row[0] for row in existing if row[1] != self.config.domain_id]
            if foreign:
                raise ValueError(
                    f"id {foreign[0]!r} already exists in another domain; this store "
                    f"(domain_id={self.config.domain_id!r}) cannot replace it"
                )
            needs_upsert = bool(existing)
        else:
            needs_upsert = False
        if not needs_upsert and self._copy_direct:
            try:
                async with conn.transaction():
                    await conn.copy_records_to_table(
                        table.table, records=batch.iter_records(), columns=columns, schema_name=table.schema
                    )
                return staging
            except asyncpg.UniqueViolationError:
                # Another session inserted one of these ids since we looked (or, under row-level security, a
                # row this store cannot see holds one): fall back to the upsert path, which names it.
                pass
            except asyncpg.FeatureNotSupportedError:
                # Row-level security was enabled on the table after this store started: PostgreSQL refuses
                # COPY FROM into it, so rows go through the staging table from now on.
                self._copy_direct = False
        if staging is None:
            staging = f"pgvecstore_stage_{uuid.uuid4().hex[:12]}"
            await conn.execute(table.create_staging_table(staging))
        else:
            await conn.execute(table.truncate_staging(staging))
        await conn.copy_records_to_table(staging, records=batch.iter_records(), columns=columns)
        landed = {row[0] for row in await conn.fetch(table.upsert_from_staging(staging))}
        if len(landed) != len(batch.ids):
            missing = next(i for i in batch.ids if i not in landed)
            raise ValueError(
                f"id {missing!r} already exists in another domain; this store "
                f"(domain_id={self.config.domain_id!r}) cannot replace it"
            )
        return staging

    async def update_metadata(
        self, ids: Sequence[Any], metadatas: Sequence[Mapping[str, Any] | None]
    ) -> int:
        """Replace the metadata of existing rows; content/document_id/chunk_index columns follow the new metadata
        when it carries those keys. Returns the number of rows updated (ids not found are skipped)."""
        await self._ready_pool()
        id_list = self._normalize_ids(ids)
        metas = list(metadatas)
        if len(metas) != len(id_list):
            raise ValueError(f"metadatas has {len(metas)} entries but ids has {len(id_list)}")
        if len(set(id_list)) != len(id_list):
            dup = next(i for i in id_list if id_list.count(i) > 1)
            raise ValueError(f"duplicate id {dup!r} in update_metadata")
        meta_texts: list[str] = []
        column_values: list[str] = []
        from pgvecstore.rows import check_chunk_index, check_content, check_document_id

        for position, meta in enumerate(metas):
            text, cols = encode_metadata(meta, position)
            checked: dict[str, Any] = {}
            if "content" in cols:
                checked["content"] = check_content(cols["content"], position)
            if "document_id" in cols:
                checked["document_id"] = check_document_id(cols["document_id"], position)
            if "chunk_index" in cols:
                checked["chunk_index"] = check_chunk_index(cols["chunk_index"], position)
            meta_texts.append(text)
            column_values.append(json.dumps(checked, ensure_ascii=False))
        params = Params()
        ids_ph = params.add(id_list)
        meta_ph = params.add(meta_texts)
        cols_ph = params.add(column_values)
        where = self._where(params, alias="t")
        sql = self.table.update_metadata_sql(where, ids_ph, meta_ph, cols_ph)
        async with self._connection() as conn:
            status = await conn.execute(sql, *params.values)
        return _rowcount(status)

    async def delete_vectors(self, ids: Sequence[Any]) -> int:
        """Delete rows by id; returns how many were deleted."""
        await self._ready_pool()
        id_list = self._normalize_ids(ids)
        if not id_list:
            return 0
        params = Params()
        id_ph = params.add(id_list, f"{self.table.id_cast}[]")
        where = self._where(params)
        sql = self.table.delete(f"{where} AND {self.table.col('id')} = ANY({id_ph})")
        async with self._connection() as conn:
            return _rowcount(await conn.execute(sql, *params.values))

    async def delete(self, filter: Mapping[str, Any] | None = None) -> int:
        """Delete the rows that match `filter` (within the store's domain); returns how many."""
        if not filter:
            raise ValueError("delete() needs a non-empty filter; use clear() to delete every row")
        params = Params()
        sql = self.table.delete(self._where(params, filter))
        async with self._connection() as conn:
            return _rowcount(await conn.execute(sql, *params.values))

    async def clear(self) -> int:
        """Delete every row of this store (only its domain's rows when it has a domain_id); returns how many."""
        params = Params()
        sql = self.table.delete(self._where(params))
        async with self._connection() as conn:
            return _rowcount(await conn.execute(sql, *params.values))

    # -- reads ---------------------------------------------------------------------------------------------
    async def search(
        self,
        query: np.ndarray | Sequence[float] | None = None,
        k: int = 10,
        filter: Mapping[str, Any] | None = None,
        include_metadata: bool = True,
        *,
        mode: str = "vector",
        query_text: str | None = None,
        rrf_k: float = 60,
        alpha: float | None = None,
        vector_k: int | None = None,
        text_k: int | None = None,
        search_params: Mapping[str, Any] | None = None,
    ) -> list[SearchResult]:
        """The `k` best rows, best first, as ``(id, score, metadata)``.

        - ``mode="vector"`` (default): the nearest rows to the vector `query`. Scores are similarities: cosine
          ``1 - distance``, euclidean ``1 / (1 + distance)``, inner product the raw product.
        - ``mode="text"``: full-text search for `query_text` (no vector). A row matches when it contains any
          term of the text; the score is an IDF-weighted, length-normalised ``ts_rank`` (higher is better,
          comparable within one query only).
        - ``mode="hybrid"``: both, in one SQL statement. Each side finds its candidates (``vector_k`` and
          ``text_k``, default ``max(k, 40)`` each) and the lists are fused: by reciprocal rank fusion, score
          ``sum 1 / (rrf_k + rank)`` over the lists a row is in (`rrf_k` default 60); or, when `alpha` is given,
          by ``alpha * v + (1 - alpha) * x`` with v and x the vector similarity and text score min-max
          normalised within their candidate lists (0 when the row is not in a list): alpha is the vector weight.

        `filter` and the store's domain apply to both sides. `search_params` override the store's for the
        vector side of this call: ``ef_search`` and ``probes``, and the filtered-search knobs
        ``filtered_ef_search``, ``max_scan_tuples``, ``scan_mem_multiplier``, ``max_probes``,
        ``exact_selectivity`` and ``retry_exact`` (see `pgvecstore.search_tuning.SearchOptions`). A filtered
        vector search returns `k` rows whenever `k` rows match: it scans the index iteratively, and reads the
        matching rows exactly when the planner estimates the filter to match few of them. Text and hybrid
        search need the table's text-search column (`enable_text_search`). See docs/hybrid.md.
        """
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        if mode not in SEARCH_MODES:
            raise ValueError(f"mode must be one of {', '.join(map(repr, SEARCH_MODES))}, got {mode!r}")
        _check_hybrid_options(mode, query_text, rrf_k, alpha, vector_k, text_k)
        if search_params is None:  # the store's options, validated once
            if self._default_options is None:
                self._default_options = search_tuning.SearchOptions.from_params(self.config.search_params)
            options = self._default_options
        else:
            options = search_tuning.SearchOptions.from_params(self.config.search_params, search_params)
        if mode == "vector":
            if query is None:
                raise ValueError("search needs a query vector (or mode='text' with query_text)")
            return await self._vector_search(self._query_vector(query), int(k), filter, include_metadata, options)
        if mode == "text":
            if query is not None:
                raise ValueError(
                    "mode='text' searches by query_text alone; pass no query vector, or use mode='hybrid'"
                )
        elif query is None:
            raise ValueError("mode='hybrid' needs a query vector as well as query_text")
        vector = self._query_vector(query) if query is not None else None
        await self._require_text_search()
        text = _clean_query_text(query_text)
        params = Params()
        where = self._where(params, filter, alias="t")
        scope_where = self._where(params, alias="t")
        k = int(k)
        depth = max(k, DEFAULT_CANDIDATES)
        text_ctes = self.table.text_candidates(
            scope_where,
            where,
            params.add(self._text_config, "text::regconfig"),
            params.add(text, "text"),
            params.add(MAX_TEXT_QUERY_TERMS),
            params.add(k if mode == "text" else int(text_k or depth)),
        )
        k_ph = params.add(k)
        if vector is None:
            sql = self.table.full_text_search(text_ctes, k_ph, include_metadata)
            settings_used: Mapping[str, str] | None = None
        else:
            vector_sql = self.table.vector_candidates(where, params.add(vector), params.add(int(vector_k or depth)))
            if alpha is None:
                sql = self.table.hybrid_search(
                    vector_sql, text_ctes, k_ph, include_metadata, rrf_k_ph=params.add(float(rrf_k), "float8")
                )
            else:
                sql = self.table.hybrid_search(
                    vector_sql, text_ctes, k_ph, include_metadata, alpha_ph=params.add(float(alpha), "float8")
                )
            settings_used = search_tuning.search_settings(
                options, filtered=where != "WHERE TRUE", k=int(vector_k or depth)
            )
        rows = await self._read("fetch", sql, params.values, settings_used)
        return [
            (row[0], float(row["score"]), _row_metadata(row, 1) if include_metadata else None) for row in rows
        ]

    async def _vector_search(
        self,
        vector: np.ndarray,
        k: int,
        filter: Mapping[str, Any] | None,
        include_metadata: bool,
        options: search_tuning.SearchOptions,
    ) -> list[SearchResult]:
        """Vector search: the `k` nearest rows to `vector`, best first (filtered: see `_filtered_search`)."""
        params = Params()
        query_ph = params.add(vector)
        k_ph = params.add(k)
        where = self._where(params, filter)
        if filter is None:  # the same text every time: built once (a search's own Python time counts at HNSW speed)
            sql = self._plain_search_sql.get(include_metadata) or self._plain_search_sql.setdefault(
                include_metadata, self.table.search(where, query_ph, k_ph, include_metadata)
            )
        else:
            sql = self.table.search(where, query_ph, k_ph, include_metadata)
        if where == "WHERE TRUE":
            settings = search_tuning.search_settings(options, filtered=False, k=k)
            rows = await self._read("fetch", sql, params.values, settings)
        elif not await self._has_vector_index():
            # No vector index: the query is an exact scan of the matching rows as it stands, in one statement.
            rows = await self._read("fetch", sql, params.values)
            search_tuning.note_path("exact")
        else:
            rows = await self._filtered_search(sql, params.values, filter, k, options)
        # IVFFlat's iterative scan may return rows slightly out of order; sorting k rows is cheap.
        rows = sorted(rows, key=_distance)
        score = self._score
        if not include_metadata:
            return [(row[0], score(row[-1]), None) for row in rows]
        return [(row[0], score(row[-1]), _row_metadata(row, 1)) for row in rows]

    async def _filtered_search(
        self,
        sql: str,
        values: Sequence[Any],
        filter: Mapping[str, Any] | None,
        k: int,
        options: search_tuning.SearchOptions,
    ) -> list[asyncpg.Record]:
        """A filtered vector search (a filter or the store's domain), in one transaction: the planner's estimate
        of the filter's share (``EXPLAIN``, nothing read); then the index scan with `search_tuning`'s settings
        (a candidate list sized by that share) or, when the filter is very selective, an exact scan; and the
        exact scan again when the index scan found fewer than `k` rows, so `k` rows come back whenever `k` rows
        match. The path taken goes to `search_tuning.note_path` (diagnostics). A read: see `_retry_once`."""
        estimate: Params | None = None
        if search_tuning.wants_estimate(options, filtered=True):
            estimate = Params()
            estimate_sql = self.table.estimate_rows(self._where(estimate, filter))

        async def once() -> list[asyncpg.Record]:
            async with self._connection(transaction=True) as conn:
                exact = False
                share: float | None = None
                if estimate is not None:
                    matching, total = await self._estimate(conn, estimate_sql, estimate.values)
                    exact = search_tuning.use_exact_scan(options, matching, total, k)
                    share = search_tuning.estimated_share(matching, total)
                settings = (
                    search_tuning.EXACT_SCAN_SETTINGS
                    if exact
                    else search_tuning.search_settings(options, filtered=True, k=k, share=share)
                )
                await set_local(conn, settings)
                rows: list[asyncpg.Record] = await conn.fetch(sql, *values)
                path = "exact" if exact else "index"
                if search_tuning.should_retry_exact(options, len(rows), k, filtered=True, exact=exact):
                    await set_local(conn, search_tuning.EXACT_SCAN_SETTINGS)
                    rows = await conn.fetch(sql, *values)
                    path = "index+exact"
                search_tuning.note_path(path)
                return rows

        return await _retry_once(once)

    async def _estimate(self, conn: asyncpg.Connection, sql: str, values: Sequence[Any]) -> tuple[float, float]:
        """The planner's estimate of a filter's matching rows and of the table's rows, from `TableSQL.estimate_rows`.
        Kept for `ESTIMATE_TTL` seconds per filter, so repeated filters (a tenant's domain, a document) skip the
        ``EXPLAIN`` round trip; the estimate only steers how to scan, never which rows are right."""
        key = (sql, repr(values))
        now = time.monotonic()
        cached = self._estimates.get(key)
        if cached is not None and now - cached[2] < ESTIMATE_TTL:
            return cached[0], cached[1]
        matching, total = search_tuning.parse_estimate(await conn.fetchval(sql, *values))
        if len(self._estimates) >= MAX_CACHED_ESTIMATES:
            self._estimates.pop(next(iter(self._estimates)))  # the oldest
        self._estimates[key] = (matching, total, now)
        return matching, total

    async def _has_vector_index(self) -> bool:
        """Whether the table has a vector index (HNSW or IVFFlat, any name): known when this store built it, else
        read from the catalog at most every `INDEX_PROBE_TTL` seconds. Without one, a filtered search needs no
        estimate and no index settings (an exact scan is all PostgreSQL can do): one statement instead of five."""
        if self._index_ready:
            return True
        now = time.monotonic()
        if self._index_probe is not None and now - self._index_probe[0] < INDEX_PROBE_TTL:
            return self._index_probe[1]
        found = bool(await self._read("fetchval", self.table.has_vector_index(), [self.table.qualified_table]))
        self._index_probe = (now, found)
        return found

    def _query_vector(self, query: Any) -> np.ndarray:
        try:
            vector = np.asarray(query, dtype=np.float32)
        except (TypeError, ValueError):
            raise ValueError("query must be a vector: a numpy array or a list of numbers") from None
        if vector.ndim == 2 and vector.shape[0] == 1:
            vector = vector[0]
        if vector.ndim != 1 or vector.shape[0] != self.config.dimensions:
            raise ValueError(
                f"query vector has dimension {vector.shape[-1] if vector.ndim else 0}, "
                f"expected {self.config.dimensions}"
            )
        if not np.isfinite(vector).all():
            raise ValueError("query vector contains NaN or infinity")
        return vector

    def _score(self, distance: float) -> float:
        metric = self.config.metric
        if metric == "cosine":
            return 1.0 - float(distance)
        if metric == "euclidean":
            return 1.0 / (1.0 + float(distance))
        return -float(distance)  # pgvector's <#> is the negative inner product

    async def get_vectors(
        self, ids: Sequence[Any], include_metadata: bool = True
    ) -> list[tuple[np.ndarray | None, dict[str, Any] | None]]:
        """Vectors and metadata by id, aligned with `ids`; ``(None, None)`` where an id is not found."""
        await self._ready_pool()
        id_list = self._normalize_ids(ids)
        if not id_list:
            return []
        params = Params()
        id_ph = params.add(sorted(set(id_list)), f"{self.table.id_cast}[]")
        where = self._where(params)
        sql = self.table.get_by_ids(f"{where} AND {self.table.col('id')} = ANY({id_ph})", include_metadata)
        rows = await self._read("fetch", sql, params.values)
        found = {row[0]: (row[1], _row_metadata(row, 2) if include_metadata else None) for row in rows}
        return [found.get(i, (None, None)) for i in id_list]

    async def get(
        self,
        ids: Sequence[Any] | None = None,
        filter: Mapping[str, Any] | None = None,
        *,
        limit: int | None = None,
        include_vectors: bool = False,
    ) -> list[tuple[str, np.ndarray | None, dict[str, Any]]]:
        """Rows by ids and/or filter, without a query vector, as ``(id, vector or None, metadata)``.

        Ordered by document_id, chunk_index, id. With neither ids nor filter it returns every row in scope.
        """
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise ValueError(f"limit must be a positive integer or None, got {limit!r}")
        await self._ready_pool()
        params = Params()
        where = self._where(params, filter)
        if ids is not None:
            id_list = self._normalize_ids(ids)
            if not id_list:
                return []
            where += f" AND {self.table.col('id')} = ANY({params.add(id_list, f'{self.table.id_cast}[]')})"
        limit_ph = params.add(limit) if limit is not None else None
        sql = self.table.select_rows(where, include_vectors, limit_ph)
        rows = await self._read("fetch", sql, params.values)
        start = 2 if include_vectors else 1
        return [(row[0], row[1] if include_vectors else None, _row_metadata(row, start)) for row in rows]

    async def count(self, filter: Mapping[str, Any] | None = None) -> int:
        """Number of rows (in the store's domain) that match `filter`."""
        params = Params()
        sql = self.table.count(self._where(params, filter))
        return int(await self._read("fetchval", sql, params.values))

    async def stats(self) -> dict[str, Any]:
        """What the store's table holds: rows, documents and tenants in scope, vector index, sizes in bytes."""
        params = Params()
        sql = self.table.stats(self._where(params), params.add(self.table.qualified_table, "text"))
        row = await self._read("fetchrow", sql, params.values)
        return {**dict(row), "index_type": await self.index_info()}

    # -- full-text search ----------------------------------------------------------------------------------
    async def enable_text_search(self) -> bool:
        """Add full-text search to an existing table: the generated tsvector column over content and its GIN
        index. Returns True when this call added either, False when both were there.

        Tables created with ``text_search=True`` (the default) have both already. Adding a generated column
        makes PostgreSQL rewrite the whole table under an ACCESS EXCLUSIVE lock (reads and writes wait), and the
        GIN index build reads it again: run it in a maintenance window on a big table. Runs once, under the
        table's advisory lock (concurrent callers wait and then find the column by name), without the session's
        statement_timeout, as the table's owner.
        """
        pool = await self._ready_pool()
        table = self.table
        changed = False
        async with pool.acquire() as conn:
            try:
                async with conn.transaction():
                    await indexes.lock_table(conn, table)
                    await set_local(conn, {"statement_timeout": "0"})
                    kind = await conn.fetchval(
                        table.text_search_state(), table.schema, table.table, table.text_search_column
                    )
                    if kind is None:
                        await self._resolve_text_config(conn)
                        logger.info(
                            "pgvecstore: adding text-search column %s to %s.%s (rewrites the table)",
                            table.text_search_column, table.schema, table.table,
                        )
                        await conn.execute(table.add_text_search_column())
                        changed = True
                    if not await indexes.relation_exists(conn, table.schema, table.text_search_index_name):
                        await conn.execute(table.create_text_search_index())
                        changed = True
            except asyncpg.InsufficientPrivilegeError:
                raise SchemaMismatchError(
                    f"enable_text_search: this role may not alter table {table.schema}.{table.table}; "
                    "run it as the table's owner (see docs/hybrid.md)"
                ) from None
            await self._inspect_text_search(conn)
        return changed

    async def _require_text_search(self) -> None:
        """Text and hybrid search need the text-search column: look again (another store may have added it since
        this one started), else say how to add it. The first time, settle the text-search configuration."""
        if self._text_ready and self._text_config_known:
            return
        pool = await self._ready_pool()
        async with pool.acquire() as conn:
            if not self._text_ready:
                await self._inspect_text_search(conn)
            if self._text_ready:
                await self._settle_text_config(conn)
        if not self._text_ready:
            table = self.table
            raise SchemaMismatchError(
                f"table {table.schema}.{table.table} has no text-search column {table.text_search_column!r}, "
                "which text and hybrid search need. Add it with 'await store.enable_text_search()' (as the table "
                "owner; it rewrites the table) or create new tables with text_search=True (see docs/hybrid.md)"
            )

    # -- indexes -------------------------------------------------------------------------------------------
    async def create_index(self, index_type: str | None = None, params: Mapping[str, int] | None = None) -> bool:
        """Build the vector index (default: the configured type and index_params); replaces one of another
        type. Returns True when this call built it, False when it existed already."""
        chosen_type = index_type or self.config.index_type
        if chosen_type == "none":
            raise ValueError("create_index needs index_type 'hnsw' or 'ivfflat' (the store's index_type is 'none')")
        if params is not None:
            chosen = validate_index_params(chosen_type, dict(params))
        elif chosen_type == self.config.index_type:
            chosen = dict(self.config.index_params)
        else:
            chosen = {}
        pool = await self._ready_pool()
        async with pool.acquire() as conn:
            built = await indexes.build_index(conn, self.table, chosen_type, chosen)
        self._index_ready = True
        return built

    async def drop_index(self) -> bool:
        """Drop the table's vector index; True when there was one."""
        pool = await self._ready_pool()
        async with pool.acquire() as conn:
            dropped = await indexes.drop_index(conn, self.table)
        self._index_ready = False
        self._index_probe = None
        return dropped

    async def index_info(self) -> str | None:
        """The type of the table's vector index ('hnsw' or 'ivfflat'), or None."""
        pool = await self._ready_pool()
        async with pool.acquire() as conn:
            return await indexes.existing_index_type(conn, self.table)

    async def _maybe_create_ivfflat(self) -> None:
        """Build the IVFFlat index once the table holds `min_rows_for_index` rows (IVFFlat needs data)."""
        if self._index_ready:
            return
        pool = await self._ready_pool()
        threshold = self.config.min_rows_for_index
        async with pool.acquire() as conn:
            if await indexes.existing_index_type(conn, self.table) == "ivfflat":
                self._index_ready = True
                return
            params = Params()
            rows = await conn.fetchval(self.table.count_up_to(params.add(max(threshold, 1))), *params.values)
            if rows >= max(threshold, 1):
                await indexes.build_index(conn, self.table, "ivfflat", dict(self.config.index_params))
                self._index_ready = True


class _LoopAgnosticLock:
    """An asyncio-style lock usable from several event loops (each in its own thread) one at a time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    async def __aenter__(self) -> None:
        while not self._lock.acquire(blocking=False):
            await asyncio.sleep(0.005)

    async def __aexit__(self, *exc: object) -> None:
        self._lock.release()


async def _retry_once(read: Callable[[], Awaitable[T]]) -> T:
    """Run `read`, and once more on a fresh connection when its pooled connection turned out to be dead (a restart
    the pool had not noticed: `_connection` then renews the pool). Only for reads, which a retry cannot change."""
    try:
        return await read()
    except ConnectionLostError:
        return await read()


def _terminate(pool: asyncpg.Pool) -> None:
    """Close a pool's connections without its (closed or stopped) event loop."""
    try:
        pool.terminate()
    except Exception:
        logger.debug("pgvecstore: could not terminate a pool of a closed event loop", exc_info=True)


def _config_dict(config: StoreConfig) -> dict[str, Any]:
    from dataclasses import fields

    return {f.name: getattr(config, f.name) for f in fields(config)}


def _check_hybrid_options(
    mode: str,
    query_text: object,
    rrf_k: object,
    alpha: object,
    vector_k: object,
    text_k: object,
) -> None:
    """Validate the text and hybrid options of `search`, naming the option; reject ones the mode does not use."""
    if mode == "vector":
        if query_text is not None:
            raise ValueError("query_text is used by mode='text' and mode='hybrid'; pass mode='hybrid' to use both")
    elif not isinstance(query_text, str):
        got = "none" if query_text is None else type(query_text).__name__
        raise ValueError(f"mode={mode!r} needs query_text, a string; got {got}")
    if isinstance(rrf_k, bool) or not isinstance(rrf_k, int | float) or not math.isfinite(rrf_k) or rrf_k < 0:
        raise ValueError(f"rrf_k must be a non-negative number, got {rrf_k!r}")
    if alpha is not None:
        if mode != "hybrid":
            raise ValueError("alpha (the vector weight of weighted fusion) is used by mode='hybrid' only")
        if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be a number between 0 and 1 (the weight of the vector side), got {alpha!r}")
    for name, value in (("vector_k", vector_k), ("text_k", text_k)):
        if value is None:
            continue
        if mode != "hybrid":
            raise ValueError(f"{name} (candidates of one side of a hybrid search) is used by mode='hybrid' only")
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or not 1 <= value <= MAX_CANDIDATES:
            raise ValueError(f"{name} must be an integer between 1 and {MAX_CANDIDATES}, got {value!r}")


def _clean_query_text(text: str) -> str:
    """User text as PostgreSQL accepts it: NUL characters (which text values cannot hold) become spaces, lone
    surrogates '?', and text past MAX_QUERY_TEXT_CHARS is dropped. Nothing else is changed or parsed here."""
    text = text[:MAX_QUERY_TEXT_CHARS].replace("\x00", " ")
    return text.encode("utf-8", "replace").decode("utf-8")


def _distance(row: asyncpg.Record) -> float:
    """The distance of a row read by `TableSQL.search` (its last column)."""
    return row[-1]  # type: ignore[no-any-return]


def _row_metadata(row: asyncpg.Record, start: int) -> dict[str, Any]:
    """Metadata dict of a row read with `TableSQL.select_columns` (metadata, content, document_id, chunk_index)."""
    raw = row[start]
    meta: dict[str, Any] = json.loads(raw) if raw else {}
    meta["content"] = row[start + 1]
    meta["document_id"] = row[start + 2]
    meta["chunk_index"] = row[start + 3]
    return meta


def _rowcount(status: str) -> int:
    """Rows affected, from an asyncpg command status such as 'DELETE 3'."""
    try:
        return int(status.rsplit(" ", 1)[-1])
    except (ValueError, IndexError):
        return 0
