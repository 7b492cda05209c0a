"""`PgVecStore`: a LlamaIndex vector store over pgvecstore's async core, holding no SQL of its own."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import asyncpg
from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.schema import BaseNode
from llama_index.core.vector_stores.types import (
    BasePydanticVectorStore,
    MetadataFilters,
    VectorStoreQuery,
    VectorStoreQueryMode,
    VectorStoreQueryResult,
)

from llama_index.vector_stores.pgvecstore.filters import and_filters, in_filter, metadata_filters_to_dict
from llama_index.vector_stores.pgvecstore.nodes import nodes_to_rows, row_to_node
from llama_index.vector_stores.pgvecstore.query import SUPPORTED_MODES, TEXT_MODES, text_query, vector_query
from pgvecstore import InvalidInputError, PgVectorStore, StoreConfig
from pgvecstore.rows import normalize_id
from pgvecstore.sync import close_blocking, run_sync

DEFAULT_TABLE = "llamaindex_embeddings"
# The adapter's defaults under the user's options: text ids (node ids are any string), a table of its own.
ADAPTER_DEFAULTS = {"id_type": "text", "table_name": DEFAULT_TABLE}


class PgVecStore(BasePydanticVectorStore):
    """PostgreSQL + pgvector as a LlamaIndex vector store, for indexes, retrievers, query engines and pipelines.

    Build it from the core's options (``PgVecStore(dimensions=384)``: with no ``connection_string`` or
    ``DATABASE_URL`` it starts the embedded PostgreSQL), from a `StoreConfig` or dict, or over an existing
    `PgVectorStore`. Ids are text by default (``id_type="text"``), since LlamaIndex node ids are any string.

    Sync methods run on pgvecstore's background event loop, so they also work inside a running loop (Jupyter);
    async methods run on the caller's loop, from any loop. Re-adding a node id replaces the node.
    """

    stores_text: bool = True
    is_embedding_query: bool = True
    mmr_prefetch_factor: int = Field(
        default=4, ge=1, description="MMR fetches similarity_top_k * this many candidates unless mmr_prefetch_k"
    )

    _store: PgVectorStore = PrivateAttr()

    def __init__(
        self,
        store: PgVectorStore | StoreConfig | Mapping[str, Any] | None = None,
        /,
        *,
        mmr_prefetch_factor: int = 4,
        pool: asyncpg.Pool | None = None,
        **options: Any,
    ) -> None:
        if isinstance(store, PgVectorStore):
            if options or pool is not None:
                raise InvalidInputError(
                    f"options {sorted(options)} cannot be combined with an existing PgVectorStore; set them on that "
                    "store"
                )
            core = store
        elif store is None or isinstance(store, StoreConfig | Mapping):
            core = PgVectorStore(StoreConfig.build(store, defaults=ADAPTER_DEFAULTS, **options), pool=pool)
        else:
            raise InvalidInputError(
                f"PgVecStore takes a PgVectorStore, a StoreConfig, a dict of options or keyword options, "
                f"got {type(store).__name__}"
            )
        super().__init__(mmr_prefetch_factor=mmr_prefetch_factor)  # type: ignore[call-arg]  # a pydantic field
        self._store = core

    @classmethod
    def class_name(cls) -> str:
        return "PgVecStore"

    @classmethod
    def from_params(cls, dimensions: int, connection_string: str | None = None, **options: Any) -> PgVecStore:
        """A store from the core's options (see `pgvecstore.StoreConfig`); ids default to text."""
        return cls(dimensions=dimensions, connection_string=connection_string, **options)

    @property
    def client(self) -> PgVectorStore:
        """The core `PgVectorStore` this adapter writes to and reads from."""
        return self._store

    # -- writes --------------------------------------------------------------------------------------------
    async def async_add(self, nodes: Sequence[BaseNode], **kwargs: Any) -> list[str]:
        """Insert or replace nodes (by node id) with their embeddings, in one transaction; returns the node ids."""
        if not nodes:
            return []
        rows = nodes_to_rows(nodes)
        await self._store.add_vectors(
            rows.vectors, rows.ids, rows.metadata,
            contents=rows.contents, document_ids=rows.document_ids, chunk_indexes=rows.chunk_indexes,
        )
        return [node.node_id for node in nodes]

    def add(self, nodes: Sequence[BaseNode], **kwargs: Any) -> list[str]:
        """Insert or replace nodes (by node id) with their embeddings, in one transaction; returns the node ids."""
        return run_sync(self.async_add(nodes, **kwargs))

    async def adelete(self, ref_doc_id: str, **delete_kwargs: Any) -> None:
        """Delete every node of the document `ref_doc_id` (a non-empty string; None is refused, since it would
        name the nodes that have no document)."""
        if not isinstance(ref_doc_id, str) or not ref_doc_id:
            raise InvalidInputError(
                f"delete needs ref_doc_id, the id of a source document, got {ref_doc_id!r}; use "
                "delete_nodes(node_ids=[...]) for nodes by id, or clear() for every node"
            )
        await self._store.delete({"document_id": ref_doc_id})

    def delete(self, ref_doc_id: str, **delete_kwargs: Any) -> None:
        """Delete every node of the document `ref_doc_id` (see `adelete`)."""
        run_sync(self.adelete(ref_doc_id, **delete_kwargs))

    async def adelete_nodes(
        self, node_ids: list[str] | None = None, filters: MetadataFilters | None = None, **delete_kwargs: Any
    ) -> None:
        """Delete nodes by id, by metadata filters, or both (nodes matching both). As in LlamaIndex's other
        stores, neither ids nor filters (or an empty id list, or filters with no condition) deletes nothing;
        `clear` deletes every node."""
        if node_ids is not None and not node_ids:
            return
        where = metadata_filters_to_dict(filters)
        if where is None:
            if node_ids is not None:
                await self._store.delete_vectors(list(node_ids))
            return
        if node_ids is not None:
            where = and_filters([in_filter("id", node_ids), where])
        await self._store.delete(where)

    def delete_nodes(
        self, node_ids: list[str] | None = None, filters: MetadataFilters | None = None, **delete_kwargs: Any
    ) -> None:
        """Delete nodes by id, by metadata filters, or both (nodes matching both)."""
        run_sync(self.adelete_nodes(node_ids, filters, **delete_kwargs))

    async def aclear(self) -> None:
        """Delete every node of this store (only its domain's when the core store has a domain_id)."""
        await self._store.clear()

    def clear(self) -> None:
        """Delete every node of this store (only its domain's when the core store has a domain_id)."""
        run_sync(self.aclear())

    # -- reads ---------------------------------------------------------------------------------------------
    async def aget_nodes(
        self, node_ids: list[str] | None = None, filters: MetadataFilters | None = None
    ) -> list[BaseNode]:
        """Nodes (with their stored embeddings) by id, in the order given, and/or by filters; with neither, all
        nodes. Ids not found are skipped. Otherwise ordered by document and chunk index. One query."""
        if node_ids is not None and not node_ids:
            return []
        rows = await self._store.get(node_ids, metadata_filters_to_dict(filters), include_vectors=True)
        if node_ids is not None:  # in the order asked (the store's ids are canonical, as it writes them)
            id_type = self._store.config.id_type
            rank = {normalize_id(node_id, id_type): r for r, node_id in reversed(list(enumerate(node_ids)))}
            rows.sort(key=lambda row: rank[row.id])
        return [row_to_node(r.id, r.metadata, r.content, r.document_id, r.vector) for r in rows]

    def get_nodes(self, node_ids: list[str] | None = None, filters: MetadataFilters | None = None) -> list[BaseNode]:
        """Nodes (with their stored embeddings) by id, in the order given, and/or by filters (see `aget_nodes`)."""
        return run_sync(self.aget_nodes(node_ids, filters))

    async def aquery(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        """Nodes for a query, restricted by filters, doc_ids and node_ids (empty lists restrict nothing, as in
        LlamaIndex's own retriever).

        Modes: DEFAULT and MMR search ``query.query_embedding`` (MMR: ``query.mmr_threshold`` or keyword
        ``mmr_threshold``; candidates ``mmr_prefetch_k`` or ``similarity_top_k * mmr_prefetch_factor``).
        TEXT_SEARCH and SPARSE are the core's full-text search for ``query.query_str``; HYBRID runs both sides in
        one SQL statement and fuses them. Keyword ``search_params`` (``ef_search``, ``probes``) tunes the index
        scan. Similarities are the core's scores.
        """
        if query.mode not in SUPPORTED_MODES:
            raise NotImplementedError(
                f"query mode {query.mode.value!r} is not supported; use 'default', 'mmr', 'hybrid', 'text_search' "
                "or 'sparse'"
            )
        if query.mode in TEXT_MODES or query.mode == VectorStoreQueryMode.HYBRID:
            return await text_query(self._store, query, kwargs)
        return await vector_query(self._store, query, kwargs, self.mmr_prefetch_factor)

    def query(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        """Nearest nodes to ``query.query_embedding``, restricted by filters, doc_ids and node_ids (see `aquery`)."""
        return run_sync(self.aquery(query, **kwargs))

    # -- life cycle ----------------------------------------------------------------------------------------
    async def aclose(self) -> None:
        """Close the core store's connection pools (the store cannot be used afterwards)."""
        await self._store.close()

    def close(self) -> None:
        """Close the core store's connection pools; works inside a running event loop too (Jupyter)."""
        close_blocking(self._store)
