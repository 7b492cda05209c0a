"""Batches as loaders send them, through both adapters into the real database: plain metadata keeps its types,
documents and chunk numbers land in their columns, set and unset ids mix, and every node reads back equal.

These calls take the adapters' one-pass mapping (plain dict metadata, lists of floats); `test_adapter_mapping.py`
checks that mapping against the per-row one without a database.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from llama_index.core.schema import NodeRelationship, RelatedNodeInfo, TextNode
from tests.columns import document_columns

from langchain_pgvecstore import PgVecStore as LangChainStore
from llama_index.vector_stores.pgvecstore import PgVecStore as LlamaStore
from pgvecstore import PgVectorStore

DIMS = 4


def vector(i: int) -> list[float]:
    return [1.0, float(i % 7), (i % 3) / 4, 0.5]  # exact in float32


class IndexEmbeddings(Embeddings):
    """Text "t<i>" embeds to vector(i), as lists of floats (what LangChain embeddings return)."""

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [vector(int(text[1:])) for text in texts]

    def embed_query(self, text: str) -> list[float]:
        return vector(int(text[1:]))


async def test_langchain_batch_keeps_types_columns_and_ids(make_store: Callable[..., PgVectorStore]) -> None:
    store = LangChainStore(IndexEmbeddings(), store=make_store(dimensions=DIMS, id_type="text", table_name="lc"))
    docs = [
        Document(
            id=f"given-{i}" if i % 3 == 0 else None,
            page_content=f"t{i}",
            metadata={"source": f"doc{i // 4}.txt", "n": i, "score": i / 8, "ok": i % 2 == 0, "none": None,
                      "tags": ["a", i], "nested": {"k": {"i": i}}},
        )
        for i in range(12)
    ]
    originals = [dict(d.metadata) for d in docs]
    ids = await store.aadd_documents(docs)
    assert [d.metadata for d in docs] == originals  # the caller's Documents are left as they were
    assert [ids[i] for i in (0, 3, 6, 9)] == ["given-0", "given-3", "given-6", "given-9"]
    assert len(set(ids)) == 12

    back = await store.aget_by_ids(ids)
    assert back == [Document(id=row_id, page_content=d.page_content, metadata=d.metadata)
                    for row_id, d in zip(ids, docs, strict=True)]
    first = back[1].metadata
    assert (type(first["n"]), type(first["score"]), type(first["ok"])) == (int, float, bool)

    assert await document_columns(store.store, ids) == [(f"t{i}", f"doc{i // 4}.txt", i % 4) for i in range(12)]
    vectors = [v for v, _ in await store.store.get_vectors(ids)]
    assert all(v is not None and v.tolist() == vector(i) for i, v in enumerate(vectors))


async def test_llamaindex_batch_reads_back_node_for_node(make_store: Callable[..., PgVectorStore], admin: Any,
                                                         schema: str) -> None:
    core = make_store(dimensions=DIMS, id_type="text", table_name="li")
    store = LlamaStore(core)
    nodes = [
        TextNode(
            id_=f"n{i}", text=f"chunk {i}", embedding=vector(i), start_char_idx=100 - i, end_char_idx=110 - i,
            metadata={"source": f"doc{i // 4}", "n": i, "score": i / 8, "ok": i % 2 == 0, "none": None},
            relationships={NodeRelationship.SOURCE: RelatedNodeInfo(node_id=f"doc{i // 4}")},
        )
        for i in range(12)
    ]
    assert await store.async_add(nodes) == [n.node_id for n in nodes]

    back = await store.aget_nodes(node_ids=[n.node_id for n in nodes])
    assert back == nodes
    assert [type(n.metadata["score"]) for n in back] == [float] * 12

    # start_char_idx falls along each document, so the later nodes of a document come first.
    assert await document_columns(core, [n.node_id for n in nodes]) == [
        (f"chunk {i}", f"doc{i // 4}", 3 - i % 4) for i in range(12)
    ]
    # The stored node holds neither the vector nor the text: each is kept once, in its own column.
    stored = await admin.fetchval(f'SELECT metadata FROM "{schema}".li WHERE id = $1', "n5")
    node_json = json.loads(json.loads(stored)["_node_content"])
    assert "embedding" not in node_json and "text" not in node_json
    assert node_json["metadata"] == nodes[5].metadata


async def test_llamaindex_nodes_over_several_core_batches_land_whole_or_not_at_all(
    make_store: Callable[..., PgVectorStore],
) -> None:
    """Every node of a call spread over five core batches reads back equal, and a node whose metadata cannot be
    stored as JSON fails the whole call by name and leaves the table as it was."""
    core = make_store(dimensions=DIMS, id_type="text", table_name="li_batches", batch_size=7)
    store = LlamaStore(core)

    def nodes(prefix: str, count: int) -> list[TextNode]:
        return [
            TextNode(id_=f"{prefix}{i}", text=f"chunk {i}", embedding=vector(i), metadata={"n": i, "ok": i % 2 == 0},
                     relationships={NodeRelationship.SOURCE: RelatedNodeInfo(node_id=f"{prefix}doc{i // 5}")})
            for i in range(count)
        ]

    first = nodes("a", 33)
    assert await store.async_add(first) == [n.node_id for n in first]
    assert await store.aget_nodes(node_ids=[n.node_id for n in first]) == first

    second = nodes("b", 30)
    second[25].metadata["when"] = object()  # in the fourth batch of 7
    with pytest.raises(ValueError, match="node 'b25' cannot be stored as JSON"):
        await store.async_add(second)
    assert await core.count() == 33
    assert await store.aget_nodes(node_ids=[n.node_id for n in second]) == []
