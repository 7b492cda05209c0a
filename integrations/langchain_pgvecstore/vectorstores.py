"""`PgVecStore`: a LangChain `VectorStore` over pgvecstore's async core, holding no SQL of its own.

Sync methods run the core on pgvecstore's one background event-loop thread (`pgvecstore.sync.run_sync`), so they
work in plain scripts, inside a running loop (Jupyter) and from many threads. Async methods await the core on the
caller's own event loop (the core keeps one connection pool per loop), so they are natively async.
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any, ClassVar, Self

import numpy as np
from langchain_core.callbacks import AsyncCallbackManagerForRetrieverRun, CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.vectorstores import VectorStore, VectorStoreRetriever
from langchain_core.vectorstores.utils import maximal_marginal_relevance

from pgvecstore import PgVectorStore, StoreConfig
from pgvecstore.store import SearchResult
from pgvecstore.sync import run_sync

# Metadata keys that the core keeps in their own columns and adds to the metadata it returns.
_COLUMN_KEYS = ("content", "document_id", "chunk_index")
# Stored in each row's metadata by this adapter: the user's own values of the column keys (often empty), so the
# original metadata comes back exactly, with its types, and the column values the adapter derived do not leak in.
RESERVED_KEY = "_lc_columns"
_SPECIAL_KEYS = frozenset((*_COLUMN_KEYS, RESERVED_KEY))
_is_str = str.__instancecheck__
_SEARCH_OPTIONS = ("filter", "search_params")
# Options of hybrid_search beyond those of similarity search: the core's fusion settings.
_HYBRID_OPTIONS = (*_SEARCH_OPTIONS, "rrf_k", "alpha", "vector_k", "text_k")
_PROBE_TEXT = "pgvecstore dimension probe"
_MAX_DOCUMENT_ID = 255


def _clamp(value: float) -> float:
    return min(1.0, max(0.0, value))


def _cosine_relevance(score: float) -> float:
    """Cosine similarity in [-1, 1] to relevance in [0, 1] (orthogonal is 0.5)."""
    return _clamp((1.0 + score) / 2.0)


def _euclidean_relevance(score: float) -> float:
    """The core's euclidean score 1 / (1 + distance) is already in (0, 1]."""
    return _clamp(score)


def _inner_product_relevance(score: float) -> float:
    """Inner product of normalised vectors in [-1, 1] to [0, 1]; other vectors are clamped."""
    return _clamp((1.0 + score) / 2.0)


_RELEVANCE = {
    "cosine": _cosine_relevance,
    "euclidean": _euclidean_relevance,
    "inner_product": _inner_product_relevance,
}


def _document_id_of(metadata: Mapping[str, Any]) -> Any:
    """The document a chunk belongs to: metadata ``document_id``, else ``source`` (when it fits the column)."""
    if "document_id" in metadata and metadata["document_id"] is not None:
        value = metadata["document_id"]
        # An explicit document_id that does not fit is passed on so the core names the problem.
        return value if isinstance(value, bool) or not isinstance(value, int) else str(value)
    source = metadata.get("source")
    if isinstance(source, bool) or not isinstance(source, str | int):
        return None
    text = str(source)
    # A long URL as source must not make the add fail: it simply gets no document_id column.
    if not text or len(text) > _MAX_DOCUMENT_ID or "\x00" in text:
        return None
    return text


def _is_number(value: object) -> bool:
    return (
        not isinstance(value, bool)
        and isinstance(value, int | float | np.integer | np.floating)
        and math.isfinite(float(value))
    )


def _chunk_indexes(metadatas: Sequence[Mapping[str, Any]], document_ids: Sequence[str | None]) -> list[int | None]:
    """chunk_index per row: metadata ``chunk_index`` when it is an integer; otherwise, within each document of this
    call, the order of ``start_index`` (rows without one after those with one), else the position in the call."""
    result: list[int | None] = [None] * len(metadatas)
    pending: dict[str, list[int]] = {}
    for position, (meta, doc) in enumerate(zip(metadatas, document_ids, strict=True)):
        explicit = meta.get("chunk_index")
        if explicit is not None and not isinstance(explicit, bool) and isinstance(explicit, int | np.integer):
            result[position] = int(explicit)
        elif isinstance(doc, str):  # an unusable explicit document_id is left to the core, which names it
            pending.setdefault(doc, []).append(position)

    def order(position: int) -> tuple[int, float, int]:
        start = metadatas[position].get("start_index")
        return (0, float(start), position) if _is_number(start) else (1, 0.0, position)

    sortable = bool(pending) and any("start_index" in meta for meta in metadatas)
    for positions in pending.values():
        # Positions are in call order already: sort only a document whose rows carry a start_index.
        if sortable and any(_is_number(metadatas[p].get("start_index")) for p in positions):
            positions = sorted(positions, key=order)
        for rank, position in enumerate(positions):
            result[position] = rank
    return result


def _check_kwargs(method: str, kwargs: Mapping[str, Any], allowed: Sequence[str] = _SEARCH_OPTIONS) -> None:
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise TypeError(
            f"PgVecStore.{method}() got unexpected keyword argument(s) {', '.join(map(repr, unknown))}; "
            f"it accepts {', '.join(allowed)}"
        )


def _check_mmr(k: int, fetch_k: int, lambda_mult: float) -> None:
    if isinstance(fetch_k, bool) or not isinstance(fetch_k, int) or fetch_k < 1:
        raise ValueError(f"fetch_k must be a positive integer, got {fetch_k!r}")
    if isinstance(lambda_mult, bool) or not isinstance(lambda_mult, int | float) or not 0.0 <= lambda_mult <= 1.0:
        raise ValueError(f"lambda_mult must be a number between 0 and 1, got {lambda_mult!r}")


DEFAULT_TABLE = "langchain_embeddings"


class PgVecStore(VectorStore):
    """LangChain vector store on PostgreSQL + pgvector (the embedded server when no connection string is given).

    Build it from an `Embeddings` object plus the core's options (``connection_string``, ``schema``,
    ``table_name``, ``metric``, ``dimensions``, ...; see `pgvecstore.StoreConfig`), or around an existing core
    ``store=PgVectorStore(...)``. Ids are text by default (``id_type="text"``), since LangChain ids are arbitrary
    strings. Without ``dimensions`` the store learns them from the first vector it embeds.

    Mapping: ``page_content`` is the content column; metadata is stored as JSON and comes back exactly as given;
    the ``document_id`` column comes from metadata ``document_id`` (else ``source``), ``chunk_index`` from metadata
    ``chunk_index`` (else ``start_index`` order within the document, else position within the document in the
    call). Filters are the core's filter dicts, passed as ``filter=``.
    """

    def __init__(
        self,
        embedding: Embeddings,
        *,
        store: PgVectorStore | None = None,
        config: StoreConfig | Mapping[str, Any] | None = None,
        **options: Any,
    ) -> None:
        if not isinstance(embedding, Embeddings):
            raise TypeError(f"embedding must be a langchain_core Embeddings object, got {type(embedding).__name__}")
        self.embedding = embedding
        self._lock = threading.Lock()
        self._store: PgVectorStore | None = None
        self._options: dict[str, Any] = {}
        self._closing: asyncio.Task[None] | None = None
        if store is not None:
            if config is not None or options:
                raise ValueError("give either store=PgVectorStore(...) or store options, not both")
            if not isinstance(store, PgVectorStore):
                raise TypeError(f"store must be a pgvecstore.PgVectorStore, got {type(store).__name__}")
            self._store = store
            return
        if isinstance(config, StoreConfig):
            from dataclasses import fields

            merged = {f.name: getattr(config, f.name) for f in fields(config)}
        else:
            merged = dict(config or {})
        merged.update(options)
        merged.setdefault("id_type", "text")
        # Its own default table, so it never collides with a core store's uuid-id table of the same schema.
        merged.setdefault("table_name", DEFAULT_TABLE)
        if merged.get("dimensions") is None:
            merged.pop("dimensions", None)
            # Validate every other option now rather than at the first call (dimensions=1 is a placeholder).
            StoreConfig.from_options({**merged, "dimensions": 1})
            self._options = merged
        else:
            self._store = PgVectorStore(merged)

    def __repr__(self) -> str:
        target = repr(self._store) if self._store is not None else f"pending dimensions, options={self._options!r}"
        return f"PgVecStore({type(self.embedding).__name__}, {target})"

    # -- the core ------------------------------------------------------------------------------------------
    @property
    def embeddings(self) -> Embeddings:
        return self.embedding

    @property
    def store(self) -> PgVectorStore:
        """The core `PgVectorStore` (built now, by embedding a probe text, if its dimensions are still unknown)."""
        if self._store is None:
            return self._core(len(self.embedding.embed_query(_PROBE_TEXT)))
        return self._store

    async def _astore(self) -> PgVectorStore:
        if self._store is None:
            return self._core(len(await self.embedding.aembed_query(_PROBE_TEXT)))
        return self._store

    def _core(self, dimensions: int) -> PgVectorStore:
        """The core store, created on first use with the dimensions of the first vector in hand."""
        if self._store is not None:
            return self._store
        with self._lock:
            if self._store is None:
                self._store = PgVectorStore({**self._options, "dimensions": dimensions})
            return self._store

    @property
    def metric(self) -> str:
        return self._store.config.metric if self._store is not None else str(self._options.get("metric", "cosine"))

    def close(self) -> None:
        """Close the core's connection pools.

        Inside a running event loop (Jupyter) the close is scheduled on that loop instead of waited for: blocking
        there would deadlock on the loop's own pool. ``await aclose()`` waits for it.
        """
        if self._store is None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            run_sync(self._store.close())
            return
        self._closing = loop.create_task(self._store.close())

    async def aclose(self) -> None:
        """Close the core's connection pools from async code."""
        if self._store is not None:
            await self._store.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- mapping -------------------------------------------------------------------------------------------
    @staticmethod
    def _rows(
        texts: Sequence[str], metadatas: Sequence[Mapping[str, Any] | None] | None
    ) -> tuple[list[str], list[dict[str, Any]], list[str | None], list[int | None]]:
        """Contents, metadata to store, document_ids and chunk_indexes for LangChain texts and metadatas."""
        if metadatas is None:
            metas: list[Mapping[str, Any]] = [{} for _ in texts]
        else:
            metas = [m if m is not None else {} for m in metadatas]
            if len(metas) != len(texts):
                raise ValueError(f"metadatas has {len(metas)} entries but there are {len(texts)} texts")
        stored: list[dict[str, Any]]
        if all(map(_is_str, texts)) and all(type(m) is dict and m.keys().isdisjoint(_SPECIAL_KEYS) for m in metas):
            # The common case, checked in one pass: plain dicts without the column keys or the reserved key.
            stored = [{**m, RESERVED_KEY: {}} for m in metas]
        else:
            stored = [PgVecStore._stored_metadata(position, text, meta)
                      for position, (text, meta) in enumerate(zip(texts, metas, strict=True))]
        document_ids = [_document_id_of(meta) for meta in metas]
        return list(texts), stored, document_ids, _chunk_indexes(metas, document_ids)

    @staticmethod
    def _stored_metadata(position: int, text: object, meta: object) -> dict[str, Any]:
        """The metadata stored for one row: its keys but the column keys, plus their own values under
        `RESERVED_KEY` (so they come back exactly); a ValueError names the position of a bad text or metadata."""
        if not isinstance(text, str):
            raise ValueError(f"text at position {position} must be a string, got {type(text).__name__}")
        if not isinstance(meta, Mapping):
            raise ValueError(f"metadata at position {position} must be a dict, got {type(meta).__name__}")
        if RESERVED_KEY in meta:
            raise ValueError(f"metadata at position {position} uses the key {RESERVED_KEY!r}, reserved by "
                             "PgVecStore to restore metadata exactly")
        row = {key: value for key, value in meta.items() if key not in _COLUMN_KEYS}
        row[RESERVED_KEY] = {key: meta[key] for key in _COLUMN_KEYS if key in meta}
        return row

    @staticmethod
    def _document(row_id: str, metadata: Mapping[str, Any] | None) -> Document:
        """A LangChain Document from a core row: its id, content and the metadata it was added with."""
        meta = dict(metadata or {})
        content = meta.pop("content", None)
        reserved = meta.pop(RESERVED_KEY, None)
        if isinstance(reserved, Mapping):
            meta.pop("document_id", None)
            meta.pop("chunk_index", None)
            meta.update(reserved)
        else:
            # A row written without this adapter: show its document columns when they are set.
            for key in ("document_id", "chunk_index"):
                if meta.get(key) is None:
                    meta.pop(key, None)
        return Document(id=row_id, page_content=content or "", metadata=meta)

    def _with_scores(self, hits: list[SearchResult]) -> list[tuple[Document, float]]:
        return [(self._document(row_id, meta), float(score)) for row_id, score, meta in hits]

    # -- writes --------------------------------------------------------------------------------------------
    def _as_vectors(self, texts: list[str], vectors: Sequence[Sequence[float]]) -> Sequence[Sequence[float]]:
        """The embeddings of `texts`, one per text, as given: the core converts lists of floats while it writes
        (overlapping the conversion with the COPY) and names any vector of the wrong dimension."""
        if not isinstance(vectors, list | np.ndarray):
            vectors = list(vectors)
        if len(vectors) != len(texts) or (isinstance(vectors, np.ndarray) and vectors.ndim != 2):
            raise ValueError(
                f"{type(self.embedding).__name__} returned {len(vectors)} vectors for {len(texts)} texts"
            )
        return vectors

    async def _aadd_embedded(
        self,
        texts: list[str],
        vectors: Sequence[Sequence[float]],
        metadatas: Sequence[Mapping[str, Any] | None] | None,
        ids: Sequence[str | None] | None,
    ) -> list[str]:
        contents, stored, document_ids, chunk_indexes = self._rows(texts, metadatas)
        if ids is not None:
            ids = list(ids)
            if len(ids) != len(texts):
                raise ValueError(f"ids has {len(ids)} entries but there are {len(texts)} texts")
        first = vectors[0]
        if isinstance(first, str | bytes) or not hasattr(first, "__len__"):
            raise ValueError(f"{type(self.embedding).__name__} returned {type(first).__name__} values instead of "
                             "vectors (lists of numbers)")
        store = self._core(len(first))
        return await store.add_vectors(
            vectors,
            ids=ids,
            metadata=stored,
            contents=contents,
            document_ids=document_ids,
            chunk_indexes=chunk_indexes,
        )

    def add_texts(
        self,
        texts: Iterable[str],
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        **kwargs: Any,
    ) -> list[str]:
        """Embed `texts` and insert them (an existing id is replaced); returns the ids, generated where missing."""
        if kwargs:
            raise TypeError(f"PgVecStore.add_texts() got unexpected keyword argument(s) {sorted(kwargs)}")
        text_list = list(texts)
        if not text_list:
            return []
        vectors = self._as_vectors(text_list, self.embedding.embed_documents(text_list))
        return run_sync(self._aadd_embedded(text_list, vectors, metadatas, ids))

    async def aadd_texts(
        self,
        texts: Iterable[str],
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        **kwargs: Any,
    ) -> list[str]:
        """Async `add_texts`, on the caller's event loop."""
        if kwargs:
            raise TypeError(f"PgVecStore.aadd_texts() got unexpected keyword argument(s) {sorted(kwargs)}")
        text_list = list(texts)
        if not text_list:
            return []
        vectors = self._as_vectors(text_list, await self.embedding.aembed_documents(text_list))
        return await self._aadd_embedded(text_list, vectors, metadatas, ids)

    @staticmethod
    def _document_ids(documents: Sequence[Document], ids: Sequence[str | None] | None) -> list[str | None] | None:
        """`ids` if given (they win over Document.id), else each Document's own id (None ones are generated)."""
        if ids is not None:
            return list(ids)
        own = [doc.id for doc in documents]
        return own if any(own) else None

    def add_documents(self, documents: list[Document], **kwargs: Any) -> list[str]:
        """Insert Documents, honouring each `Document.id` (a mix of set and unset ids is fine); the originals are
        not modified. ``ids=`` overrides the Documents' ids."""
        ids = self._document_ids(documents, kwargs.pop("ids", None))
        return self.add_texts(
            [doc.page_content for doc in documents], [doc.metadata for doc in documents], ids=ids, **kwargs
        )

    async def aadd_documents(self, documents: list[Document], **kwargs: Any) -> list[str]:
        """Async `add_documents`, on the caller's event loop."""
        ids = self._document_ids(documents, kwargs.pop("ids", None))
        return await self.aadd_texts(
            [doc.page_content for doc in documents], [doc.metadata for doc in documents], ids=ids, **kwargs
        )

    async def _adelete(self, ids: list[str] | None, filter: Mapping[str, Any] | None) -> bool:
        if ids is not None and filter is not None:
            raise ValueError("delete() takes ids or filter, not both")
        if ids is None and filter is None:
            raise ValueError("delete() needs ids or a filter; call clear() to delete every row")
        store = await self._astore() if self._store is None else self._store
        if ids is not None:
            if isinstance(ids, str):
                raise ValueError("ids must be a list of ids, got a single string")
            if ids:
                await store.delete_vectors(list(ids))
        else:
            await store.delete(filter)
        return True

    def delete(self, ids: list[str] | None = None, filter: Mapping[str, Any] | None = None, **kwargs: Any) -> bool:
        """Delete rows by id (missing ids are ignored) or by a filter; returns True."""
        if kwargs:
            raise TypeError(f"PgVecStore.delete() got unexpected keyword argument(s) {sorted(kwargs)}")
        if self._store is None:
            self.store  # noqa: B018  (learn the dimensions in this thread, not on the background loop)
        return run_sync(self._adelete(ids, filter))

    async def adelete(
        self, ids: list[str] | None = None, filter: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> bool:
        """Async `delete`, on the caller's event loop."""
        if kwargs:
            raise TypeError(f"PgVecStore.adelete() got unexpected keyword argument(s) {sorted(kwargs)}")
        return await self._adelete(ids, filter)

    def clear(self) -> int:
        """Delete every row of the store (only its domain's rows when it has a domain_id); returns how many."""
        return run_sync(self.store.clear())

    async def aclear(self) -> int:
        """Async `clear`."""
        return await (await self._astore()).clear()

    # -- reads ---------------------------------------------------------------------------------------------
    async def _aget_by_ids(self, store: PgVectorStore, ids: Sequence[str]) -> list[Document]:
        if isinstance(ids, str):
            raise ValueError("ids must be a list of ids, got a single string")
        unique = list(dict.fromkeys(ids))
        if not unique:
            return []
        rows = await store.get_vectors(unique, include_metadata=True)
        return [
            self._document(row_id, meta)
            for row_id, (vector, meta) in zip(unique, rows, strict=True)
            if vector is not None
        ]

    def get_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        """Documents by id, in the order asked; ids not found are left out (no error)."""
        return run_sync(self._aget_by_ids(self.store, ids))

    async def aget_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        """Async `get_by_ids`, on the caller's event loop."""
        return await self._aget_by_ids(await self._astore(), ids)

    async def _asearch(self, embedding: Sequence[float], k: int, kwargs: Mapping[str, Any],
                       query_text: str | None = None) -> list[SearchResult]:
        """The core's search by vector; with `query_text`, its hybrid search (fusion options from `kwargs`)."""
        store = self._core(len(embedding))
        hybrid: dict[str, Any] = {}
        if query_text is not None:
            hybrid = {key: kwargs[key] for key in ("rrf_k", "alpha", "vector_k", "text_k") if key in kwargs}
            hybrid.update(mode="hybrid", query_text=query_text)
        return await store.search(
            embedding, k=k, filter=kwargs.get("filter"), search_params=kwargs.get("search_params"), **hybrid
        )

    def similarity_search_with_score_by_vector(
        self, embedding: list[float], k: int = 4, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        """The `k` nearest Documents to `embedding` with the core's similarity score (higher is closer)."""
        _check_kwargs("similarity_search_with_score_by_vector", kwargs)
        return self._with_scores(run_sync(self._asearch(embedding, k, kwargs)))

    async def asimilarity_search_with_score_by_vector(
        self, embedding: list[float], k: int = 4, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        """Async `similarity_search_with_score_by_vector`, on the caller's event loop."""
        _check_kwargs("asimilarity_search_with_score_by_vector", kwargs)
        return self._with_scores(await self._asearch(embedding, k, kwargs))

    def similarity_search_with_score(
        self, query: str, k: int = 4, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        """The `k` nearest Documents to `query` with similarity scores: cosine ``1 - distance``, euclidean
        ``1 / (1 + distance)``, inner product the raw product (higher is closer). ``filter=`` narrows the rows."""
        _check_kwargs("similarity_search_with_score", kwargs)
        embedding = self.embedding.embed_query(query)
        return self._with_scores(run_sync(self._asearch(embedding, k, kwargs)))

    async def asimilarity_search_with_score(
        self, query: str, k: int = 4, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        """Async `similarity_search_with_score`, on the caller's event loop."""
        _check_kwargs("asimilarity_search_with_score", kwargs)
        embedding = await self.embedding.aembed_query(query)
        return self._with_scores(await self._asearch(embedding, k, kwargs))

    def similarity_search(self, query: str, k: int = 4, **kwargs: Any) -> list[Document]:
        """The `k` Documents nearest to `query`, best first; ``filter=`` narrows the rows."""
        return [doc for doc, _ in self.similarity_search_with_score(query, k, **kwargs)]

    async def asimilarity_search(self, query: str, k: int = 4, **kwargs: Any) -> list[Document]:
        """Async `similarity_search`, on the caller's event loop."""
        return [doc for doc, _ in await self.asimilarity_search_with_score(query, k, **kwargs)]

    def similarity_search_by_vector(self, embedding: list[float], k: int = 4, **kwargs: Any) -> list[Document]:
        """The `k` Documents nearest to a query vector, best first."""
        return [doc for doc, _ in self.similarity_search_with_score_by_vector(embedding, k, **kwargs)]

    async def asimilarity_search_by_vector(
        self, embedding: list[float], k: int = 4, **kwargs: Any
    ) -> list[Document]:
        """Async `similarity_search_by_vector`, on the caller's event loop."""
        return [doc for doc, _ in await self.asimilarity_search_with_score_by_vector(embedding, k, **kwargs)]

    def _select_relevance_score_fn(self) -> Callable[[float], float]:
        """Relevance in [0, 1] for this store's metric: cosine (1 + s) / 2, euclidean 1 / (1 + d) as is, inner
        product (1 + ip) / 2 (right for normalised vectors), clamped to [0, 1]."""
        return _RELEVANCE[self.metric]

    # -- hybrid search -------------------------------------------------------------------------------------
    def hybrid_search_with_score(self, query: str, k: int = 4, **kwargs: Any) -> list[tuple[Document, float]]:
        """The `k` best Documents for `query` by vector similarity and full-text search together, fused in one
        SQL statement, with the fused score (higher is better).

        The query is embedded for the vector side and its text searched as keywords (any word may match,
        stemmed, rarer words weigh more). Fusion is reciprocal rank fusion, score ``sum 1 / (rrf_k + rank)``
        (``rrf_k=60``), or with ``alpha`` (the vector weight, 0..1) a weighted sum of min-max normalised scores.
        Options: ``filter``, ``rrf_k``, ``alpha``, ``vector_k`` / ``text_k`` (candidates per side, default
        ``max(k, 40)``), ``search_params``. The table needs its text-search column (docs/hybrid.md).
        """
        _check_kwargs("hybrid_search_with_score", kwargs, _HYBRID_OPTIONS)
        embedding = self.embedding.embed_query(query)
        return self._with_scores(run_sync(self._asearch(embedding, k, kwargs, query)))

    async def ahybrid_search_with_score(
        self, query: str, k: int = 4, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        """Async `hybrid_search_with_score`, on the caller's event loop."""
        _check_kwargs("ahybrid_search_with_score", kwargs, _HYBRID_OPTIONS)
        embedding = await self.embedding.aembed_query(query)
        return self._with_scores(await self._asearch(embedding, k, kwargs, query))

    def hybrid_search(self, query: str, k: int = 4, **kwargs: Any) -> list[Document]:
        """The `k` best Documents for `query` by vector and full-text search fused (see
        `hybrid_search_with_score`); also ``as_retriever(search_type="hybrid")``."""
        return [doc for doc, _ in self.hybrid_search_with_score(query, k, **kwargs)]

    async def ahybrid_search(self, query: str, k: int = 4, **kwargs: Any) -> list[Document]:
        """Async `hybrid_search`, on the caller's event loop."""
        return [doc for doc, _ in await self.ahybrid_search_with_score(query, k, **kwargs)]

    def as_retriever(self, **kwargs: Any) -> PgVecStoreRetriever:
        """A retriever over this store: ``search_type`` "similarity" (default), "similarity_score_threshold",
        "mmr" or "hybrid" (`hybrid_search`); ``search_kwargs`` go to the search method (``k``, ``filter``,
        ``alpha``, ...)."""
        tags = kwargs.pop("tags", None) or [*self._get_retriever_tags()]
        return PgVecStoreRetriever(vectorstore=self, tags=tags, **kwargs)

    # -- maximal marginal relevance ------------------------------------------------------------------------
    async def _ammr(
        self, embedding: Sequence[float], k: int, fetch_k: int, lambda_mult: float, kwargs: Mapping[str, Any]
    ) -> list[Document]:
        """Fetch `fetch_k` candidates with their vectors (two queries in one call), then pick `k` by MMR."""
        _check_mmr(k, fetch_k, lambda_mult)
        store = self._core(len(embedding))
        hits = await self._asearch(embedding, max(k, fetch_k), kwargs)
        if not hits:
            return []
        rows = await store.get_vectors([row_id for row_id, _, _ in hits], include_metadata=False)
        candidates = [(hit, vector) for hit, (vector, _) in zip(hits, rows, strict=True) if vector is not None]
        if not candidates:
            return []
        chosen = maximal_marginal_relevance(
            np.asarray(embedding, dtype=np.float32),
            np.stack([np.asarray(vector, dtype=np.float32) for _, vector in candidates]),  # type: ignore[arg-type]
            lambda_mult=float(lambda_mult),
            k=k,
        )
        return [self._document(candidates[i][0][0], candidates[i][0][2]) for i in chosen]

    def max_marginal_relevance_search_by_vector(
        self,
        embedding: list[float],
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        **kwargs: Any,
    ) -> list[Document]:
        """`k` Documents relevant to `embedding` yet unlike each other, chosen among the `fetch_k` nearest.
        ``lambda_mult`` 1 is pure relevance, 0 pure diversity."""
        _check_kwargs("max_marginal_relevance_search_by_vector", kwargs)
        return run_sync(self._ammr(embedding, k, fetch_k, lambda_mult, kwargs))

    async def amax_marginal_relevance_search_by_vector(
        self,
        embedding: list[float],
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        **kwargs: Any,
    ) -> list[Document]:
        """Async `max_marginal_relevance_search_by_vector`, on the caller's event loop."""
        _check_kwargs("amax_marginal_relevance_search_by_vector", kwargs)
        return await self._ammr(embedding, k, fetch_k, lambda_mult, kwargs)

    def max_marginal_relevance_search(
        self,
        query: str,
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        **kwargs: Any,
    ) -> list[Document]:
        """`k` Documents relevant to `query` yet unlike each other, chosen among the `fetch_k` nearest."""
        _check_kwargs("max_marginal_relevance_search", kwargs)
        embedding = self.embedding.embed_query(query)
        return run_sync(self._ammr(embedding, k, fetch_k, lambda_mult, kwargs))

    async def amax_marginal_relevance_search(
        self,
        query: str,
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        **kwargs: Any,
    ) -> list[Document]:
        """Async `max_marginal_relevance_search`, on the caller's event loop."""
        _check_kwargs("amax_marginal_relevance_search", kwargs)
        embedding = await self.embedding.aembed_query(query)
        return await self._ammr(embedding, k, fetch_k, lambda_mult, kwargs)

    # -- construction from data ----------------------------------------------------------------------------
    @classmethod
    def from_texts(
        cls,
        texts: list[str],
        embedding: Embeddings,
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        **kwargs: Any,
    ) -> Self:
        """A store built from `kwargs` (core options or ``store=``), with `texts` embedded and added."""
        instance = cls(embedding, **kwargs)
        instance.add_texts(texts, metadatas, ids=ids)
        return instance

    @classmethod
    async def afrom_texts(
        cls,
        texts: list[str],
        embedding: Embeddings,
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        **kwargs: Any,
    ) -> Self:
        """Async `from_texts`, on the caller's event loop."""
        instance = cls(embedding, **kwargs)
        await instance.aadd_texts(texts, metadatas, ids=ids)
        return instance


class PgVecStoreRetriever(VectorStoreRetriever):
    """LangChain's vector store retriever plus ``search_type="hybrid"`` (`PgVecStore.hybrid_search`)."""

    vectorstore: PgVecStore
    allowed_search_types: ClassVar[Collection[str]] = (*VectorStoreRetriever.allowed_search_types, "hybrid")

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        if self.search_type == "hybrid":
            return self.vectorstore.hybrid_search(query, **(self.search_kwargs | kwargs))
        return super()._get_relevant_documents(query, run_manager=run_manager, **kwargs)

    async def _aget_relevant_documents(
        self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        if self.search_type == "hybrid":
            return await self.vectorstore.ahybrid_search(query, **(self.search_kwargs | kwargs))
        return await super()._aget_relevant_documents(query, run_manager=run_manager, **kwargs)
