"""`search_params` reach the server: ``ef_search`` and ``probes`` change what an index search finds, through every
way a user can give them (the store option, the per-call argument, LangChain's ``search_params=`` and LlamaIndex's
``vector_store_kwargs``).

The index is built deliberately weak (HNSW ``m=4, ef_construction=8``; IVFFlat with 30 lists) over random
vectors, so recall against numpy's exact answer depends on the setting: a search that dropped the setting would
get the same recall with both values and fail here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import numpy as np
import pytest
from langchain_core.embeddings import Embeddings
from llama_index.core import VectorStoreIndex
from llama_index.core.base.embeddings.base import BaseEmbedding

from langchain_pgvecstore import PgVecStore as LangChainStore
from llama_index.vector_stores.pgvecstore import PgVecStore as LlamaStore
from pgvecstore import PgVectorStore

StoreMaker = Callable[..., PgVectorStore]
ROWS, DIM, QUERIES, K = 3000, 32, 30, 10
# The least recall gap between the weak and the strong setting that counts as "the setting reached the server"
# (measured on this data: HNSW 0.22 with ef_search 10 against 0.85-0.87 with 200; IVFFlat 0.20 with probes 1
# against 1.0 with 30).
MIN_GAP = 0.15

rng = np.random.default_rng(20)
DATA = rng.standard_normal((ROWS, DIM)).astype(np.float32)
QUERY_VECTORS = rng.standard_normal((QUERIES, DIM)).astype(np.float32)
IDS = [f"r{i:05d}" for i in range(ROWS)]


def exact_top(queries: np.ndarray) -> list[set[str]]:
    """Exact cosine top-K ids of each query."""
    data = DATA / np.linalg.norm(DATA, axis=1, keepdims=True)
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    order = np.argsort(-(q @ data.T), axis=1)[:, :K]
    return [{IDS[j] for j in row} for row in order]


TRUTH = exact_top(QUERY_VECTORS)

Search = Callable[[int], Awaitable[Sequence[str]]]


async def recall(search: Search) -> float:
    found = [len(set(await search(i)) & TRUTH[i]) / K for i in range(QUERIES)]
    return float(np.mean(found))


async def loaded(make_store: StoreMaker, index_type: str, **options: Any) -> PgVectorStore:
    store = make_store(dimensions=DIM, id_type="text", text_search=False, **options)
    await store.add_vectors(DATA, ids=IDS)
    params = {"m": 4, "ef_construction": 8} if index_type == "hnsw" else {"lists": 30}
    await store.create_index(index_type, params)
    return store


WEAK_STRONG = {"hnsw": ({"ef_search": 10}, {"ef_search": 200}), "ivfflat": ({"probes": 1}, {"probes": 30})}


@pytest.mark.parametrize("index_type", ["hnsw", "ivfflat"])
async def test_per_call_search_params_change_recall(make_store: StoreMaker, index_type: str) -> None:
    store = await loaded(make_store, index_type)
    weak, strong = WEAK_STRONG[index_type]

    def with_params(params: dict[str, int]) -> Search:
        async def search(i: int) -> list[str]:
            return [hit.id for hit in await store.search(QUERY_VECTORS[i], k=K, search_params=params)]
        return search

    low, high = await recall(with_params(weak)), await recall(with_params(strong))
    assert high >= 0.8, f"{index_type} with {strong}: recall {high}"
    assert high - low >= MIN_GAP, f"{index_type}: recall {low} with {weak} against {high} with {strong}"


@pytest.mark.parametrize("index_type", ["hnsw", "ivfflat"])
async def test_store_option_search_params_change_recall(make_store: StoreMaker, index_type: str) -> None:
    weak, strong = WEAK_STRONG[index_type]
    first = await loaded(make_store, index_type, table_name="shared", search_params=weak)
    # A second store on the same table, differing only in its search_params option.
    second = make_store(dimensions=DIM, id_type="text", text_search=False, table_name="shared", search_params=strong)

    def through(store: PgVectorStore) -> Search:
        async def search(i: int) -> list[str]:
            return [hit.id for hit in await store.search(QUERY_VECTORS[i], k=K)]
        return search

    low, high = await recall(through(first)), await recall(through(second))
    assert high - low >= MIN_GAP, f"{index_type}: option {weak} gave {low}, option {strong} gave {high}"


class TableEmbeddings(Embeddings):
    """LangChain embeddings: query text "q<i>" is QUERY_VECTORS[i]."""

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        raise AssertionError("this test writes through the core")

    def embed_query(self, text: str) -> list[float]:
        return [float(x) for x in QUERY_VECTORS[int(text[1:])]]


async def test_langchain_search_params_change_recall(make_store: StoreMaker) -> None:
    store = LangChainStore(TableEmbeddings(), store=await loaded(make_store, "hnsw"))
    weak, strong = WEAK_STRONG["hnsw"]

    def with_params(params: dict[str, int]) -> Search:
        async def search(i: int) -> list[str]:
            docs = await store.asimilarity_search(f"q{i}", k=K, search_params=params)
            return [str(doc.id) for doc in docs]
        return search

    low, high = await recall(with_params(weak)), await recall(with_params(strong))
    assert high - low >= MIN_GAP, f"LangChain: {weak} gave {low}, {strong} gave {high}"


class TableEmbedding(BaseEmbedding):
    """The same table as a LlamaIndex embedding model."""

    def _get_query_embedding(self, query: str) -> list[float]:
        return [float(x) for x in QUERY_VECTORS[int(query[1:])]]

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._get_query_embedding(query)

    def _get_text_embedding(self, text: str) -> list[float]:
        raise AssertionError("this test writes through the core")


async def test_llamaindex_vector_store_kwargs_change_recall(make_store: StoreMaker) -> None:
    index = VectorStoreIndex.from_vector_store(LlamaStore(await loaded(make_store, "hnsw")),
                                               embed_model=TableEmbedding())
    weak, strong = WEAK_STRONG["hnsw"]

    def with_params(params: dict[str, int]) -> Search:
        retriever = index.as_retriever(similarity_top_k=K, vector_store_kwargs={"search_params": params})

        async def search(i: int) -> list[str]:
            return [hit.node.node_id for hit in await retriever.aretrieve(f"q{i}")]
        return search

    low, high = await recall(with_params(weak)), await recall(with_params(strong))
    assert high - low >= MIN_GAP, f"LlamaIndex: {weak} gave {low}, {strong} gave {high}"
