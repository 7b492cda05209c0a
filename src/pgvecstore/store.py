"""`PgVectorStore`: the async core that stores, finds and manages vectors in one PostgreSQL table.

A facade over parts with one job each (see docs/architecture.md): `PoolRegistry` (connections and the error
boundary), `TableBootstrap` (set-up, returning an immutable `TableState`), `Writer`, `SearchPlanner` and
`Searcher`, `Reader`, `VectorIndexes` and `TextSearch`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import asyncpg
import numpy as np

from pgvecstore.bootstrap import TableBootstrap, TableState
from pgvecstore.config import StoreConfig
from pgvecstore.errors import InvalidOptionError
from pgvecstore.indexes import VectorIndexes
from pgvecstore.planner import SearchPlanner, SearchRequest
from pgvecstore.pool import PoolRegistry
from pgvecstore.reader import Reader
from pgvecstore.results import Row, SearchResult
from pgvecstore.searcher import Searcher
from pgvecstore.sql.table import TableRef
from pgvecstore.text_search import TextSearch
from pgvecstore.upgrade import DEFAULT_BATCH_SIZE, LayoutUpgrade, Progress, UpgradeResult
from pgvecstore.writer import Writer


@dataclass(frozen=True)
class _Parts:
    """The store's working parts, assembled once set-up has said what the table is."""

    state: TableState
    writer: Writer
    reader: Reader
    searcher: Searcher
    indexes: VectorIndexes
    text: TextSearch
    upgrade: LayoutUpgrade


class PgVectorStore:
    """Vectors with metadata in one PostgreSQL table, searched by pgvector.

    Build it from a `StoreConfig`, a dict of options, or keyword options; call `initialize()` (or use
    ``async with``) before the first operation, or let the first operation do it, and `close()` when done. A store
    with ``domain_id`` reads and writes only that domain's rows; with ``row_level_security=True`` PostgreSQL
    enforces that too (see docs/tenancy.md). ``pool=`` an asyncpg pool of the application's: the store uses its
    connections (registering its vector codecs on them) on that pool's event loop, and never closes it.
    """

    def __init__(
        self, config: StoreConfig | Mapping[str, Any] | None = None, /, *, pool: asyncpg.Pool | None = None,
        **options: Any,
    ) -> None:
        self.config = StoreConfig.build(config, **options)
        self.table = TableRef.from_config(self.config)
        if pool is not None and not isinstance(pool, asyncpg.Pool):
            raise InvalidOptionError(f"pool must be an asyncpg.Pool, got {type(pool).__name__}")
        self._pools = PoolRegistry(self.config, pool)
        self._bootstrap = TableBootstrap(self.config, self.table)
        self._parts: _Parts | None = None

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
        return self._parts is not None and not self._pools.closed

    @property
    def dimensions(self) -> int | None:
        """The vector length: the ``dimensions`` option, or, once initialised, the table's."""
        return self._parts.state.dimensions if self._parts is not None else self.config.dimensions

    async def initialize(self) -> None:
        """Connect; make sure pgvector, the schema, the table and (if configured) the index exist.

        Set-up runs once per store; each event loop that uses the store later gets its own pool.
        """
        state = await self._pools.start(self._bootstrap.run)
        if self._parts is None:
            self._parts = self._assemble(state)
        await self._parts.indexes.auto_ivfflat()

    def _assemble(self, state: TableState) -> _Parts:
        self.table = replace(self.table, primary_key=state.primary_key)  # the key set-up read from the table
        config, table, pools = self.config, self.table, self._pools
        indexes = VectorIndexes(config, table, pools, state.dimensions, state.index_built, state.vector_type)
        text = TextSearch(config, table, pools, state.text_config)
        planner = SearchPlanner(config, table, state.dimensions, state.vector_type)
        return _Parts(
            state=state,
            writer=Writer(config, table, pools, state.dimensions, state.copy_direct, state.vector_type),
            reader=Reader(config, table, pools),
            searcher=Searcher(pools, planner, indexes, text),
            indexes=indexes,
            text=text,
            upgrade=LayoutUpgrade(table, pools, text),
        )

    async def _ready(self) -> _Parts:
        """The store's parts, initialising the store (or the running loop's pool) on first use."""
        parts = self._parts
        if parts is None or not self._pools.ready():
            await self.initialize()
            parts = self._parts
            assert parts is not None
        return parts

    async def close(self) -> None:
        """Close every pool of this store; later calls raise `StoreClosedError`. Closing twice is harmless."""
        await self._pools.close()

    async def get_pool(self) -> asyncpg.Pool:
        """The asyncpg pool of the running event loop, for SQL of your own (the store initialises on first use).

        When the table has row-level security and the store a domain_id, every connection of this pool carries
        the store's tenant at session level, so the policy limits raw SQL through it to the store's domain too.
        """
        await self._ready()
        return self._pools.pool()

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

        One transaction: it lands whole or not at all. An id that exists already is replaced. Metadata is stored
        as given; its keys ``content``, ``document_id`` and ``chunk_index`` also fill those columns unless the
        explicit lists are given.
        """
        parts = await self._ready()
        written = await parts.writer.add(vectors, ids, metadata, contents, document_ids, chunk_indexes)
        if written:
            await parts.indexes.auto_ivfflat()
        return written

    async def update_metadata(self, ids: Sequence[Any], metadatas: Sequence[Mapping[str, Any] | None]) -> int:
        """Replace the metadata of existing rows; the document columns follow its ``content``, ``document_id``
        and ``chunk_index`` keys. Returns the number of rows updated (ids not found are skipped)."""
        return await (await self._ready()).writer.update_metadata(ids, metadatas)

    async def delete_vectors(self, ids: Sequence[Any]) -> int:
        """Delete rows by id; returns how many were deleted."""
        return await (await self._ready()).writer.delete_ids(ids)

    async def delete(self, filter: Mapping[str, Any] | None = None) -> int:
        """Delete the rows that match `filter` (within the store's domain); returns how many."""
        return await (await self._ready()).writer.delete(filter)

    async def clear(self) -> int:
        """Delete every row of this store (only its domain's rows when it has a domain_id); returns how many."""
        return await (await self._ready()).writer.clear()

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
        rrf_k: float | None = None,
        alpha: float | None = None,
        vector_k: int | None = None,
        text_k: int | None = None,
        search_params: Mapping[str, Any] | None = None,
        include_vectors: bool = False,
    ) -> list[SearchResult]:
        """The `k` best rows, best first; each unpacks as ``(id, score, metadata)`` and carries ``content``,
        ``document_id``, ``chunk_index`` (and ``vector`` with ``include_vectors=True``).

        - ``mode="vector"``: the nearest rows to `query`; scores: cosine ``1 - distance``, euclidean
          ``1 / (1 + distance)``, inner product the raw product.
        - ``mode="text"``: full-text search for `query_text`, ranked by BM25 with the domain's term statistics
          over a bounded set of candidate rows (its cost does not grow with the table).
        - ``mode="hybrid"``: both in one statement, fused by a weighted sum of min-max normalised scores
          (``alpha``, the vector side's weight, 0.5 by default) or, with ``rrf_k``, reciprocal rank fusion;
          ``vector_k`` / ``text_k`` candidates per side.

        `filter` and the store's domain apply to every side. `search_params` override the store's for this call
        (see `pgvecstore.search_tuning.SearchOptions`); a filtered vector search returns `k` rows whenever `k`
        rows match. See docs/hybrid.md.
        """
        request = SearchRequest(query, k, filter, include_metadata, mode, query_text, rrf_k, alpha, vector_k,
                                text_k, search_params, include_vectors)
        return await (await self._ready()).searcher.search(request)

    async def get_vectors(
        self, ids: Sequence[Any], include_metadata: bool = True
    ) -> list[tuple[np.ndarray | None, dict[str, Any] | None]]:
        """Vectors and metadata by id, aligned with `ids`; ``(None, None)`` where an id is not found."""
        return await (await self._ready()).reader.get_vectors(ids, include_metadata)

    async def get(
        self,
        ids: Sequence[Any] | None = None,
        filter: Mapping[str, Any] | None = None,
        *,
        limit: int | None = None,
        include_vectors: bool = False,
    ) -> list[Row]:
        """Rows by ids and/or filter, without a query vector; each unpacks as ``(id, vector or None, metadata)``
        and carries ``content``, ``document_id`` and ``chunk_index``. Ordered by document_id, chunk_index, id;
        with neither ids nor filter, every row in scope."""
        return await (await self._ready()).reader.get(ids, filter, limit, include_vectors)

    async def count(self, filter: Mapping[str, Any] | None = None) -> int:
        """Number of rows (in the store's domain) that match `filter`."""
        return await (await self._ready()).reader.count(filter)

    async def stats(self) -> dict[str, Any]:
        """What the store's table holds: rows, documents and tenants in scope, vector index, sizes in bytes."""
        parts = await self._ready()
        return {**await parts.reader.stats(), "index_type": await parts.indexes.info()}

    # -- full-text search and indexes ----------------------------------------------------------------------
    async def enable_text_search(self) -> bool:
        """Add full-text search to an existing table (or bring a table of an older layout to the current one):
        the tsvector column, its triggers, the term statistics and the GIN index, filled from every row while
        writers wait. True when this call added anything. See docs/hybrid.md."""
        return await (await self._ready()).text.enable()

    async def upgrade(self, *, batch_size: int = DEFAULT_BATCH_SIZE, progress: Progress | None = None,
                      recompute_terms: bool = False) -> UpgradeResult:
        """Bring the table to the current layout online, as its owner: resumable, and a cheap no-op on a current
        table. ``progress(done, total)`` is called after each step of ``batch_size`` rows counted;
        ``recompute_terms`` counts a current table's term statistics again. See docs/upgrading.md."""
        return await (await self._ready()).upgrade.run(batch_size=batch_size, progress=progress,
                                                       recompute_terms=recompute_terms)

    async def create_index(self, index_type: str | None = None, params: Mapping[str, int] | None = None) -> bool:
        """Build the vector index (default: the configured type and index_params; with ``quantization="binary"``
        HNSW on the binary-quantized vectors); replaces one of another kind. Returns True when this call built
        it, False when it existed already."""
        return await (await self._ready()).indexes.create(index_type, params)

    async def reindex(self) -> str | None:
        """Rebuild the vector index online (``REINDEX ... CONCURRENTLY``: reads and writes go on), as after many
        updates and deletes (see docs/production.md, "Churn"); returns the index's kind, None without one."""
        return await (await self._ready()).indexes.reindex()

    async def drop_index(self) -> bool:
        """Drop the table's vector index; True when there was one."""
        return await (await self._ready()).indexes.drop()

    async def index_info(self) -> str | None:
        """The kind of the table's vector index ('hnsw', 'ivfflat', or 'hnsw_binary' for HNSW on the
        binary-quantized vectors), or None."""
        return await (await self._ready()).indexes.info()
