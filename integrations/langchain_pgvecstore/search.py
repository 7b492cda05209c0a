"""The search half of the LangChain `PgVecStore`: similarity, hybrid and maximal-marginal-relevance search."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

import numpy as np
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.vectorstores import VectorStore
from langchain_core.vectorstores.utils import maximal_marginal_relevance

from langchain_pgvecstore.mapping import HYBRID_OPTIONS, RELEVANCE, check_kwargs, check_mmr, to_document
from langchain_pgvecstore.retriever import PgVecStoreRetriever
from pgvecstore import Metric, PgVectorStore, SearchResult
from pgvecstore.sync import run_sync


class SearchMixin:
    """Similarity, hybrid and MMR search of `PgVecStore` (sync methods run the async ones on the core's
    background loop; async methods run on the caller's loop)."""

    embedding: Embeddings

    def _core(self, dimensions: int) -> PgVectorStore:
        raise NotImplementedError

    @property
    def metric(self) -> str:
        raise NotImplementedError

    async def _asearch(self, embedding: Sequence[float], k: int, kwargs: Mapping[str, Any],
                       query_text: str | None = None, *, vectors: bool = False) -> list[SearchResult]:
        """The core's search by vector; with `query_text`, its hybrid search (fusion options from `kwargs`)."""
        store = self._core(len(embedding))
        hybrid: dict[str, Any] = {}
        if query_text is not None:
            hybrid = {key: kwargs[key] for key in ("rrf_k", "alpha", "vector_k", "text_k") if key in kwargs}
            hybrid.update(mode="hybrid", query_text=query_text)
        return await store.search(embedding, k=k, filter=kwargs.get("filter"),
                                  search_params=kwargs.get("search_params"), include_vectors=vectors, **hybrid)

    @staticmethod
    def _with_scores(hits: list[SearchResult]) -> list[tuple[Document, float]]:
        return [(to_document(hit), float(hit.score)) for hit in hits]

    # -- similarity ----------------------------------------------------------------------------------------
    def similarity_search_with_score_by_vector(
        self, embedding: list[float], k: int = 4, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        """The `k` nearest Documents to `embedding` with the core's similarity score (higher is closer)."""
        check_kwargs("similarity_search_with_score_by_vector", kwargs)
        return self._with_scores(run_sync(self._asearch(embedding, k, kwargs)))

    async def asimilarity_search_with_score_by_vector(
        self, embedding: list[float], k: int = 4, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        """Async `similarity_search_with_score_by_vector`, on the caller's event loop."""
        check_kwargs("asimilarity_search_with_score_by_vector", kwargs)
        return self._with_scores(await self._asearch(embedding, k, kwargs))

    def similarity_search_with_score(self, query: str, k: int = 4, **kwargs: Any) -> list[tuple[Document, float]]:
        """The `k` nearest Documents to `query` with similarity scores: cosine ``1 - distance``, euclidean
        ``1 / (1 + distance)``, inner product the raw product (higher is closer). ``filter=`` narrows the rows."""
        check_kwargs("similarity_search_with_score", kwargs)
        return self._with_scores(run_sync(self._asearch(self.embedding.embed_query(query), k, kwargs)))

    async def asimilarity_search_with_score(
        self, query: str, k: int = 4, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        """Async `similarity_search_with_score`, on the caller's event loop."""
        check_kwargs("asimilarity_search_with_score", kwargs)
        return self._with_scores(await self._asearch(await self.embedding.aembed_query(query), k, kwargs))

    def similarity_search(self, query: str, k: int = 4, **kwargs: Any) -> list[Document]:
        """The `k` Documents nearest to `query`, best first; ``filter=`` narrows the rows."""
        return [doc for doc, _ in self.similarity_search_with_score(query, k, **kwargs)]

    async def asimilarity_search(self, query: str, k: int = 4, **kwargs: Any) -> list[Document]:
        """Async `similarity_search`, on the caller's event loop."""
        return [doc for doc, _ in await self.asimilarity_search_with_score(query, k, **kwargs)]

    def similarity_search_by_vector(self, embedding: list[float], k: int = 4, **kwargs: Any) -> list[Document]:
        """The `k` Documents nearest to a query vector, best first."""
        return [doc for doc, _ in self.similarity_search_with_score_by_vector(embedding, k, **kwargs)]

    async def asimilarity_search_by_vector(self, embedding: list[float], k: int = 4, **kwargs: Any) -> list[Document]:
        """Async `similarity_search_by_vector`, on the caller's event loop."""
        return [doc for doc, _ in await self.asimilarity_search_with_score_by_vector(embedding, k, **kwargs)]

    def _select_relevance_score_fn(self) -> Callable[[float], float]:
        """Relevance in [0, 1] for this store's metric: cosine and inner product (1 + s) / 2 (right for normalised
        vectors), euclidean 1 / (1 + d) as is; clamped to [0, 1]."""
        return RELEVANCE[Metric(self.metric)]

    # -- hybrid --------------------------------------------------------------------------------------------
    def hybrid_search_with_score(self, query: str, k: int = 4, **kwargs: Any) -> list[tuple[Document, float]]:
        """The `k` best Documents for `query` by vector similarity and full-text search fused in one SQL statement,
        with the fused score. Options: ``filter``, ``alpha`` (the vector weight of the weighted fusion, 0.5 by
        default) or ``rrf_k`` (reciprocal rank fusion instead), ``vector_k`` / ``text_k``, ``search_params``. See
        docs/hybrid.md."""
        check_kwargs("hybrid_search_with_score", kwargs, HYBRID_OPTIONS)
        embedding = self.embedding.embed_query(query)
        return self._with_scores(run_sync(self._asearch(embedding, k, kwargs, query)))

    async def ahybrid_search_with_score(self, query: str, k: int = 4, **kwargs: Any) -> list[tuple[Document, float]]:
        """Async `hybrid_search_with_score`, on the caller's event loop."""
        check_kwargs("ahybrid_search_with_score", kwargs, HYBRID_OPTIONS)
        embedding = await self.embedding.aembed_query(query)
        return self._with_scores(await self._asearch(embedding, k, kwargs, query))

    def hybrid_search(self, query: str, k: int = 4, **kwargs: Any) -> list[Document]:
        """The `k` best Documents for `query` by vector and full-text search fused; also
        ``as_retriever(search_type="hybrid")``."""
        return [doc for doc, _ in self.hybrid_search_with_score(query, k, **kwargs)]

    async def ahybrid_search(self, query: str, k: int = 4, **kwargs: Any) -> list[Document]:
        """Async `hybrid_search`, on the caller's event loop."""
        return [doc for doc, _ in await self.ahybrid_search_with_score(query, k, **kwargs)]

    def as_retriever(self, **kwargs: Any) -> PgVecStoreRetriever:
        """A retriever over this store: ``search_type`` "similarity" (default), "similarity_score_threshold",
        "mmr" or "hybrid"; ``search_kwargs`` go to the search method (``k``, ``filter``, ``alpha``, ...)."""
        tags = kwargs.pop("tags", None) or [*self._get_retriever_tags()]  # type: ignore[attr-defined]
        return PgVecStoreRetriever(vectorstore=cast(VectorStore, self), tags=tags, **kwargs)

    # -- maximal marginal relevance ------------------------------------------------------------------------
    async def _ammr(
        self, embedding: Sequence[float], k: int, fetch_k: int, lambda_mult: float, kwargs: Mapping[str, Any]
    ) -> list[Document]:
        """Fetch `fetch_k` candidates with their vectors (one statement), then pick `k` by MMR."""
        check_mmr(fetch_k, lambda_mult)
        hits = await self._asearch(embedding, max(k, fetch_k), kwargs, vectors=True)
        if not hits:
            return []
        chosen = maximal_marginal_relevance(
            np.asarray(embedding, dtype=np.float32),
            cast(Any, np.stack([cast(np.ndarray, hit.vector) for hit in hits])),  # LangChain takes an array too
            lambda_mult=float(lambda_mult),
            k=k,
        )
        return [to_document(hits[i]) for i in chosen]

    def max_marginal_relevance_search_by_vector(
        self, embedding: list[float], k: int = 4, fetch_k: int = 20, lambda_mult: float = 0.5, **kwargs: Any
    ) -> list[Document]:
        """`k` Documents relevant to `embedding` yet unlike each other, chosen among the `fetch_k` nearest.
        ``lambda_mult`` 1 is pure relevance, 0 pure diversity."""
        check_kwargs("max_marginal_relevance_search_by_vector", kwargs)
        return run_sync(self._ammr(embedding, k, fetch_k, lambda_mult, kwargs))

    async def amax_marginal_relevance_search_by_vector(
        self, embedding: list[float], k: int = 4, fetch_k: int = 20, lambda_mult: float = 0.5, **kwargs: Any
    ) -> list[Document]:
        """Async `max_marginal_relevance_search_by_vector`, on the caller's event loop."""
        check_kwargs("amax_marginal_relevance_search_by_vector", kwargs)
        return await self._ammr(embedding, k, fetch_k, lambda_mult, kwargs)

    def max_marginal_relevance_search(
        self, query: str, k: int = 4, fetch_k: int = 20, lambda_mult: float = 0.5, **kwargs: Any
    ) -> list[Document]:
        """`k` Documents relevant to `query` yet unlike each other, chosen among the `fetch_k` nearest."""
        check_kwargs("max_marginal_relevance_search", kwargs)
        return run_sync(self._ammr(self.embedding.embed_query(query), k, fetch_k, lambda_mult, kwargs))

    async def amax_marginal_relevance_search(
        self, query: str, k: int = 4, fetch_k: int = 20, lambda_mult: float = 0.5, **kwargs: Any
    ) -> list[Document]:
        """Async `max_marginal_relevance_search`, on the caller's event loop."""
        check_kwargs("amax_marginal_relevance_search", kwargs)
        embedding = await self.embedding.aembed_query(query)
        return await self._ammr(embedding, k, fetch_k, lambda_mult, kwargs)
