"""`PgVecStore`: a LlamaIndex vector store over pgvecstore's async core, holding no SQL of its own."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.indices.query.embedding_utils import get_top_k_mmr_embeddings
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
from pgvecstore.config import StoreConfig
from pgvecstore.store import PgVectorStore, SearchResult
from pgvecstore.sync import run_sync

# Modes served by the core's full-text search: the keyword side alone, or fused with the vector side.
_TEXT_MODES = {VectorStoreQueryMode.TEXT_SEARCH, VectorStoreQueryMode.SPARSE}


DEFAULT_TABLE = "llamaindex_embeddings"


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
        **options: Any,
    ) -> None:
        if isinstance(store, PgVectorStore):
            if options:
                raise ValueError(
                    f"options {sorted(options)} cannot be combined with an existing PgVectorStore; "
                    "set them on that store"
                )
            core = store
        elif isinstance(store, StoreConfig):
            core = PgVectorStore(store, **options)
        elif store is None or isinstance(store, Mapping):
            # Text ids, and a default table of its own so it never collides with a core store's uuid-id table.
            merged = {"id_type": "text", "table_name": DEFAULT_TABLE, **dict(store or {}), **options}
            core = PgVectorStore(merged)
        else:
            raise ValueError(
                f"PgVecStore takes a PgVectorStore, a StoreConfig, a dict of options or keyword options, "
                f"got {type(store).__name__}"
            )
        super().__init__(mmr_prefetch_factor=mmr_prefetch_factor)
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
            rows.vectors,
            rows.ids,
            rows.metadata,
            contents=rows.contents,
            document_ids=rows.document_ids,
            chunk_indexes=rows.chunk_indexes,
        )
        return [node.node_id for node in nodes]

    def add(self, nodes: Sequence[BaseNode], **kwargs: Any) -> list[str]:
        """Insert or replace nodes (by node id) with their embeddings, in one transaction; returns the node ids."""
        return run_sync(self.async_add(nodes, **kwargs))

    async def adelete(self, ref_doc_id: str, **delete_kwargs: Any) -> None:
        """Delete every node of the document `ref_doc_id`."""
        await self._store.delete({"document_id": ref_doc_id})

    def delete(self, ref_doc_id: str, **delete_kwargs: Any) -> None:
        """Delete every node of the document `ref_doc_id`."""
        run_sync(self.adelete(ref_doc_id, **delete_kwargs))

    async def adelete_nodes(
        self,
        node_ids: list[str] | None = None,
        filters: MetadataFilters | None = None,
        **delete_kwargs: Any,
    ) -> None:
        """Delete nodes by id, by metadata filters, or both (nodes matching both)."""
        if node_ids is None and filters is None:
            raise ValueError("delete_nodes needs node_ids or filters; use clear() to delete every node")
        if node_ids is not None and not node_ids:
            return
        core_filter = metadata_filters_to_dict(filters)
        if core_filter is None:
            if node_ids is None:
                raise ValueError("delete_nodes: the filters restrict nothing; use clear() to delete every node")
            await self._store.delete_vectors(list(node_ids))
            return
        if node_ids is not None:
            core_filter = and_filters([in_filter("id", node_ids), core_filter])
        await self._store.delete(core_filter)

    def delete_nodes(
        self,
        node_ids: list[str] | None = None,
        filters: MetadataFilters | None = None,
        **delete_kwargs: Any,
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
        self,
        node_ids: list[str] | None = None,
        filters: MetadataFilters | None = None,
    ) -> list[BaseNode]:
        """Nodes (with their stored embeddings) by id, in the order given, and/or by filters; with neither, all
        nodes. Ids not found are skipped. Filtered results are ordered by document and chunk index."""
        if node_ids is not None and not node_ids:
            return []
        core_filter = metadata_filters_to_dict(filters)
        if core_filter is None and node_ids is not None:
            found = await self._store.get_vectors(list(node_ids))
            pairs = zip(node_ids, found, strict=True)
            return [row_to_node(i, meta, vec) for i, (vec, meta) in pairs if meta is not None]
        if node_ids is not None:
            core_filter = and_filters([in_filter("id", node_ids), core_filter])
        ids = await self._matching_ids(core_filter)
        found = await self._store.get_vectors(ids)
        nodes = [(i, vec, meta) for i, (vec, meta) in zip(ids, found, strict=True) if meta is not None]
        if node_ids is not None:
            rank = {node_id: r for r, node_id in enumerate(node_ids)}
            nodes.sort(key=lambda item: rank.get(item[0], len(rank)))
        else:
            nodes.sort(key=lambda item: _document_order(item[0], item[2]))
        return [row_to_node(i, meta, vec) for i, vec, meta in nodes]

    def get_nodes(
        self,
        node_ids: list[str] | None = None,
        filters: MetadataFilters | None = None,
    ) -> list[BaseNode]:
        """Nodes (with their stored embeddings) by id, in the order given, and/or by filters; with neither, all
        nodes. Ids not found are skipped. Filtered results are ordered by document and chunk index."""
        return run_sync(self.aget_nodes(node_ids, filters))

    async def _matching_ids(self, core_filter: dict[str, Any] | None) -> list[str]:
        """Ids of every row matching `core_filter`.

        The core has no plain filtered scan yet, so this runs a search with k = the matching row count; an index
        scan could return fewer rows, which is detected and reported rather than returned as a partial answer.
        """
        expected = await self._store.count(core_filter)
        if expected == 0:
            return []
        probe = np.zeros(self._store.config.dimensions, dtype=np.float32)
        probe[0] = 1.0
        results = await self._store.search(probe, k=expected, filter=core_filter, include_metadata=False)
        if len(results) < expected and await self._store.count(core_filter) > len(results):
            raise RuntimeError(
                f"get_nodes: {expected} rows match but the vector index returned {len(results)}; "
                "drop the index (client.drop_index()) or pass node_ids"
            )
        return [row_id for row_id, _score, _meta in results]

    async def aquery(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        """Nodes for a query, restricted by filters, doc_ids and node_ids (empty lists restrict nothing, as in
        LlamaIndex's own retriever).

        Modes: DEFAULT and MMR search ``query.query_embedding`` (MMR: ``query.mmr_threshold`` or keyword
        ``mmr_threshold``, which is how a retriever's ``vector_store_kwargs`` arrive; candidates: ``mmr_prefetch_k``
        or ``similarity_top_k * mmr_prefetch_factor``). TEXT_SEARCH and SPARSE are the core's full-text search
        for ``query.query_str`` (``sparse_top_k`` nodes, else ``similarity_top_k``). HYBRID runs both sides in
        one SQL statement and fuses them (see `_atext_query`). Keyword ``search_params`` (``ef_search``, ``probes``)
        tunes the index scan. Similarities are the core's scores: cosine similarity for the cosine metric in
        DEFAULT and MMR, the text rank in TEXT_SEARCH/SPARSE, the fused score in HYBRID.
        """
        mode = query.mode
        supported = (VectorStoreQueryMode.DEFAULT, VectorStoreQueryMode.MMR, VectorStoreQueryMode.HYBRID,
                     *_TEXT_MODES)
        if mode not in supported:
            raise NotImplementedError(
                f"query mode {mode.value!r} is not supported; use 'default', 'mmr', 'hybrid', 'text_search' or "
                "'sparse'"
            )
        if mode in _TEXT_MODES or mode == VectorStoreQueryMode.HYBRID:
            return await self._atext_query(query, kwargs)
        if query.query_embedding is None:
            raise ValueError(
                "VectorStoreQuery.query_embedding is required: PgVecStore searches by vector "
                "(give the index or retriever an embed_model)"
            )
        top_k = query.similarity_top_k
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 0:
            raise ValueError(f"similarity_top_k must be a non-negative integer, got {top_k!r}")
        if top_k == 0:
            return _query_result([])
        core_filter = self._core_filter(query)
        search_params = kwargs.get("search_params")
        if mode == VectorStoreQueryMode.MMR:
            prefetch_k = kwargs.get("mmr_prefetch_k") or top_k * kwargs.get(
                "mmr_prefetch_factor", self.mmr_prefetch_factor
            )
            k = max(int(prefetch_k), top_k)
        else:
            k = top_k
        results = await self._store.search(
            query.query_embedding, k=k, filter=core_filter, search_params=search_params
        )
        if mode == VectorStoreQueryMode.MMR and results:
            threshold = query.mmr_threshold if query.mmr_threshold is not None else kwargs.get("mmr_threshold")
            results = await self._mmr(list(query.query_embedding), results, top_k, threshold)
        return _query_result(results)

    async def _atext_query(self, query: VectorStoreQuery, kwargs: Mapping[str, Any]) -> VectorStoreQueryResult:
        """TEXT_SEARCH / SPARSE: the keyword side alone. HYBRID: vector and keyword sides fused.

        HYBRID honours LlamaIndex's fields: ``alpha`` (the vector weight; None: reciprocal rank fusion, keyword
        ``rrf_k``, default 60), ``sparse_top_k`` (keyword candidates) and ``hybrid_top_k`` (nodes returned). With
        ``hybrid_top_k``, ``similarity_top_k`` is the number of vector candidates; without it, it is the number
        of nodes returned and each side contributes the core's default ``max(k, 40)`` candidates.
        """
        mode = query.mode
        if not isinstance(query.query_str, str):
            raise ValueError(
                f"VectorStoreQuery.query_str is required in mode {mode.value!r}: it is the text searched by keyword"
            )
        for name in ("similarity_top_k", "sparse_top_k", "hybrid_top_k"):
            value = getattr(query, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
        core_filter = self._core_filter(query)
        if mode in _TEXT_MODES:
            k = query.sparse_top_k or query.similarity_top_k
            if not k:
                return _query_result([])
            results = await self._store.search(k=k, filter=core_filter, mode="text", query_text=query.query_str)
        else:
            if query.query_embedding is None:
                raise ValueError(
                    "VectorStoreQuery.query_embedding is required in mode 'hybrid' (give the index or retriever an "
                    "embed_model)"
                )
            if query.hybrid_top_k is not None:
                k, vector_k = query.hybrid_top_k, query.similarity_top_k or None
            else:
                k, vector_k = query.similarity_top_k, None
            if not k:
                return _query_result([])
            options: dict[str, Any] = {"vector_k": vector_k, "text_k": query.sparse_top_k or None, "alpha": query.alpha}
            if "rrf_k" in kwargs:
                options["rrf_k"] = kwargs["rrf_k"]
            results = await self._store.search(
                query.query_embedding, k=k, filter=core_filter, mode="hybrid", query_text=query.query_str,
                search_params=kwargs.get("search_params"), **options,
            )
        return _query_result(results)

    @staticmethod
    def _core_filter(query: VectorStoreQuery) -> dict[str, Any] | None:
        """The core filter of a query's filters, doc_ids and node_ids (empty lists restrict nothing:
        VectorStoreIndex's retriever passes node_ids=[] by default)."""
        return and_filters(
            [
                metadata_filters_to_dict(query.filters),
                in_filter("document_id", query.doc_ids) if query.doc_ids else None,
                in_filter("id", query.node_ids) if query.node_ids else None,
            ]
        )

    def query(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        """Nearest nodes to ``query.query_embedding``, restricted by filters, doc_ids and node_ids (see `aquery`)."""
        return run_sync(self.aquery(query, **kwargs))

    async def _mmr(
        self,
        query_embedding: list[float],
        results: list[tuple[str, float, dict[str, Any] | None]],
        top_k: int,
        threshold: float | None,
    ) -> list[tuple[str, float, dict[str, Any] | None]]:
        """Re-rank candidates by maximal marginal relevance over their stored vectors; keeps `top_k`."""
        ids = [row_id for row_id, _score, _meta in results]
        vectors = await self._store.get_vectors(ids, include_metadata=False)
        present = [(row_id, vec) for row_id, (vec, _meta) in zip(ids, vectors, strict=True) if vec is not None]
        if not present:
            return []
        _scores, chosen = get_top_k_mmr_embeddings(
            query_embedding,
            [np.asarray(vec, dtype=np.float64).tolist() for _id, vec in present],
            similarity_top_k=top_k,
            embedding_ids=[row_id for row_id, _vec in present],
            mmr_threshold=threshold,
        )
        by_id = {row[0]: row for row in results}
        return [by_id[row_id] for row_id in chosen]

    # -- life cycle ----------------------------------------------------------------------------------------
    async def aclose(self) -> None:
        """Close the core store's connection pools (the store cannot be used afterwards)."""
        await self._store.close()

    def close(self) -> None:
        """Close the core store's connection pools (the store cannot be used afterwards).

        Inside a running event loop use ``await aclose()``: closing that loop's pool needs the loop, which this
        blocking call would hold.
        """
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            run_sync(self._store.close())
            return
        raise RuntimeError("PgVecStore.close() was called inside a running event loop; use 'await store.aclose()'")


def _document_order(row_id: str, meta: Mapping[str, Any] | None) -> tuple[Any, ...]:
    meta = meta or {}
    document_id, chunk = meta.get("document_id"), meta.get("chunk_index")
    return (document_id is None, document_id or "", chunk is None, chunk if chunk is not None else 0, row_id)


def _query_result(results: Sequence[SearchResult]) -> VectorStoreQueryResult:
    """LlamaIndex's result of core search results: nodes rebuilt from their rows, their scores and ids."""
    return VectorStoreQueryResult(
        nodes=[row_to_node(row_id, meta) for row_id, _score, meta in results],
        similarities=[score for _id, score, _meta in results],
        ids=[row_id for row_id, _score, _meta in results],
    )
