"""The domain key (``primary_key="domain_id, id"``, the key Citus needs to distribute the table by domain_id), on
plain PostgreSQL: an id is unique per tenant, so the same id in two domains is two rows, and every operation keeps
working on that layout. Nothing here runs against Citus (see docs/citus.md).
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable

import asyncpg
import numpy as np
import pytest
from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding
from llama_index.core.schema import NodeRelationship, RelatedNodeInfo, TextNode
from llama_index.core.vector_stores.types import VectorStoreQuery
from tests.integration.test_tenancy import Tenants

from langchain_pgvecstore import PgVecStore as LangChainStore
from llama_index.vector_stores.pgvecstore import PgVecStore as LlamaIndexStore
from pgvecstore import InvalidOptionError, PgVectorStore, SchemaMismatchError
from pgvecstore.primary_key import DOMAIN_KEY, ID_KEY

StoreMaker = Callable[..., PgVectorStore]
TABLE = "knowledge_embeddings"
DIM = 3
KEY = "domain_id, id"


def vectors(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random((n, DIM), dtype=np.float32) + 0.01


def keyed(make_store: StoreMaker, domain: str | None, **options: object) -> PgVectorStore:
    return make_store(dimensions=DIM, id_type="text", primary_key=KEY, domain_id=domain, **options)


async def rows_in_table(admin: asyncpg.Connection, schema: str) -> list[tuple[str, str, str | None]]:
    rows = await admin.fetch(f'SELECT domain_id, id, content FROM "{schema}"."{TABLE}" ORDER BY 1, 2')
    return [tuple(row) for row in rows]


@pytest.fixture
async def tenants(pg_dsn: str, schema: str, admin: asyncpg.Connection) -> AsyncIterator[Tenants]:
    """A LOGIN role unique to this test, subject to row-level security (as in test_tenancy.py)."""
    role = f"pgvs_tenant_{secrets.token_hex(6)}"
    password = secrets.token_hex(16)
    await admin.execute(f"CREATE ROLE \"{role}\" LOGIN NOSUPERUSER NOBYPASSRLS PASSWORD '{password}'")
    made = Tenants(pg_dsn, schema, admin, role, password)
    try:
        yield made
    finally:
        for store in made.made:
            await store.close()
        await admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1", role)
        await admin.execute(f'DROP OWNED BY "{role}"')
        await admin.execute(f'DROP ROLE "{role}"')


# -- the table ----------------------------------------------------------------------------------------------------
async def test_a_new_table_has_the_key_and_a_not_null_domain(
    make_store: StoreMaker, admin: asyncpg.Connection, schema: str
) -> None:
    store = keyed(make_store, "a")
    await store.initialize()
    assert store.table.primary_key == DOMAIN_KEY
    key = await admin.fetchval(
        "SELECT array_agg(a.attname::text ORDER BY k.ord) FROM pg_index i "
        "CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY k(attnum, ord) "
        "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum "
        "WHERE i.indrelid = $1::regclass AND i.indisprimary", f'"{schema}"."{TABLE}"')
    assert key == ["domain_id", "id"]
    with pytest.raises(asyncpg.NotNullViolationError):
        await admin.execute(f"INSERT INTO \"{schema}\".\"{TABLE}\" (id, embedding) VALUES ('x', '[1,2,3]')")


# -- writes -------------------------------------------------------------------------------------------------------
async def test_the_same_id_is_one_row_per_domain(make_store: StoreMaker, admin: asyncpg.Connection,
                                                 schema: str) -> None:
    store_a, store_b = keyed(make_store, "a"), keyed(make_store, "b")
    va = vectors(2, 1)
    await store_a.add_vectors(va, ids=["x", "y"], metadata=[{"v": 1}, {"v": 1}], contents=["old x", "a y"])
    # re-adding x (with a new id beside it) replaces it: still one row for x in a
    new_x = vectors(1, 2)[0]
    await store_a.add_vectors([new_x, va[1]], ids=["x", "z"], metadata=[{"v": 2}, {}], contents=["a x", "a z"])
    # the same id in b is another row: b's write does not touch a's
    vb = vectors(1, 3)
    await store_b.add_vectors(vb, ids=["x"], metadata=[{"v": 9}], contents=["b x"])
    assert await rows_in_table(admin, schema) == [
        ("a", "x", "a x"), ("a", "y", "a y"), ("a", "z", "a z"), ("b", "x", "b x")]
    [(vector_a, meta_a)] = await store_a.get_vectors(["x"])
    assert vector_a is not None and np.allclose(vector_a, new_x) and meta_a == {"v": 2}
    [(vector_b, meta_b)] = await store_b.get_vectors(["x"])
    assert vector_b is not None and np.allclose(vector_b, vb[0]) and meta_b == {"v": 9}
    assert [row.content for row in await store_b.get(ids=["x", "y"])] == ["b x"]
    assert (await store_a.count(), await store_b.count()) == (3, 1)
    # b re-adds its x: replaced in b only
    await store_b.add_vectors(vb, ids=["x"], metadata=[{"v": 10}], contents=["b x 2"])
    assert await rows_in_table(admin, schema) == [
        ("a", "x", "a x"), ("a", "y", "a y"), ("a", "z", "a z"), ("b", "x", "b x 2")]
    # deleting x in b leaves a's x
    assert await store_b.delete_vectors(["x"]) == 1
    assert [row.id for row in await store_a.get(ids=["x"])] == ["x"]
    assert await store_b.count() == 0


async def test_updates_and_deletes_stay_in_the_domain(make_store: StoreMaker, admin: asyncpg.Connection,
                                                      schema: str) -> None:
    store_a, store_b = keyed(make_store, "a"), keyed(make_store, "b")
    ids = ["p", "q", "r"]
    for store, seed in ((store_a, 1), (store_b, 2)):
        await store.add_vectors(vectors(3, seed), ids=ids, metadata=[{"tag": "t", "n": i} for i in range(3)],
                                contents=[f"{store.config.domain_id} {i}" for i in ids])
    assert await store_a.update_metadata(["p", "q"], [{"tag": "u", "content": "a p new"}, {"tag": "u"}]) == 2
    assert [row.metadata for row in await store_b.get(ids=["p", "q"])] == [
        {"tag": "t", "n": 0}, {"tag": "t", "n": 1}]
    assert [row.content for row in await store_a.get(ids=["p"])] == ["a p new"]
    assert await store_a.delete({"tag": "u"}) == 2
    assert await store_b.count({"tag": "t"}) == 3
    assert await store_a.clear() == 1
    assert await rows_in_table(admin, schema) == [("b", "p", "b p"), ("b", "q", "b q"), ("b", "r", "b r")]


# -- searches -----------------------------------------------------------------------------------------------------
async def two_tenants_one_id(make_store: StoreMaker, **options: object) -> tuple[PgVectorStore, PgVectorStore]:
    """Tenants a and b, each with rows x (same id, different vector and words) and a row of its own."""
    store_a, store_b = keyed(make_store, "a", **options), keyed(make_store, "b", **options)
    await store_a.add_vectors([[1, 0, 0], [0.9, 0.1, 0]], ids=["x", "a2"], metadata=[{"k": 1}, {"k": 1}],
                              contents=["apple orchard harvest", "apple pie"])
    await store_b.add_vectors([[1, 0.05, 0], [0, 1, 0]], ids=["x", "b2"], metadata=[{"k": 1}, {"k": 1}],
                              contents=["apple zebra stripes", "zebra herd eats apples"])
    return store_a, store_b


@pytest.mark.parametrize("options", [{}, {"index_type": "hnsw", "auto_create_index": True},
                                     {"quantization": "binary", "index_type": "hnsw", "auto_create_index": True}],
                         ids=["exact", "hnsw", "binary"])
async def test_every_search_mode_returns_the_tenants_own_row_of_a_shared_id(
    make_store: StoreMaker, options: dict[str, object]
) -> None:
    store_a, store_b = await two_tenants_one_id(make_store, **options)
    query = [1, 0, 0]
    for store, content in ((store_a, "apple orchard harvest"), (store_b, "apple zebra stripes")):
        searches = {
            "vector": await store.search(query, k=5),
            "filtered": await store.search(query, k=5, filter={"k": 1}),
            "text": await store.search(mode="text", query_text="apple", k=5),
            "hybrid rrf": await store.search(query, mode="hybrid", query_text="apple", k=5, rrf_k=60),
            "hybrid alpha": await store.search(query, mode="hybrid", query_text="apple", k=5, alpha=0.5),
        }
        for mode, results in searches.items():
            x_rows = [result for result in results if result.id == "x"]
            assert [row.content for row in x_rows] == [content], f"{mode} of {store.config.domain_id}"
            assert len(results) == 2, mode


async def test_a_store_without_domain_searches_every_tenant_and_keeps_their_rows_apart(
    make_store: StoreMaker,
) -> None:
    await two_tenants_one_id(make_store)
    admin_view = keyed(make_store, None)
    query = [1, 0, 0]
    for results in (
        await admin_view.search(query, k=10),
        await admin_view.search(query, k=10, filter={"k": 1}),
        await admin_view.search(mode="text", query_text="apple", k=10),
        await admin_view.search(query, mode="hybrid", query_text="apple", k=10, rrf_k=60),
        await admin_view.search(query, mode="hybrid", query_text="apple", k=10, alpha=0.3),
    ):
        x_contents = sorted(result.content or "" for result in results if result.id == "x")
        assert x_contents == ["apple orchard harvest", "apple zebra stripes"]
    assert await admin_view.count() == 4
    assert sorted(row.content or "" for row in await admin_view.get(filter={"id": "x"})) == [
        "apple orchard harvest", "apple zebra stripes"]


async def test_text_statistics_follow_an_update_of_one_id_in_two_domains(
    make_store: StoreMaker, admin: asyncpg.Connection, schema: str
) -> None:
    """One statement that changes the rows of a shared id in both domains moves each row's words in its own
    domain's statistics (the statistics trigger pairs old and new rows by the whole key)."""
    store_a, _ = await two_tenants_one_id(make_store)
    await admin.execute(f"UPDATE \"{schema}\".\"{TABLE}\" SET content = content || ' quokka' WHERE id = 'x'")
    t = store_a.table
    terms = await admin.fetch(
        f"SELECT domain_key, df FROM {t.in_schema(t.text_terms_table)} WHERE lexeme = 'quokka' ORDER BY 1")
    assert [tuple(row) for row in terms] == [("a", 1), ("b", 1)]
    docs = await admin.fetch(f"SELECT domain_key, n FROM {t.in_schema(t.text_docs_table)} ORDER BY 1")
    assert [tuple(row) for row in docs] == [("a", 2), ("b", 2)]
    apple = await admin.fetch(
        f"SELECT domain_key, df FROM {t.in_schema(t.text_terms_table)} WHERE lexeme = 'appl' ORDER BY 1")
    assert [tuple(row) for row in apple] == [("a", 2), ("b", 2)]


async def test_indexed_metadata_on_the_domain_key(make_store: StoreMaker) -> None:
    store_a = keyed(make_store, "a", indexed_metadata={"year": "int"})
    store_b = keyed(make_store, "b", indexed_metadata={"year": "int"})
    await store_a.add_vectors(vectors(2, 1), ids=["x", "y"], metadata=[{"year": 2020}, {"year": 2024}])
    await store_b.add_vectors(vectors(1, 2), ids=["x"], metadata=[{"year": 2024}])
    await store_a.add_vectors(vectors(1, 3), ids=["x"], metadata=[{"year": 2025}])  # the upsert path
    assert [row.id for row in await store_a.get(filter={"year": {"$gte": 2024}})] == ["x", "y"]
    assert [row.metadata for row in await store_b.get(filter={"year": 2024})] == [{"year": 2024}]
    assert [r.id for r in await store_a.search(vectors(1, 3)[0], k=5, filter={"year": 2025})] == ["x"]


# -- tenancy under row-level security -----------------------------------------------------------------------------
async def test_tenants_under_row_level_security_share_ids_without_seeing_each_other(
    make_store: StoreMaker, tenants: Tenants, admin: asyncpg.Connection, schema: str
) -> None:
    owner = keyed(make_store, "owner", row_level_security=True)
    await owner.initialize()
    await tenants.grant()
    t = owner.table
    for table in (t.text_terms_table, t.text_docs_table):
        await admin.execute(f'GRANT SELECT ON {t.in_schema(table)} TO "{tenants.role}"')
    store_a = tenants.store(domain_id="a", row_level_security=True)
    store_b = tenants.store(domain_id="b", row_level_security=True)
    await store_a.add_vectors([[1, 0, 0]], ids=["x"], contents=["apple a"])
    await store_b.add_vectors([[1, 0.1, 0]], ids=["x"], contents=["apple b"])
    await store_a.add_vectors([[0, 1, 0]], ids=["x"], contents=["apple a again"])  # replaced under the policy
    assert await rows_in_table(admin, schema) == [("a", "x", "apple a again"), ("b", "x", "apple b")]
    assert store_a.table.primary_key == DOMAIN_KEY, "read from the table: the tenants gave no primary_key"
    for store, content in ((store_a, "apple a again"), (store_b, "apple b")):
        assert [r.content for r in await store.search([1, 0, 0], k=5)] == [content]
        assert [r.content for r in await store.search(mode="text", query_text="apple", k=5)] == [content]
        assert [r.content for r in await store.search([1, 0, 0], mode="hybrid", query_text="apple", k=5,
                                                      rrf_k=60)] == [content]
    assert await store_a.delete_vectors(["x"]) == 1
    assert await rows_in_table(admin, schema) == [("b", "x", "apple b")]
    assert await store_a.update_metadata(["x"], [{"stolen": True}]) == 0
    assert await store_a.clear() == 0 and await store_b.count() == 1


# -- the adapters -------------------------------------------------------------------------------------------------
async def test_langchain_adds_searches_and_deletes_per_tenant(pg_dsn: str, schema: str) -> None:
    embedding = DeterministicFakeEmbedding(size=DIM)
    common = {"connection_string": pg_dsn, "schema": schema, "primary_key": KEY, "pool_max_size": 2}
    stores = {domain: LangChainStore(embedding, domain_id=domain, **common) for domain in ("a", "b")}
    try:
        for domain, store in stores.items():
            await store.aadd_documents([Document(page_content=f"doc of {domain}", metadata={"d": domain})],
                                       ids=["same"])
        for domain, store in stores.items():
            found = await store.asimilarity_search(f"doc of {domain}", k=5)
            assert [(doc.id, doc.page_content) for doc in found] == [("same", f"doc of {domain}")]
        await stores["a"].adelete(["same"])
        assert await stores["a"].asimilarity_search("doc of a", k=5) == []
        assert [doc.page_content for doc in await stores["b"].asimilarity_search("doc", k=5)] == ["doc of b"]
    finally:
        for store in stores.values():
            await store.aclose()


async def test_llamaindex_adds_queries_and_deletes_documents_per_tenant(make_store: StoreMaker) -> None:
    stores = {domain: LlamaIndexStore(keyed(make_store, domain)) for domain in ("a", "b")}
    for domain, store in stores.items():
        node = TextNode(id_="n1", text=f"node of {domain}", embedding=[1.0, 0.0, 0.0],
                        relationships={NodeRelationship.SOURCE: RelatedNodeInfo(node_id="doc1")})
        await store.async_add([node])
    query = VectorStoreQuery(query_embedding=[1.0, 0.0, 0.0], similarity_top_k=5)
    for domain, store in stores.items():
        result = await store.aquery(query)
        assert [node.get_content() for node in result.nodes or []] == [f"node of {domain}"]
    await stores["a"].adelete("doc1")
    assert (await stores["a"].aquery(query)).ids == []
    assert (await stores["b"].aquery(query)).ids == ["n1"]


# -- the option against an existing table --------------------------------------------------------------------------
async def test_the_key_is_read_from_an_existing_table(make_store: StoreMaker) -> None:
    await keyed(make_store, "a").initialize()
    later = make_store(id_type="text", domain_id="b")  # neither dimensions nor primary_key: both read
    await later.add_vectors(vectors(1, 1), ids=["x"])
    await keyed(make_store, "a").add_vectors(vectors(1, 2), ids=["x"])
    assert later.table.primary_key == DOMAIN_KEY and await later.count() == 1
    plain = make_store(dimensions=DIM, id_type="text", table_name="plain")
    await plain.initialize()
    assert plain.table.primary_key == ID_KEY


@pytest.mark.parametrize(("first", "then", "found"), [(KEY, "id", "(domain_id, id)"), ("id", KEY, "(id)")])
async def test_an_existing_table_with_the_other_key_is_a_mismatch(
    make_store: StoreMaker, first: str, then: str, found: str
) -> None:
    await make_store(dimensions=DIM, id_type="text", primary_key=first, domain_id="a").initialize()
    store = make_store(id_type="text", primary_key=then, domain_id="a")
    with pytest.raises(SchemaMismatchError, match="primary key") as raised:
        await store.initialize()
    message = str(raised.value)
    assert found in message and f"primary_key={then!r}" in message


# -- a store without domain_id on the domain key ------------------------------------------------------------------
async def test_without_domain_id_writes_and_id_lookups_are_refused_filters_allowed(
    make_store: StoreMaker, admin: asyncpg.Connection, schema: str
) -> None:
    await two_tenants_one_id(make_store)
    before = await rows_in_table(admin, schema)
    admin_view = keyed(make_store, None)
    refused = {
        "add_vectors": admin_view.add_vectors(vectors(1, 1), ids=["new"]),
        "update_metadata": admin_view.update_metadata(["x"], [{"k": 2}]),
        "delete_vectors": admin_view.delete_vectors(["x"]),
        "get_vectors": admin_view.get_vectors(["x"]),
        "get(ids=...)": admin_view.get(ids=["x"]),
    }
    for action, call in refused.items():
        with pytest.raises(InvalidOptionError, match="needs a domain_id") as raised:
            await call
        assert str(raised.value).startswith(action) and "(domain_id, id)" in str(raised.value)
    assert await rows_in_table(admin, schema) == before, "nothing was written"
    # filters name rows without ambiguity: allowed across tenants, as on the 'id' layout
    assert await admin_view.count({"k": 1}) == 4
    assert await admin_view.delete({"id": "x"}) == 2
    assert await admin_view.clear() == 2
    assert await rows_in_table(admin, schema) == []


async def test_the_documented_move_of_an_id_table_to_the_domain_key(
    make_store: StoreMaker, admin: asyncpg.Connection, schema: str
) -> None:
    """docs/citus.md, "Moving an existing table to the domain key", step by step."""
    old = make_store(dimensions=DIM, id_type="text", domain_id="a")
    await old.add_vectors(vectors(2, 1), ids=["x", "y"], contents=["apple one", "apple two"])
    await make_store(id_type="text").add_vectors(vectors(1, 2), ids=["z"], contents=["apple none"])
    table = f'"{schema}".{TABLE}'
    await admin.execute(f"UPDATE {table} SET domain_id = 'default' WHERE domain_id IS NULL")
    await admin.execute(f"ALTER TABLE {table} DROP CONSTRAINT {TABLE}_pkey")
    await admin.execute(f"ALTER TABLE {table} ADD PRIMARY KEY (domain_id, id)")
    await admin.execute(f'DROP INDEX IF EXISTS "{schema}".{TABLE}_domain_id_idx')
    await admin.execute(f'DROP INDEX "{schema}".{TABLE}_content_tsv_gin_idx')
    assert await make_store(id_type="text", domain_id="default").enable_text_search() is True
    store_b = make_store(id_type="text", domain_id="b")
    await store_b.add_vectors(vectors(1, 3), ids=["x"], contents=["apple b"])
    assert store_b.table.primary_key == DOMAIN_KEY
    await admin.execute(f"UPDATE {table} SET content = content || ' quokka' WHERE id = 'x'")
    t = store_b.table
    terms = await admin.fetch(
        f"SELECT domain_key, df FROM {t.in_schema(t.text_terms_table)} WHERE lexeme = 'quokka' ORDER BY 1")
    assert [tuple(row) for row in terms] == [("a", 1), ("b", 1)]
    assert [r.content for r in await store_b.search(mode="text", query_text="quokka", k=5)] == ["apple b quokka"]
    assert await rows_in_table(admin, schema) == [
        ("a", "x", "apple one quokka"), ("a", "y", "apple two"), ("b", "x", "apple b quokka"),
        ("default", "z", "apple none")]
