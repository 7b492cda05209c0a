"""Hybrid and keyword search through the adapters: LangChain's `hybrid_search` and ``search_type="hybrid"``
retriever, LlamaIndex's HYBRID (with alpha, sparse_top_k and hybrid_top_k), TEXT_SEARCH and SPARSE modes, on the
real server.

The embeddings are a lookup table, so the test decides what the vector side finds: the query is close to
"semantic" (which holds none of the query's words) and far from "keyword" (which holds the rare word "zyxomab").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytest
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from llama_index.core import StorageContext, VectorStoreIndex
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.schema import TextNode
from llama_index.core.vector_stores.types import (
    MetadataFilter,
    MetadataFilters,
    VectorStoreQuery,
    VectorStoreQueryMode,
)

from langchain_pgvecstore import PgVecStore as LangChainStore
from langchain_pgvecstore import PgVecStoreRetriever
from llama_index.vector_stores.pgvecstore import PgVecStore as LlamaStore
from pgvecstore import PgVectorStore

StoreMaker = Callable[..., PgVectorStore]
DIM = 4


def unit(*values: float) -> list[float]:
    vector = np.asarray(values, dtype=np.float64)
    return (vector / np.linalg.norm(vector)).tolist()


TEXTS = {
    "semantic": ("Plants respond to drought and heat stress.", unit(1, 0, 0, 0), "en"),
    "near1": ("Irrigation schedules for wheat in dry summers.", unit(0.9, 0.3, 0, 0), "en"),
    "near2": ("Soil moisture sensors predict crop yields.", unit(0.8, 0.5, 0.1, 0), "de"),
    "keyword": ("The zyxomab antibody binds its receptor.", unit(0, 0, 0, 1), "en"),
    "keyword_de": ("Zyxomab bindet den Rezeptor.", unit(0, 0, 1, 0), "de"),
}
QUERY = "Does zyxomab protect flowers?"
VECTORS = {text: vector for text, vector, _ in TEXTS.values()} | {QUERY: unit(1, 0, 0, 0),
                                                                   "zyxomab": unit(0, 1, 0, 0)}


class LookupEmbeddings(Embeddings):
    """LangChain embeddings from a fixed table (unknown text: a fixed far-away vector)."""

    def _embed(self, text: str) -> list[float]:
        return VECTORS.get(text, unit(0, 1, 1, 1))

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [self._embed(t) for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return self._embed(text)


class LookupEmbedding(BaseEmbedding):
    """The same table as a LlamaIndex embedding model."""

    def _get_query_embedding(self, query: str) -> list[float]:
        return VECTORS.get(query, unit(0, 1, 1, 1))

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._get_query_embedding(query)

    def _get_text_embedding(self, text: str) -> list[float]:
        return VECTORS.get(text, unit(0, 1, 1, 1))


def ids(docs: Sequence[Document]) -> list[str | None]:
    return [doc.id for doc in docs]


# -- LangChain -------------------------------------------------------------------------------------------------


@pytest.fixture
def lc_store(make_store: StoreMaker) -> LangChainStore:
    store = LangChainStore(LookupEmbeddings(), store=make_store(dimensions=DIM, id_type="text"))
    store.add_texts([text for text, _, _ in TEXTS.values()], [{"lang": lang} for _, _, lang in TEXTS.values()],
                    ids=list(TEXTS))
    return store


def test_langchain_hybrid_search_finds_what_each_side_alone_misses(lc_store: LangChainStore) -> None:
    assert "keyword" not in ids(lc_store.similarity_search(QUERY, k=2))
    hybrid = lc_store.hybrid_search(QUERY, k=3)
    assert {"keyword", "semantic"} <= set(ids(hybrid))
    assert hybrid[ids(hybrid).index("keyword")].page_content == TEXTS["keyword"][0]
    assert hybrid[ids(hybrid).index("keyword")].metadata == {"lang": "en"}


async def test_langchain_async_hybrid_search_and_scores(lc_store: LangChainStore) -> None:
    scored = await lc_store.ahybrid_search_with_score(QUERY, k=5, rrf_k=60)
    sync_scored = lc_store.hybrid_search_with_score(QUERY, k=5, rrf_k=60)
    assert [(d.id, s) for d, s in scored] == [(d.id, s) for d, s in sync_scored]
    scores = dict((d.id, s) for d, s in scored)
    # "keyword": text rank 1 (it and keyword_de hold "zyxomab"), vector rank 4 (similarity 0, tied with keyword_de
    # and placed first by id): RRF with rrf_k=60. "semantic": vector rank 1 only.
    assert ids([d for d, _ in scored])[0] == "keyword"
    assert scores["keyword"] == pytest.approx(1 / 61 + 1 / 64)
    assert scores["semantic"] == pytest.approx(1 / 61)
    assert ids(await lc_store.ahybrid_search(QUERY, k=5, rrf_k=60)) == [d.id for d, _ in scored]
    # Without rrf_k: weighted fusion (alpha 0.5): the text side's best row ("keyword_de": "zyxomab" twice in a
    # short text) gets half the weight, as does the vector side's best ("semantic").
    default = dict((d.id, s) for d, s in await lc_store.ahybrid_search_with_score(QUERY, k=5))
    assert default["semantic"] == pytest.approx(0.5) and default["keyword_de"] == pytest.approx(0.5)


def test_langchain_hybrid_options_reach_the_core(lc_store: LangChainStore) -> None:
    vector_first = lc_store.hybrid_search(QUERY, k=2, alpha=1.0)
    assert ids(vector_first) == ["semantic", "near1"]
    text_first = lc_store.hybrid_search(QUERY, k=2, alpha=0.0)
    assert ids(text_first)[0] == "keyword"
    assert set(ids(lc_store.hybrid_search(QUERY, k=5, vector_k=1, text_k=1))) == {"semantic", "keyword"}
    assert set(ids(lc_store.hybrid_search(QUERY, k=5, filter={"lang": "de"}))) == {"near2", "keyword_de"}
    assert ids(lc_store.hybrid_search(QUERY, k=1, rrf_k=0)) == ["keyword"]
    with pytest.raises(TypeError, match=r"unexpected keyword argument\(s\) 'fetch_k'.*rrf_k, alpha"):
        lc_store.hybrid_search(QUERY, fetch_k=3)
    with pytest.raises(ValueError, match="alpha must be a number between 0 and 1"):
        lc_store.hybrid_search(QUERY, alpha=2)


def test_langchain_each_call_uses_its_own_text(lc_store: LangChainStore) -> None:
    first = lc_store.hybrid_search(QUERY, k=1, alpha=0.0)
    second = lc_store.hybrid_search("Soil sensors", k=1, alpha=0.0)
    assert ids(first) == ["keyword"] and ids(second) == ["near2"]


async def test_langchain_hybrid_retriever(lc_store: LangChainStore) -> None:
    retriever = lc_store.as_retriever(search_type="hybrid", search_kwargs={"k": 3})
    assert isinstance(retriever, PgVecStoreRetriever)
    assert {"keyword", "semantic"} <= set(ids(retriever.invoke(QUERY)))
    assert ids(await retriever.ainvoke(QUERY)) == ids(retriever.invoke(QUERY))
    german = lc_store.as_retriever(search_type="hybrid", search_kwargs={"k": 3, "filter": {"lang": "de"}})
    assert set(ids(await german.ainvoke(QUERY))) == {"near2", "keyword_de"}
    weighted = lc_store.as_retriever(search_type="hybrid", search_kwargs={"k": 1, "alpha": 0.0})
    assert ids(weighted.invoke(QUERY)) == ["keyword"]
    # The other search types still work, and unknown ones are still refused.
    assert ids(lc_store.as_retriever(search_kwargs={"k": 1}).invoke(QUERY)) == ["semantic"]
    assert len(await lc_store.as_retriever(search_type="mmr", search_kwargs={"k": 2}).ainvoke(QUERY)) == 2
    with pytest.raises(ValueError, match="search_type of bm25 not allowed"):
        lc_store.as_retriever(search_type="bm25")


# -- LlamaIndex ------------------------------------------------------------------------------------------------


@pytest.fixture
def li_store(make_store: StoreMaker) -> LlamaStore:
    store = LlamaStore(make_store(dimensions=DIM, id_type="text"))
    store.add([TextNode(id_=node_id, text=text, embedding=vector, metadata={"lang": lang})
               for node_id, (text, vector, lang) in TEXTS.items()])
    return store


def li_query(mode: VectorStoreQueryMode, **fields: Any) -> VectorStoreQuery:
    fields.setdefault("query_str", QUERY)
    fields.setdefault("query_embedding", VECTORS[QUERY])
    return VectorStoreQuery(mode=mode, **fields)


async def test_llamaindex_hybrid_mode(li_store: LlamaStore) -> None:
    result = await li_store.aquery(li_query(VectorStoreQueryMode.HYBRID, similarity_top_k=3), rrf_k=60)
    assert {"keyword", "semantic"} <= set(result.ids or [])
    assert [node.node_id for node in result.nodes or []] == result.ids
    assert result.similarities == sorted(result.similarities or [], reverse=True)
    keyword = (result.ids or []).index("keyword")
    assert (result.similarities or [])[keyword] == pytest.approx(1 / 61 + 1 / 64)
    assert (result.nodes or [])[keyword].get_content() == TEXTS["keyword"][0]
    assert li_store.query(li_query(VectorStoreQueryMode.HYBRID, similarity_top_k=3), rrf_k=60).ids == result.ids


async def test_llamaindex_hybrid_honours_alpha_sparse_and_hybrid_top_k(li_store: LlamaStore) -> None:
    vector_first = await li_store.aquery(li_query(VectorStoreQueryMode.HYBRID, similarity_top_k=2, alpha=1.0))
    assert vector_first.ids == ["semantic", "near1"]
    text_first = await li_store.aquery(li_query(VectorStoreQueryMode.HYBRID, similarity_top_k=2, alpha=0.0))
    assert (text_first.ids or [])[0] == "keyword"
    # hybrid_top_k: nodes returned; similarity_top_k: vector candidates; sparse_top_k: keyword candidates.
    narrow = await li_store.aquery(
        li_query(VectorStoreQueryMode.HYBRID, similarity_top_k=1, sparse_top_k=1, hybrid_top_k=5))
    assert set(narrow.ids or []) == {"semantic", "keyword"}
    wide = await li_store.aquery(
        li_query(VectorStoreQueryMode.HYBRID, similarity_top_k=5, sparse_top_k=5, hybrid_top_k=4))
    assert len(wide.ids or []) == 4
    rrf = await li_store.aquery(li_query(VectorStoreQueryMode.HYBRID, similarity_top_k=1), rrf_k=0)
    assert rrf.ids == ["keyword"] and rrf.similarities == [pytest.approx(1 / 1 + 1 / 4)]


@pytest.mark.parametrize("mode", [VectorStoreQueryMode.TEXT_SEARCH, VectorStoreQueryMode.SPARSE])
async def test_llamaindex_keyword_modes(li_store: LlamaStore, mode: VectorStoreQueryMode) -> None:
    result = await li_store.aquery(li_query(mode, query_embedding=None, similarity_top_k=5))
    assert set(result.ids or []) == {"keyword", "keyword_de"}
    assert all(score > 0 for score in result.similarities or [])
    one = await li_store.aquery(li_query(mode, query_embedding=None, similarity_top_k=5, sparse_top_k=1))
    assert len(one.ids or []) == 1
    german = await li_store.aquery(li_query(
        mode, similarity_top_k=5, filters=MetadataFilters(filters=[MetadataFilter(key="lang", value="de")])))
    assert german.ids == ["keyword_de"]
    assert (await li_store.aquery(li_query(mode, query_str="the of and", similarity_top_k=5))).ids == []


async def test_llamaindex_query_errors(li_store: LlamaStore) -> None:
    with pytest.raises(ValueError, match="query_str is required in mode 'hybrid'"):
        await li_store.aquery(li_query(VectorStoreQueryMode.HYBRID, query_str=None))
    with pytest.raises(ValueError, match="query_str is required in mode 'text_search'"):
        await li_store.aquery(li_query(VectorStoreQueryMode.TEXT_SEARCH, query_str=None))
    with pytest.raises(ValueError, match="query_embedding is required in mode 'hybrid'"):
        await li_store.aquery(li_query(VectorStoreQueryMode.HYBRID, query_embedding=None))
    with pytest.raises(ValueError, match="alpha must be a number between 0 and 1"):
        await li_store.aquery(li_query(VectorStoreQueryMode.HYBRID, alpha=3.0))
    with pytest.raises(NotImplementedError, match="'semantic_hybrid' is not supported"):
        await li_store.aquery(li_query(VectorStoreQueryMode.SEMANTIC_HYBRID))
    empty = await li_store.aquery(li_query(VectorStoreQueryMode.HYBRID, similarity_top_k=0))
    assert empty.ids == []


def test_llamaindex_retriever_in_hybrid_mode(li_store: LlamaStore) -> None:
    index = VectorStoreIndex.from_vector_store(li_store, embed_model=LookupEmbedding())
    hits = index.as_retriever(vector_store_query_mode="hybrid", similarity_top_k=3).retrieve(QUERY)
    assert {"keyword", "semantic"} <= {hit.node.node_id for hit in hits}
    text_only = index.as_retriever(vector_store_query_mode="text_search", similarity_top_k=3).retrieve(QUERY)
    assert {hit.node.node_id for hit in text_only} == {"keyword", "keyword_de"}
    weighted = index.as_retriever(vector_store_query_mode="hybrid", similarity_top_k=1, alpha=0.0).retrieve(QUERY)
    assert [hit.node.node_id for hit in weighted] == ["keyword"]
    filtered = index.as_retriever(
        vector_store_query_mode="hybrid", similarity_top_k=5,
        filters=MetadataFilters(filters=[MetadataFilter(key="lang", value="de")]),
    ).retrieve(QUERY)
    assert {hit.node.node_id for hit in filtered} == {"near2", "keyword_de"}


def test_llamaindex_index_built_from_documents_searches_their_text(make_store: StoreMaker) -> None:
    store = LlamaStore(make_store(dimensions=DIM, id_type="text"))
    nodes = [TextNode(id_=node_id, text=text, metadata={"lang": lang}) for node_id, (text, _, lang) in TEXTS.items()]
    index = VectorStoreIndex(nodes, storage_context=StorageContext.from_defaults(vector_store=store),
                             embed_model=LookupEmbedding())
    hits = index.as_retriever(vector_store_query_mode="sparse", similarity_top_k=2).retrieve("antibody receptors")
    assert hits[0].node.node_id == "keyword"
