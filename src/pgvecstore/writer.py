"""`Writer`: inserts, upserts, metadata updates and deletes, each one transaction that lands whole or not at all."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import asyncpg
import numpy as np

from pgvecstore.config import StoreConfig
from pgvecstore.errors import ConflictError, InvalidInputError
from pgvecstore.filter_limits import check_filter_size
from pgvecstore.filter_values import show
from pgvecstore.identifiers import WRITE_COLUMNS
from pgvecstore.pool import PoolRegistry
from pgvecstore.primary_key import require_domain
from pgvecstore.row_metadata import DeferredMetadata, encode_metadata
from pgvecstore.rows import (
    RowBatch,
    check_chunk_index,
    check_content,
    check_document_id,
    iter_row_batches,
    normalize_ids,
)
from pgvecstore.sql import ddl, queries
from pgvecstore.sql.filters import restricts
from pgvecstore.sql.params import Statement
from pgvecstore.sql.table import TableRef

logger = logging.getLogger("pgvecstore")
T = TypeVar("T")

# Attempts of a write that conflicted with another session's (deadlock or serialization failure).
CONFLICT_ATTEMPTS = 4


def _rereadable(value: object) -> bool:
    """Whether `value` gives the same items when iterated again (so a rolled-back write can be repeated)."""
    if isinstance(value, DeferredMetadata):
        return _rereadable(value.items)
    return value is None or isinstance(value, np.ndarray | list | tuple)


async def _repeat_on_conflict(write: Callable[[], Awaitable[T]], attempts: int) -> T:
    """`write()`, repeated after a `ConflictError` (which rolled it back) up to `attempts` times in all."""
    for attempt in range(1, attempts):
        try:
            return await write()
        except ConflictError:
            logger.info("pgvecstore: write conflicted with another session's (attempt %d); repeating", attempt)
            await asyncio.sleep(random.uniform(0.01, 0.05) * attempt)
    return await write()


def rowcount(status: str) -> int:
    """Rows affected, from an asyncpg command status such as 'DELETE 3'."""
    try:
        return int(status.rsplit(" ", 1)[-1])
    except (ValueError, IndexError):
        return 0


class Writer:
    """Writes rows of one table within the store's domain: binary COPY when no id exists yet, else an upsert
    through a staging table that replaces a row only inside the same domain."""

    def __init__(
        self, config: StoreConfig, table: TableRef, pools: PoolRegistry, dimensions: int, copy_direct: bool,
        vector_type: str = "vector",
    ) -> None:
        self._config = config
        self._table = table
        self._pools = pools
        self._dimensions = dimensions
        self._vector_type = vector_type
        self._domain = config.domain_id
        # Rows go straight into the table by COPY unless row-level security applies to this role (learned at
        # set-up, or when PostgreSQL first refuses a COPY because row-level security was enabled since).
        self._copy_direct = copy_direct

    async def add(
        self,
        vectors: np.ndarray | Iterable[Sequence[float]],
        ids: Iterable[Any] | None,
        metadata: Iterable[Mapping[str, Any] | None] | None,
        contents: Iterable[str | None] | None,
        document_ids: Iterable[str | None] | None,
        chunk_indexes: Iterable[int | None] | None,
    ) -> list[str]:
        """Insert or replace rows in one transaction; their ids (generated where not given), in input order.

        A deadlock or serialization failure with another session's writes (two callers writing the same new ids
        in different orders) rolls the call back; it is repeated up to `CONFLICT_ATTEMPTS` times when the input
        can be read again (arrays, lists, tuples), else raised as `ConflictError`.
        """
        config = self._config
        self._require_domain("add_vectors")
        rereadable = all(_rereadable(value) for value in (vectors, ids, metadata, contents, document_ids,
                                                          chunk_indexes))

        async def write() -> list[str]:
            batches = iter_row_batches(
                vectors,
                dimensions=self._dimensions,
                id_type=config.id_type,
                domain_id=self._domain,
                batch_size=config.batch_size,
                ids=ids,
                metadata=metadata,
                contents=contents,
                document_ids=document_ids,
                chunk_indexes=chunk_indexes,
            )
            return await self._write(batches)

        return await _repeat_on_conflict(write, CONFLICT_ATTEMPTS if rereadable else 1)

    async def _write(self, batches: Iterable[RowBatch]) -> list[str]:
        """Write the batches in one transaction; their ids."""
        written: list[str] = []
        async with self._pools.connection(transaction=True, write=True) as conn:
            staging: str | None = None
            for batch in batches:
                batch.vector_type = self._vector_type
                staging = await self._write_batch(conn, batch, staging)
                written.extend(batch.ids)
        return written

    async def _write_batch(self, conn: asyncpg.Connection, batch: RowBatch, staging: str | None) -> str | None:
        """Write one batch inside the caller's transaction: COPY straight in when no id exists yet, else upsert.
        Returns the name of the staging table once one was made (it lives until commit)."""
        t = self._table
        columns = [t.columns[c] for c in WRITE_COLUMNS]
        needs_upsert = False
        if batch.caller_ids:
            existing = queries.existing_ids(t, batch.ids, self._domain)
            found = await conn.fetch(existing.sql, *existing.args)
            foreign = [row[0] for row in found if row[1] != self._domain]
            if foreign:
                raise self._foreign(foreign[0])
            needs_upsert = bool(found)
        if not needs_upsert and self._copy_direct:
            try:
                async with conn.transaction():
                    await conn.copy_records_to_table(
                        t.name, records=batch.iter_records(), columns=columns, schema_name=t.schema
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
            await conn.execute(ddl.create_staging_table(t, staging))
        else:
            await conn.execute(ddl.truncate_staging(staging))
        await conn.copy_records_to_table(staging, records=batch.iter_records(), columns=columns)
        landed = {row[0] for row in await conn.fetch(queries.upsert_from_staging(t, staging).sql)}
        if len(landed) != len(batch.ids):
            raise self._foreign(next(i for i in batch.ids if i not in landed))
        return staging

    def _foreign(self, row_id: str) -> InvalidInputError:
        return InvalidInputError(
            f"id {row_id!r} already exists in another domain; this store (domain_id={self._domain!r}) cannot "
            "replace it"
        )

    async def update_metadata(self, ids: Sequence[Any], metadatas: Sequence[Mapping[str, Any] | None]) -> int:
        """Replace the metadata of existing rows (their document columns follow its keys); rows updated."""
        self._require_domain("update_metadata")
        id_list = normalize_ids(ids, self._config.id_type)
        metas = list(metadatas)
        if len(metas) != len(id_list):
            raise InvalidInputError(f"metadatas has {len(metas)} entries but ids has {len(id_list)}")
        if len(set(id_list)) != len(id_list):
            dup = next(i for i in id_list if id_list.count(i) > 1)
            raise InvalidInputError(f"duplicate id {dup!r} in update_metadata")
        texts: list[str] = []
        followed: list[str] = []
        checks = {"content": check_content, "document_id": check_document_id, "chunk_index": check_chunk_index}
        for position, meta in enumerate(metas):
            text, columns = encode_metadata(meta, position)
            texts.append(text)
            checked = {name: checks[name](value, position) for name, value in columns.items()}
            followed.append(json.dumps(checked, ensure_ascii=False))
        return await self._execute(queries.update_metadata(self._table, self._domain, id_list, texts, followed))

    async def delete_ids(self, ids: Sequence[Any]) -> int:
        """Delete rows by id; how many were deleted."""
        self._require_domain("delete_vectors")
        id_list = normalize_ids(ids, self._config.id_type)
        if not id_list:
            return 0
        return await self._execute(queries.delete(self._table, self._domain, ids=id_list))

    async def delete(self, filter: Mapping[str, Any] | None) -> int:
        """Delete the rows matching `filter`, which must restrict the rows (``{}`` and filters that fold to
        nothing, such as ``{"$and": [{}]}``, are refused); how many."""
        check_filter_size(filter, self._config.max_filter_conditions, self._config.max_filter_values)
        if not restricts(filter, self._table):
            matches_all = f" ({show(filter)} matches every row)" if filter else ""
            raise InvalidInputError(
                f"delete() needs a filter that restricts the rows{matches_all}; use clear() to delete every row"
            )
        return await self._execute(queries.delete(self._table, self._domain, filter))

    async def clear(self) -> int:
        """Delete every row in the store's scope; how many. A big table may take longer than the store's
        statement_timeout, which this statement lifts (as index builds do)."""
        return await self._execute(queries.delete(self._table, self._domain), settings={"statement_timeout": "0"})

    def _require_domain(self, action: str) -> None:
        """Refuse `action` up front when the table's key is (domain_id, id) and the store has no domain_id."""
        require_domain(self._table.primary_key, self._domain, self._table.display, action)

    async def _execute(self, statement: Statement, settings: Mapping[str, str] | None = None) -> int:
        async with self._pools.connection(settings=settings, write=True) as conn:
            return rowcount(await conn.execute(statement.sql, *statement.args))
