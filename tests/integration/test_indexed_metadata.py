"""Indexed metadata (`indexed_metadata`) and the metadata GIN index (`metadata_index`) on a real PostgreSQL: the
columns are filled on every write path, filters through them give the rows the metadata JSON gives (checked
against the reference evaluator), their indexes serve selective filters, and bad declarations fail clearly."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import Any

import asyncpg
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.reference_filter import matching_ids

from pgvecstore import InvalidInputError, InvalidOptionError, PgVectorStore, SchemaMismatchError
from pgvecstore.sql import queries

StoreMaker = Callable[..., PgVectorStore]
UTC = dt.UTC
PLUS2 = dt.timezone(dt.timedelta(hours=2))
KINDS = {"n": "int", "f": "float", "s": "text", "b": "bool", "t": "timestamp"}
# Every key twice: "i_<x>" indexed, "p_<x>" a plain metadata key holding the same value.
INDEXED = {f"i_{base}": kind for base, kind in KINDS.items()}

# Row values per key: the declared kind (edge values included), other kinds, JSON null; a key may also be missing.
ROW_VALUES: dict[str, list[Any]] = {
    "n": [0, 1, -1, 5, 2.0, 2**62, -(2**63), "5", "a", True, None, [1], {"x": 1}],
    "f": [0.1, 2.5, 1, 5, -1.5, 1e20, 0.30000000000000004, 5.0, "2.5", False, None, [2.5]],
    "s": ["a", "b", "A", "ab", "", "é", "5", "2024-01-01", "100%", 5, True, None, ["a"]],
    "b": [True, False, "true", 0, 1, None, [True]],
    "t": ["2024-01-01", "2024-06-01T12:00:00+02:00", "2024-06-01 10:00:00", "2024-06-01T10:00:00Z", "not a date",
          "2024-13-01", "2024-01-01T25:00:00", 5, None, True],
}
# Filter operands per key: mostly of the key's kind (edge values that round, overflow or collide included), some
# of every other kind.
OWN_OPERANDS: dict[str, list[Any]] = {
    "n": [0, 1, 5, -1, 2, 2.0, 2.5, 5.0, 2**62, 2**63, -(2**63), 2**70, 1e20],
    "f": [0.1, 2.5, 1, 5, -1.5, 1e20, 100000000000000000001, 2**60, 0.3, 0.30000000000000004, 5.0, -0.0],
    "s": ["a", "b", "A", "ab", "", "é", "É", "5", "2024-01-01", "100%"],
    "b": [True, False],
    "t": [dt.date(2024, 1, 1), dt.datetime(2024, 6, 1, 10), dt.datetime(2024, 6, 1, 12, tzinfo=PLUS2),
          dt.datetime(2023, 1, 1, tzinfo=UTC), "2024-01-01", "2024-06-01 10:00:00"],
}
OTHER_OPERANDS: list[Any] = [None, True, 0, 5, 2.5, "5", "a", "2024-01-01", "true", dt.date(2024, 1, 1)]


def operands(base: str) -> list[Any]:
    return OWN_OPERANDS[base] * 3 + OTHER_OPERANDS


def range_operands(base: str) -> list[Any]:
    return [v for v in operands(base) if v is not None and not isinstance(v, bool)]


PATTERNS = ["%", "a%", "%b", "_", "A%", "É%", "é%", "100\\%", "2024%", ""]
DB_SETTINGS = settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)


def rows_strategy() -> st.SearchStrategy[list[dict[str, Any]]]:
    meta = st.fixed_dictionaries({}, optional={base: st.sampled_from(values) for base, values in ROW_VALUES.items()})
    return st.lists(meta, min_size=1, max_size=12)


def kind_of(value: Any) -> str:
    if isinstance(value, int | float):
        return "number"
    return "string" if isinstance(value, str) else "datetime"


@st.composite
def condition(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    """A condition on one base key, as (base, operator dict or value)."""
    base = draw(st.sampled_from(sorted(KINDS)))
    op = draw(st.sampled_from(["short", "$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$between", "$in", "$nin",
                               "$like", "$ilike", "$exists", "$contains", "$not"]))
    if op == "short":
        return base, draw(st.sampled_from(operands(base)))
    if op in ("$eq", "$ne"):
        return base, {op: draw(st.sampled_from(operands(base)))}
    if op in ("$gt", "$gte", "$lt", "$lte"):
        return base, {op: draw(st.sampled_from(range_operands(base)))}
    if op == "$between":
        low = draw(st.sampled_from(range_operands(base)))
        same = [v for v in range_operands(base) if kind_of(v) == kind_of(low)]
        return base, {op: [low, draw(st.sampled_from(same))]}
    if op in ("$in", "$nin"):
        return base, {op: draw(st.lists(st.sampled_from(operands(base)), max_size=4))}
    if op in ("$like", "$ilike"):
        return base, {op: draw(st.sampled_from(PATTERNS))}
    if op == "$exists":
        return base, {op: draw(st.booleans())}
    if op == "$contains":
        return base, {op: draw(st.sampled_from([1, "a", True, [1], ["a"], 2.5]))}
    inner = draw(st.sampled_from([{"$gt": 1}, {"$eq": "a"}, {"$in": [True, 5]}, {"$lt": dt.date(2024, 3, 1)}]))
    return base, {"$not": inner}


@st.composite
def filters(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any]]:
    """The same random filter twice: over the indexed keys and over their plain copies."""
    conditions = draw(st.lists(condition(), min_size=1, max_size=2))
    shape = draw(st.sampled_from(["and", "or", "not"]))

    def on(prefix: str) -> dict[str, Any]:
        parts = [{f"{prefix}_{base}": cond} for base, cond in conditions]
        if shape == "or" and len(parts) > 1:
            return {"$or": parts}
        if shape == "not":
            return {"$not": {"$and": parts}}
        return {"$and": parts}

    return on("i"), on("p")


def doubled(meta: dict[str, Any]) -> dict[str, Any]:
    return {f"{prefix}_{base}": value for base, value in meta.items() for prefix in ("i", "p")}


async def stored(admin: asyncpg.Connection, store: PgVectorStore) -> list[dict[str, Any]]:
    t = store.table
    records = await admin.fetch(f"SELECT {t.col('id')}::text, {t.col('metadata')}::text FROM {t.qualified}")
    return [{"id": r[0], "document_id": None, "chunk_index": None, "content": None, "created_at": None,
             "metadata": json.loads(r[1])} for r in records]


@pytest.fixture
async def twin_store(make_store: StoreMaker) -> PgVectorStore:
    store = make_store(dimensions=2, id_type="text", table_name="twin", indexed_metadata=INDEXED)
    await store.initialize()
    return store


@DB_SETTINGS
@given(metas=rows_strategy(), pair=filters())
async def test_indexed_filters_give_the_rows_of_jsonb_filters(
    twin_store: PgVectorStore, admin: asyncpg.Connection, metas: list[dict[str, Any]],
    pair: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    await twin_store.clear()
    await twin_store.add_vectors(np.ones((len(metas), 2), dtype=np.float32),
                                 ids=[f"r{i}" for i in range(len(metas))], metadata=[doubled(m) for m in metas])
    rows = await stored(admin, twin_store)
    indexed, plain = pair
    expected = matching_ids(plain, rows)
    assert matching_ids(indexed, rows) == expected  # the twins hold the same values
    assert {row.id for row in await twin_store.get(filter=plain)} == expected, f"plain {plain}"
    assert {row.id for row in await twin_store.get(filter=indexed)} == expected, f"indexed {indexed}"
    assert await twin_store.count(filter=indexed) == len(expected)
    hits = await twin_store.search(np.ones(2, dtype=np.float32), k=len(metas), filter=indexed)
    assert {hit.id for hit in hits} == expected


async def test_every_operator_and_operand_on_fixed_rows(twin_store: PgVectorStore, admin: asyncpg.Connection) -> None:
    """Each key's row values against each operand of its pool, operator by operator (the edge cases, exhaustively)."""
    longest = max(len(values) for values in ROW_VALUES.values())
    metas = [{base: values[i % len(values)] for base, values in ROW_VALUES.items()} for i in range(longest)]
    metas += [{}]
    await twin_store.add_vectors(np.ones((len(metas), 2), dtype=np.float32),
                                 ids=[f"r{i}" for i in range(len(metas))], metadata=[doubled(m) for m in metas])
    rows = await stored(admin, twin_store)
    checked = 0
    for base in KINDS:
        for value in operands(base):
            conditions: list[Any] = [value, {"$ne": value}, {"$in": [value, None]}, {"$nin": [value]}]
            if value is not None and not isinstance(value, bool):
                conditions += [{"$gt": value}, {"$lte": value}, {"$not": {"$gte": value}}]
            if isinstance(value, str):
                conditions += [{"$like": value + "%"}, {"$ilike": value}]
            for cond in conditions:
                expected = matching_ids({f"p_{base}": cond}, rows)
                found = {row.id for row in await twin_store.get(filter={f"i_{base}": cond})}
                assert found == expected, f"{base}: {cond}"
                checked += 1
    assert checked > 300


async def test_an_indexed_filter_uses_its_column_only_where_results_agree(twin_store: PgVectorStore) -> None:
    t = twin_store.table
    column = t.indexed_column("i_n")
    for filter, uses_column in [
        ({"i_n": 5}, True),
        ({"i_n": {"$gte": 2, "$lt": 2**62}}, True),
        ({"i_n": {"$in": [1, 2, None]}}, True),
        ({"i_n": 2.5}, False),  # not an integer: the JSON test
        ({"i_n": "5"}, False),
        ({"i_n": {"$exists": True}}, False),
        ({"i_n": None}, False),
    ]:
        sql = queries.count(t, None, filter).sql
        assert (column in sql) == uses_column, f"{filter}: {sql}"


async def test_every_write_path_fills_the_columns(make_store: StoreMaker, admin: asyncpg.Connection) -> None:
    store = make_store(dimensions=2, id_type="text", table_name="paths",
                       indexed_metadata={"year": "int", "lang": "text", "at": "timestamp", "ok": "bool", "w": "float"})
    t = store.table

    async def columns(row_id: str) -> tuple[Any, ...]:
        names = ", ".join(t.indexed_column(k) for k in ("year", "lang", "at", "ok", "w"))
        row = await admin.fetchrow(f"SELECT {names} FROM {t.qualified} WHERE {t.col('id')} = $1", row_id)
        assert row is not None
        return tuple(row)

    await store.add_vectors(np.ones((2, 2), dtype=np.float32), ids=["a", "b"], metadata=[
        {"year": 2024, "lang": "en", "at": "2024-06-01T12:00:00+02:00", "ok": True, "w": 0.5},
        {"year": "2024", "lang": 5, "at": "soon"},
    ])  # COPY
    assert await columns("a") == (2024, "en", dt.datetime(2024, 6, 1, 10, tzinfo=UTC), True, 0.5)
    assert await columns("b") == (None, None, None, None, None)
    await store.add_vectors(np.ones((1, 2), dtype=np.float32), ids=["b"], metadata=[{"year": 1999.0, "lang": "de"}])
    assert await columns("b") == (1999, "de", None, None, None)  # upsert through the staging table
    await store.update_metadata(["a"], [{"year": 2000, "ok": False}])
    assert await columns("a") == (2000, None, None, False, None)
    await admin.execute(f"INSERT INTO {t.qualified} ({t.col('id')}, {t.col('embedding')}, {t.col('metadata')}) "
                        "VALUES ('c', '[1,1]', '{\"year\": 7, \"at\": \"2024-01-01\"}')")
    assert await columns("c") == (7, None, dt.datetime(2024, 1, 1, tzinfo=UTC), None, None)
    await admin.copy_records_to_table(t.name, schema_name=t.schema, columns=["id", "metadata"],
                                      records=[("d", json.dumps({"lang": "fr"}))])
    assert await columns("d") == (None, "fr", None, None, None)
    assert {row.id for row in await store.get(filter={"year": {"$lt": 2001}})} == {"a", "b", "c"}


async def test_a_value_the_column_cannot_hold_is_refused_and_nothing_written(make_store: StoreMaker) -> None:
    store = make_store(dimensions=2, id_type="text", table_name="refused",
                       indexed_metadata={"year": "int", "w": "float"})
    await store.add_vectors(np.ones((1, 2), dtype=np.float32), ids=["ok"], metadata=[{"year": 3.0, "w": 0.1}])
    for meta in ({"year": 2.5}, {"year": 2**63}, {"w": 2**60 + 1}, {"w": 10**309}):
        with pytest.raises(InvalidInputError, match=r"metadata key '(year|w)' of row bad"):
            await store.add_vectors(np.ones((2, 2), dtype=np.float32), ids=["fine", "bad"],
                                    metadata=[{"year": 1}, meta])
    assert [row.id for row in await store.get()] == ["ok"], "a refused batch writes nothing"


async def test_selective_filters_use_the_btree_and_the_gin(make_store: StoreMaker, admin: asyncpg.Connection) -> None:
    store = make_store(dimensions=2, id_type="text", table_name="plans", metadata_index="gin",
                       indexed_metadata={"year": "int", "tag": "text"}, metadata_statistics=500)
    n = 20_000
    await store.add_vectors(np.ones((n, 2), dtype=np.float32), ids=[f"r{i}" for i in range(n)],
                            metadata=[{"year": 1000 + i, "tag": f"t{i}", "source": f"s{i}", "group": i % 3}
                                      for i in range(n)])
    t = store.table
    target = await admin.fetchval("SELECT attstattarget FROM pg_attribute WHERE attrelid = $1::regclass "
                                  "AND attname = 'metadata'", f"{t.schema}.{t.name}")
    assert target == 500
    await admin.execute(f"VACUUM ANALYZE {t.qualified}")  # as autovacuum would: statistics, GIN pending list merged
    for filter, index, rows in [
        ({"year": 1500}, t.indexed_object("year", "idx"), 1),
        ({"year": {"$between": [1500, 1510]}}, t.indexed_object("year", "idx"), 11),
        ({"source": "s17"}, t.metadata_gin_index_name, 1),
        ({"tag": {"$gte": "t1999", "$lt": "t1999z"}}, t.indexed_object("tag", "idx"), 11),  # t1999, t19990..t19999
    ]:
        count = queries.count(t, None, filter)
        plan = "\n".join(r[0] for r in await admin.fetch(f"EXPLAIN {count.sql}", *count.args))
        assert index in plan, f"{filter} does not use {index}:\n{plan}"
        assert await store.count(filter=filter) == rows, filter


async def test_existing_table_gets_its_columns_filled(make_store: StoreMaker, admin: asyncpg.Connection) -> None:
    first = make_store(dimensions=2, id_type="text", table_name="later")
    await first.add_vectors(np.ones((3, 2), dtype=np.float32), ids=["a", "b", "c"],
                            metadata=[{"year": 1}, {"year": "x"}, {}])
    second = make_store(dimensions=2, id_type="text", table_name="later", indexed_metadata={"year": "int"})
    await second.initialize()
    t = second.table
    values = dict(await admin.fetch(f"SELECT {t.col('id')}::text, {t.indexed_column('year')} FROM {t.qualified}"))
    assert values == {"a": 1, "b": None, "c": None}
    assert {row.id for row in await second.get(filter={"year": 1})} == {"a"}
    index = await admin.fetchval("SELECT to_regclass($1)", f"{t.schema}.{t.indexed_object('year', 'idx')}")
    assert index is not None

    third = make_store(dimensions=2, id_type="text", table_name="later", indexed_metadata={"year": "text"})
    with pytest.raises(SchemaMismatchError, match=r"indexed_metadata\['year'\] is 'text'.*bigint"):
        await third.initialize()


async def test_existing_values_that_do_not_fit_fail_initialize(
    make_store: StoreMaker, admin: asyncpg.Connection
) -> None:
    first = make_store(dimensions=2, id_type="text", table_name="misfit")
    await first.add_vectors(np.ones((1, 2), dtype=np.float32), ids=["x"], metadata=[{"year": 1.5}])
    second = make_store(dimensions=2, id_type="text", table_name="misfit", indexed_metadata={"year": "int"})
    with pytest.raises(InvalidInputError, match="metadata key 'year' of row x"):
        await second.initialize()
    t = second.table
    columns = await admin.fetch("SELECT attname FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0",
                                f"{t.schema}.{t.name}")
    assert "meta_year" not in {r[0] for r in columns}, "a failed set-up changes nothing"


@pytest.mark.parametrize(
    ("declared", "message"),
    [
        ({"year": "integer"}, r"indexed_metadata\['year'\]: unknown type 'integer'.*'int'"),
        ({"a.b": "int"}, "nested"),
        ({"my-key": "text"}, "cannot be indexed"),
        ({"content": "text"}, "already addresses the table's content column"),
        ({"x" * 60: "text"}, "too long"),
        ({"year": 4}, "unknown type 4"),
        (["year"], "must be a mapping"),
    ],
)
def test_bad_declarations_fail_clearly(declared: Any, message: str) -> None:
    with pytest.raises(InvalidOptionError, match=message):
        PgVectorStore(dimensions=2, indexed_metadata=declared)


def test_a_column_name_collision_fails_clearly() -> None:
    with pytest.raises(InvalidOptionError, match=r"indexed_metadata\['body'\]: its column 'meta_body' is already"):
        PgVectorStore(dimensions=2, columns={"content": "meta_body"}, indexed_metadata={"body": "text"})
    with pytest.raises(InvalidOptionError, match="metadata_index must be one of 'none', 'gin'"):
        PgVectorStore(dimensions=2, metadata_index="btree")


async def test_both_adapters_take_the_options_and_search_through_the_column(
    pg_dsn: str, schema: str, admin: asyncpg.Connection
) -> None:
    from langchain_core.embeddings import DeterministicFakeEmbedding
    from llama_index.core.schema import TextNode
    from llama_index.core.vector_stores.types import (
        FilterOperator,
        MetadataFilter,
        MetadataFilters,
        VectorStoreQuery,
    )

    from langchain_pgvecstore import PgVecStore as LangChainStore
    from llama_index.vector_stores.pgvecstore import PgVecStore as LlamaIndexStore

    common = {"connection_string": pg_dsn, "schema": schema, "dimensions": 4, "pool_min_size": 1,
              "pool_max_size": 2, "indexed_metadata": {"year": "int"}, "covering_metadata": ["year"]}
    lc = LangChainStore(DeterministicFakeEmbedding(size=4), table_name="lc", **common)
    li = LlamaIndexStore(table_name="li", **common)
    try:
        await lc.aadd_texts(["old", "new", "newer"], metadatas=[{"year": 1999}, {"year": 2021}, {"year": "2022"}])
        found = await lc.asimilarity_search("new", k=3, filter={"year": {"$gte": 2000}})
        assert [doc.page_content for doc in found] == ["new"]

        nodes = [TextNode(id_=f"n{y}", text=str(y), metadata={"year": y}, embedding=[1.0, 0.0, 0.0, float(i)])
                 for i, y in enumerate([1999, 2021, 2023])]
        await li.async_add(nodes)
        query = VectorStoreQuery(query_embedding=[1.0, 0.0, 0.0, 0.0], similarity_top_k=3, filters=MetadataFilters(
            filters=[MetadataFilter(key="year", value=2020, operator=FilterOperator.GT)]))
        result = await li.aquery(query)
        assert sorted(result.ids or []) == ["n2021", "n2023"]
        for table in ("lc", "li"):
            filled = await admin.fetchval(f'SELECT count(meta_year) FROM "{schema}"."{table}"')
            assert filled == (2 if table == "lc" else 3), table
            covered = await admin.fetchval("SELECT to_regclass($1)", f'"{schema}"."{table}_meta_year_cov"')
            assert covered is not None, f"{table}: no covering index"
    finally:
        await lc.aclose()
        await li.aclose()
