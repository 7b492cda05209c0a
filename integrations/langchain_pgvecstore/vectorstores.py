"""`PgVecStore`: a LangChain `VectorStore` over pgvecstore's async core, holding no SQL of its own.

Sync methods run the core on pgvecstore's one background event-loop thread (`pgvecstore.sync.run_sync`), so they
work in plain scripts, inside a running loop (Jupyter) and from many threads. Async methods await the core on the
caller's own event loop (the core keeps one connection pool per loop), so they are natively async.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Self, cast

import asyncpg
import numpy as np
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.vectorstores import VectorStore

from langchain_pgvecstore.mapping import rows, to_document
from langchain_pgvecstore.search import SearchMixin
from pgvecstore import InvalidInputError, PgVectorStore, StoreConfig, TableNotFoundError
from pgvecstore.config import redact_dsn
from pgvecstore.rows import normalize_id
from pgvecstore.sync import close_blocking, run_sync

DEFAULT_TABLE = "langchain_embeddings"
# The adapter's defaults under the user's options: text ids (LangChain ids are any string), a table of its own.
ADAPTER_DEFAULTS = {"id_type": "text", "table_name": DEFAULT_TABLE}


class PgVecStore(SearchMixin, VectorStore):
    """LangChain vector store on PostgreSQL + pgvector (the embedded server when no connection string is given).

    Build it from an `Embeddings` object plus the core's options (``connection_string``, ``schema``,
    ``table_name``, ``metric``, ``dimensions``, ...; see `pgvecstore.StoreConfig`), or around an existing core
    ``store=PgVectorStore(...)``. Ids are text by default. Without ``dimensions`` the store takes them from the
    first vectors it embeds, or from the existing table.

    Mapping: ``page_content`` is the content column; metadata is stored exactly as given and comes back so; the
    ``document_id`` column comes from metadata ``document_id`` (else ``source``), ``chunk_index`` from metadata
    ``chunk_index`` (else ``start_index`` order within the document, else position within the document in the
    call). Filters are the core's filter dicts, passed as ``filter=``.
    """

    def __init__(
        self,
        embedding: Embeddings,
        *,
        store: PgVectorStore | None = None,
        config: StoreConfig | Mapping[str, Any] | None = None,
        pool: asyncpg.Pool | None = None,
        **options: Any,
    ) -> None:
        if not isinstance(embedding, Embeddings):
            raise TypeError(f"embedding must be a langchain_core Embeddings object, got {type(embedding).__name__}")
        self.embedding = embedding
        self._lock = threading.Lock()
        self._store: PgVectorStore | None = store
        self._pool = pool  # the application's asyncpg pool, for the core store (made when dimensions are known)
        if store is not None:
            if config is not None or options or pool is not None:
                raise InvalidInputError("give either store=PgVectorStore(...) or store options, not both")
            if not isinstance(store, PgVectorStore):
                raise TypeError(f"store must be a pgvecstore.PgVectorStore, got {type(store).__name__}")
            self._config = store.config
            return
        self._config = StoreConfig.build(config, defaults=ADAPTER_DEFAULTS, **options)
        if self._config.dimensions is not None:
            self._store = PgVectorStore(self._config, pool=self._pool)

    def __repr__(self) -> str:
        where = redact_dsn(self._config.connection_string) or "DATABASE_URL or the embedded server"
        return (f"PgVecStore({type(self.embedding).__name__}, {self._config.schema}.{self._config.table_name} "
                f"on {where}, dimensions={self.dimensions})")

    # -- the core ------------------------------------------------------------------------------------------
    @property
    def embeddings(self) -> Embeddings:
        return self.embedding

    @property
    def metric(self) -> str:
        return self._config.metric

    @property
    def dimensions(self) -> int | None:
        """The vector length, once known (an option, the existing table's, or the first vectors')."""
        return self._store.dimensions if self._store is not None else self._config.dimensions

    @property
    def store(self) -> PgVectorStore:
        """The core `PgVectorStore`. Before the first add, without ``dimensions``, the one on the existing table;
        `TableNotFoundError` when there is no table yet."""
        if self._store is None and run_sync(self._existing()) is None:
            raise TableNotFoundError(
                f"table {self._config.schema}.{self._config.table_name} does not exist yet: add documents first, "
                "or give dimensions="
            )
        assert self._store is not None
        return self._store

    def _core(self, dimensions: int) -> PgVectorStore:
        """The core store, created on first use with the dimensions of the first vector in hand."""
        if self._store is not None:
            return self._store
        return self._adopt(PgVectorStore(self._config, pool=self._pool, dimensions=dimensions))

    def _adopt(self, candidate: PgVectorStore) -> PgVectorStore:
        """Keep `candidate` as the core store unless another call set one first; returns the store in use."""
        with self._lock:
            if self._store is None:
                self._store = candidate
            return self._store

    async def _existing(self) -> PgVectorStore | None:
        """The core store for a call without vectors: the one in use, else one on the existing table (which has
        the dimensions); None when there is no table yet, so nothing to read or delete."""
        if self._store is not None:
            return self._store
        candidate = PgVectorStore(self._config, pool=self._pool)
        try:
            await candidate.initialize()
        except TableNotFoundError:
            await candidate.close()
            return None
        store = self._adopt(candidate)
        if store is not candidate:
            await candidate.close()
        return store

    def close(self) -> None:
        """Close the core's connection pools; works inside a running event loop too (Jupyter)."""
        if self._store is not None:
            close_blocking(self._store)

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

    # -- writes --------------------------------------------------------------------------------------------
    def _as_vectors(self, texts: list[str], vectors: Any) -> Sequence[Sequence[float]]:
        """The embeddings of `texts`, one per text, as given: the core converts lists of floats while it writes
        and names any vector of the wrong dimension."""
        if not isinstance(vectors, list | np.ndarray):
            vectors = list(vectors)
        if len(vectors) != len(texts) or (isinstance(vectors, np.ndarray) and vectors.ndim != 2):
            raise InvalidInputError(
                f"{type(self.embedding).__name__} returned {len(vectors)} vectors for {len(texts)} texts"
            )
        first = vectors[0]
        if isinstance(first, str | bytes) or not hasattr(first, "__len__"):
            raise InvalidInputError(f"{type(self.embedding).__name__} returned {type(first).__name__} values "
                                    "instead of vectors (lists of numbers)")
        return cast(Sequence[Sequence[float]], vectors)

    async def _aadd_embedded(
        self,
        texts: list[str],
        vectors: Sequence[Sequence[float]],
        metadatas: Sequence[Mapping[str, Any] | None] | None,
        ids: Sequence[str | None] | None,
    ) -> list[str]:
        contents, metas, document_ids, chunk_indexes = rows(texts, metadatas)
        if ids is not None:
            ids = list(ids)
            if len(ids) != len(texts):
                raise InvalidInputError(f"ids has {len(ids)} entries but there are {len(texts)} texts")
        return await self._core(len(vectors[0])).add_vectors(
            vectors, ids=ids, metadata=metas, contents=contents, document_ids=document_ids,
            chunk_indexes=chunk_indexes,
        )

    def add_texts(self, texts: Iterable[str], metadatas: list[dict[str, Any]] | None = None, *,
                  ids: Sequence[str | None] | None = None, **kwargs: Any) -> list[str]:
        """Embed `texts` and insert them (an existing id is replaced); returns the ids, generated where missing."""
        if kwargs:
            raise TypeError(f"PgVecStore.add_texts() got unexpected keyword argument(s) {sorted(kwargs)}")
        text_list = list(texts)
        if not text_list:
            return []
        vectors = self._as_vectors(text_list, self.embedding.embed_documents(text_list))
        return run_sync(self._aadd_embedded(text_list, vectors, metadatas, ids))

    async def aadd_texts(self, texts: Iterable[str], metadatas: list[dict[str, Any]] | None = None, *,
                         ids: Sequence[str | None] | None = None, **kwargs: Any) -> list[str]:
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
        return self.add_texts([d.page_content for d in documents], [d.metadata for d in documents], ids=ids, **kwargs)

    async def aadd_documents(self, documents: list[Document], **kwargs: Any) -> list[str]:
        """Async `add_documents`, on the caller's event loop."""
        ids = self._document_ids(documents, kwargs.pop("ids", None))
        return await self.aadd_texts(
            [d.page_content for d in documents], [d.metadata for d in documents], ids=ids, **kwargs
        )

    async def _adelete(
        self, ids: list[str] | None, filter: Mapping[str, Any] | None, kwargs: Mapping[str, Any]
    ) -> bool:
        if kwargs:
            raise TypeError(f"PgVecStore.delete() got unexpected keyword argument(s) {sorted(kwargs)}")
        if ids is not None and filter is not None:
            raise InvalidInputError("delete() takes ids or filter, not both")
        if ids is None and filter is None:
            raise InvalidInputError("delete() needs ids or a filter; call clear() to delete every row")
        if isinstance(ids, str):
            raise InvalidInputError("ids must be a list of ids, got a single string")
        store = await self._existing()
        if store is not None and ids:
            await store.delete_vectors(list(ids))
        elif store is not None and filter is not None:
            await store.delete(filter)
        return True

    def delete(self, ids: list[str] | None = None, filter: Mapping[str, Any] | None = None, **kwargs: Any) -> bool:
        """Delete rows by id (missing ids are ignored) or by a filter; returns True."""
        return run_sync(self._adelete(ids, filter, kwargs))

    async def adelete(
        self, ids: list[str] | None = None, filter: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> bool:
        """Async `delete`, on the caller's event loop."""
        return await self._adelete(ids, filter, kwargs)

    async def aclear(self) -> int:
        """Delete every row of the store (only its domain's rows when it has a domain_id); returns how many."""
        store = await self._existing()
        return 0 if store is None else await store.clear()

    def clear(self) -> int:
        """Delete every row of the store (only its domain's rows when it has a domain_id); returns how many."""
        return run_sync(self.aclear())

    # -- reads by id ---------------------------------------------------------------------------------------
    async def aget_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        """Documents by id, in the order asked; ids not found are left out (no error)."""
        if isinstance(ids, str):
            raise InvalidInputError("ids must be a list of ids, got a single string")
        unique = list(dict.fromkeys(ids))
        store = await self._existing() if unique else None
        if store is None:
            return []
        found = {row.id: row for row in await store.get(unique)}  # ids as the store writes them (canonical)
        canonical = [normalize_id(i, store.config.id_type) for i in unique]
        return [to_document(found[i]) for i in canonical if i in found]

    def get_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        """Documents by id, in the order asked; ids not found are left out (no error)."""
        return run_sync(self.aget_by_ids(ids))

    # -- construction from data ----------------------------------------------------------------------------
    @classmethod
    def from_texts(cls, texts: list[str], embedding: Embeddings, metadatas: list[dict[str, Any]] | None = None, *,
                   ids: list[str] | None = None, **kwargs: Any) -> Self:
        """A store built from `kwargs` (core options or ``store=``), with `texts` embedded and added."""
        instance = cls(embedding, **kwargs)
        instance.add_texts(texts, metadatas, ids=ids)
        return instance

    @classmethod
    async def afrom_texts(cls, texts: list[str], embedding: Embeddings, metadatas: list[dict[str, Any]] | None = None,
                          *, ids: list[str] | None = None, **kwargs: Any) -> Self:
        """Async `from_texts`, on the caller's event loop."""
        instance = cls(embedding, **kwargs)
        await instance.aadd_texts(texts, metadatas, ids=ids)
        return instance
