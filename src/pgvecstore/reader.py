"""`Reader`: rows by id or filter, counts and table statistics, within the store's scope."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from pgvecstore.config import StoreConfig
from pgvecstore.errors import InvalidInputError
from pgvecstore.filter_limits import check_filter_size
from pgvecstore.pool import PoolRegistry
from pgvecstore.primary_key import require_domain
from pgvecstore.results import Row, metadata_of, stored_row
from pgvecstore.rows import MAX_ROWS, normalize_ids
from pgvecstore.sql import queries
from pgvecstore.sql.table import TableRef


class Reader:
    """Reads rows of one table without a query vector: on a read replica when the store has one, else on the
    primary (each read retried once there on a lost connection)."""

    def __init__(self, config: StoreConfig, table: TableRef, pools: PoolRegistry) -> None:
        self._config = config
        self._table = table
        self._pools = pools
        self._domain = config.domain_id

    async def get_vectors(
        self, ids: Sequence[Any], include_metadata: bool = True
    ) -> list[tuple[np.ndarray | None, dict[str, Any] | None]]:
        """Vectors and metadata by id, aligned with `ids`; ``(None, None)`` where an id is not found."""
        require_domain(self._table.primary_key, self._domain, self._table.display, "get_vectors")
        id_list = normalize_ids(ids, self._config.id_type)
        if not id_list:
            return []
        statement = queries.rows_by_ids(self._table, self._domain, id_list, metadata=include_metadata)
        rows = await self._pools.replica_read("fetch", statement.sql, statement.args)
        found: dict[str, tuple[np.ndarray | None, dict[str, Any] | None]] = {
            row[0]: (row[1], metadata_of(row[2]) if include_metadata else None) for row in rows
        }
        return [found.get(i, (None, None)) for i in id_list]

    async def get(
        self,
        ids: Sequence[Any] | None,
        filter: Mapping[str, Any] | None,
        limit: int | None,
        include_vectors: bool,
    ) -> list[Row]:
        """Rows by ids and/or filter, ordered by document_id, chunk_index, id (every row in scope with neither)."""
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_ROWS):
            raise InvalidInputError(f"limit must be None or an integer between 1 and {MAX_ROWS}, got {limit!r}")
        check_filter_size(filter, self._config.max_filter_conditions, self._config.max_filter_values)
        id_list = None
        if ids is not None:
            require_domain(self._table.primary_key, self._domain, self._table.display, "get(ids=...)")
            id_list = normalize_ids(ids, self._config.id_type)
            if not id_list:
                return []
        statement = queries.select_rows(self._table, self._domain, filter, id_list, limit, vectors=include_vectors)
        rows = await self._pools.replica_read("fetch", statement.sql, statement.args)
        return [stored_row(row, vectors=include_vectors) for row in rows]

    async def count(self, filter: Mapping[str, Any] | None) -> int:
        """Rows in scope that match `filter`."""
        check_filter_size(filter, self._config.max_filter_conditions, self._config.max_filter_values)
        statement = queries.count(self._table, self._domain, filter)
        return int(await self._pools.replica_read("fetchval", statement.sql, statement.args))

    async def stats(self) -> dict[str, Any]:
        """Rows, documents and tenants in scope, and the table's sizes in bytes."""
        statement = queries.stats(self._table, self._domain)
        return dict(await self._pools.replica_read("fetchrow", statement.sql, statement.args))
