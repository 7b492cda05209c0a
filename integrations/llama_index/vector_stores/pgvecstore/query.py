"""A LlamaIndex `VectorStoreQuery` answered by the core's search: the modes, their options, the results."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from llama_index.core.indices.query.embedding_utils import get_top_k_mmr_embeddings
from llama_index.core.vector_stores.types import VectorStoreQuery, VectorStoreQueryMode, VectorStoreQueryResult

from llama_index.vector_stores.pgvecstore.filters import and_filters, in_filter, metadata_filters_to_dict
from llama_index.vector_stores.pgvecstore.nodes import row_to_node
from pgvecstore import InvalidInputError, PgVectorStore, SearchResult

# Modes served by the core's full-text search: the keyword side alone, or fused with the vector side.
TEXT_MODES = {VectorStoreQueryMode.TEXT_SEARCH, VectorStoreQueryMode.SPARSE}
SUPPORTED_MODES = (VectorStoreQueryMode.DEFAULT, VectorStoreQueryMode.MMR, VectorStoreQueryMode.HYBRID, *TEXT_MODES)


def core_filter(query: VectorStoreQuery) -> dict[str, Any] | None:
    """The core filter of a query's filters, doc_ids and node_ids (empty lists restrict nothing: VectorStoreIndex's
    retriever passes node_ids=[] by default)."""
    return and_filters(
        [
            metadata_filters_to_dict(query.filters),
            in_filter("document_id", query.doc_ids) if query.doc_ids else None,
            in_filter("id", query.node_ids) if query.node_ids else None,
        ]
    )


def query_result(results: Sequence[SearchResult]) -> VectorStoreQueryResult:
    """LlamaIndex's result of core search results: nodes rebuilt from their rows, their scores and ids."""
    return VectorStoreQueryResult(
        nodes=[row_to_node(r.id, r.metadata, r.content, r.document_id) for r in results],
        similarities=[r.score for r in results],
        ids=[r.id for r in results],
    )


def _count(name: str, value: object) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise InvalidInputError(f"{name} must be a non-negative integer, got {value!r}")


async def vector_query(
    store: PgVectorStore, query: VectorStoreQuery, kwargs: Mapping[str, Any], prefetch_factor: int
) -> VectorStoreQueryResult:
    """DEFAULT and MMR: the nearest nodes to ``query.query_embedding`` (MMR: re-ranked among more candidates,
    fetched with their vectors in the same statement)."""
    if query.query_embedding is None:
        raise InvalidInputError(
            "VectorStoreQuery.query_embedding is required: PgVecStore searches by vector "
            "(give the index or retriever an embed_model)"
        )
    top_k = query.similarity_top_k
    _count("similarity_top_k", top_k)
    if not top_k:
        return query_result([])
    mmr = query.mode == VectorStoreQueryMode.MMR
    k = top_k
    if mmr:
        k = max(int(kwargs.get("mmr_prefetch_k") or top_k * kwargs.get("mmr_prefetch_factor", prefetch_factor)), top_k)
    results = await store.search(query.query_embedding, k=k, filter=core_filter(query),
                                 search_params=kwargs.get("search_params"), include_vectors=mmr)
    if mmr and results:
        threshold = query.mmr_threshold if query.mmr_threshold is not None else kwargs.get("mmr_threshold")
        _scores, chosen = get_top_k_mmr_embeddings(
            list(query.query_embedding),
            [np.asarray(r.vector, dtype=np.float64).tolist() for r in results],
            similarity_top_k=top_k,
            embedding_ids=[r.id for r in results],
            mmr_threshold=threshold,
        )
        by_id = {r.id: r for r in results}
        results = [by_id[row_id] for row_id in chosen]
    return query_result(results)


async def text_query(
    store: PgVectorStore, query: VectorStoreQuery, kwargs: Mapping[str, Any]
) -> VectorStoreQueryResult:
    """TEXT_SEARCH / SPARSE: the keyword side alone. HYBRID: vector and keyword sides fused.

    HYBRID honours LlamaIndex's fields: ``alpha`` (the vector weight of a weighted fusion; None: the core's
    default, 0.5; the keyword ``rrf_k`` asks for reciprocal rank fusion instead), ``sparse_top_k`` (keyword
    candidates) and ``hybrid_top_k`` (nodes returned). With
    ``hybrid_top_k``, ``similarity_top_k`` is the number of vector candidates; without it, it is the number of
    nodes returned and each side contributes the core's default ``max(k, 40)`` candidates.
    """
    mode = query.mode
    if not isinstance(query.query_str, str):
        raise InvalidInputError(
            f"VectorStoreQuery.query_str is required in mode {mode.value!r}: it is the text searched by keyword"
        )
    for name in ("similarity_top_k", "sparse_top_k", "hybrid_top_k"):
        _count(name, getattr(query, name))
    where = core_filter(query)
    if mode in TEXT_MODES:
        k = query.sparse_top_k or query.similarity_top_k
        if not k:
            return query_result([])
        return query_result(await store.search(k=k, filter=where, mode="text", query_text=query.query_str))
    if query.query_embedding is None:
        raise InvalidInputError(
            "VectorStoreQuery.query_embedding is required in mode 'hybrid' (give the index or retriever an "
            "embed_model)"
        )
    if query.hybrid_top_k is not None:
        k, vector_k = query.hybrid_top_k, query.similarity_top_k or None
    else:
        k, vector_k = query.similarity_top_k, None
    if not k:
        return query_result([])
    options: dict[str, Any] = {"vector_k": vector_k, "text_k": query.sparse_top_k or None, "alpha": query.alpha}
    if "rrf_k" in kwargs:
        options["rrf_k"] = kwargs["rrf_k"]
    results = await store.search(query.query_embedding, k=k, filter=where, mode="hybrid", query_text=query.query_str,
                                 search_params=kwargs.get("search_params"), **options)
    return query_result(results)
