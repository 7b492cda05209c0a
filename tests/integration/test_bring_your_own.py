"""Pools and connection arguments the application already has: ``PgVectorStore(pool=...)`` and ``connect_kwargs``.

What a user checks: the store works on the application's pool (vectors in and out as numpy, its settings in
force: UTC for ``created_at``, its statement_timeout) without opening connections of its own, leaves the pool open
at close, refuses a pool of another event loop clearly, and both adapters take one; ``connect_kwargs`` reach the
server (the application name in ``pg_stat_activity``, a server setting).
"""

from __future__ import annotations

import asyncio
import datetime
import uuid
from collections.abc import AsyncIterator, Callable

import asyncpg
import numpy as np
import pytest

from pgvecstore import InvalidOptionError, PgVectorStore, QueryTimeoutError, SyncPgVectorStore
from pgvecstore.connection import APPLICATION_NAME

DIM = 8


def vectors(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)


@pytest.fixture
async def app_pool(pg_dsn: str) -> AsyncIterator[tuple[asyncpg.Pool, str]]:
    """The application's own pool (no vector codecs; sessions in New York time), and its application_name."""
    name = f"app-{uuid.uuid4().hex[:8]}"
    pool = await asyncpg.create_pool(pg_dsn, min_size=1, max_size=3,
                                     server_settings={"application_name": name, "TimeZone": "America/New_York"})
    yield pool, name
    await pool.close()


async def sessions_named(admin: asyncpg.Connection, name: str) -> int:
    return int(await admin.fetchval("SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", name))


async def test_a_store_on_the_applications_pool(
    app_pool: tuple[asyncpg.Pool, str], schema: str, admin: asyncpg.Connection
) -> None:
    pool, name = app_pool
    before = await sessions_named(admin, APPLICATION_NAME)
    store = PgVectorStore(pool=pool, dimensions=DIM, schema=schema, id_type="text", index_type="hnsw",
                          auto_create_index=True)
    data = vectors(60, 1)
    ids = [f"v{i}" for i in range(60)]
    await store.add_vectors(data, ids, [{"n": i} for i in range(60)])
    assert (await store.search(data[5], k=1))[0].id == "v5"
    assert (await store.search(data[7], k=1, filter={"n": {"$gte": 7}}))[0].id == "v7"
    [(vector, metadata)] = await store.get_vectors(["v9"])
    assert isinstance(vector, np.ndarray) and np.array_equal(vector, data[9]) and metadata == {"n": 9}
    assert await store.get_pool() is pool
    # Every statement ran on the application's sessions: the store opened none of its own.
    assert await sessions_named(admin, APPLICATION_NAME) == before
    assert await sessions_named(admin, name) >= 1
    # created_at is written in UTC although the application's sessions run in New York time.
    written = await admin.fetchval(f'SELECT max(created_at) FROM "{schema}".knowledge_embeddings')
    utc_now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
    assert abs((utc_now - written).total_seconds()) < 300
    await store.close()
    # The pool is the application's: still open, and its connections still work for its own SQL.
    assert await pool.fetchval(f'SELECT count(*) FROM "{schema}".knowledge_embeddings') == 60
    assert await pool.fetchval("SHOW TimeZone") == "America/New_York"


async def test_the_stores_statement_timeout_holds_on_the_applications_pool(
    app_pool: tuple[asyncpg.Pool, str], schema: str, admin: asyncpg.Connection
) -> None:
    pool, _ = app_pool
    async with PgVectorStore(pool=pool, dimensions=DIM, schema=schema, statement_timeout=0.5,
                             command_timeout=10) as store:
        await store.add_vectors(vectors(5, 2))
        async with admin.transaction():
            await admin.execute(f'LOCK TABLE "{schema}".knowledge_embeddings IN ACCESS EXCLUSIVE MODE')
            with pytest.raises(QueryTimeoutError, match="statement_timeout"):
                await store.count()
        assert await store.count() == 5


async def test_two_tenants_share_one_application_pool(app_pool: tuple[asyncpg.Pool, str], schema: str) -> None:
    pool, _ = app_pool
    data = vectors(20, 3)
    async with (PgVectorStore(pool=pool, dimensions=DIM, schema=schema, id_type="text", domain_id="a") as a,
                PgVectorStore(pool=pool, dimensions=DIM, schema=schema, id_type="text", domain_id="b") as b):
        await asyncio.gather(a.add_vectors(data[:10], [f"a{i}" for i in range(10)]),
                             b.add_vectors(data[10:], [f"b{i}" for i in range(10)]))
        assert {hit.id for hit in await a.search(data[12], k=20)} == {f"a{i}" for i in range(10)}
        assert await b.count() == 10


def test_a_pool_of_another_event_loop_is_refused_clearly(pg_dsn: str, schema: str) -> None:
    """The synchronous API runs the store on a loop of its own: a pool made on the caller's loop cannot serve it."""
    loop = asyncio.new_event_loop()

    async def make_pool() -> asyncpg.Pool:  # made on `loop`, as an application's pool is made on its loop
        return await asyncpg.create_pool(pg_dsn, min_size=1, max_size=1)

    try:
        pool = loop.run_until_complete(make_pool())
        store = SyncPgVectorStore(pool=pool, dimensions=DIM, schema=schema)
        with pytest.raises(InvalidOptionError, match="belongs to another event loop"):
            store.count()
        store.close()
        loop.run_until_complete(pool.close())
    finally:
        loop.close()


async def test_both_adapters_take_the_applications_pool(
    app_pool: tuple[asyncpg.Pool, str], schema: str, admin: asyncpg.Connection
) -> None:
    from langchain_core.embeddings import DeterministicFakeEmbedding
    from llama_index.core.schema import TextNode
    from llama_index.core.vector_stores.types import VectorStoreQuery

    from langchain_pgvecstore import PgVecStore as LangChainStore
    from llama_index.vector_stores.pgvecstore import PgVecStore as LlamaStore

    pool, _ = app_pool
    before = await sessions_named(admin, APPLICATION_NAME)
    chain = LangChainStore(DeterministicFakeEmbedding(size=DIM), pool=pool, schema=schema, table_name="chain")
    await chain.aadd_texts(["alpha", "beta"], ids=["x", "y"])
    assert [doc.page_content for doc in await chain.asimilarity_search("alpha", k=1)] == ["alpha"]
    llama = LlamaStore(pool=pool, schema=schema, table_name="llama", dimensions=DIM)
    node = TextNode(id_="n1", text="gamma", embedding=vectors(1, 4)[0].tolist())
    await llama.async_add([node])
    found = await llama.aquery(VectorStoreQuery(query_embedding=node.embedding, similarity_top_k=1))
    assert found.ids == ["n1"]
    assert await sessions_named(admin, APPLICATION_NAME) == before
    await chain.aclose()
    await llama.aclose()
    assert await pool.fetchval("SELECT 1") == 1


async def test_connect_kwargs_reach_the_server(
    make_store: Callable[..., PgVectorStore], admin: asyncpg.Connection
) -> None:
    name = f"kw-{uuid.uuid4().hex[:8]}"
    store = make_store(dimensions=DIM, connect_kwargs={"server_settings": {"application_name": name,
                                                                             "work_mem": "7MB"},
                                                       "max_inactive_connection_lifetime": 60.0})
    await store.add_vectors(vectors(3, 5))
    assert await sessions_named(admin, name) >= 1
    pool = await store.get_pool()
    assert await pool.fetchval("SHOW work_mem") == "7MB"
    assert await pool.fetchval("SHOW TimeZone") == "UTC"  # the store's own setting stays
    assert "work_mem" not in repr(store.config) and "connect_kwargs={'server_settings': '...'" in repr(store.config)


async def test_an_applications_pool_and_read_replicas_together(
    app_pool: tuple[asyncpg.Pool, str], schema: str, pg_dsn: str
) -> None:
    """With read_replicas the store opens the replicas' pools itself beside the application's pool. Here the
    'replica' is the primary itself, which the health probe finds not in recovery and skips: reads and writes
    go to the application's pool."""
    pool, _ = app_pool
    async with PgVectorStore(pool=pool, dimensions=DIM, schema=schema, read_replicas=[pg_dsn]) as store:
        await store.add_vectors(vectors(4, 6), None)
        assert await store.count() == 4
        replicas = store._pools.replicas
        assert replicas is not None and asyncio.get_running_loop() in replicas._loops  # opened beside the pool
