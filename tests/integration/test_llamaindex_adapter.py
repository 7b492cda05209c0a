"""The LlamaIndex adapter end to end: llama-index-core's own index, retriever, query engine and ingestion pipeline
on the real embedded PostgreSQL, plus filters, round trips, deletes and the sync/async bridge."""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from llama_index.core import Document, StorageContext, VectorStoreIndex
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.ingestion import DocstoreStrategy, IngestionPipeline
from llama_index.core.llms import MockLLM
from llama_index.core.node_parser import SentenceSplitter
from llama_index.core.schema import BaseNode, IndexNode, NodeRelationship, RelatedNodeInfo, TextNode
from llama_index.core.storage.docstore import SimpleDocumentStore
from llama_index.core.vector_stores.types import (
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
    VectorStoreQuery,
    VectorStoreQueryMode,
)
from tests.columns import document_columns

from llama_index.vector_stores.pgvecstore import PgVecStore, metadata_filters_to_dict
from llama_index.vector_stores.pgvecstore.nodes import chunk_indexes
from pgvecstore import PgVectorStore, StoreClosedError

DIM = 128
STOPWORDS = {"the", "and", "are", "why", "which", "when", "they", "such", "make", "makes", "into", "around"}
StoreMaker = Callable[..., PgVectorStore]


class WordHashEmbedding(BaseEmbedding):
    """Deterministic bag-of-words embedding: each word (3+ letters, not a stopword) adds 1 to a hashed dimension;
    unit length, float32 values, so similar wording means similar vectors."""

    def _vector(self, text: str) -> list[float]:
        vector = np.zeros(DIM, dtype=np.float32)
        for word in re.findall(r"[a-z0-9]{3,}", text.lower()):
            if word not in STOPWORDS:
                vector[hashlib.sha256(word.encode()).digest()[0] % DIM] += 1.0
        norm = float(np.linalg.norm(vector))
        if norm == 0:
            vector[0] = 1.0
            norm = 1.0
        return (vector / np.float32(norm)).astype(np.float32).tolist()

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._vector(query)

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._vector(query)

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._vector(text)


EMBED = WordHashEmbedding(embed_batch_size=16)

DOCS = {
    "cats": "Cats purr when they are content. A cat sleeps most of the day and hunts mice at night.",
    "postgres": "PostgreSQL stores rows in tables. Indexes such as btree and hnsw make queries on tables fast.",
    "space": "The moon orbits the earth. Rockets carry astronauts and satellites into orbit around planets.",
}


@pytest.fixture
def vector_store(make_store: StoreMaker) -> PgVecStore:
    """An adapter over a fresh table in this test's schema (the core store is closed after the test)."""
    return PgVecStore(make_store(dimensions=DIM, id_type="text"))


def unit(*pairs: tuple[int, float]) -> list[float]:
    vector = np.zeros(DIM, dtype=np.float32)
    for index, value in pairs:
        vector[index] = value
    return (vector / np.float32(np.linalg.norm(vector))).astype(np.float32).tolist()


def ids_of(nodes: list[BaseNode]) -> list[str]:
    return [node.node_id for node in nodes]


# -- end to end with llama-index-core ----------------------------------------------------------------------------


def documents() -> list[Document]:
    return [Document(id_=doc_id, text=text, metadata={"topic": doc_id}) for doc_id, text in DOCS.items()]


def test_index_retriever_and_query_engine(vector_store: PgVecStore, make_store: StoreMaker) -> None:
    storage_context = StorageContext.from_defaults(vector_store=vector_store)
    index = VectorStoreIndex.from_documents(documents(), storage_context=storage_context, embed_model=EMBED)
    assert vector_store.client.config.id_type == "text"

    retrieved = index.as_retriever(similarity_top_k=1).retrieve("why do cats purr and sleep")
    assert [hit.node.ref_doc_id for hit in retrieved] == ["cats"]
    assert retrieved[0].node.get_content() == DOCS["cats"]
    assert retrieved[0].node.metadata == {"topic": "cats"}
    stored_text = retrieved[0].node.get_content(metadata_mode="embed")  # what the index embedded
    query_vector = EMBED.get_query_embedding("why do cats purr and sleep")
    cosine = float(np.dot(query_vector, EMBED.get_text_embedding(stored_text)))
    assert retrieved[0].score == pytest.approx(cosine, abs=1e-4)

    engine = index.as_query_engine(llm=MockLLM(), similarity_top_k=1)
    response = engine.query("which index makes queries on tables fast")
    assert [source.node.ref_doc_id for source in response.source_nodes] == ["postgres"]
    assert DOCS["postgres"] in str(response)  # MockLLM echoes its prompt, which holds the retrieved context

    filtered = index.as_retriever(
        similarity_top_k=3, filters=MetadataFilters(filters=[MetadataFilter(key="topic", value="space")])
    ).retrieve("cats purr")
    assert [hit.node.ref_doc_id for hit in filtered] == ["space"]

    # A second index over the existing table (a new core store on the same table) finds the same nodes.
    reopened = PgVecStore(make_store(dimensions=DIM, id_type="text"))
    again = VectorStoreIndex.from_vector_store(reopened, embed_model=EMBED)
    hits = again.as_retriever(similarity_top_k=2).retrieve("rockets carry astronauts to the moon")
    assert hits[0].node.ref_doc_id == "space"
    assert hits[0].node.node_id == index.as_retriever(similarity_top_k=1).retrieve(
        "rockets carry astronauts to the moon")[0].node.node_id

    index.delete_ref_doc("cats")
    assert {n.ref_doc_id for n in reopened.get_nodes()} == {"postgres", "space"}


PIPELINE_V1 = {
    "a": "Alpha apples grow on trees. " * 20 + "Alpha ends here.",
    "b": "Bravo bikes need pumps. " * 30 + "Bravo ends here.",
}
PIPELINE_V2 = {"a": PIPELINE_V1["a"], "b": "Bravo changed completely. " * 12 + "Shorter now."}


def pipeline_for(store: PgVecStore, docstore: SimpleDocumentStore) -> IngestionPipeline:
    return IngestionPipeline(
        transformations=[SentenceSplitter(chunk_size=40, chunk_overlap=0), EMBED],
        docstore=docstore,
        vector_store=store,
        docstore_strategy=DocstoreStrategy.UPSERTS,
    )


def expected_chunks(texts: dict[str, str]) -> set[tuple[str, int, str]]:
    splitter = SentenceSplitter(chunk_size=40, chunk_overlap=0)
    nodes = splitter.get_nodes_from_documents([Document(id_=k, text=v) for k, v in texts.items()])
    expected = set()
    for doc_id in texts:
        mine = [n for n in nodes if n.ref_doc_id == doc_id]
        expected |= {(doc_id, i, n.get_content()) for i, n in enumerate(mine)}
    return expected


async def stored_chunks(store: PgVecStore) -> set[tuple[str, int, str]]:
    nodes = await store.aget_nodes()
    return {(doc, chunk, content) for content, doc, chunk in await document_columns(store.client, ids_of(nodes))}


@pytest.mark.parametrize("use_async", [False, True], ids=["run", "arun"])
async def test_ingestion_pipeline_upserts(vector_store: PgVecStore, use_async: bool) -> None:
    docstore = SimpleDocumentStore()
    for texts in (PIPELINE_V1, PIPELINE_V2):
        docs = [Document(id_=doc_id, text=text) for doc_id, text in texts.items()]
        pipeline = pipeline_for(vector_store, docstore)
        if use_async:
            await pipeline.arun(documents=docs)
        else:
            pipeline.run(documents=docs)  # the sync API, called inside this test's running loop
        expected = expected_chunks(texts)
        assert len(expected) > len(texts)  # several chunks per document, so chunk order is exercised
        assert await stored_chunks(vector_store) == expected
        assert await vector_store.client.count() == len(expected)


# -- node mapping ------------------------------------------------------------------------------------------------


def rich_nodes() -> list[BaseNode]:
    inner = TextNode(id_="inner", text="an object inside an index node", metadata={"kind": "inner"})
    return [
        TextNode(
            id_="t1",
            text="first chunk",
            embedding=unit((0, 1.0)),
            metadata={"n": 1, "f": 2.5, "flag": True, "tags": ["a", "b"], "nested": {"x": None}, "s": "1"},
            relationships={
                NodeRelationship.SOURCE: RelatedNodeInfo(node_id="doc1", metadata={"src": 1}),
                NodeRelationship.NEXT: RelatedNodeInfo(node_id="t2"),
            },
            start_char_idx=0,
            end_char_idx=11,
            excluded_embed_metadata_keys=["f"],
            excluded_llm_metadata_keys=["n", "tags"],
            text_template="{metadata_str}\n---\n{content}",
            metadata_template="{key}=>{value}",
            metadata_separator=" | ",
        ),
        TextNode(
            id_="t2",
            text="second chunk",
            embedding=unit((1, 1.0)),
            metadata={"content": "a user key named content", "document_id": "user value", "z": 0},
            relationships={
                NodeRelationship.SOURCE: RelatedNodeInfo(node_id="doc1"),
                NodeRelationship.PREVIOUS: RelatedNodeInfo(node_id="t1"),
            },
            start_char_idx=12,
            end_char_idx=24,
        ),
        IndexNode(id_="i1", text="points elsewhere", index_id="other-index", obj=inner, embedding=unit((2, 1.0))),
        TextNode(id_="orphan", text="", embedding=unit((3, 1.0))),
    ]


async def test_node_round_trip_is_exact(vector_store: PgVecStore) -> None:
    written = rich_nodes()
    assert await vector_store.async_add(written) == ["t1", "t2", "i1", "orphan"]

    read = await vector_store.aget_nodes(node_ids=["orphan", "i1", "missing", "t2", "t1"])
    by_id = {node.node_id: node for node in written}
    assert ids_of(read) == ["orphan", "i1", "t2", "t1"]
    for node in read:
        assert type(node) is type(by_id[node.node_id])
        assert node == by_id[node.node_id]
        assert node.get_content(metadata_mode="llm") == by_id[node.node_id].get_content(metadata_mode="llm")
    assert isinstance(read[1], IndexNode) and read[1].obj == by_id["i1"].obj

    result = await vector_store.aquery(VectorStoreQuery(query_embedding=unit((0, 1.0)), similarity_top_k=4))
    assert result.ids is not None and result.ids[0] == "t1"
    assert result.similarities is not None and result.similarities[0] == pytest.approx(1.0, abs=1e-6)
    assert result.nodes is not None
    for node in result.nodes:
        assert node == by_id[node.node_id].model_copy(update={"embedding": None})

    columns = await document_columns(vector_store.client, ["t1", "t2", "i1", "orphan"])
    assert columns == [
        ("first chunk", "doc1", 0),
        ("second chunk", "doc1", 1),
        ("points elsewhere", None, None),
        ("", None, None),
    ]


async def test_a_uuid_table_gives_node_ids_as_the_strings_written(make_store: StoreMaker) -> None:
    """On a core store with uuid ids, node ids go in as strings and every id LlamaIndex gets back is a string."""
    store = PgVecStore(make_store(dimensions=DIM, id_type="uuid"))
    node_ids = ["3b5d5c1e-0f43-4a53-9d4e-0c5e1b7c9a11", "9f1c2d3e-4b5a-4c6d-8e7f-0a1b2c3d4e5f"]
    written = [TextNode(id_=node_id, text=f"text {i}", metadata={"i": i}, embedding=unit((i, 1.0)))
               for i, node_id in enumerate(node_ids)]
    assert await store.async_add(written) == node_ids
    result = await store.aquery(VectorStoreQuery(query_embedding=unit((1, 1.0)), similarity_top_k=2))
    assert result.ids == [node_ids[1], node_ids[0]]
    assert result.nodes is not None and [n.node_id for n in result.nodes] == result.ids
    assert result.nodes[0] == written[1].model_copy(update={"embedding": None})
    read = await store.aget_nodes(node_ids=node_ids)
    assert sorted(n.node_id for n in read) == sorted(node_ids)
    assert all(type(n.node_id) is str for n in read)


async def test_readding_a_node_replaces_it(vector_store: PgVecStore) -> None:
    first = TextNode(id_="same", text="old text", metadata={"v": 1}, embedding=unit((0, 1.0)))
    await vector_store.async_add([first])
    second = TextNode(id_="same", text="new text", metadata={"v": 2}, embedding=unit((1, 1.0)))
    dup = TextNode(id_="other", text="x", embedding=unit((2, 1.0)))
    assert await vector_store.async_add([dup, second, dup]) == ["other", "same", "other"]
    assert await vector_store.client.count() == 2
    (node,) = await vector_store.aget_nodes(node_ids=["same"])
    assert node == second


def test_chunk_index_from_offsets_relationships_or_call_order() -> None:
    def node(node_id: str, doc: str | None, start: int | None = None, prev: str | None = None,
             nxt: str | None = None) -> TextNode:
        rel: dict[NodeRelationship, Any] = {}
        if doc:
            rel[NodeRelationship.SOURCE] = RelatedNodeInfo(node_id=doc)
        if prev:
            rel[NodeRelationship.PREVIOUS] = RelatedNodeInfo(node_id=prev)
        if nxt:
            rel[NodeRelationship.NEXT] = RelatedNodeInfo(node_id=nxt)
        return TextNode(id_=node_id, text=node_id, start_char_idx=start, relationships=rel)

    by_offset = [node("c", "d", 50), node("a", "d", 0), node("b", "d", 20), node("x", "e", 5)]
    assert chunk_indexes(by_offset) == [2, 0, 1, 0]
    by_links = [node("3", "d", prev="2"), node("1", "d", nxt="2"), node("2", "d", prev="1", nxt="3")]
    assert chunk_indexes(by_links) == [2, 0, 1]
    by_call = [node("p", "d"), node("q", None), node("r", "d")]
    assert chunk_indexes(by_call) == [0, None, 1]


async def test_chunk_index_follows_text_order(vector_store: PgVecStore) -> None:
    text = " ".join(f"Sentence number {i} talks about topic {i}." for i in range(30))
    nodes = SentenceSplitter(chunk_size=30, chunk_overlap=0).get_nodes_from_documents([Document(id_="d", text=text)])
    assert len(nodes) >= 3
    for node in nodes:
        node.embedding = EMBED.get_text_embedding(node.get_content())
    await vector_store.async_add(list(reversed(nodes)))
    columns = await document_columns(vector_store.client, ids_of(nodes))
    assert [chunk for _content, _doc, chunk in columns] == list(range(len(nodes)))
    assert ids_of(await vector_store.aget_nodes(filters=MetadataFilters(filters=[]))) == ids_of(nodes)


# -- deletes -----------------------------------------------------------------------------------------------------


def doc_nodes() -> list[TextNode]:
    made = []
    for i, (doc, topic) in enumerate([("d1", "x"), ("d1", "y"), ("d2", "x"), ("d2", "y"), (None, "x")]):
        rel = {NodeRelationship.SOURCE: RelatedNodeInfo(node_id=doc)} if doc else {}
        made.append(TextNode(id_=f"n{i}", text=f"node {i}", metadata={"topic": topic}, relationships=rel,
                             embedding=unit((i, 1.0))))
    return made


async def test_delete_by_ref_doc_id_removes_only_that_document(vector_store: PgVecStore) -> None:
    await vector_store.async_add(doc_nodes())
    await vector_store.adelete("d1")
    assert sorted(ids_of(await vector_store.aget_nodes())) == ["n2", "n3", "n4"]
    await vector_store.adelete("no-such-doc")
    assert await vector_store.client.count() == 3


async def test_delete_without_a_document_id_is_refused_and_deletes_nothing(vector_store: PgVecStore) -> None:
    await vector_store.async_add(doc_nodes())  # n4 has no source document
    for bad in (None, ""):
        with pytest.raises(ValueError, match="ref_doc_id"):
            await vector_store.adelete(bad)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="ref_doc_id"):
            vector_store.delete(bad)  # type: ignore[arg-type]
    assert sorted(ids_of(await vector_store.aget_nodes())) == ["n0", "n1", "n2", "n3", "n4"]


async def test_delete_nodes_get_nodes_and_clear(vector_store: PgVecStore) -> None:
    await vector_store.async_add(doc_nodes())
    only_x = MetadataFilters(filters=[MetadataFilter(key="topic", value="x")])
    assert ids_of(await vector_store.aget_nodes(filters=only_x)) == ["n0", "n2", "n4"]
    assert ids_of(await vector_store.aget_nodes(node_ids=["n3", "n0"], filters=only_x)) == ["n0"]
    assert await vector_store.aget_nodes(node_ids=[]) == []

    await vector_store.adelete_nodes(node_ids=["n0", "n1"], filters=only_x)
    assert sorted(ids_of(await vector_store.aget_nodes())) == ["n1", "n2", "n3", "n4"]
    await vector_store.adelete_nodes(node_ids=["n1"])
    await vector_store.adelete_nodes(filters=MetadataFilters(filters=[MetadataFilter(key="topic", value="y")]))
    assert sorted(ids_of(await vector_store.aget_nodes())) == ["n2", "n4"]
    # LlamaIndex's convention: no ids and no filters, or an empty id list, or filters without a condition,
    # delete nothing (clear() deletes every node).
    await vector_store.adelete_nodes()
    await vector_store.adelete_nodes(node_ids=[])
    await vector_store.adelete_nodes(filters=MetadataFilters(filters=[]))
    vector_store.delete_nodes()
    assert sorted(ids_of(await vector_store.aget_nodes())) == ["n2", "n4"]
    await vector_store.client.create_index("hnsw")  # filtered reads still return every match with an index
    assert ids_of(await vector_store.aget_nodes(filters=only_x)) == ["n2", "n4"]
    await vector_store.aclear()
    assert await vector_store.client.count() == 0


# -- filters -----------------------------------------------------------------------------------------------------

FILTER_ROWS: dict[str, tuple[str | None, dict[str, Any]]] = {
    "n1": ("d1", {"author": "Alice", "year": 2001, "rating": 4.5, "tags": ["ai", "db"], "title": "Postgres internals",
                  "note": ""}),
    "n2": ("d1", {"author": "Bob", "year": 1999, "rating": 3.0, "tags": ["db"], "title": "Vector search",
                  "note": None}),
    "n3": ("d2", {"author": "alice", "year": 2010, "rating": 5.0, "tags": ["ai"], "title": "POSTGRES tips",
                  "note": []}),
    "n4": ("d2", {"author": "Carol", "year": 2020, "tags": [], "title": "2020 graph review", "note": "x"}),
    "n5": ("d3", {"year": 2015, "rating": 2.0, "tags": ["ml", "ai", "db"], "title": "100% recall"}),
    "n6": (None, {"author": "Erin", "year": 2024, "rating": 1.0, "tags": ["web"], "title": "under_score name",
                  "note": "y"}),
}


def F(key: str, value: Any, op: FilterOperator = FilterOperator.EQ) -> MetadataFilter:
    return MetadataFilter(key=key, value=value, operator=op)


def all_of(*items: Any, condition: FilterCondition = FilterCondition.AND) -> MetadataFilters:
    return MetadataFilters(filters=list(items), condition=condition)


OP = FilterOperator
FILTER_CASES: dict[str, tuple[MetadataFilters, set[str]]] = {
    "eq": (all_of(F("author", "Alice")), {"n1"}),
    "ne keeps rows without the key": (all_of(F("author", "Alice", OP.NE)), {"n2", "n3", "n4", "n5", "n6"}),
    "gt": (all_of(F("year", 2010, OP.GT)), {"n4", "n5", "n6"}),
    "gte": (all_of(F("year", 2010, OP.GTE)), {"n3", "n4", "n5", "n6"}),
    "lt": (all_of(F("year", 2001, OP.LT)), {"n2"}),
    "lte": (all_of(F("year", 2001, OP.LTE)), {"n1", "n2"}),
    "gt float": (all_of(F("rating", 3.0, OP.GT)), {"n1", "n3"}),
    "in": (all_of(F("author", ["Bob", "Carol"], OP.IN)), {"n2", "n4"}),
    "nin keeps rows without the key": (all_of(F("author", ["Bob", "Carol"], OP.NIN)), {"n1", "n3", "n5", "n6"}),
    "any": (all_of(F("tags", ["ml", "web"], OP.ANY)), {"n5", "n6"}),
    "all": (all_of(F("tags", ["ai", "db"], OP.ALL)), {"n1", "n5"}),
    "contains": (all_of(F("tags", "db", OP.CONTAINS)), {"n1", "n2", "n5"}),
    "text_match is case-sensitive": (all_of(F("title", "Postgres", OP.TEXT_MATCH)), {"n1"}),
    "text_match_insensitive": (all_of(F("title", "postgres", OP.TEXT_MATCH_INSENSITIVE)), {"n1", "n3"}),
    "text_match % is literal": (all_of(F("title", "0% r", OP.TEXT_MATCH)), {"n5"}),
    "text_match _ is literal": (all_of(F("title", "r_s", OP.TEXT_MATCH)), {"n6"}),
    "is_empty": (all_of(F("note", None, OP.IS_EMPTY)), {"n1", "n2", "n3", "n5"}),
    "and": (all_of(F("year", 2001, OP.GTE), F("tags", "ai", OP.CONTAINS)), {"n1", "n3", "n5"}),
    "or": (all_of(F("author", "Bob"), F("year", 2020, OP.GT), condition=FilterCondition.OR), {"n2", "n6"}),
    "not (none may match)": (
        all_of(F("author", "Alice"), F("author", "Bob"), condition=FilterCondition.NOT),
        {"n3", "n4", "n5", "n6"},
    ),
    "nested": (
        all_of(
            all_of(F("author", "Alice"), F("author", "alice"), condition=FilterCondition.OR),
            all_of(F("year", 2005, OP.LT), condition=FilterCondition.NOT),
        ),
        {"n3"},
    ),
    "document_id column": (all_of(F("document_id", "d1")), {"n1", "n2"}),
    "document_id column in": (all_of(F("document_id", ["d2", "d3"], OP.IN)), {"n3", "n4", "n5"}),
}


@pytest.fixture
async def filter_store(vector_store: PgVecStore) -> PgVecStore:
    nodes = []
    for i, (node_id, (doc, metadata)) in enumerate(FILTER_ROWS.items()):
        rel = {NodeRelationship.SOURCE: RelatedNodeInfo(node_id=doc)} if doc else {}
        nodes.append(TextNode(id_=node_id, text=f"text of {node_id}", metadata=metadata, relationships=rel,
                              embedding=unit((i, 1.0), (DIM - 1, 0.5))))
    await vector_store.async_add(nodes)
    return vector_store


@pytest.mark.parametrize("case", list(FILTER_CASES), ids=list(FILTER_CASES))
async def test_filter_operators_and_conditions(filter_store: PgVecStore, case: str) -> None:
    filters, expected = FILTER_CASES[case]
    query = VectorStoreQuery(query_embedding=unit((DIM - 1, 1.0)), similarity_top_k=10, filters=filters)
    result = await filter_store.aquery(query)
    assert set(result.ids or []) == expected
    assert set(ids_of(await filter_store.aget_nodes(filters=filters))) == expected


async def test_doc_ids_and_node_ids_restrict_the_search(filter_store: PgVecStore) -> None:
    def search(**options: Any) -> VectorStoreQuery:
        return VectorStoreQuery(query_embedding=unit((0, 1.0)), similarity_top_k=10, **options)

    assert set((await filter_store.aquery(search(doc_ids=["d2", "d3"]))).ids or []) == {"n3", "n4", "n5"}
    assert set((await filter_store.aquery(search(doc_ids=["d1"]))).ids or []) == {"n1", "n2"}
    assert set((await filter_store.aquery(search(node_ids=["n6", "n1"]))).ids or []) == {"n1", "n6"}
    both = search(doc_ids=["d1", "d2"], node_ids=["n1", "n3", "n6"])
    assert set((await filter_store.aquery(both)).ids or []) == {"n1", "n3"}
    with_filter = search(doc_ids=["d1", "d2"], filters=all_of(F("author", "Bob")))
    assert (await filter_store.aquery(with_filter)).ids == ["n2"]
    # Empty lists restrict nothing (VectorStoreIndex's retriever always passes node_ids=[]).
    assert len((await filter_store.aquery(search(doc_ids=[], node_ids=[]))).ids or []) == 6
    top1 = await filter_store.aquery(VectorStoreQuery(query_embedding=unit((0, 1.0)), similarity_top_k=1))
    assert top1.ids == ["n1"]


def test_filter_translation_to_core_dicts() -> None:
    assert metadata_filters_to_dict(None) is None
    assert metadata_filters_to_dict(MetadataFilters(filters=[])) is None
    assert metadata_filters_to_dict(all_of(F("a", 1), F("b", "x"))) == {"a": 1, "b": "x"}
    assert metadata_filters_to_dict(all_of(F("a", 1), F("a", 2))) == {"$and": [{"a": 1}, {"a": 2}]}
    cases = {
        OP.NE: {"k": {"$ne": 3}},
        OP.GT: {"k": {"$gt": 3}},
        OP.GTE: {"k": {"$gte": 3}},
        OP.LT: {"k": {"$lt": 3}},
        OP.LTE: {"k": {"$lte": 3}},
        OP.IN: {"k": {"$in": [3]}},
        OP.NIN: {"k": {"$nin": [3]}},
        OP.CONTAINS: {"k": {"$contains": 3}},
    }
    for op, expected in cases.items():
        assert metadata_filters_to_dict(all_of(F("k", 3, op))) == expected, op
    assert metadata_filters_to_dict(all_of(F("k", ["a", "b"], OP.ANY))) == {
        "$or": [{"k": {"$contains": "a"}}, {"k": {"$contains": "b"}}]
    }
    assert metadata_filters_to_dict(all_of(F("k", ["a", "b"], OP.ALL))) == {"k": {"$contains": ["a", "b"]}}
    assert metadata_filters_to_dict(all_of(F("k", "50%_a\\b", OP.TEXT_MATCH))) == {"k": {"$like": "%50\\%\\_a\\\\b%"}}
    assert metadata_filters_to_dict(all_of(F("k", "Ab", OP.TEXT_MATCH_INSENSITIVE))) == {"k": {"$ilike": "%Ab%"}}
    assert metadata_filters_to_dict(all_of(F("k", None, OP.IS_EMPTY))) == {
        "$or": [{"k": None}, {"k": ""}, {"k": {"$eq": []}}]
    }
    nested = all_of(
        all_of(F("a", 1), F("b", 2, OP.GT), condition=FilterCondition.OR),
        all_of(F("c", 3), condition=FilterCondition.NOT),
        all_of(F("d", 1), F("e", 2), condition=FilterCondition.NOT),
    )
    assert metadata_filters_to_dict(nested) == {
        "$and": [
            {"$or": [{"a": 1}, {"b": {"$gt": 2}}]},
            {"$not": {"c": 3}},
            {"$not": {"$or": [{"d": 1}, {"e": 2}]}},
        ]
    }
    with pytest.raises(ValueError, match=r"'k'.*string"):
        metadata_filters_to_dict(all_of(F("k", 3, OP.TEXT_MATCH)))
    with pytest.raises(ValueError, match=r"'k'.*at least one"):
        metadata_filters_to_dict(all_of(F("k", [], OP.ANY)))


# -- query modes -------------------------------------------------------------------------------------------------


async def test_mmr_prefers_diverse_results(vector_store: PgVecStore) -> None:
    nodes = [
        TextNode(id_="a1", text="a1", embedding=unit((0, 1.0), (1, 0.05))),
        TextNode(id_="a2", text="a2", embedding=unit((0, 1.0), (1, 0.06))),
        TextNode(id_="a3", text="a3", embedding=unit((0, 1.0), (1, 0.07))),
        TextNode(id_="b", text="b", embedding=unit((0, 0.6), (2, 0.8))),
    ]
    await vector_store.async_add(nodes)
    query = unit((0, 1.0))
    plain = await vector_store.aquery(VectorStoreQuery(query_embedding=query, similarity_top_k=2))
    assert plain.ids == ["a1", "a2"]
    mmr = await vector_store.aquery(
        VectorStoreQuery(query_embedding=query, similarity_top_k=2, mode=VectorStoreQueryMode.MMR, mmr_threshold=0.3)
    )
    assert mmr.ids == ["a1", "b"]
    assert mmr.similarities is not None and mmr.similarities[1] == pytest.approx(0.6, abs=1e-4)
    assert [n.node_id for n in mmr.nodes or []] == ["a1", "b"]
    via_kwargs = await vector_store.aquery(
        VectorStoreQuery(query_embedding=query, similarity_top_k=2, mode=VectorStoreQueryMode.MMR),
        mmr_threshold=0.3,  # how a retriever's vector_store_kwargs arrive
    )
    assert via_kwargs.ids == ["a1", "b"]
    pure_relevance = await vector_store.aquery(
        VectorStoreQuery(query_embedding=query, similarity_top_k=2, mode=VectorStoreQueryMode.MMR, mmr_threshold=1.0)
    )
    assert pure_relevance.ids == ["a1", "a2"]


async def test_mmr_prefetch_options_decide_the_candidates(vector_store: PgVecStore, make_store: StoreMaker) -> None:
    """The diverse node "b" is the 4th nearest: MMR can pick it only when at least 4 candidates are fetched, as
    mmr_prefetch_k, mmr_prefetch_factor (per query) and the store's mmr_prefetch_factor decide."""
    nodes = [
        TextNode(id_="a1", text="a1", embedding=unit((0, 1.0), (1, 0.05))),
        TextNode(id_="a2", text="a2", embedding=unit((0, 1.0), (1, 0.06))),
        TextNode(id_="a3", text="a3", embedding=unit((0, 1.0), (1, 0.07))),
        TextNode(id_="b", text="b", embedding=unit((0, 0.6), (2, 0.8))),
    ]
    await vector_store.async_add(nodes)
    query = VectorStoreQuery(query_embedding=unit((0, 1.0)), similarity_top_k=2, mode=VectorStoreQueryMode.MMR,
                             mmr_threshold=0.3)

    async def picked(store: PgVecStore = vector_store, **kwargs: Any) -> list[str] | None:
        return (await store.aquery(query, **kwargs)).ids

    assert await picked() == ["a1", "b"]  # the default factor, 4: 8 candidates
    assert await picked(mmr_prefetch_k=3) == ["a1", "a2"]
    assert await picked(mmr_prefetch_k=4) == ["a1", "b"]
    assert await picked(mmr_prefetch_factor=1) == ["a1", "a2"]
    assert await picked(mmr_prefetch_factor=2) == ["a1", "b"]
    same_table = make_store(dimensions=DIM, id_type="text")  # the same table, another store over it
    narrow = PgVecStore(same_table, mmr_prefetch_factor=1)
    assert await picked(narrow) == ["a1", "a2"]
    assert await picked(narrow, mmr_prefetch_k=10) == ["a1", "b"]


async def test_unsupported_query_mode_is_a_clear_error(vector_store: PgVecStore) -> None:
    query = VectorStoreQuery(query_embedding=unit((0, 1.0)), query_str="cats",
                             mode=VectorStoreQueryMode.SEMANTIC_HYBRID)
    with pytest.raises(NotImplementedError, match="is not supported"):
        await vector_store.aquery(query)
    with pytest.raises(NotImplementedError, match="is not supported"):
        vector_store.query(query)


async def test_query_without_embedding_is_a_clear_error(vector_store: PgVecStore) -> None:
    with pytest.raises(ValueError, match="query_embedding"):
        await vector_store.aquery(VectorStoreQuery(query_str="cats"))


# -- sync and async bridges --------------------------------------------------------------------------------------


async def test_sync_api_inside_a_running_event_loop(vector_store: PgVecStore) -> None:
    asyncio.get_running_loop()  # this test body runs inside the loop, as a Jupyter cell does
    nodes = doc_nodes()
    assert vector_store.add(nodes) == ids_of(nodes)
    result = vector_store.query(VectorStoreQuery(query_embedding=unit((2, 1.0)), similarity_top_k=1))
    assert result.ids == ["n2"]
    assert ids_of(vector_store.get_nodes(node_ids=["n4", "n0"])) == ["n4", "n0"]
    vector_store.delete("d1")
    vector_store.delete_nodes(node_ids=["n2"])
    assert sorted(ids_of(vector_store.get_nodes())) == ["n3", "n4"]
    # The async twins use this loop's own pool, alongside the sync API's background loop.
    assert sorted(ids_of(await vector_store.aget_nodes())) == ["n3", "n4"]
    vector_store.clear()
    assert await vector_store.client.count() == 0
    vector_store.close()  # the one close of the sync API: it never waits on this very loop, which it cannot
    await asyncio.sleep(0)  # this loop's pool closes as soon as the loop runs again
    with pytest.raises(StoreClosedError):
        await vector_store.aget_nodes()
    with pytest.raises(StoreClosedError):
        vector_store.get_nodes()
    await vector_store.aclose()  # closing again is harmless


def test_options_construction_defaults_to_text_ids(pg_dsn: str, schema: str) -> None:
    store = PgVecStore(dimensions=DIM, connection_string=pg_dsn, schema=schema, pool_max_size=2)
    try:
        assert store.client.config.id_type == "text"
        assert store.stores_text and PgVecStore.class_name() == "PgVecStore"
        store.add([TextNode(id_="any string id", text="t", embedding=unit((0, 1.0)))])
        assert ids_of(store.get_nodes()) == ["any string id"]
    finally:
        store.close()
    with pytest.raises(ValueError, match="existing PgVectorStore"):
        PgVecStore(PgVectorStore(dimensions=DIM), schema=schema)
