"""`PgVecStoreRetriever`: LangChain's vector-store retriever plus ``search_type="hybrid"``."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, ClassVar, Protocol, cast

from langchain_core.callbacks import AsyncCallbackManagerForRetrieverRun, CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.vectorstores import VectorStoreRetriever


class _HybridSearch(Protocol):
    """What the retriever needs of its store for ``search_type="hybrid"`` (`PgVecStore` has it)."""

    def hybrid_search(self, query: str, k: int = 4, **kwargs: Any) -> list[Document]: ...

    async def ahybrid_search(self, query: str, k: int = 4, **kwargs: Any) -> list[Document]: ...


class PgVecStoreRetriever(VectorStoreRetriever):
    """LangChain's vector store retriever plus ``search_type="hybrid"`` (`PgVecStore.hybrid_search`)."""

    allowed_search_types: ClassVar[Collection[str]] = (*VectorStoreRetriever.allowed_search_types, "hybrid")

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        if self.search_type == "hybrid":
            return cast(_HybridSearch, self.vectorstore).hybrid_search(query, **(self.search_kwargs | kwargs))
        return super()._get_relevant_documents(query, run_manager=run_manager, **kwargs)

    async def _aget_relevant_documents(
        self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        if self.search_type == "hybrid":
            store = cast(_HybridSearch, self.vectorstore)
            return await store.ahybrid_search(query, **(self.search_kwargs | kwargs))
        return await super()._aget_relevant_documents(query, run_manager=run_manager, **kwargs)
