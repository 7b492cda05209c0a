"""The filter language against a real PostgreSQL: every operator and combinator on a fixed table, random filters
over random rows checked against the reference evaluator, and hostile keys and values that change nothing."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Mapping
from typing import Any

import asyncpg
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from tests.reference_filter import json_contains, like_match, matching_ids

from pgvecstore import InvalidInputError, PgVectorStore
from pgvecstore.sql import queries
from pgvecstore.sql.filters import restricts

StoreMaker = Callable[..., PgVectorStore]
UTC = dt.UTC
PLUS2 = dt.timezone(dt.timedelta(hours=2))
DB_SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
REFERENCE_SETTINGS = settings(DB_SETTINGS, max_examples=150)

# -- the fixed table ---------------------------------------------------------------------------------------------

FIXED_ROWS: list[dict[str, Any]] = [
    {"id": "r0", "content": "The quick brown fox", "document_id": "d1", "chunk_index": 0,
     "meta": {"category": "science", "year": 2024, "price": 9.5, "active": True, "tags": ["a", "b"],
              "author": {"name": "Ann", "age": 40}, "published": "2024-03-01T12:00:00Z", "code": "5"}},
    {"id": "r1", "content": "the lazy dog", "document_id": "d1", "chunk_index": 1,
     "meta": {"category": "technology", "year": "2024", "price": 20, "active": False, "tags": ["b"],
              "author": {"name": "bob"}, "published": "2023-12-31", "code": 5}},
    {"id": "r2", "content": "O'Neil; DROP TABLE", "document_id": "d2", "chunk_index": 0,
     "meta": {"category": "science", "year": 2023, "price": 0, "tags": [], "author": {"name": "Ann", "age": "40"},
              "note": None}},
    {"id": "r3", "content": None, "document_id": None, "chunk_index": None, "meta": {}},
    {"id": "r4", "content": "100% match_", "document_id": "d3", "chunk_index": 5,
     "meta": {"category": "Science", "year": 2025, "price": -3.25, "active": True, "tags": ["a", 1, {"k": "v"}],
              "author": "anonymous", "published": "not a date", "code": [5]}},
    {"id": "r5", "content": "émoji 😀", "document_id": "d2", "chunk_index": 2,
     "meta": {"category": "art", "year": 2022.0, "price": 1e20, "tags": "a", "author": {"name": "Cy", "age": 25},
              "published": "2024-03-01 14:00:00+02:00", "note": "x"}},
]
ALL = {row["id"] for row in FIXED_ROWS}
COLUMN_NAMES = ("id", "document_id", "chunk_index", "content", "created_at")


def ends_with_escape(pattern: str) -> bool:
    """A LIKE pattern ending in an unescaped backslash, which PostgreSQL (and the compiler) reject."""
    return (len(pattern) - len(pattern.rstrip("\\"))) % 2 == 1


def ids(text: str) -> set[str]:
    return {f"r{n}" for n in text}


# (filter, the rows it must match, written out by hand from the documented rules)
CASES: list[tuple[dict[str, Any], set[str]]] = [
    ({}, ALL),
    # equality, typed
    ({"category": "science"}, ids("02")),
    ({"category": {"$eq": "science"}}, ids("02")),
    ({"year": 2024}, ids("0")),
    ({"year": "2024"}, ids("1")),
    ({"year": 2022}, ids("5")),
    ({"code": 5}, ids("1")),
    ({"code": "5"}, ids("0")),
    ({"active": True}, ids("04")),
    ({"active": False}, ids("1")),
    ({"author.name": "Ann"}, ids("02")),
    ({"author.age": 40}, ids("0")),
    ({"note": None}, ids("01234")),
    # $ne keeps rows without the key
    ({"category": {"$ne": "science"}}, ids("1345")),
    ({"active": {"$ne": True}}, ids("1235")),
    ({"note": {"$ne": None}}, ids("5")),
    # ranges
    ({"price": {"$gt": 9.5}}, ids("15")),
    ({"price": {"$gte": 9.5}}, ids("015")),
    ({"price": {"$lt": 0}}, ids("4")),
    ({"price": {"$lte": 0}}, ids("24")),
    ({"price": {"$gt": 0, "$lt": 100}}, ids("01")),
    ({"year": {"$gt": "2023"}}, ids("1")),
    ({"category": {"$lt": "science"}}, ids("45")),
    ({"author.age": {"$gte": 30}}, ids("0")),
    ({"price": {"$between": [0, 20]}}, ids("012")),
    ({"year": {"$between": [2023, 2024]}}, ids("02")),
    ({"category": {"$between": ["a", "t"]}}, ids("025")),
    # $in / $nin
    ({"category": {"$in": ["art", "technology"]}}, ids("15")),
    ({"code": {"$in": [5]}}, ids("1")),
    ({"code": {"$in": ["5", None]}}, ids("0235")),
    ({"category": {"$in": []}}, set()),
    ({"category": {"$nin": ["science", "Science"]}}, ids("135")),
    ({"category": {"$nin": []}}, ALL),
    # $exists
    ({"note": {"$exists": True}}, ids("25")),
    ({"note": {"$exists": False}}, ids("0134")),
    ({"author.name": {"$exists": True}}, ids("0125")),
    ({"author.name.first": {"$exists": True}}, set()),
    # $like / $ilike
    ({"category": {"$like": "sci%"}}, ids("02")),
    ({"category": {"$ilike": "SCI%"}}, ids("024")),
    ({"category": {"$like": "_rt"}}, ids("5")),
    ({"content": {"$like": "%fox"}}, ids("0")),
    ({"content": {"$ilike": "the%"}}, ids("01")),
    ({"content": {"$like": "100\\%%"}}, ids("4")),
    ({"content": {"$like": "%match\\_"}}, ids("4")),
    ({"content": {"$like": "%o'neil%"}}, set()),
    ({"content": {"$ilike": "%o'neil%"}}, ids("2")),
    # ... only on JSON strings: numbers, booleans, objects and arrays never match, whatever their text
    ({"code": {"$like": "5"}}, ids("0")),
    ({"year": {"$like": "202%"}}, ids("1")),
    ({"active": {"$ilike": "T%"}}, set()),
    ({"author": {"$like": "{%"}}, set()),
    ({"tags": {"$ilike": "[%"}}, set()),
    # $contains
    ({"tags": {"$contains": "a"}}, ids("04")),
    ({"tags": {"$contains": 1}}, ids("4")),
    ({"tags": {"$contains": ["a", "b"]}}, ids("0")),
    ({"tags": {"$contains": [{"k": "v"}]}}, ids("4")),
    ({"tags": {"$contains": []}}, ids("0124")),
    ({"tags": {"$eq": []}}, ids("2")),
    ({"tags": {"$eq": ["a", "b"]}}, ids("0")),
    ({"tags": {"$ne": ["b"]}}, ids("02345")),
    ({"author": {"$eq": {"name": "Cy", "age": 25}}}, ids("5")),
    ({"author": {"$contains": {"name": "Ann"}}}, ids("02")),
    ({"code": {"$contains": 5}}, ids("4")),
    # timestamps: ISO strings in metadata against dates and datetimes (naive = UTC)
    ({"published": {"$gte": dt.datetime(2024, 3, 1, 12)}}, ids("05")),
    ({"published": dt.date(2023, 12, 31)}, ids("1")),
    ({"published": {"$lt": dt.datetime(2024, 1, 1, tzinfo=UTC)}}, ids("1")),
    ({"published": {"$eq": dt.datetime(2024, 3, 1, 14, tzinfo=PLUS2)}}, ids("05")),
    ({"published": {"$in": [dt.date(2023, 12, 31), "not a date"]}}, ids("14")),
    ({"published": {"$between": [dt.date(2024, 1, 1), dt.date(2024, 12, 31)]}}, ids("05")),
    # columns
    ({"document_id": "d1"}, ids("01")),
    ({"document_id": {"$in": ["d2", "d3"]}}, ids("245")),
    ({"document_id": {"$ne": "d1"}}, ids("2345")),
    ({"document_id": None}, ids("3")),
    ({"chunk_index": 0}, ids("02")),
    ({"chunk_index": {"$gt": 0}}, ids("145")),
    ({"chunk_index": {"$between": [1, 2]}}, ids("15")),
    ({"chunk_index": {"$nin": [0, 1]}}, ids("345")),
    ({"document_id": {"$in": [None, "d3"]}}, ids("34")),  # None anywhere in the list, values after it too
    ({"chunk_index": {"$in": [5, None, 1]}}, ids("134")),
    ({"document_id": {"$nin": [None, "d1"]}}, ids("245")),
    ({"chunk_index": {"$exists": False}}, ids("3")),
    ({"content": {"$exists": True}}, ids("01245")),
    ({"id": "r2"}, ids("2")),
    ({"id": {"$in": ["r0", "r5", "nope"]}}, ids("05")),
    ({"id": {"$gte": "r4"}}, ids("45")),
    ({"created_at": {"$lt": "2100-01-01"}}, ALL),
    ({"created_at": {"$gt": dt.datetime(2100, 1, 1)}}, set()),
    ({"created_at": {"$gte": dt.date(2000, 1, 1)}}, ALL),
    # combinators
    ({"category": "science", "year": {"$gte": 2023}}, ids("02")),
    ({"$and": [{"category": "science"}, {"year": 2024}]}, ids("0")),
    ({"$or": [{"category": "art"}, {"price": {"$lt": 0}}]}, ids("45")),
    ({"$not": {"category": "science"}}, ids("1345")),
    ({"$not": {"$or": [{"tags": {"$contains": "a"}}, {"active": True}]}}, ids("1235")),
    ({"$or": [{"$and": [{"category": "science"}, {"$not": {"author.age": 40}}]}, {"document_id": "d3"}]}, ids("24")),
    ({"price": {"$not": {"$gt": 5}}}, ids("234")),
    ({"$not": {"$not": {"note": {"$exists": True}}}}, ids("25")),
    ({"$and": [{"$or": [{"id": "r0"}, {"id": "r1"}]}, {"$or": [{"id": "r1"}, {"id": "r2"}]}]}, ids("1")),
]


async def add_fixed_rows(store: PgVectorStore) -> None:
    vectors = np.random.default_rng(7).random((len(FIXED_ROWS), 3), dtype=np.float32)
    await store.add_vectors(
        vectors,
        ids=[row["id"] for row in FIXED_ROWS],
        metadata=[row["meta"] for row in FIXED_ROWS],
        contents=[row["content"] for row in FIXED_ROWS],
        document_ids=[row["document_id"] for row in FIXED_ROWS],
        chunk_indexes=[row["chunk_index"] for row in FIXED_ROWS],
    )


async def stored_rows(admin: asyncpg.Connection, store: PgVectorStore) -> list[dict[str, Any]]:
    """Every row of the store's table as the reference evaluator reads it (from the database, not our inputs)."""
    t = store.table
    records = await admin.fetch(
        f"SELECT {t.col('id')}::text, {t.col('document_id')}, {t.col('chunk_index')}, {t.col('content')}, "
        f"{t.col('created_at')}, {t.col('metadata')}::text FROM {t.qualified} ORDER BY 1"
    )
    return [
        {"id": r[0], "document_id": r[1], "chunk_index": r[2], "content": r[3], "created_at": r[4],
         "metadata": json.loads(r[5]) if r[5] is not None else None}
        for r in records
    ]


async def found_by_search(store: PgVectorStore, filter: Mapping[str, Any] | None, k: int) -> set[str]:
    results = await store.search(np.ones(store.config.dimensions, dtype=np.float32), k=k, filter=filter)
    return {row_id for row_id, _, _ in results}


@pytest.fixture
async def fixed_store(make_store: StoreMaker) -> PgVectorStore:
    store = make_store(dimensions=3, id_type="text", table_name="fixed")
    await add_fixed_rows(store)
    return store


async def test_every_operator_and_combinator_on_a_fixed_table(
    fixed_store: PgVectorStore, admin: asyncpg.Connection
) -> None:
    rows = await stored_rows(admin, fixed_store)
    assert {row["id"] for row in rows} == ALL
    for filter, expected in CASES:
        assert matching_ids(filter, rows) == expected, f"reference evaluator disagrees on {filter}"
        assert await fixed_store.count(filter=filter) == len(expected), f"count({filter})"
        assert await found_by_search(fixed_store, filter, k=20) == expected, f"search(filter={filter})"


async def test_delete_by_filter_removes_exactly_the_matching_rows(
    fixed_store: PgVectorStore, admin: asyncpg.Connection
) -> None:
    for filter, expected in [
        ({"category": {"$ne": "science"}}, ids("1345")),
        ({"$or": [{"tags": {"$contains": "a"}}, {"chunk_index": {"$gte": 2}}]}, ids("045")),
        ({"published": {"$gte": dt.date(2024, 1, 1)}}, ids("05")),
        ({"id": "nope"}, set()),
    ]:
        await fixed_store.clear()
        await add_fixed_rows(fixed_store)
        assert await fixed_store.delete(filter=filter) == len(expected), f"delete({filter})"
        remaining = {row["id"] for row in await stored_rows(admin, fixed_store)}
        assert remaining == ALL - expected, f"delete({filter})"
    with pytest.raises(ValueError, match=r"unknown operator '\$gtt'"):
        await fixed_store.delete(filter={"price": {"$gtt": 1}})
    assert await fixed_store.count() == len(ALL) - 0, "a rejected filter deletes nothing"


async def test_column_keys_follow_the_column_mapping(make_store: StoreMaker, admin: asyncpg.Connection) -> None:
    store = make_store(
        dimensions=3,
        table_name="mapped",
        columns={"id": "pk", "content": "body", "document_id": "source", "chunk_index": "seg",
                 "created_at": "indexed_at", "metadata": "attrs"},
    )
    vectors = np.eye(3, dtype=np.float32)
    row_ids = await store.add_vectors(
        vectors,
        metadata=[{"content": "alpha", "document_id": "a.pdf", "chunk_index": 0, "content_type": "text"},
                  {"content": "beta", "document_id": "a.pdf", "chunk_index": 1},
                  {"content": "gamma", "document_id": "b.pdf", "chunk_index": 0, "id": "meta-id"}],
    )
    assert await store.count(filter={"content": "beta"}) == 1
    assert await store.count(filter={"document_id": "a.pdf", "chunk_index": {"$gte": 1}}) == 1
    assert await store.count(filter={"content_type": "text"}) == 1
    assert await store.count(filter={"id": row_ids[2].upper()}) == 1, "uuid ids compare as uuids"
    assert await store.count(filter={"id": {"$in": row_ids[:2]}}) == 2
    assert await store.count(filter={"id": {"$like": row_ids[0][:8] + "%"}}) >= 1
    with pytest.raises(ValueError, match="not a UUID"):
        await store.count(filter={"id": "meta-id"})
    assert await store.count(filter={"created_at": {"$lte": dt.datetime.now(UTC) + dt.timedelta(hours=1)}}) == 3
    found = await found_by_search(store, {"$not": {"document_id": "a.pdf"}}, k=3)
    assert found == {row_ids[2]}
    assert await store.delete(filter={"content": {"$in": ["alpha", "gamma"]}}) == 2
    rows = await stored_rows(admin, store)
    assert [row["content"] for row in rows] == ["beta"]


async def test_indexes_serve_equality_containment_and_column_filters(
    fixed_store: PgVectorStore, admin: asyncpg.Connection, schema: str
) -> None:
    """Plain equality and $contains compile to `metadata @> ...`, which a GIN index serves; columns use theirs."""
    await admin.execute(f'CREATE INDEX fixed_meta_gin ON "{schema}".fixed USING gin (metadata jsonb_path_ops)')
    await admin.execute(f'ANALYZE "{schema}".fixed')
    for filter, index in [
        ({"category": "science"}, "fixed_meta_gin"),
        ({"author.name": "Ann"}, "fixed_meta_gin"),
        ({"tags": {"$contains": ["a"]}}, "fixed_meta_gin"),
        ({"$or": [{"category": "art"}, {"category": "science"}]}, "fixed_meta_gin"),
        ({"id": {"$in": ["r1", "r2"]}}, "fixed_pkey"),
        ({"document_id": "d1"}, "fixed_document_id_idx"),
        ({"document_id": {"$in": ["d1", "d2"]}, "chunk_index": {"$gte": 1}}, "fixed_document_id_idx"),
    ]:
        count = queries.count(fixed_store.table, None, filter)
        async with admin.transaction():
            await admin.execute("SET LOCAL enable_seqscan = off")
            plan = "\n".join(r[0] for r in await admin.fetch(f"EXPLAIN {count.sql}", *count.args))
        assert index in plan, f"{filter} does not use {index}:\n{plan}"


# -- the reference evaluator is itself checked against PostgreSQL -------------------------------------------------

json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 3), st.sampled_from([0.5, 1.0, 2.5]), st.sampled_from(["a", "b", "1"])
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(["k", "m"]), inner, max_size=2)
    ),
    max_leaves=6,
)


@REFERENCE_SETTINGS
@given(container=json_values, contained=json_values)
async def test_reference_containment_agrees_with_postgres(
    admin: asyncpg.Connection, container: Any, contained: Any
) -> None:
    # Wrapped one level down, as the store uses it (a key's value inside the metadata object).
    expected = await admin.fetchval(
        "SELECT $1::jsonb @> $2::jsonb", json.dumps({"k": container}), json.dumps({"k": contained})
    )
    assert json_contains(container, contained) == expected


like_text = st.text(alphabet="aAbB%_\\ é'", max_size=6)


@REFERENCE_SETTINGS
@given(pattern=like_text, text=like_text)
async def test_reference_like_agrees_with_postgres(admin: asyncpg.Connection, pattern: str, text: str) -> None:
    if ends_with_escape(pattern):
        pattern += "x"  # PostgreSQL rejects such a pattern (and so does the compiler)
    row = await admin.fetchrow("SELECT $1::text LIKE $2::text, $1::text ILIKE $2::text", text, pattern)
    assert (like_match(pattern, text), like_match(pattern, text, ignore_case=True)) == (row[0], row[1])


# -- random filters over random rows -------------------------------------------------------------------------------

NOW = dt.datetime.now(UTC)
SCALARS = [None, True, False, 0, 1, 5, -1, 2.5, 5.0, "5", "a", "b", "A", "ab", "", "é", "o'neil", "a%b",
           "2024-01-01", "2024-06-01T12:00:00+02:00", "2024-06-01 10:00:00"]
DATES = [dt.date(2024, 1, 1), dt.datetime(2024, 6, 1, 10), dt.datetime(2024, 6, 1, 12, tzinfo=PLUS2),
         dt.datetime(2023, 1, 1, tzinfo=UTC)]
META_KEYS = ["a", "b", "n.x", "n", "tags", "gone"]
PATTERNS = ["%", "a%", "%b", "_", "A%", "a\\%b", "%5%", "", "o'%", "%-%"]

scalar = st.sampled_from(SCALARS)
row_value = st.one_of(
    scalar,
    st.lists(scalar, max_size=3),
    st.fixed_dictionaries({}, optional={"x": scalar, "y": scalar}),
)
row_strategy = st.fixed_dictionaries(
    {
        "content": st.sampled_from([None, "hello", "Hello world", "", "o'neil", "100%"]),
        "document_id": st.sampled_from([None, "d1", "d2"]),
        "chunk_index": st.sampled_from([None, 0, 1, 2, 7]),
        "meta": st.fixed_dictionaries({}, optional={"a": row_value, "b": row_value, "n": row_value,
                                                    "tags": st.lists(scalar, max_size=3)}),
    }
)


def kinds_for_range(draw: st.DrawFn) -> Any:
    return draw(st.sampled_from([0, 1, 5, -1, 2.5, "5", "a", "b", "A", "", *DATES]))


@st.composite
def metadata_condition(draw: st.DrawFn) -> dict[str, Any]:
    key = draw(st.sampled_from(META_KEYS))
    op = draw(st.sampled_from(["short", "$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$between", "$in", "$nin",
                               "$like", "$ilike", "$exists", "$contains", "$not"]))
    if op == "short":
        return {key: draw(st.one_of(scalar, st.sampled_from(DATES)))}
    if op in ("$eq", "$ne"):
        return {key: {op: draw(st.one_of(scalar, st.sampled_from(DATES)))}}
    if op in ("$gt", "$gte", "$lt", "$lte"):
        return {key: {op: kinds_for_range(draw)}}
    if op == "$between":
        pool = draw(st.sampled_from([[0, 1, 5, -1, 2.5], ["5", "a", "b", "A", ""], DATES]))
        return {key: {op: [draw(st.sampled_from(pool)), draw(st.sampled_from(pool))]}}
    if op in ("$in", "$nin"):
        return {key: {op: draw(st.lists(st.one_of(scalar, st.sampled_from(DATES)), max_size=3))}}
    if op in ("$like", "$ilike"):
        return {key: {op: draw(st.sampled_from(PATTERNS))}}
    if op == "$exists":
        return {key: {op: draw(st.booleans())}}
    if op == "$contains":
        value = draw(st.one_of(scalar, st.lists(scalar, max_size=2), st.fixed_dictionaries({"x": scalar})))
        return {key: {op: value}}
    inner_op = draw(st.sampled_from(["$eq", "$gt", "$in", "$exists"]))
    inner = {"$eq": draw(scalar), "$gt": kinds_for_range(draw), "$in": [draw(scalar)], "$exists": True}[inner_op]
    return {key: {"$not": {inner_op: inner}}}


@st.composite
def column_condition(draw: st.DrawFn) -> dict[str, Any]:
    key = draw(st.sampled_from(["content", "document_id", "chunk_index", "id", "created_at"]))
    values = {
        "content": st.sampled_from(["hello", "Hello world", "", "o'neil", "100%", "zzz"]),
        "document_id": st.sampled_from(["d1", "d2", "d3"]),
        "chunk_index": st.sampled_from([0, 1, 2, 7, -5]),
        "id": st.sampled_from(["r0", "r1", "r3", "r9", "zz"]),
        "created_at": st.sampled_from([NOW - dt.timedelta(days=1), NOW + dt.timedelta(days=1),
                                       dt.date(2000, 1, 1), "2100-01-01"]),
    }[key]
    ops = ["short", "$eq", "$ne", "$gt", "$lte", "$in", "$nin", "$exists"]
    if key in ("content", "document_id", "id"):
        ops += ["$like", "$ilike"]
    op = draw(st.sampled_from(ops))
    if op == "short":
        return {key: draw(st.one_of(values, st.none()))}
    if op in ("$in", "$nin"):
        return {key: {op: draw(st.lists(st.one_of(values, st.none()), max_size=3))}}
    if op == "$exists":
        return {key: {op: draw(st.booleans())}}
    if op in ("$like", "$ilike"):
        return {key: {op: draw(st.sampled_from(PATTERNS))}}
    return {key: {op: draw(values)}}


def merge(pair: tuple[dict[str, Any], dict[str, Any]]) -> dict[str, Any]:
    return {**pair[0], **pair[1]}


filters = st.recursive(
    st.one_of(metadata_condition(), column_condition()),
    lambda inner: st.one_of(
        st.lists(inner, min_size=1, max_size=3).map(lambda items: {"$and": items}),
        st.lists(inner, min_size=1, max_size=3).map(lambda items: {"$or": items}),
        inner.map(lambda item: {"$not": item}),
        st.tuples(inner, inner).map(merge),
    ),
    max_leaves=6,
)


@pytest.fixture
async def random_store(make_store: StoreMaker) -> PgVectorStore:
    store = make_store(dimensions=2, id_type="text", table_name="random_rows")
    await store.initialize()
    return store


async def load(store: PgVectorStore, rows: list[dict[str, Any]]) -> None:
    await store.clear()
    if rows:
        await store.add_vectors(
            np.random.default_rng(len(rows)).random((len(rows), 2), dtype=np.float32) + 0.1,
            ids=[f"r{i}" for i in range(len(rows))],
            metadata=[row["meta"] for row in rows],
            contents=[row["content"] for row in rows],
            document_ids=[row["document_id"] for row in rows],
            chunk_indexes=[row["chunk_index"] for row in rows],
        )


@DB_SETTINGS
@given(rows=st.lists(row_strategy, max_size=8), filter=filters)
async def test_random_filters_agree_with_the_reference(
    random_store: PgVectorStore, admin: asyncpg.Connection, rows: list[dict[str, Any]], filter: dict[str, Any]
) -> None:
    await load(random_store, rows)
    stored = await stored_rows(admin, random_store)
    expected = matching_ids(filter, stored)
    assert await random_store.count(filter=filter) == len(expected)
    assert await found_by_search(random_store, filter, k=10) == expected
    everything = {row["id"] for row in stored}
    if not restricts(filter, random_store.table):
        # delete() refuses a filter that restricts nothing; the reference must agree that it matches every row.
        assert expected == everything
        with pytest.raises(InvalidInputError, match="restricts the rows"):
            await random_store.delete(filter=filter)
        expected = set()
    else:
        assert await random_store.delete(filter=filter) == len(expected)
    assert {row["id"] for row in await stored_rows(admin, random_store)} == everything - expected


# -- hostile keys and values ----------------------------------------------------------------------------------------

HOSTILE = [
    "'", "''", '"', "\\", "';DROP TABLE fixed;--", '"; DROP SCHEMA public CASCADE; --', "$1", "$$", "a$b",
    "%", "_", "\\%", "😀", "ключ", "中文", "Ω≈ç√", "x" * 10_000, "' OR '1'='1", ") OR TRUE --", "{}", '{"a":1}',
    "null", "\t\n", " ", "metadata", "a'.b\"", "::jsonb", "#>> '{}'", "\u202e", "é" * 3000,
]
HOSTILE_KEYS = [h for h in HOSTILE if h.strip(".") and not h.startswith("$") and "" not in h.split(".")]


async def schema_objects(admin: asyncpg.Connection, schema: str) -> list[str]:
    return sorted(
        r[0] for r in await admin.fetch(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1",
            schema,
        )
    )


@pytest.fixture
async def hostile_store(make_store: StoreMaker) -> PgVectorStore:
    """The fixed rows plus rows whose metadata holds hostile keys and values, so some filters legitimately match."""
    store = make_store(dimensions=3, id_type="text", table_name="fixed")
    await add_fixed_rows(store)
    vectors = np.random.default_rng(8).random((4, 3), dtype=np.float32)
    await store.add_vectors(
        vectors,
        ids=["h0", "h1", "h2", "h3"],
        metadata=[{HOSTILE[4]: HOSTILE[4]}, {"q": HOSTILE[0], "nest": {HOSTILE[13]: HOSTILE[1]}},
                  {"long": HOSTILE[16]}, {"tags": [HOSTILE[6], HOSTILE[14]]}],
        contents=[HOSTILE[5], HOSTILE[17], None, "plain"],
    )
    return store


def hostile_filters(h: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = [
        {"q": h}, {"content": h}, {"document_id": h}, {"id": h}, {"q": {"$ne": h}}, {"q": {"$in": [h, "x"]}},
        {"q": {"$gt": h}}, {"content": {"$lte": h}}, {"tags": {"$contains": h}}, {"nest": {"$contains": {h: h}}},
    ]
    if not ends_with_escape(h):
        found += [{"q": {"$like": h}}, {"content": {"$ilike": h}}, {"$not": {"content": {"$like": h}}}]
    if h in HOSTILE_KEYS:
        found += [{h: h}, {h: {"$exists": True}}, {f"nest.{h}": h}, {h: {"$nin": [h]}}]
    return found


async def test_hostile_keys_and_values_match_only_what_they_should(
    hostile_store: PgVectorStore, admin: asyncpg.Connection, schema: str
) -> None:
    rows = await stored_rows(admin, hostile_store)
    objects = await schema_objects(admin, schema)
    matched_something = 0
    for h in HOSTILE:
        for filter in hostile_filters(h):
            expected = matching_ids(filter, rows)
            matched_something += bool(expected) and len(expected) < len(rows)
            assert await hostile_store.count(filter=filter) == len(expected), f"count({filter!r:.200})"
            assert await found_by_search(hostile_store, filter, k=20) == expected, f"search({filter!r:.200})"
    # A few of them match legitimately (the rows that hold those strings), the rest match nothing.
    assert matched_something > 5
    assert await hostile_store.count(filter={HOSTILE[4]: HOSTILE[4]}) == 1
    assert await hostile_store.count(filter={f"nest.{HOSTILE[13]}": HOSTILE[1]}) == 1
    assert await hostile_store.count(filter={"long": HOSTILE[16]}) == 1
    assert await hostile_store.count(filter={"tags": {"$contains": [HOSTILE[14], HOSTILE[6]]}}) == 1
    assert await stored_rows(admin, hostile_store) == rows, "reads changed the table"
    assert await schema_objects(admin, schema) == objects


async def test_hostile_deletes_remove_only_the_matching_rows(
    hostile_store: PgVectorStore, admin: asyncpg.Connection, schema: str
) -> None:
    rows = await stored_rows(admin, hostile_store)
    objects = await schema_objects(admin, schema)
    for h in HOSTILE:
        filter = {"$or": [{h: h}, {"q": h}]} if h in HOSTILE_KEYS else {"q": h}
        expected = matching_ids(filter, rows)
        assert await hostile_store.delete(filter=filter) == len(expected)
        rows = [row for row in rows if row["id"] not in expected]
        assert await stored_rows(admin, hostile_store) == rows
    assert {"h0", "h1"}.isdisjoint(row["id"] for row in rows), "the rows holding those strings were deleted"
    assert len(rows) == len(FIXED_ROWS) + 2
    assert await schema_objects(admin, schema) == objects


async def test_malformed_filters_raise_and_change_nothing(
    fixed_store: PgVectorStore, admin: asyncpg.Connection
) -> None:
    rows = await stored_rows(admin, fixed_store)
    for bad in [{"price": {"$gtt": 1}}, {"tags": {"$in": "a"}}, {"price": {"$between": [1]}}, {"": 1},
                {"a..b": 1}, {"$nor": []}, {"chunk_index": "1"}, {"x": float("nan")}, {"x": "nul\x00"}]:
        for call in (fixed_store.count, fixed_store.delete):
            with pytest.raises(ValueError):
                await call(filter=bad)
        with pytest.raises(ValueError):
            await fixed_store.search([1, 0, 0], filter=bad)
    assert await stored_rows(admin, fixed_store) == rows


text_without_nul = st.text(
    alphabet=st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), min_size=1, max_size=40
)
hostile_text = st.one_of(st.sampled_from(HOSTILE), text_without_nul)


def key_is_invalid(key: str) -> bool:
    """Whether the compiler must reject `key` (the documented key rules)."""
    segments = key.split(".")
    return (
        key.startswith("$")
        or "" in segments
        or len(segments) > 32
        or (segments[0] in COLUMN_NAMES and len(segments) > 1)
    )


@DB_SETTINGS
@given(key=hostile_text, value=hostile_text)
async def test_random_hostile_keys_and_values(
    hostile_store: PgVectorStore, admin: asyncpg.Connection, key: str, value: str
) -> None:
    assume(key not in COLUMN_NAMES)  # column keys take typed values: covered by the tests above
    rows = await stored_rows(admin, hostile_store)
    keyed = [
        (key, {key: value}),
        (key, {key: {"$in": [value]}}),
        (key, {key: {"$gte": value}}),
        (key, {"$or": [{key: {"$exists": True}}, {"q": value}]}),
        (f"nest.{key}", {f"nest.{key}": {"$ne": value}}),
        ("q", {"q": {"$contains": [value]}}),
        ("nest", {"nest": {"$contains": {key: value}}}),
    ]
    if not ends_with_escape(value):
        keyed.append(("content", {"$not": {"content": {"$like": value}}}))
    for field, filter in keyed:
        if key_is_invalid(field):
            with pytest.raises(ValueError):
                await hostile_store.count(filter=filter)
            continue
        expected = matching_ids(filter, rows)
        assert await hostile_store.count(filter=filter) == len(expected), f"count({filter!r:.200})"
    target = {"q": value, "tags": {"$contains": key}}
    expected = matching_ids(target, rows)
    assert await hostile_store.delete(filter=target) == len(expected)
    assert await stored_rows(admin, hostile_store) == [row for row in rows if row["id"] not in expected]
