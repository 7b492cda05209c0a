"""The LangChain adapter as a user meets it: RAG chains, sync use from a running loop and from threads, MMR,
metadata and id round-trips, relevance scores per metric, document/chunk mapping and filters.

Embeddings here are small hand-made ones (a keyword bag or an explicit table), so the geometry of each case is
known; everything runs against the real embedded PostgreSQL.
"""

from __future__ import annotations

import asyncio
import math
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding, Embeddings
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda, RunnablePassthrough
from tests.columns import document_columns

from langchain_pgvecstore import PgVecStore
from pgvecstore import PgVectorStore, StoreClosedError, TableNotFoundError, run_sync

VOCABULARY = ("postgres", "vector", "index", "python", "async", "cat", "dog", "pizza")


class KeywordEmbeddings(Embeddings):
    """Counts of a few keywords (plus a small constant so no vector is zero): similar words, similar vectors."""

    def _embed(self, text: str) -> list[float]:
        lowered = text.lower()
        return [float(lowered.count(word)) + 0.01 for word in VOCABULARY]

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [self._embed(t) for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return self._embed(text)


class TableEmbeddings(Embeddings):
    """Explicit vectors per text, for cases whose geometry must be exact."""

    def __init__(self, table: dict[str, Sequence[float]]) -> None:
        self.table = {text: [float(x) for x in vector] for text, vector in table.items()}

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [self.table[t] for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return self.table[text]


@pytest.fixture
async def make_lc(pg_dsn: str, schema: str) -> AsyncIterator[Callable[..., PgVecStore]]:
    """Factory of adapter stores in this test's schema; all are closed after the test."""
    made: list[PgVecStore] = []

    def factory(embedding: Embeddings, **options: Any) -> PgVecStore:
        options.setdefault("connection_string", pg_dsn)
        options.setdefault("schema", schema)
        options.setdefault("pool_min_size", 1)
        options.setdefault("pool_max_size", 3)
        store = PgVecStore(embedding, **options)
        made.append(store)
        return store

    yield factory
    for store in made:
        await store.aclose()


KNOWLEDGE = [
    Document(page_content="pgvector adds vector search to postgres", metadata={"source": "pg.md"}),
    Document(page_content="an HNSW index makes vector search fast", metadata={"source": "hnsw.md"}),
    Document(page_content="cats and dogs are popular pets; a cat sleeps a lot", metadata={"source": "pets.md"}),
    Document(page_content="pizza is baked in a very hot oven", metadata={"source": "food.md"}),
    Document(page_content="python runs async code with asyncio", metadata={"source": "py.md"}),
]


def format_docs(docs: list[Document]) -> str:
    return "\n\n".join(doc.page_content for doc in docs)


def rag_chain(retriever: Any, seen: list[str]) -> Any:
    """retriever | format_docs | prompt | FakeListChatModel, recording the prompt the model receives."""
    prompt = ChatPromptTemplate.from_messages(
        [("system", "Answer from this context only:\n{context}"), ("human", "{question}")]
    )

    def record(prompt_value: Any) -> Any:
        seen.append(prompt_value.to_messages()[0].content)
        return prompt_value

    llm = FakeListChatModel(responses=["pgvector, inside postgres"] * 4)
    return (
        {"context": retriever | format_docs, "question": RunnablePassthrough()}
        | prompt
        | RunnableLambda(record)
        | llm
        | StrOutputParser()
    )


# -- RAG chains ----------------------------------------------------------------------------------------------
def test_rag_chain_retrieves_the_expected_context(make_lc: Callable[..., PgVecStore]) -> None:
    store = make_lc(KeywordEmbeddings(), dimensions=len(VOCABULARY))
    store.add_documents(KNOWLEDGE)
    seen: list[str] = []
    chain = rag_chain(store.as_retriever(search_kwargs={"k": 2}), seen)

    answer = chain.invoke("how does postgres do vector search?")

    assert answer == "pgvector, inside postgres"
    assert seen == ["Answer from this context only:\n" + format_docs(KNOWLEDGE[:2])]


async def test_rag_chain_async_and_sync_from_inside_a_running_loop(make_lc: Callable[..., PgVecStore]) -> None:
    """In a running event loop (as in Jupyter) both `ainvoke` and the blocking `invoke` work, on one store."""
    store = make_lc(KeywordEmbeddings(), dimensions=len(VOCABULARY))
    await store.aadd_documents(KNOWLEDGE)
    seen: list[str] = []
    chain = rag_chain(store.as_retriever(search_kwargs={"k": 2}), seen)

    assert await chain.ainvoke("how does postgres do vector search?") == "pgvector, inside postgres"
    assert chain.invoke("how does postgres do vector search?") == "pgvector, inside postgres"
    assert seen == ["Answer from this context only:\n" + format_docs(KNOWLEDGE[:2])] * 2


async def test_retriever_search_types(make_lc: Callable[..., PgVecStore]) -> None:
    store = make_lc(KeywordEmbeddings(), dimensions=len(VOCABULARY))
    store.add_documents(KNOWLEDGE)
    question = "a cat or a dog?"

    similar = store.as_retriever(search_kwargs={"k": 1}).invoke(question)
    assert [d.page_content for d in similar] == [KNOWLEDGE[2].page_content]

    mmr = await store.as_retriever(search_type="mmr", search_kwargs={"k": 2}).ainvoke(question)
    assert mmr[0].page_content == KNOWLEDGE[2].page_content and len(mmr) == 2

    threshold = store.as_retriever(
        search_type="similarity_score_threshold", search_kwargs={"k": 5, "score_threshold": 0.9}
    )
    assert [d.page_content for d in threshold.invoke(question)] == [KNOWLEDGE[2].page_content]
    assert [d.page_content for d in await threshold.ainvoke(question)] == [KNOWLEDGE[2].page_content]

    filtered = store.as_retriever(search_kwargs={"k": 5, "filter": {"source": "food.md"}})
    assert [d.page_content for d in filtered.invoke(question)] == [KNOWLEDGE[3].page_content]


# -- the sync API from a running loop and from threads --------------------------------------------------------
async def test_sync_api_inside_a_running_event_loop(make_lc: Callable[..., PgVecStore]) -> None:
    store = make_lc(DeterministicFakeEmbedding(size=6), dimensions=6)
    ids = store.add_texts(["alpha", "beta", "gamma"], [{"n": 1}, {"n": 2}, {"n": 3}], ids=["a", "b", "c"])
    assert ids == ["a", "b", "c"]
    assert store.similarity_search("beta", k=1)[0] == Document(id="b", page_content="beta", metadata={"n": 2})
    assert len(store.max_marginal_relevance_search("alpha", k=2)) == 2
    assert {d.id for d in store.get_by_ids(["a", "c", "zzz"])} == {"a", "c"}
    assert store.delete(["a"]) is True
    # The async twins on this loop see what the sync calls (on the background loop) wrote.
    assert {d.id for d in await store.asimilarity_search("alpha", k=5)} == {"b", "c"}


def test_sync_calls_from_several_threads(make_lc: Callable[..., PgVecStore]) -> None:
    store = make_lc(DeterministicFakeEmbedding(size=6), dimensions=6)
    barrier = threading.Barrier(4)

    def work(worker: int) -> list[str]:
        barrier.wait()
        texts = [f"worker {worker} text {i}" for i in range(5)]
        ids = store.add_texts(texts, [{"worker": worker}] * 5, ids=[f"w{worker}-{i}" for i in range(5)])
        found = store.similarity_search(texts[0], k=20, filter={"worker": worker})
        assert {d.id for d in found} == set(ids)
        return ids

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(work, range(4)))

    every_id = [i for ids in results for i in ids]
    assert len(store.get_by_ids(every_id)) == 20
    assert run_sync(store.store.count()) == 20


def test_async_methods_from_several_event_loops(make_lc: Callable[..., PgVecStore]) -> None:
    """Each `asyncio.run` is a new loop (in this thread and in another): the store serves each one."""
    store = make_lc(DeterministicFakeEmbedding(size=6), dimensions=6)

    async def add_and_find(text: str) -> list[str]:
        await store.aadd_texts([text], ids=[text])
        return [d.id or "" for d in await store.asimilarity_search(text, k=10)]

    assert asyncio.run(add_and_find("one")) == ["one"]
    with ThreadPoolExecutor(max_workers=1) as pool:
        assert sorted(pool.submit(asyncio.run, add_and_find("two")).result()) == ["one", "two"]
    assert sorted(asyncio.run(add_and_find("three"))) == ["one", "three", "two"]
    assert sorted(d.id or "" for d in store.similarity_search("one", k=10)) == ["one", "three", "two"]


@pytest.mark.timeout(60)
async def test_sync_close_inside_a_running_loop_does_not_deadlock(make_lc: Callable[..., PgVecStore]) -> None:
    """A store used both ways in a notebook cell (pools on the background loop and on this one) closes cleanly."""
    store = make_lc(DeterministicFakeEmbedding(size=6), dimensions=6)
    store.add_texts(["a"], ids=["a"])
    assert [d.id for d in await store.asimilarity_search("a", k=1)] == ["a"]
    store.close()
    await asyncio.sleep(0)
    with pytest.raises(StoreClosedError):
        await store.asimilarity_search("a", k=1)
    with pytest.raises(StoreClosedError):
        store.similarity_search("a", k=1)


# -- MMR ------------------------------------------------------------------------------------------------------
def _unit(vector: Sequence[float]) -> list[float]:
    norm = math.sqrt(sum(x * x for x in vector))
    return [x / norm for x in vector]


MMR_TABLE = {
    "query": _unit([1, 0, 0, 0]),
    # Three near-duplicates, the nearest to the query (cosine 0.9).
    "dup 1": _unit([0.9, 0.436, 0, 0]),
    "dup 2": _unit([0.9, 0.436, 0.01, 0]),
    "dup 3": _unit([0.9, 0.44, 0, 0.01]),
    # Less similar to the query, but unlike the duplicates (and each other).
    "side": _unit([0.8, -0.6, 0, 0]),
    "other": _unit([0.7, 0, 0.714, 0]),
    "far": _unit([0.1, 0, 0, 1]),
}
DUPLICATES = {"dup 1", "dup 2", "dup 3"}


@pytest.fixture
def mmr_store(make_lc: Callable[..., PgVecStore]) -> PgVecStore:
    store = make_lc(TableEmbeddings(MMR_TABLE), dimensions=4)
    texts = [t for t in MMR_TABLE if t != "query"]
    store.add_texts(texts, ids=texts)
    return store


def test_mmr_is_diverse_where_similarity_returns_near_duplicates(mmr_store: PgVecStore) -> None:
    plain = [d.page_content for d in mmr_store.similarity_search("query", k=3)]
    assert set(plain) == DUPLICATES

    diverse = [d.page_content for d in mmr_store.max_marginal_relevance_search("query", k=3)]
    assert len(diverse) == 3
    assert diverse[0] in DUPLICATES
    assert diverse[1:] == ["side", "other"]


async def test_mmr_lambda_mult_and_fetch_k_are_respected(mmr_store: PgVecStore) -> None:
    plain = [d.page_content for d in mmr_store.similarity_search("query", k=3)]
    # lambda_mult=1 is pure relevance: the similarity ranking.
    relevance_only = await mmr_store.amax_marginal_relevance_search("query", k=3, lambda_mult=1)
    assert [d.page_content for d in relevance_only] == plain
    # lambda_mult=0 is pure diversity (0 is not "unset"): after the best match, the least redundant ones.
    diversity_only = mmr_store.max_marginal_relevance_search("query", k=3, lambda_mult=0)
    assert [d.page_content for d in diversity_only] == [plain[0], "far", "side"]
    # Candidates come from the fetch_k nearest only: with fetch_k=3 those are the duplicates.
    narrow = mmr_store.max_marginal_relevance_search("query", k=3, fetch_k=3)
    assert {d.page_content for d in narrow} == DUPLICATES
    # By vector, async, with a filter on the id column.
    by_vector = await mmr_store.amax_marginal_relevance_search_by_vector(
        MMR_TABLE["query"], k=2, filter={"id": "side"}
    )
    assert [(d.id, d.page_content) for d in by_vector] == [("side", "side")]
    with pytest.raises(ValueError, match="lambda_mult"):
        mmr_store.max_marginal_relevance_search("query", lambda_mult=1.5)
    with pytest.raises(ValueError, match="fetch_k"):
        await mmr_store.amax_marginal_relevance_search("query", fetch_k=0)


# -- metadata, ids, mapping ----------------------------------------------------------------------------------
async def test_metadata_round_trips_exactly_with_types(make_lc: Callable[..., PgVecStore]) -> None:
    store = make_lc(DeterministicFakeEmbedding(size=6), dimensions=6)
    metadata = {
        "int": 7,
        "float": 2.5,
        "bool": False,
        "none": None,
        "list": [1, "two", 3.0, True],
        "nested": {"a": {"b": [None, 1]}},
        "text": "naïve café ✓",
        "source": 42,  # an int source becomes document_id "42" but stays an int in metadata
        "content": "a metadata key named content",
        "document_id": 99,
        "chunk_index": "not an int",
    }
    plain = {"x": 1}
    docs = [Document(page_content="full", metadata=metadata), Document(page_content="plain", metadata=plain)]
    ids = await store.aadd_documents(docs, ids=["full", "plain"])
    assert docs[0].metadata == metadata and docs[0].id is None  # not mutated

    for got in (await store.aget_by_ids(ids), store.get_by_ids(ids)):
        assert got == [
            Document(id="full", page_content="full", metadata=metadata),
            Document(id="plain", page_content="plain", metadata=plain),
        ]
        full = got[0].metadata
        assert type(full["int"]) is int and type(full["float"]) is float and full["bool"] is False
        assert type(full["document_id"]) is int and type(full["source"]) is int
        assert full["chunk_index"] == "not an int"
    found = store.similarity_search_with_score("full", k=1)[0][0]
    assert found.metadata == metadata

    # The core holds the metadata exactly as given, and the derived columns beside it: content from
    # page_content, document_id from metadata document_id, chunk_index derived (metadata's is not an integer).
    (_, core_meta), _ = await store.store.get_vectors(["full", "plain"])
    assert core_meta == metadata
    assert await document_columns(store.store, ["full"]) == [("full", "99", 0)]


async def test_ids_mix_of_set_and_unset_and_replacement(make_lc: Callable[..., PgVecStore]) -> None:
    store = make_lc(DeterministicFakeEmbedding(size=6), dimensions=6)
    docs = [
        Document(id="given-1", page_content="one"),
        Document(page_content="two"),
        Document(id="given-3", page_content="three"),
        Document(page_content="four"),
    ]
    ids = store.add_documents(docs)
    assert ids[0] == "given-1" and ids[2] == "given-3"
    assert ids[1] and ids[3] and len(set(ids)) == 4
    assert {d.id for d in store.get_by_ids(ids)} == set(ids)

    # Re-adding an id replaces the row; ids= wins over Document.id.
    await store.aadd_documents([Document(id="given-1", page_content="one, revised", metadata={"v": 2})])
    store.add_documents([Document(id="ignored", page_content="three, revised")], ids=["given-3"])
    got = {d.id: d for d in store.get_by_ids([*ids, "ignored"])}
    assert got["given-1"] == Document(id="given-1", page_content="one, revised", metadata={"v": 2})
    assert got["given-3"].page_content == "three, revised"
    assert "ignored" not in got
    assert run_sync(store.store.count()) == 4

    # add_texts with ids, from_texts / afrom_documents with ids.
    assert store.add_texts(["five"], ids=["5"]) == ["5"]
    with pytest.raises(ValueError, match="ids has 1 entries"):
        store.add_texts(["a", "b"], ids=["only-one"])


def test_from_texts_and_documents_learn_dimensions(pg_dsn: str, schema: str) -> None:
    embedding = DeterministicFakeEmbedding(size=5)
    store = PgVecStore.from_texts(
        ["a", "b"], embedding, [{"k": 1}, {"k": 2}], ids=["a", "b"], connection_string=pg_dsn, schema=schema,
        table_name="from_texts",
    )
    try:
        assert store.store.config.dimensions == 5 and store.store.config.id_type == "text"
        assert store.similarity_search("a", k=1) == [Document(id="a", page_content="a", metadata={"k": 1})]
    finally:
        store.close()

    async def build() -> list[Document]:
        built = await PgVecStore.afrom_documents(
            [Document(id="x", page_content="x"), Document(page_content="y")], embedding,
            connection_string=pg_dsn, schema=schema, table_name="from_documents",
        )
        try:
            return await built.asimilarity_search("x", k=5)
        finally:
            await built.aclose()

    assert [d.id for d in asyncio.run(build())][:1] == ["x"]

    # Without dimensions and before any add: a read takes them from the existing table.
    later = PgVecStore(embedding, connection_string=pg_dsn, schema=schema, table_name="from_texts")
    try:
        assert [d.id for d in later.get_by_ids(["b"])] == ["b"]
        assert later.dimensions == 5
    finally:
        later.close()


class NoProbeEmbeddings(DeterministicFakeEmbedding):
    """Embeds documents; refuses to embed a query, so no call may embed one just to learn the dimensions."""

    def embed_query(self, text: str) -> list[float]:
        raise AssertionError(f"a query was embedded: {text!r}")

    async def aembed_query(self, text: str) -> list[float]:
        raise AssertionError(f"a query was embedded: {text!r}")


async def test_calls_without_vectors_never_embed_a_probe(pg_dsn: str, schema: str) -> None:
    options = {"connection_string": pg_dsn, "schema": schema, "table_name": "no_probe"}
    fresh = PgVecStore(NoProbeEmbeddings(size=5), **options)
    try:
        # No table yet and no dimensions: nothing to read, delete or clear, and nothing is created.
        assert fresh.get_by_ids(["a"]) == [] and await fresh.aget_by_ids(["a"]) == []
        assert fresh.delete(["a"]) is True and await fresh.adelete(filter={"k": 1}) is True
        assert fresh.clear() == 0 and fresh.dimensions is None
        with pytest.raises(TableNotFoundError, match="add documents first"):
            fresh.store  # noqa: B018
        assert fresh.add_texts(["a", "b"], [{"k": 1}, {"k": 2}], ids=["a", "b"]) == ["a", "b"]
        assert fresh.dimensions == 5
    finally:
        fresh.close()
    later = PgVecStore(NoProbeEmbeddings(size=5), **options)
    try:
        assert [d.metadata for d in await later.aget_by_ids(["b", "a"])] == [{"k": 2}, {"k": 1}]
        assert later.delete(filter={"k": 1}) is True and later.clear() == 1
        assert later.dimensions == 5
    finally:
        later.close()


async def test_an_existing_core_store(make_store: Callable[..., PgVectorStore]) -> None:
    core = make_store(dimensions=6, id_type="text", table_name="shared")
    await core.add_vectors([[1, 0, 0, 0, 0, 0]], ids=["core-row"], metadata=[{"tag": "core"}],
                           contents=["written by the core"], document_ids=["doc-1"], chunk_indexes=[3])
    store = PgVecStore(DeterministicFakeEmbedding(size=6), store=core)
    assert store.store is core
    # A row written without the adapter reads back with the metadata it was written with.
    assert await store.aget_by_ids(["core-row"]) == [
        Document(id="core-row", page_content="written by the core", metadata={"tag": "core"})
    ]
    with pytest.raises(ValueError, match="not both"):
        PgVecStore(DeterministicFakeEmbedding(size=6), store=core, schema="other")


async def test_reads_by_id_on_a_uuid_store_take_ids_in_any_spelling(make_store: Callable[..., PgVectorStore]) -> None:
    store = PgVecStore(DeterministicFakeEmbedding(size=6), store=make_store(dimensions=6, table_name="uuids"))
    ids = [str(uuid.uuid4()) for _ in range(3)]
    await store.aadd_texts(["a", "b", "c"], ids=ids)
    asked = [ids[2].upper(), ids[0], "{" + ids[1] + "}"]
    assert [d.page_content for d in await store.aget_by_ids(asked)] == ["c", "a", "b"]


async def test_document_id_and_chunk_index_mapping(make_lc: Callable[..., PgVecStore]) -> None:
    store = make_lc(DeterministicFakeEmbedding(size=6), dimensions=6)
    docs = [
        # Chunks of a.txt arrive out of order; start_index gives their order.
        Document(page_content="a third", metadata={"source": "a.txt", "start_index": 200}),
        Document(page_content="a first", metadata={"source": "a.txt", "start_index": 0}),
        Document(page_content="b first", metadata={"source": "b.txt"}),
        Document(page_content="a second", metadata={"source": "a.txt", "start_index": 100}),
        Document(page_content="b second", metadata={"source": "b.txt"}),
        # metadata document_id wins over source; an explicit chunk_index is kept.
        Document(page_content="c", metadata={"source": "ignored", "document_id": "c-doc", "chunk_index": 7}),
        Document(page_content="no source"),
        Document(page_content="long source", metadata={"source": "https://x/" + "y" * 300}),
    ]
    ids = await store.aadd_documents(docs)
    columns = [(doc, chunk) for _content, doc, chunk in await document_columns(store.store, ids)]
    assert columns == [
        ("a.txt", 2), ("a.txt", 0), ("b.txt", 0), ("a.txt", 1), ("b.txt", 1), ("c-doc", 7), (None, None),
        (None, None),
    ]
    # The derived columns are filterable, and the Documents still carry only their own metadata.
    in_a = await store.asimilarity_search("a", k=10, filter={"document_id": "a.txt"})
    assert sorted(d.page_content for d in in_a) == ["a first", "a second", "a third"]
    assert all(set(d.metadata) == {"source", "start_index"} for d in in_a)
    second = store.similarity_search("a", k=10, filter={"document_id": "b.txt", "chunk_index": 1})
    assert [d.page_content for d in second] == ["b second"]
    assert store.get_by_ids([ids[5]])[0].metadata == {"source": "ignored", "document_id": "c-doc", "chunk_index": 7}


async def test_an_unusable_document_id_is_named_and_nothing_is_written(make_lc: Callable[..., PgVecStore]) -> None:
    store = make_lc(DeterministicFakeEmbedding(size=6), dimensions=6)
    docs = [Document(page_content="fine", metadata={"source": "a.txt"}),
            Document(page_content="bad", metadata={"document_id": ["a", "list"]})]
    with pytest.raises(ValueError, match="document_id at position 1"):
        await store.aadd_documents(docs)
    assert await store.store.count() == 0


# -- relevance scores ----------------------------------------------------------------------------------------
SCORE_TABLE = {"query": [1.0, 0.0], "same": [1.0, 0.0], "orthogonal": [0.0, 1.0], "opposite": [-1.0, 0.0]}


@pytest.mark.parametrize(
    ("metric", "scores", "relevance"),
    [
        ("cosine", [1.0, 0.0, -1.0], [1.0, 0.5, 0.0]),
        ("inner_product", [1.0, 0.0, -1.0], [1.0, 0.5, 0.0]),
        ("euclidean", [1.0, 1 / (1 + math.sqrt(2)), 1 / 3], [1.0, 1 / (1 + math.sqrt(2)), 1 / 3]),
    ],
)
async def test_relevance_scores_per_metric(
    make_lc: Callable[..., PgVecStore], metric: str, scores: list[float], relevance: list[float]
) -> None:
    store = make_lc(TableEmbeddings(SCORE_TABLE), dimensions=2, metric=metric, table_name=f"scores_{metric}")
    store.add_texts(["same", "orthogonal", "opposite"], ids=["same", "orthogonal", "opposite"])

    with_scores = store.similarity_search_with_score("query", k=3)
    assert [d.id for d, _ in with_scores] == ["same", "orthogonal", "opposite"]
    assert [s for _, s in with_scores] == pytest.approx(scores, abs=1e-6)

    for got in (
        store.similarity_search_with_relevance_scores("query", k=3),
        await store.asimilarity_search_with_relevance_scores("query", k=3),
    ):
        assert [d.id for d, _ in got] == ["same", "orthogonal", "opposite"]
        assert [s for _, s in got] == pytest.approx(relevance, abs=1e-6)
        assert all(0.0 <= s <= 1.0 for _, s in got)

    above = store.similarity_search_with_relevance_scores("query", k=3, score_threshold=0.4)
    assert [d.id for d, _ in above] == ["same", "orthogonal"]


# -- filters and deletes -------------------------------------------------------------------------------------
async def test_filters_with_the_core_filter_dict(make_lc: Callable[..., PgVecStore]) -> None:
    store = make_lc(DeterministicFakeEmbedding(size=6), dimensions=6)
    texts = [f"text {i}" for i in range(6)]
    metas = [{"topic": "science" if i % 2 else "art", "year": 2020 + i % 3} for i in range(6)]
    ids = store.add_texts(texts, metas, ids=[str(i) for i in range(6)])

    science = store.similarity_search("text 1", k=10, filter={"topic": "science"})
    assert sorted(d.id or "" for d in science) == ["1", "3", "5"]
    both = await store.asimilarity_search("text 1", k=10, filter={"topic": "science", "year": 2021})
    assert [d.id for d in both] == ["1"]
    # Types matter: the year 2021 is not the text "2021".
    assert store.similarity_search("text 1", k=10, filter={"year": "2021"}) == []
    by_vector = store.similarity_search_by_vector(DeterministicFakeEmbedding(size=6).embed_query("x"), k=10,
                                                  filter={"topic": "art"})
    assert sorted(d.id or "" for d in by_vector) == ["0", "2", "4"]
    scored = await store.asimilarity_search_with_score("text 1", k=10, filter={"topic": "art"})
    assert sorted(d.id or "" for d, _ in scored) == ["0", "2", "4"]

    assert store.delete(filter={"topic": "art"}) is True
    assert sorted(d.id or "" for d in store.get_by_ids(ids)) == ["1", "3", "5"]
    assert await store.adelete(filter={"year": 2021}) is True
    assert sorted(d.id or "" for d in await store.aget_by_ids(ids)) == ["3", "5"]

    with pytest.raises(ValueError, match="ids or a filter"):
        store.delete()
    with pytest.raises(ValueError, match="not both"):
        await store.adelete(["3"], filter={"topic": "science"})
    with pytest.raises(TypeError, match="where"):
        store.similarity_search("text 1", where={"topic": "art"})
    assert store.clear() == 2
    assert store.similarity_search("text 1") == []
