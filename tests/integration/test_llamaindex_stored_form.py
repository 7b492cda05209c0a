"""Rows written by earlier versions of the LlamaIndex adapter read back as the nodes they were written from.

The adapter stores the node under ``_node_content`` without its default-valued fields; the versions before stored
it whole (pydantic's ``model_dump_json`` without the embedding and text, and before that a ``json.dumps`` of the
node's dict with the text and embedding blanked). Rows of each form are written here by raw SQL, as those
versions left them in the table, and read through the adapter by id and by search.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import asyncpg
import pytest
from llama_index.core.schema import BaseNode, IndexNode, NodeRelationship, ObjectType, RelatedNodeInfo, TextNode
from llama_index.core.vector_stores.types import VectorStoreQuery

from llama_index.vector_stores.pgvecstore import PgVecStore
from pgvecstore import PgVectorStore

DIM = 4
StoreMaker = Callable[..., PgVectorStore]


def nodes() -> list[BaseNode]:
    related = RelatedNodeInfo(node_id="doc-1", node_type=ObjectType.DOCUMENT, metadata={"file": "a.txt"}, hash="h")
    return [
        TextNode(id_="plain", text="plain text", metadata={"file": "a.txt", "page": 2, "score": 0.5},
                 relationships={NodeRelationship.SOURCE: related,
                                NodeRelationship.NEXT: RelatedNodeInfo(node_id="templated")},
                 start_char_idx=0, end_char_idx=10, embedding=[1.0, 0.0, 0.0, 0.0]),
        TextNode(id_="templated", text="second", metadata={"k": "v", "tags": ["x", "y"]},
                 excluded_llm_metadata_keys=["k"], metadata_template="{key}={value}", text_template="{content}",
                 relationships={NodeRelationship.SOURCE: related}, embedding=[0.0, 1.0, 0.0, 0.0]),
        IndexNode(id_="index", text="points elsewhere", index_id="other", embedding=[0.0, 0.0, 1.0, 0.0]),
    ]


def without_embedding(node: BaseNode) -> BaseNode:
    return node.model_copy(update={"embedding": None})


def previous_form(node: BaseNode) -> str:
    """``_node_content`` as the previous version stored it: every field, without the embedding and the text."""
    return node.model_dump_json(exclude={"embedding", "text"})


def oldest_form(node: BaseNode) -> str:
    """``_node_content`` as the first versions stored it: the node's dict with the text and embedding blanked."""
    data: dict[str, Any] = json.loads(node.model_dump_json())
    data["text"], data["embedding"] = "", None
    return json.dumps(data)


@pytest.mark.parametrize("form", [previous_form, oldest_form], ids=["previous", "oldest"])
async def test_rows_of_earlier_forms_read_back_as_their_nodes(
    make_store: StoreMaker, admin: asyncpg.Connection, form: Callable[[BaseNode], str]
) -> None:
    core = make_store(dimensions=DIM, id_type="text")
    adapter = PgVecStore(core)
    await core.initialize()
    t = core.table
    written = nodes()
    for node in written:
        metadata = {**node.metadata, "_node_content": form(node), "_node_type": node.class_name()}
        await admin.execute(
            f"INSERT INTO {t.qualified} (id, embedding, content, metadata, document_id) "
            "VALUES ($1, $2::text::vector, $3, $4::jsonb, $5)",
            node.node_id, str(node.embedding), node.get_content(), json.dumps(metadata), node.ref_doc_id,
        )
    by_id = {node.node_id: node for node in await adapter.aget_nodes(node_ids=[n.node_id for n in written])}
    for node in written:
        back = by_id[node.node_id]
        assert type(back) is type(node)
        assert back == node  # its embedding read back from the vector column
        assert back.get_content(metadata_mode="all") == node.get_content(metadata_mode="all")
    result = await adapter.aquery(VectorStoreQuery(query_embedding=[1.0, 0.0, 0.0, 0.0], similarity_top_k=1))
    assert result.nodes is not None
    assert without_embedding(result.nodes[0]) == without_embedding(written[0])


async def test_the_stored_node_leaves_its_defaults_out_and_reads_back_whole(
    make_store: StoreMaker, admin: asyncpg.Connection
) -> None:
    core = make_store(dimensions=DIM, id_type="text")
    adapter = PgVecStore(core)
    written = nodes()
    await adapter.async_add(written)
    stored = {
        row["id"]: json.loads(row["node"])
        for row in await admin.fetch(f"SELECT id, metadata->>'_node_content' AS node FROM {core.table.qualified}")
    }
    assert stored["plain"] == {  # the id, text and vector are the row's columns
        "metadata": {"file": "a.txt", "page": 2, "score": 0.5},
        "relationships": {"1": {"node_id": "doc-1", "node_type": "4", "metadata": {"file": "a.txt"}, "hash": "h"},
                          "3": {"node_id": "templated"}},
        "start_char_idx": 0, "end_char_idx": 10,
    }
    for node in written:
        assert len(json.dumps(stored[node.node_id])) < len(previous_form(node))
    back = await adapter.aget_nodes(node_ids=[n.node_id for n in written])
    assert sorted(back, key=lambda n: n.node_id) == sorted(written, key=lambda n: n.node_id)
