"""Defects a hostile review found, each checked on the real server: filters that restrict nothing cannot delete,
filter size is bounded, big $in lists stay correct and fast under generic plans, statements have a default time
limit, concurrent upserts of the same ids do not deadlock, a tenant's statistics and text scores are its own, and
out-of-range k and limit name the argument."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import asyncpg
import numpy as np
import pytest
from langchain_core.embeddings import DeterministicFakeEmbedding

from langchain_pgvecstore import PgVecStore as LangChainStore
from pgvecstore import InvalidInputError, InvalidOptionError, PgVectorStore, QueryTimeoutError

StoreMaker = Callable[..., PgVectorStore]
DIM = 4
RESTRICT_NOTHING: list[dict[str, Any]] = [
    {}, {"$and": [{}]}, {"$or": [{}]}, {"$not": {"$not": {}}}, {"$or": [{}, {"n": 1}]}, {"n": {"$nin": []}},
]


def vectors(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, DIM), dtype=np.float32) + 0.01


async def filled(make_store: StoreMaker, n: int = 20, **options: Any) -> PgVectorStore:
    store = make_store(dimensions=DIM, id_type="text", **options)
    await store.add_vectors(vectors(n), ids=[f"r{i}" for i in range(n)], metadata=[{"n": i} for i in range(n)])
    return store


# -- delete never takes a filter that restricts nothing ---------------------------------------------------------
@pytest.mark.parametrize("filter", RESTRICT_NOTHING)
async def test_delete_refuses_filters_that_restrict_nothing(make_store: StoreMaker, filter: dict[str, Any]) -> None:
    store = await filled(make_store)
    tenant = await filled(make_store, domain_id="acme", table_name="tenant_rows")
    for target in (store, tenant):
        with pytest.raises(InvalidInputError, match="restricts the rows.*clear()"):
            await target.delete(filter)
    assert await store.count() == 20 and await tenant.count() == 20
    assert await store.delete({"$or": [{"n": 1}, {"$and": [{}, {"n": 2}]}]}) == 2  # a real filter still works


async def test_langchain_delete_by_filter_refuses_filters_that_restrict_nothing(
    pg_dsn: str, schema: str
) -> None:
    store = LangChainStore(DeterministicFakeEmbedding(size=DIM), connection_string=pg_dsn, schema=schema)
    await store.aadd_texts(["a", "b", "c"], metadatas=[{"n": 1}, {"n": 2}, {"n": 3}])
    try:
        for filter in RESTRICT_NOTHING[1:]:
            with pytest.raises(InvalidInputError, match="restricts the rows"):
                await store.adelete(filter=filter)
        assert len(await store.asimilarity_search("a", k=10)) == 3
    finally:
        await store.aclose()


# -- filter size ---------------------------------------------------------------------------------------------------
async def test_filter_size_is_bounded_by_options_named_in_the_error(make_store: StoreMaker) -> None:
    store = await filled(make_store)
    wide = {"$or": [{"n": i} for i in range(300)]}
    with pytest.raises(InvalidInputError, match="max_filter_conditions"):
        await store.search(vectors(1)[0], k=3, filter=wide)
    with pytest.raises(InvalidInputError, match="max_filter_conditions"):
        await store.count(wide)
    long = {"n": {"$in": list(range(100_001))}}
    for call in (store.count(long), store.get(filter=long), store.delete(long)):
        with pytest.raises(InvalidInputError, match="max_filter_values"):
            await call
    roomy = make_store(dimensions=DIM, id_type="text", max_filter_conditions=1000, max_filter_values=200_000)
    assert await roomy.count(wide) == 20
    assert await roomy.count(long) == 20
    with pytest.raises(InvalidOptionError, match="max_filter_values"):
        make_store(dimensions=DIM, max_filter_values=0)


async def test_a_big_in_list_gives_the_same_rows_after_the_plan_is_cached(make_store: StoreMaker) -> None:
    store = await filled(make_store, n=300)
    wanted = list(range(0, 300, 3))
    big = [*wanted, *range(1000, 21_000)]  # most values match nothing
    for _ in range(7):  # past the 5 custom plans after which PostgreSQL may switch to a generic one
        assert await store.count({"n": {"$in": big}}) == len(wanted)
        assert await store.count({"n": {"$nin": big}}) == 300 - len(wanted)
        got = await store.get(filter={"id": {"$in": [f"r{i}" for i in wanted] + [f"x{i}" for i in range(5000)]}})
        assert sorted(int(row.id[1:]) for row in got) == wanted


# -- statement_timeout ------------------------------------------------------------------------------------------
async def test_statements_have_a_default_time_limit_that_can_be_changed(make_store: StoreMaker) -> None:
    default = make_store(dimensions=DIM)
    assert default.config.statement_timeout == 60.0
    async with (await default.get_pool()).acquire() as conn:
        assert await conn.fetchval("SHOW statement_timeout") == "1min"
    unlimited = make_store(dimensions=DIM, statement_timeout=None)
    async with (await unlimited.get_pool()).acquire() as conn:
        assert await conn.fetchval("SHOW statement_timeout") == "0"


async def test_clear_is_not_cut_by_the_statement_timeout_but_delete_is(
    make_store: StoreMaker, admin: asyncpg.Connection
) -> None:
    store = await filled(make_store, statement_timeout=0.3)
    t = store.table
    # Every DELETE on the table takes a second, as on a big table.
    await admin.execute("CREATE FUNCTION slow_delete() RETURNS trigger LANGUAGE plpgsql AS "
                        "$$ BEGIN PERFORM pg_sleep(1); RETURN NULL; END $$")
    await admin.execute(f"CREATE TRIGGER slow BEFORE DELETE ON {t.qualified} FOR EACH STATEMENT "
                        "EXECUTE FUNCTION slow_delete()")
    try:
        with pytest.raises(QueryTimeoutError):
            await store.delete({"n": 1})
        assert await store.count() == 20
        assert await store.clear() == 20
    finally:
        await admin.execute(f"DROP TRIGGER slow ON {t.qualified}; DROP FUNCTION slow_delete()")


# -- command_timeout --------------------------------------------------------------------------------------------
async def test_command_timeout_cuts_a_call_waiting_on_a_lock_and_the_pool_goes_on(
    make_store: StoreMaker, admin: asyncpg.Connection
) -> None:
    """With no server-side limit, a read stuck behind another session's lock ends at command_timeout (client side)
    with QueryTimeoutError; the statement is cancelled on the server and the store's next calls work."""
    store = await filled(make_store, command_timeout=0.5, statement_timeout=None, pool_min_size=1, pool_max_size=1)
    t = store.table
    locker = admin
    async with locker.transaction():
        await locker.execute(f"LOCK TABLE {t.qualified} IN ACCESS EXCLUSIVE MODE")
        # (asyncio.wait_for only keeps a store that ignored command_timeout from hanging the test: its
        # TimeoutError is not a QueryTimeoutError.)
        with pytest.raises(QueryTimeoutError, match="command_timeout"):
            await asyncio.wait_for(store.count(), 10)
        with pytest.raises(QueryTimeoutError) as raised:
            await asyncio.wait_for(store.search(vectors(1, seed=3)[0], k=3), 10)
        assert isinstance(raised.value, TimeoutError)  # also the built-in, for callers that catch that
        # Nothing of the store's is still waiting on the server for the lock.
        waiting = await locker.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
        )
        assert waiting == 0
    assert await store.count() == 20  # the lock is gone: the same store (one pooled connection) answers
    assert [hit.id for hit in await store.search(vectors(20)[7], k=1)] == ["r7"]


# -- concurrent upserts of the same ids -------------------------------------------------------------------------
@pytest.mark.parametrize("existing", [False, True], ids=["new-ids", "existing-ids"])
async def test_concurrent_upserts_of_the_same_ids_in_opposite_orders_all_succeed(
    make_store: StoreMaker, existing: bool
) -> None:
    first = make_store(dimensions=DIM, id_type="text", batch_size=500)
    second = make_store(dimensions=DIM, id_type="text", batch_size=500)
    n = 1500
    ids = [f"id{i:05d}" for i in range(n)]
    if existing:
        await first.add_vectors(vectors(n), ids=ids)

    async def write(store: PgVectorStore, round_: int) -> None:
        order = ids if round_ % 2 == 0 else ids[::-1]
        await store.add_vectors(vectors(n, seed=round_), ids=order, metadata=[{"round": round_}] * n)

    # 16 calls, two sessions at a time writing the same rows in opposite orders (before: 13 of 16 deadlocked).
    for round_ in range(0, 16, 2):
        await asyncio.gather(write(first, round_), write(second, round_ + 1))
    assert await first.count() == n
    rounds = {row.metadata["round"] for row in await first.get(limit=n)}
    assert len(rounds) <= 2 and rounds <= {14, 15}


# -- a tenant's statistics and text scores are its own ----------------------------------------------------------
TEXTS = ["salt water fish", "fresh water fish", "salt flats", "water"]


async def test_a_tenants_stats_and_text_scores_do_not_depend_on_other_tenants(make_store: StoreMaker) -> None:
    shared_a = make_store(dimensions=DIM, id_type="text", table_name="shared", domain_id="a")
    shared_b = make_store(dimensions=DIM, id_type="text", table_name="shared", domain_id="b")
    alone_a = make_store(dimensions=DIM, id_type="text", table_name="alone", domain_id="a")
    for store in (shared_a, alone_a):
        await store.add_vectors(vectors(4), ids=[f"a{i}" for i in range(4)], contents=TEXTS)
    # Tenant b: many rows, nearly all with "water", so its counts would change a's IDF if they leaked in.
    await shared_b.add_vectors(vectors(300, seed=1), ids=[f"b{i}" for i in range(300)],
                               contents=["water water"] * 299 + ["salt"])
    for store in (shared_a, alone_a, shared_b):
        async with (await store.get_pool()).acquire() as conn:
            await conn.execute(f"ANALYZE {store.table.qualified}")  # the table-wide row estimate is now real

    for mode, options in (("text", {}), ("hybrid", {"query": vectors(1, seed=5)[0]})):
        shared = await shared_a.search(query_text="salt water", mode=mode, k=4, **options)
        alone = await alone_a.search(query_text="salt water", mode=mode, k=4, **options)
        assert [r.id for r in shared] == [r.id for r in alone]
        assert [r.score for r in shared] == pytest.approx([r.score for r in alone], rel=1e-6)

    stats_shared, stats_alone = await shared_a.stats(), await alone_a.stats()
    assert stats_shared["rows"] == stats_alone["rows"] == 4 and stats_shared["tenants"] == 1
    assert stats_shared["table_bytes"] == stats_alone["table_bytes"] > 0
    assert stats_shared["total_bytes"] is None
    whole = make_store(dimensions=DIM, id_type="text", table_name="shared")
    stats_whole = await whole.stats()
    assert stats_whole["rows"] == 304 and stats_whole["table_bytes"] > stats_shared["table_bytes"]
    assert stats_whole["total_bytes"] >= stats_whole["table_bytes"]


# -- k and limit -------------------------------------------------------------------------------------------------
async def test_k_and_limit_beyond_bigint_name_the_argument(make_store: StoreMaker) -> None:
    store = await filled(make_store)
    with pytest.raises(InvalidInputError, match="^k must be an integer between 1 and 9223372036854775807"):
        await store.search(vectors(1)[0], k=2**63)
    with pytest.raises(InvalidInputError, match="^k must be"):
        await store.search(query_text="x", mode="text", k=2**64)
    with pytest.raises(InvalidInputError, match="^limit must be None or an integer between 1 and 9223372036854775807"):
        await store.get(limit=2**63)
    assert len(await store.search(vectors(1)[0], k=2**63 - 1)) == 20
    assert len(await store.get(limit=2**63 - 1)) == 20
