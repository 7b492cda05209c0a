"""The term statistics behind BM25 text search, on the real server: the tables the triggers keep equal a recount from
the rows after every kind of write; a tenant's scores never depend on another tenant's rows; edge-case queries; the
adapters return what the core returns; and the store ranks as the plain-Python rule in tests/bm25_reference.py."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import asyncpg
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langchain_core.embeddings import Embeddings
from llama_index.core.vector_stores.types import VectorStoreQuery, VectorStoreQueryMode
from tests import bm25_reference as bm25

from langchain_pgvecstore import PgVecStore as LangChainStore
from llama_index.vector_stores.pgvecstore import PgVecStore as LlamaStore
from pgvecstore import InvalidInputError, PgVectorStore, SearchResult

StoreMaker = Callable[..., PgVectorStore]
# df per (lexeme, domain_key); (n, total_len) per domain_key.
Statistics = tuple[dict[tuple[str, str], int], dict[str, tuple[int, int]]]
DIM = 4
TABLE = "knowledge_embeddings"
QUERY = [1.0, 0.0, 0.0, 0.0]

# Plain English nouns that are no stop words and stem to distinct lexemes.
VOCABULARY = (
    "river stone cloud garden window forest bridge candle silver market engine planet pencil ocean winter "
    "mountain desert island tiger violin rocket harbor lantern meadow castle copper falcon puzzle rabbit glacier"
).split()


def vectors(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)


async def add(store: PgVectorStore, docs: Mapping[str, str | None], metadata: Sequence[dict[str, Any]] | None = None,
              seed: int = 0) -> None:
    await store.add_vectors(vectors(len(docs), seed), ids=list(docs), contents=list(docs.values()),
                            metadata=metadata)


def ids(results: Sequence[SearchResult]) -> list[str]:
    return [hit.id for hit in results]


def scored(results: Sequence[SearchResult]) -> list[tuple[str, float]]:
    return [(hit.id, hit.score) for hit in results]


# -- the statistics equal a recount from the rows ----------------------------------------------------------------


async def statistics(admin: asyncpg.Connection, schema: str, table: str = TABLE) -> Statistics:
    """What the triggers keep: df per (lexeme, domain_key) and (n, total_len) per domain_key."""
    terms = await admin.fetch(f'SELECT lexeme, domain_key, df FROM "{schema}"."{table}_text_terms"')
    docs = await admin.fetch(f'SELECT domain_key, n, total_len FROM "{schema}"."{table}_text_docs"')
    return {(r[0], r[1]): r[2] for r in terms}, {r[0]: (r[1], r[2]) for r in docs}


async def recount(admin: asyncpg.Connection, schema: str, table: str = TABLE) -> Statistics:
    """The same numbers counted again from the rows' tsvectors (a row's length: its number of distinct lexemes)."""
    t = f'"{schema}"."{table}"'
    terms = await admin.fetch(
        f"SELECT u.lexeme, coalesce(t.domain_id, '') AS domain_key, count(*) "
        f"FROM {t} AS t, unnest(tsvector_to_array(t.content_tsv)) AS u(lexeme) GROUP BY 1, 2")
    docs = await admin.fetch(
        f"SELECT coalesce(t.domain_id, ''), count(*), coalesce(sum(cardinality(tsvector_to_array(t.content_tsv))), "
        f"0)::bigint FROM {t} AS t GROUP BY 1")
    return {(r[0], r[1]): r[2] for r in terms}, {r[0]: (r[1], r[2]) for r in docs}


async def assert_statistics_match_rows(admin: asyncpg.Connection, schema: str, table: str = TABLE) -> None:
    stale = await admin.fetchval(
        f"SELECT count(*) FROM \"{schema}\".\"{table}\" "
        "WHERE content_tsv IS DISTINCT FROM to_tsvector('english', coalesce(content, ''))")
    assert stale == 0, "a row's tsvector is not that of its content"
    assert await statistics(admin, schema, table) == await recount(admin, schema, table)


async def test_statistics_equal_a_recount_after_every_kind_of_write(
    make_store: StoreMaker, admin: asyncpg.Connection, schema: str
) -> None:
    """Inserts, deletes by id and by filter, content replaced by re-adding an id, metadata updates, re-added ids,
    one tenant's clear(), a domain moved by SQL and a TRUNCATE: the statistics always equal a recount."""
    store_a = make_store(dimensions=DIM, id_type="text", domain_id="a")
    store_b = make_store(dimensions=DIM, id_type="text", domain_id="b")
    plain = make_store(dimensions=DIM, id_type="text")  # rows without a domain: key ''
    a_docs: dict[str, str | None] = {
        "a1": "The river runs past the stone bridge.",
        "a2": "River, river, river: a river of rivers.",
        "a3": "Clouds over the forest and the garden.",
        "a4": None,
        "a5": "",
    }
    await add(store_a, a_docs, [{"lang": "en"}] * len(a_docs))
    await assert_statistics_match_rows(admin, schema)
    b_docs: dict[str, str | None] = {
        "b1": "A stone window in a castle tower.",
        "b2": "Rivers and glaciers carve the mountain.",
        "b3": "Copper lanterns at the harbor market.",
        "b4": "Falcons hunt rabbits over the meadow.",
    }
    await add(store_b, b_docs, [{"lang": "en"}, {"lang": "x"}, {"lang": "x"}, {"lang": "en"}], seed=1)
    await add(plain, {"p1": "Stone river planet.", "p2": "Violin puzzle."}, seed=2)
    terms, docs = await statistics(admin, schema)
    assert set(docs) == {"a", "b", ""} and docs["a"][0] == 5  # rows without content count as documents
    assert terms[("river", "a")] == 2 and terms[("river", "b")] == 1 and terms[("river", "")] == 1
    await assert_statistics_match_rows(admin, schema)

    assert await store_a.delete_vectors(["a1", "a2"]) == 2
    await assert_statistics_match_rows(admin, schema)
    assert await store_b.delete({"lang": "x"}) == 2
    await assert_statistics_match_rows(admin, schema)

    # One call that replaces a content, keeps another and inserts a new row.
    await add(store_a, {"a3": "Winter on the glacier.", "a4": None, "a6": "Rocket to the planet."}, seed=3)
    assert await admin.fetchval(f'SELECT content FROM "{schema}".{TABLE} WHERE id = \'a3\'') == "Winter on the glacier."
    await assert_statistics_match_rows(admin, schema)

    before = await statistics(admin, schema)
    assert await store_b.update_metadata(["b1", "b4"], [{"lang": "de"}, {"tag": 1}]) == 2
    assert await statistics(admin, schema) == before  # metadata alone changes no statistics
    assert await store_b.update_metadata(["b1"], [{"content": "Silver pencils."}]) == 1  # content follows metadata
    assert await statistics(admin, schema) != before
    await assert_statistics_match_rows(admin, schema)

    await add(store_a, {"a1": "The river again.", "a2": "Stone and river."}, seed=4)  # deleted ids, added again
    await assert_statistics_match_rows(admin, schema)
    before = await statistics(admin, schema)
    with pytest.raises(InvalidInputError, match="already exists in another domain"):
        await add(store_b, {"b9": "Tiger.", "a1": "Tiger tiger."}, seed=5)  # refused whole: nothing changes
    assert await statistics(admin, schema) == before

    # A raw UPDATE that moves a row to another domain moves its counts.
    await admin.execute(f'UPDATE "{schema}".{TABLE} SET domain_id = \'b\' WHERE id = \'a6\'')
    await assert_statistics_match_rows(admin, schema)

    assert await store_a.clear() == 5
    terms, docs = await statistics(admin, schema)
    assert "a" not in docs and all(key != "a" for _, key in terms)
    assert docs["b"][0] == 3 and docs[""][0] == 2
    await assert_statistics_match_rows(admin, schema)

    await admin.execute(f'TRUNCATE "{schema}".{TABLE}')
    assert await statistics(admin, schema) == ({}, {})
    await add(store_a, {"a1": "River stone."}, seed=5)  # and they count again from there
    await assert_statistics_match_rows(admin, schema)
    assert ids(await store_a.search(query_text="river", mode="text")) == ["a1"]


async def test_statistics_roll_back_with_the_transaction(
    make_store: StoreMaker, admin: asyncpg.Connection, schema: str
) -> None:
    store = make_store(dimensions=DIM, id_type="text")
    await add(store, {"x1": "River stone.", "x2": "Forest."})
    before = await statistics(admin, schema)
    tx = admin.transaction()
    await tx.start()
    await admin.execute(f'DELETE FROM "{schema}".{TABLE} WHERE id = \'x1\'')
    await admin.execute(f'UPDATE "{schema}".{TABLE} SET content = \'tiger tiger\' WHERE id = \'x2\'')
    await tx.rollback()
    assert await statistics(admin, schema) == before
    await assert_statistics_match_rows(admin, schema)


async def test_statistics_stay_exact_under_concurrent_writers(
    make_store: StoreMaker, admin: asyncpg.Connection, schema: str
) -> None:
    """Writers of two tenants adding and deleting rows (each its own) with shared terms at once, one statement per
    write: the statistics equal a recount afterwards."""
    writers = [make_store(dimensions=DIM, id_type="text", domain_id=domain) for domain in ("a", "a", "b", "b")]
    await writers[0].initialize()
    rng = random.Random(3)

    async def work(n: int, store: PgVectorStore) -> None:
        for round_ in range(6):
            docs: dict[str, str | None] = {
                f"w{n}_{round_}_{i:02d}": " ".join(rng.choices(VOCABULARY[:8], k=rng.randint(0, 8))) or None
                for i in range(15)
            }
            await add(store, docs, seed=round_)
            await store.delete_vectors(rng.sample(list(docs), 5))

    await asyncio.gather(*(work(n, store) for n, store in enumerate(writers)))
    await assert_statistics_match_rows(admin, schema)
    _, docs = await statistics(admin, schema)
    assert docs["a"][0] == docs["b"][0] == 2 * 6 * 10


async def test_writers_of_one_tenant_with_many_statements_each_never_conflict(
    make_store: StoreMaker, admin: asyncpg.Connection, schema: str
) -> None:
    """Four stores of one tenant, each writing calls of several batches (statements) at once: every call lands
    (none fails with a conflict), and the statistics equal a recount."""
    writers = [make_store(dimensions=DIM, id_type="text", domain_id="a", batch_size=3) for _ in range(4)]
    await writers[0].initialize()
    rng = random.Random(5)

    async def work(n: int, store: PgVectorStore) -> None:
        for round_ in range(8):
            docs = {f"m{n}_{round_}_{i:02d}": " ".join(rng.choices(VOCABULARY, k=6)) for i in range(12)}
            await add(store, docs, seed=round_)

    await asyncio.gather(*(work(n, store) for n, store in enumerate(writers)))
    await assert_statistics_match_rows(admin, schema)
    _, docs = await statistics(admin, schema)
    assert docs["a"][0] == 4 * 8 * 12


async def test_two_transactions_writing_their_own_rows_of_one_tenant_do_not_deadlock(
    make_store: StoreMaker, pg_dsn: str, schema: str
) -> None:
    """Two transactions insert rows of their own into one tenant, two statements each, interleaved: both commit
    (the second waits for the first at its first write, as writers of one domain take turns)."""
    await make_store(dimensions=DIM, id_type="text", domain_id="a").initialize()
    first, second = await asyncpg.connect(pg_dsn), await asyncpg.connect(pg_dsn)
    insert = f'INSERT INTO "{schema}".{TABLE} (id, domain_id, content) VALUES ($1, \'a\', $2)'
    tx1, tx2 = first.transaction(), second.transaction()
    await tx1.start()
    await tx2.start()
    await first.execute(insert, "t1_1", "river")
    blocked = asyncio.ensure_future(second.execute(insert, "t2_1", "stone"))  # waits for tenant a's row
    try:
        pid = second.get_server_pid()
        for _ in range(200):
            if await first.fetchval("SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1", pid):
                break
            await asyncio.sleep(0.01)
        await first.execute(insert, "t1_2", "stone")
        await tx1.commit()
        await blocked
        await tx2.commit()
    finally:
        await first.close()
        await second.close()
        await asyncio.gather(blocked, return_exceptions=True)


async def test_enable_text_search_counts_the_existing_rows(
    make_store: StoreMaker, admin: asyncpg.Connection, schema: str
) -> None:
    """Rows written before the table had text search are counted when it is added, and writes after it too."""
    plain_a = make_store(dimensions=DIM, id_type="text", domain_id="a", text_search=False)
    plain_b = make_store(dimensions=DIM, id_type="text", domain_id="b", text_search=False)
    await add(plain_a, {"a1": "River stone.", "a2": "River river forest.", "a3": None})
    await add(plain_b, {"b1": "Stone castle.", "b2": ""}, seed=1)
    assert await plain_a.enable_text_search() is True
    await assert_statistics_match_rows(admin, schema)
    _, docs = await statistics(admin, schema)
    assert docs == {"a": (3, 4), "b": (2, 2)}  # lengths: distinct lexemes ("river river forest" is 2)
    await add(plain_b, {"b3": "River."}, seed=2)
    await assert_statistics_match_rows(admin, schema)
    assert ids(await plain_a.search(query_text="river", mode="text")) == ["a2", "a1"]


# -- tenants ---------------------------------------------------------------------------------------------------


A_DOCS: dict[str, str | None] = {
    "a1": "The river carries stone from the mountain.",
    "a2": "A garden by the river, a garden in winter.",
    "a3": "Stone bridges cross the river in the forest.",
    "a4": "Candles and lanterns light the castle.",
    "a5": "Winter on the mountain: snow, stone and silence.",
    "a6": None,
}
TENANT_QUERIES = ("river stone", "garden winter mountain", "castle lantern candle", "bridge forest river stone")


async def test_a_tenants_scores_do_not_depend_on_other_tenants(make_store: StoreMaker) -> None:
    """Tenant a's rows score exactly as in a table that holds only them, however many matching rows tenant b
    adds."""
    store_a = make_store(dimensions=DIM, id_type="text", domain_id="a")
    store_b = make_store(dimensions=DIM, id_type="text", domain_id="b")
    alone = make_store(dimensions=DIM, id_type="text", table_name="only_a")
    await add(store_a, A_DOCS)
    await add(alone, A_DOCS)
    await add(store_b, {"b1": "River river stone.", "b2": "Garden."}, seed=1)

    async def rankings(store: PgVectorStore) -> list[list[tuple[str, float]]]:
        return [scored(await store.search(query_text=q, mode="text", k=20)) for q in TENANT_QUERIES]

    expected = await rankings(alone)
    assert all(expected)

    def same(got: list[list[tuple[str, float]]]) -> None:
        for got_one, expected_one in zip(got, expected, strict=True):
            assert [i for i, _ in got_one] == [i for i, _ in expected_one]
            assert [s for _, s in got_one] == pytest.approx([s for _, s in expected_one], rel=1e-12)

    same(await rankings(store_a))
    many = {f"b{i:04d}": f"river stone garden winter mountain castle forest bridge {i}" for i in range(10, 410)}
    await add(store_b, many, seed=2)
    same(await rankings(store_a))
    assert len(await store_b.search(query_text="river", mode="text", k=1000)) == 401


# -- edge-case queries -----------------------------------------------------------------------------------------


async def test_an_empty_table_or_tenant_finds_nothing(make_store: StoreMaker) -> None:
    store = make_store(dimensions=DIM, id_type="text")
    assert await store.search(query_text="river stone", mode="text") == []
    assert await store.search(QUERY, mode="hybrid", query_text="river stone") == []
    tenant_a = make_store(dimensions=DIM, id_type="text", domain_id="a", table_name="tenants")
    tenant_b = make_store(dimensions=DIM, id_type="text", domain_id="b", table_name="tenants")
    await add(tenant_b, {"b1": "River stone."})
    assert await tenant_a.search(query_text="river stone", mode="text") == []
    assert await tenant_a.search(QUERY, mode="hybrid", query_text="river stone") == []


async def test_a_query_of_stop_words_finds_nothing_by_text(make_store: StoreMaker) -> None:
    """Stop words are no terms: text search finds nothing and hybrid search is the vector ranking alone."""
    store = make_store(dimensions=DIM, id_type="text")
    await add(store, {"s1": "The river and the stone.", "s2": "Of mountains and of rivers.", "s3": "the and of"})
    assert await store.search(query_text="the and of", mode="text") == []
    vector_only = ids(await store.search(QUERY, k=3))
    assert ids(await store.search(QUERY, k=3, mode="hybrid", query_text="the and of")) == vector_only


async def test_a_query_of_ten_thousand_words_uses_its_first_64_terms(make_store: StoreMaker) -> None:
    store = make_store(dimensions=DIM, id_type="text")
    await add(store, {
        "river": "The river runs.",
        "early": "word5 in a row",  # the 7th term of the query
        "late": "word500 in a row",  # past the 64th
        "last": "zyxunique",  # only at the very end of the query
        "none": "Nothing of the query.",
    })
    words = [f"word{i}" for i in range(10_000)]
    text = " ".join(["river", *words, "zyxunique"])
    assert len(set(text.split())) == 10_002
    found = await store.search(query_text=text, mode="text", k=10)
    assert sorted(ids(found)) == ["early", "river"]
    hybrid = await store.search(QUERY, k=10, mode="hybrid", query_text=text)
    assert len(hybrid) == 5
    assert await store.search(query_text="zyxunique", mode="text") != []  # the term alone does find its row


# -- the adapters return what the core returns ---------------------------------------------------------------


ADAPTER_DOCS = {
    "d1": "The river carries stone from the mountain.",
    "d2": "A garden by the river, a garden in winter.",
    "d3": "Stone bridges cross the river in the forest.",
    "d4": "Candles and lanterns light the castle.",
    "d5": "River stone, river stone, river stone.",
    "d6": "Glaciers carve valleys in winter.",
}
ADAPTER_QUERIES = ("river stone", "garden winter", "castle forest mountain river", "the and of")


class FixedEmbeddings(Embeddings):
    """Every text embeds to the same vector: the query vector of the core searches."""

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [list(QUERY) for _ in texts]

    def embed_query(self, text: str) -> list[float]:
        return list(QUERY)


async def test_the_adapters_return_the_cores_text_and_hybrid_results(make_store: StoreMaker) -> None:
    """The same ids in the same order with the same scores through the core, LangChain (hybrid; it has no
    text-only search) and LlamaIndex (TEXT_SEARCH, SPARSE and HYBRID), on one table."""
    core = make_store(dimensions=DIM, id_type="text")
    await add(core, ADAPTER_DOCS)
    lc = LangChainStore(FixedEmbeddings(), store=make_store(dimensions=DIM, id_type="text"))
    li = LlamaStore(make_store(dimensions=DIM, id_type="text"))
    for text in ADAPTER_QUERIES:
        for k in (1, 3, 10):
            text_hits = scored(await core.search(query_text=text, mode="text", k=k))
            for mode in (VectorStoreQueryMode.TEXT_SEARCH, VectorStoreQueryMode.SPARSE):
                result = await li.aquery(VectorStoreQuery(mode=mode, query_str=text, similarity_top_k=k))
                assert list(zip(result.ids or [], result.similarities or [], strict=True)) == text_hits, (text, k)

            hybrid_hits = scored(await core.search(QUERY, k=k, mode="hybrid", query_text=text))
            assert len(hybrid_hits) == min(k, len(ADAPTER_DOCS))
            lc_hits = await lc.ahybrid_search_with_score(text, k=k)
            assert [(doc.id, score) for doc, score in lc_hits] == hybrid_hits, (text, k)
            result = await li.aquery(VectorStoreQuery(mode=VectorStoreQueryMode.HYBRID, query_str=text,
                                                      query_embedding=list(QUERY), similarity_top_k=k))
            assert list(zip(result.ids or [], result.similarities or [], strict=True)) == hybrid_hits, (text, k)

            weighted = scored(await core.search(QUERY, k=k, mode="hybrid", query_text=text, alpha=0.3))
            lc_weighted = await lc.ahybrid_search_with_score(text, k=k, alpha=0.3)
            assert [(doc.id, score) for doc, score in lc_weighted] == weighted, (text, k)
            result = await li.aquery(VectorStoreQuery(mode=VectorStoreQueryMode.HYBRID, query_str=text, alpha=0.3,
                                                      query_embedding=list(QUERY), similarity_top_k=k))
            assert list(zip(result.ids or [], result.similarities or [], strict=True)) == weighted, (text, k)


# -- the store ranks as the reference --------------------------------------------------------------------------


async def server_rows(admin: asyncpg.Connection, schema: str, table: str = TABLE) -> list[bm25.Row]:
    """Every row's id, domain and lexeme counts, as the server's tsvectors hold them."""
    rows = await admin.fetch(f'SELECT id, domain_id FROM "{schema}"."{table}"')
    counts = await admin.fetch(
        f'SELECT t.id, u.lexeme, cardinality(u.positions) FROM "{schema}"."{table}" AS t, unnest(t.content_tsv) AS u')
    tf: dict[str, dict[str, int]] = {row[0]: {} for row in rows}
    for row_id, lexeme, count in counts:
        tf[row_id][lexeme] = max(1, count)
    return [bm25.Row(row[0], row[1], tf[row[0]]) for row in rows]


async def query_lexemes(admin: asyncpg.Connection, text: str) -> list[str]:
    rows = await admin.fetch(
        "SELECT u.lexeme FROM unnest(to_tsvector('english', $1)) AS u "
        'ORDER BY u.positions[1], u.lexeme COLLATE "C" LIMIT 64', text)
    return [row[0] for row in rows]


def canonical(hits: Sequence[tuple[str, float]]) -> list[str]:
    """Ids best first, ids in order among scores equal up to rounding (1e-9 relative)."""
    ordered = sorted(hits, key=lambda hit: -hit[1])
    groups: list[list[tuple[str, float]]] = []
    for hit in ordered:
        if groups and abs(groups[-1][0][1] - hit[1]) <= 1e-9 * abs(groups[-1][0][1]):
            groups[-1].append(hit)
        else:
            groups.append([hit])
    return [row_id for group in groups for row_id, _ in sorted(group)]


def assert_ranks_as_reference(got: Sequence[SearchResult], expected: list[tuple[str, float]], context: Any) -> None:
    hits = scored(got)
    assert hits == sorted(hits, key=lambda hit: (-hit[1], hit[0])), context  # best first, ties by id
    assert canonical(hits) == canonical(expected), context
    assert dict(hits) == pytest.approx(dict(expected), rel=1e-6), context


CORPUS_WORDS = st.sampled_from([*VOCABULARY, "the", "and", "rivers", "stones"])
DOMAIN_SETS = ((None,), ("a",), ("a", "b"), (None, "a"))


@st.composite
def corpora(draw: st.DrawFn) -> tuple[tuple[str | None, ...], dict[str, tuple[str | None, str | None]], list[str]]:
    """1-2 domains, 1-40 rows of up to 12 words (some empty), 1-3 queries of 1-6 words."""
    domains = draw(st.sampled_from(DOMAIN_SETS))
    rows: dict[str, tuple[str | None, str | None]] = {}
    for i in range(draw(st.integers(1, 40))):
        words = draw(st.lists(CORPUS_WORDS, max_size=12))
        rows[f"r{i:03d}"] = (draw(st.sampled_from(domains)), " ".join(words) or None)
    queries = draw(st.lists(st.lists(CORPUS_WORDS, min_size=1, max_size=6).map(" ".join), min_size=1, max_size=3))
    return domains, rows, queries


@pytest.fixture
async def domain_stores(make_store: StoreMaker) -> dict[str | None, PgVectorStore]:
    """Stores of domains a and b and one without a domain, on one table (made once for all of a test's
    examples)."""
    stores = {domain: make_store(dimensions=DIM, id_type="text", domain_id=domain, pool_max_size=1)
              for domain in (None, "a", "b")}
    await stores[None].initialize()
    return stores


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(corpus=corpora())
async def test_text_search_ranks_as_the_reference_bm25(
    domain_stores: dict[str | None, PgVectorStore], admin: asyncpg.Connection, schema: str,
    corpus: tuple[tuple[str | None, ...], dict[str, tuple[str | None, str | None]], list[str]],
) -> None:
    """On small random corpora, every store (each domain's, and one without a domain that sees them all) returns
    the reference's ids in its order with its scores."""
    domains, rows, queries = corpus
    stores = domain_stores
    await admin.execute(f'TRUNCATE "{schema}".{TABLE}')
    for domain in domains:
        mine = {row_id: content for row_id, (owner, content) in rows.items() if owner == domain}
        if mine:
            await add(stores[domain], mine, [{"even": int(row_id[1:]) % 2 == 0} for row_id in mine])
    reference_rows = await server_rows(admin, schema)
    for domain in {None, *domains}:
        for text in queries:
            expected = bm25.search(reference_rows, domain, await query_lexemes(admin, text))
            got = await stores[domain].search(query_text=text, mode="text", k=100)
            assert_ranks_as_reference(got, expected, (domain, text))
            # A filter keeps the rows it matches, with the same scores (the statistics are the scope's).
            even = await stores[domain].search(query_text=text, mode="text", k=100, filter={"even": True})
            assert scored(even) == [hit for hit in scored(got) if int(hit[0][1:]) % 2 == 0]


async def test_candidates_come_from_the_rare_terms_and_pairs_on_a_larger_corpus(
    make_store: StoreMaker, admin: asyncpg.Connection, schema: str
) -> None:
    """With common terms (cumulative df past RARE_TERMS_DF), a row holding only common query terms is a candidate
    only through a chosen pair: the store finds exactly the reference's candidates and ranks them as it does."""
    rng = random.Random(16)
    chance = {"river": 0.6, "stone": 0.5, "forest": 0.4, "cloud": 0.3, "bridge": 0.2, "garden": 0.05, "window": 0.01}
    filler = VOCABULARY[10:]
    docs: dict[str, str | None] = {}
    for i in range(1500):
        words = [word for word, p in chance.items() if rng.random() < p] + rng.sample(filler, rng.randint(0, 6))
        words += rng.choices(words, k=rng.randint(0, 3)) if words else []
        rng.shuffle(words)
        docs[f"r{i:04d}"] = " ".join(words) or None
    store = make_store(dimensions=DIM, id_type="text")
    await add(store, docs)
    reference_rows = await server_rows(admin, schema)
    queries = ["river stone forest cloud bridge garden window", "river stone forest cloud", "river stone",
               "garden river", "window garden bridge", "cloud bridge forest stone river"]
    pairs_left_out = rows_left_out = 0
    for text in queries:
        query = await query_lexemes(admin, text)
        chosen = bm25.candidates(reference_rows, query)
        holding = {row.id for row in reference_rows if any(term in row.tf for term in query)}
        rows_left_out += len(holding - chosen.ids)
        rest = len(set(query) - set(chosen.singles))
        pairs_left_out += rest * (rest - 1) // 2 - len(chosen.pairs)
        expected = bm25.search(reference_rows, None, query)
        got = await store.search(query_text=text, mode="text", k=10_000)
        assert_ranks_as_reference(got, expected, text)
    assert rows_left_out > 0 and pairs_left_out > 0  # the corpus exercises both bounds of step 3


async def test_a_table_dropped_and_made_again_starts_with_fresh_statistics(
    make_store: StoreMaker, admin: asyncpg.Connection, schema: str
) -> None:
    """DROP TABLE (as the store's error messages suggest for a table of another model) leaves the statistics
    tables behind; the table made again by a new store counts from its own rows only."""
    first = make_store(dimensions=DIM, id_type="text")
    await add(first, {"x1": "River stone.", "x2": "River forest."})
    await first.close()
    await admin.execute(f'DROP TABLE "{schema}".{TABLE}')
    again = make_store(dimensions=DIM + 4, id_type="text")
    await again.add_vectors(np.ones((1, DIM + 4), dtype=np.float32), ids=["y1"], contents=["Tiger."])
    terms, docs = await statistics(admin, schema)
    assert terms == {("tiger", ""): 1} and docs == {"": (1, 1)}
    assert [hit.id for hit in await again.search(query_text="river", mode="text")] == []


async def test_scores_do_not_depend_on_when_the_table_was_analysed(
    make_store: StoreMaker, admin: asyncpg.Connection, schema: str
) -> None:
    """Right after a load PostgreSQL's row estimate is unknown; the text side's statistics are the store's own, so
    ANALYZE (autovacuum's, at any moment) changes no score."""
    store = make_store(dimensions=DIM, id_type="text")
    rng = random.Random(11)
    await add(store, {f"r{i:03d}": " ".join(rng.choices(VOCABULARY, k=8)) for i in range(120)})
    assert await admin.fetchval(f"SELECT reltuples FROM pg_class WHERE oid = '\"{schema}\".{TABLE}'::regclass") < 0
    before = scored(await store.search(query_text="river stone tiger", mode="text", k=20))
    await admin.execute(f'ANALYZE "{schema}".{TABLE}')
    after = scored(await store.search(query_text="river stone tiger", mode="text", k=20))
    assert len(before) == 20 and after == before
