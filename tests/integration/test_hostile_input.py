"""Hostile and bad input: quotes, semicolons, ``$``, unicode, very long strings, odd ids, huge numbers, NUL bytes and
names that try to break out of quoting. Each either works exactly as asked or is a ValueError, and afterwards the
table holds exactly what it held plus what was legitimately written, and the database holds no new object.

The filter language itself is property-tested against the reference evaluator in test_filters_db.py; here hostile
filters run inside a tenant whose domain is hostile too, next to another tenant holding the same metadata.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import asyncpg
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from tests.reference_filter import matching_ids

from pgvecstore import PgVectorStore

StoreMaker = Callable[..., PgVectorStore]
DIM = 3
SETTINGS = settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

HOSTILE = [
    "o'neil", "it''s", '"; DROP TABLE knowledge_embeddings; --', "'; DELETE FROM knowledge_embeddings; --",
    "$1", "$$", "$tag$ x $tag$", "\\", "\\'", "%", "_", "a;b", "ü名字🙂", "\u202e\u200b", "\r\n\t", " ",
    "))) OR TRUE --", "?", ":name", "%s", "{}", "[]", "null", "true", "1", "x" * 5000, "é名" * 1500,
]
COLUMN_KEYS = ("id", "document_id", "chunk_index", "content", "created_at")
HOSTILE_DOMAIN = "t'); SET ROLE postgres; --ü"

text_without_nul = st.text(
    alphabet=st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), min_size=1, max_size=30
)
hostile_text = st.one_of(st.sampled_from(HOSTILE), text_without_nul)
big_ints = st.one_of(st.integers(-(2**70), 2**70), st.integers(2**63, 2**200), st.integers(-(2**200), -(2**63)))
finite_floats = st.floats(allow_nan=False, allow_infinity=False)
scalars = st.one_of(st.none(), st.booleans(), big_ints, finite_floats, hostile_text)


# -- what the database holds ----------------------------------------------------------------------------------


async def table_snapshot(admin: asyncpg.Connection, store: PgVectorStore) -> list[tuple[Any, ...]]:
    """Every row and column of the store's table, as text, in id order."""
    t = store.table
    rows = await admin.fetch(
        f"SELECT {t.col('id')}::text, {t.col('domain_id')}, {t.col('document_id')}, {t.col('chunk_index')}, "
        f"{t.col('content')}, {t.col('metadata')}::text, {t.col('embedding')}::text, {t.col('created_at')} "
        f"FROM {t.qualified} ORDER BY 1"
    )
    return [tuple(row) for row in rows]


async def catalog_counts(admin: asyncpg.Connection) -> dict[str, int]:
    """How many objects of each kind the database holds. Temporary schemas (pg_temp_N) are left out: PostgreSQL
    creates one per backend slot on first use of a temporary table and keeps it, empty, for reuse."""
    row = await admin.fetchrow(
        "SELECT (SELECT count(*) FROM pg_class) AS relations, "
        "(SELECT count(*) FROM pg_namespace WHERE nspname !~ '^pg_(toast_)?temp_') AS schemas, "
        "(SELECT count(*) FROM pg_type) AS types, (SELECT count(*) FROM pg_proc) AS functions, "
        "(SELECT count(*) FROM pg_policy) AS policies, (SELECT count(*) FROM pg_trigger) AS triggers, "
        "(SELECT count(*) FROM pg_roles) AS roles, (SELECT count(*) FROM pg_extension) AS extensions, "
        "(SELECT count(*) FROM pg_attribute) AS columns"
    )
    return dict(row)


class Unchanged:
    """Snapshot of a table and of the catalog; `check` asserts that both are as they were."""

    def __init__(self, admin: asyncpg.Connection, store: PgVectorStore) -> None:
        self.admin = admin
        self.store = store
        self.rows: list[tuple[Any, ...]] = []
        self.catalog: dict[str, int] = {}

    async def take(self) -> Unchanged:
        self.rows = await table_snapshot(self.admin, self.store)
        self.catalog = await catalog_counts(self.admin)
        return self

    async def check(self) -> None:
        assert await table_snapshot(self.admin, self.store) == self.rows, "the table changed"
        assert await catalog_counts(self.admin) == self.catalog, "a database object appeared or vanished"


def vectors(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, DIM), dtype=np.float32) + 0.01


def same_json(actual: Any, expected: Any) -> bool:
    """JSON equality as jsonb keeps it: numbers by value (jsonb prints 1e20 as 100000000000000000000, which
    reads back as an int), everything else exactly."""
    if isinstance(expected, bool) or isinstance(actual, bool):
        return type(actual) is type(expected) and actual == expected
    if isinstance(expected, int | float) and isinstance(actual, int | float):
        if isinstance(expected, float) or isinstance(actual, float):
            return float(actual) == float(expected)
        return actual == expected
    if isinstance(expected, Mapping):
        return isinstance(actual, Mapping) and actual.keys() == expected.keys() and all(
            same_json(actual[k], expected[k]) for k in expected
        )
    if isinstance(expected, list | tuple):
        return isinstance(actual, list) and len(actual) == len(expected) and all(
            same_json(a, e) for a, e in zip(actual, expected, strict=True)
        )
    return type(actual) is type(expected) and actual == expected


def has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, Mapping):
        return any(has_nul(k) or has_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(has_nul(v) for v in value)
    return False


@pytest.fixture
async def text_store(make_store: StoreMaker) -> PgVectorStore:
    store = make_store(dimensions=DIM, id_type="text")
    await store.add_vectors(vectors(2, 9), ids=["keep-1", "keep-2"], metadata=[{"k": "v"}, {"k": "w"}])
    return store


@pytest.fixture
async def uuid_store(make_store: StoreMaker) -> PgVectorStore:
    store = make_store(dimensions=DIM, table_name="uuid_rows")
    await store.add_vectors(vectors(2, 9), metadata=[{"k": "v"}, {"k": "w"}])
    return store


# -- filters: hostile keys and values inside a hostile tenant ---------------------------------------------------


def tenant_rows_metadata() -> list[dict[str, Any]]:
    metas: list[dict[str, Any]] = []
    for i, h in enumerate(HOSTILE):
        metas.append({h: HOSTILE[(i + 1) % len(HOSTILE)], "q": h, "n": i, "nest": {h: i}})
    metas.append({"big": 2**100, "neg": -(2**64), "f": 1.5e300, "tiny": 5e-324, "flag": True, "none": None})
    metas.append({"big": 2**63, "f": -0.0, "flag": False, "q": ""})
    return metas


@pytest.fixture
async def tenants(make_store: StoreMaker, admin: asyncpg.Connection) -> tuple[PgVectorStore, list[dict[str, Any]]]:
    """A tenant with a hostile domain, and another tenant on the same table holding the very same metadata: a
    filter that escaped its tenant would count the other's rows."""
    mine = make_store(dimensions=DIM, id_type="text", domain_id=HOSTILE_DOMAIN)
    other = make_store(dimensions=DIM, id_type="text", domain_id="t")
    metas = tenant_rows_metadata()
    await mine.add_vectors(vectors(len(metas), 1), ids=[f"m{i}" for i in range(len(metas))], metadata=metas)
    await other.add_vectors(vectors(len(metas), 2), ids=[f"o{i}" for i in range(len(metas))], metadata=metas)
    t = mine.table
    records = await admin.fetch(
        f"SELECT {t.col('id')}::text, {t.col('document_id')}, {t.col('chunk_index')}, {t.col('content')}, "
        f"{t.col('created_at')}, {t.col('metadata')}::text FROM {t.qualified} WHERE {t.col('domain_id')} = $1",
        HOSTILE_DOMAIN,
    )
    rows = [{"id": r[0], "document_id": r[1], "chunk_index": r[2], "content": r[3], "created_at": r[4],
             "metadata": json.loads(r[5])} for r in records]
    assert len(rows) == len(metas)
    return mine, rows


def key_is_invalid(key: str) -> bool:
    """Keys the filter compiler must refuse (its documented key rules)."""
    segments = key.split(".")
    return key.startswith("$") or "" in segments or len(segments) > 32 or (
        segments[0] in COLUMN_KEYS and len(segments) > 1
    )


filter_keys = st.one_of(st.sampled_from([*HOSTILE, "q", "n", "big", "neg", "f", "tiny", "flag", "none"]),
                        hostile_text, hostile_text.map(lambda k: f"nest.{k}"))


@SETTINGS
@given(key=filter_keys, value=st.one_of(scalars, st.sampled_from(HOSTILE), st.sampled_from([2**100, 1.5e300, 5e-324])))
async def test_hostile_filters_stay_inside_the_tenant_and_change_nothing(
    tenants: tuple[PgVectorStore, list[dict[str, Any]]], admin: asyncpg.Connection, key: str, value: Any
) -> None:
    assume(key not in COLUMN_KEYS)  # column keys take typed values; covered in test_filters_db.py
    store, rows = tenants
    before = await Unchanged(admin, store).take()
    filters = [{key: value}, {key: {"$ne": value}}, {key: {"$in": [value, "zz"]}},
               {"$or": [{key: value}, {"q": {"$in": [value]}}]}, {"$not": {key: value}}]
    for filter in filters:
        if key_is_invalid(key):
            with pytest.raises(ValueError):
                await store.count(filter)
            continue
        expected = matching_ids(filter, rows)
        assert await store.count(filter) == len(expected), f"count({filter!r:.200})"
        found = {row_id for row_id, _, _ in await store.search(np.ones(DIM), k=100, filter=filter)}
        assert found == expected, f"search({filter!r:.200})"
    await before.check()


# -- ids ------------------------------------------------------------------------------------------------------

# Text ids up to 500 characters: at most 2000 bytes of UTF-8, below the primary key's B-tree limit (~2700 bytes).
text_ids = st.one_of(
    st.sampled_from([*HOSTILE[:-2], "x" * 500, "名" * 500, "1", "-0", " a ", "🙂" * 50]),
    st.text(alphabet=st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), min_size=1, max_size=500),
    st.integers(-(2**70), 2**70),
)


@SETTINGS
@given(ids=st.lists(text_ids, min_size=1, max_size=4, unique_by=str))
async def test_text_ids_of_every_kind_round_trip(
    text_store: PgVectorStore, admin: asyncpg.Connection, ids: list[Any]
) -> None:
    assume(not {str(i) for i in ids} & {"keep-1", "keep-2"})
    before = await Unchanged(admin, text_store).take()
    n = len(ids)
    written = await text_store.add_vectors(vectors(n, 3), ids=ids, metadata=[{"i": i} for i in range(n)])
    assert written == [str(i) for i in ids]
    got = await text_store.get_vectors(list(reversed(ids)))
    assert [meta["i"] for _, meta in got if meta] == list(reversed(range(n)))
    assert await text_store.count({"id": {"$in": written}}) == n
    assert [row[0] for row in await text_store.search(vectors(1, 3)[0], k=1, filter={"id": written[0]})] == [
        written[0]
    ]
    assert await text_store.update_metadata(ids, [{"j": i} for i in range(n)]) == n
    assert {row[0] for row in await text_store.get(ids=ids)} == set(written)
    assert await text_store.delete_vectors(ids) == n
    await before.check()


bad_uuids = st.one_of(
    st.text(max_size=50).filter(lambda s: not _is_uuid(s)),
    st.sampled_from(["", "not-a-uuid", "6f1c7a0e-3c1b-4bb5-9a55-0c7d8c3e2a1", "6f1c7a0e-3c1b-4bb5-9a55-0c7d8c3e2a11x",
                     "'; DROP TABLE x; --", "00000000-0000-0000-0000-00000000000g", "ｆ" * 32]),
    st.floats(), st.binary(max_size=16), st.booleans(), st.lists(st.integers(), max_size=2),
)  # (None is not here: in add_vectors it asks for a generated id)


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


@SETTINGS
@given(bad=bad_uuids)
async def test_invalid_uuids_are_value_errors_and_change_nothing(
    uuid_store: PgVectorStore, admin: asyncpg.Connection, bad: Any
) -> None:
    before = await Unchanged(admin, uuid_store).take()
    calls = [
        lambda: uuid_store.add_vectors(vectors(2, 4), ids=[str(uuid.uuid4()), bad]),
        lambda: uuid_store.get_vectors([bad]),
        lambda: uuid_store.delete_vectors([bad]),
        lambda: uuid_store.update_metadata([bad], [{"x": 1}]),
        lambda: uuid_store.get(ids=[bad]),
    ]
    for call in calls:
        with pytest.raises(ValueError, match="id"):
            await call()
    await before.check()


async def test_every_spelling_of_a_uuid_finds_the_same_row(uuid_store: PgVectorStore, admin: asyncpg.Connection
                                                           ) -> None:
    before = await Unchanged(admin, uuid_store).take()
    row_id = uuid.uuid4()
    spellings = [str(row_id), str(row_id).upper(), "{" + str(row_id) + "}", f"urn:uuid:{row_id}", row_id.hex, row_id]
    assert await uuid_store.add_vectors(vectors(1), ids=[spellings[1]]) == [str(row_id)]
    for spelling in spellings:
        assert (await uuid_store.get_vectors([spelling]))[0][1] is not None, spelling
    assert await uuid_store.update_metadata([spellings[2]], [{"x": 1}]) == 1
    assert await uuid_store.delete_vectors([spellings[3]]) == 1
    await before.check()


@pytest.mark.parametrize("bad", ["", "a\x00b", "\x00", 1.5, b"raw", True, ["a"], {"a": 1}])
async def test_invalid_text_ids_are_value_errors_and_change_nothing(
    text_store: PgVectorStore, admin: asyncpg.Connection, bad: Any
) -> None:
    before = await Unchanged(admin, text_store).take()
    with pytest.raises(ValueError, match="position 1"):
        await text_store.add_vectors(vectors(2), ids=["fine", bad])
    for call in (text_store.get_vectors, text_store.delete_vectors):
        with pytest.raises(ValueError, match="id"):
            await call([bad])
    with pytest.raises(ValueError, match="id"):
        await text_store.update_metadata([bad], [{}])
    await before.check()


async def test_a_text_id_too_big_for_the_primary_key_is_a_value_error(
    text_store: PgVectorStore, admin: asyncpg.Connection
) -> None:
    before = await Unchanged(admin, text_store).take()
    huge = "".join(chr(0x4E00 + (i * 7919) % 20000) for i in range(1200))  # 3600 bytes, barely compressible
    try:
        with pytest.raises(ValueError, match="id"):
            await text_store.add_vectors(vectors(1), ids=[huge])
    finally:
        await before.check()


# -- metadata -------------------------------------------------------------------------------------------------

json_keys = st.one_of(st.sampled_from([*HOSTILE[:-2], "", "a.b", "$gt", "domain_id", "id"]),
                      st.text(max_size=20)).filter(lambda k: k not in ("content", "document_id", "chunk_index"))
json_scalars = st.one_of(st.none(), st.booleans(), big_ints, finite_floats, st.text(max_size=40),
                         st.sampled_from(HOSTILE[:-2]))
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(json_keys, inner, max_size=4)),
    max_leaves=12,
)
metadata_dicts = st.dictionaries(json_keys, json_values, max_size=6)


@SETTINGS
@given(metas=st.lists(metadata_dicts, min_size=1, max_size=3))
async def test_metadata_round_trips_or_the_whole_call_is_refused(
    text_store: PgVectorStore, admin: asyncpg.Connection, metas: list[dict[str, Any]]
) -> None:
    before = await Unchanged(admin, text_store).take()
    ids = [f"meta-{i}" for i in range(len(metas))]
    if any(has_nul(meta) for meta in metas):
        with pytest.raises(ValueError, match="NUL"):
            await text_store.add_vectors(vectors(len(metas)), ids=ids, metadata=metas)
        await before.check()
        return
    await text_store.add_vectors(vectors(len(metas)), ids=ids, metadata=metas)
    for meta, (_, got) in zip(metas, await text_store.get_vectors(ids), strict=True):
        assert got is not None
        stored = {k: v for k, v in got.items() if k not in ("content", "document_id", "chunk_index")}
        assert same_json(stored, meta), (stored, meta)
    # Equality on each plain top-level key finds the row (numbers that are not floats: exact decimal values).
    for row_id, meta in zip(ids, metas, strict=True):
        for key, value in meta.items():
            if key_is_invalid(key) or "." in key or key in COLUMN_KEYS or isinstance(value, float | list | dict):
                continue
            assert await text_store.count({"id": row_id, key: value}) == 1, (key, value)
    assert await text_store.delete_vectors(ids) == len(ids)
    await before.check()


@pytest.mark.parametrize(
    "metadata",
    [
        [{"ok": 1}, {"bad": "a\x00b"}],
        [{"ok": 1}, {"a\x00": 1}],
        [{"ok": 1}, {"deep": {"list": [1, {"x": "\x00"}]}}],
        [{"ok": 1}, {"content": "text\x00"}],
        [{"ok": 1}, {"document_id": "doc\x00"}],
        [{"ok": 1}, {"nan": float("nan")}],
        [{"ok": 1}, {"inf": float("-inf")}],
        [{"ok": 1}, {"set": {1, 2}}],
        [{"ok": 1}, {"bytes": b"x"}],
        [{"ok": 1}, {1: "int key"}],
        [{"ok": 1}, {"huge": 10**5000}],
        [{"ok": 1}, {"chunk_index": 2**40}],
        [{"ok": 1}, {"content": 5}],
        [{"ok": 1}, "not a dict"],
    ],
)
async def test_bad_metadata_is_a_value_error_and_writes_nothing(
    text_store: PgVectorStore, admin: asyncpg.Connection, metadata: list[Any]
) -> None:
    before = await Unchanged(admin, text_store).take()
    with pytest.raises(ValueError, match="position 1"):
        await text_store.add_vectors(vectors(2), ids=["n1", "n2"], metadata=metadata)
    with pytest.raises(ValueError, match="position 0"):
        await text_store.update_metadata(["keep-1"], metadata[1:])
    await before.check()


@pytest.mark.parametrize("column", ["contents", "document_ids"])
async def test_nul_in_explicit_columns_is_a_value_error(
    text_store: PgVectorStore, admin: asyncpg.Connection, column: str
) -> None:
    before = await Unchanged(admin, text_store).take()
    with pytest.raises(ValueError, match="NUL"):
        await text_store.add_vectors(vectors(2), ids=["n1", "n2"], **{column: ["fine", "bad\x00"]})
    await before.check()


async def test_huge_numbers_keep_their_value(text_store: PgVectorStore, admin: asyncpg.Connection) -> None:
    before = await Unchanged(admin, text_store).take()
    meta = {"int": 2**200, "neg": -(2**64) - 1, "max": 1.7976931348623157e308, "tiny": 5e-324, "e20": 1e20}
    await text_store.add_vectors(vectors(1), ids=["nums"], metadata=[meta])
    _, got = (await text_store.get_vectors(["nums"]))[0]
    assert got is not None
    assert got["int"] == 2**200 and got["neg"] == -(2**64) - 1  # exact, beyond 64 bits
    assert all(float(got[k]) == meta[k] for k in ("max", "tiny", "e20"))  # jsonb may print them as integers
    assert math.isclose(float(got["max"]), 1.7976931348623157e308)
    assert await text_store.count({"int": 2**200}) == 1
    assert await text_store.count({"int": {"$gt": 2**199}}) == 1
    assert await text_store.delete_vectors(["nums"]) == 1
    await before.check()


async def test_absurdly_deep_metadata_is_a_value_error(text_store: PgVectorStore, admin: asyncpg.Connection) -> None:
    before = await Unchanged(admin, text_store).take()
    deep: dict[str, Any] = {}
    node = deep
    for _ in range(5000):
        node["a"] = {}
        node = node["a"]
    try:
        with pytest.raises(ValueError, match="position 0"):
            await text_store.add_vectors(vectors(1), ids=["deep"], metadata=[deep])
    finally:
        await before.check()


async def test_a_backslash_u0000_string_is_not_a_nul(text_store: PgVectorStore) -> None:
    await text_store.add_vectors(vectors(1), ids=["bs"], metadata=[{"path": "C:\\u0000\\file"}])
    assert (await text_store.get_vectors(["bs"]))[0][1]["path"] == "C:\\u0000\\file"


@pytest.mark.parametrize("where", [
    "metadata value", "metadata key", "content",
    "id",
])
async def test_lone_surrogates_are_value_errors_and_write_nothing(
    text_store: PgVectorStore, admin: asyncpg.Connection, where: str
) -> None:
    """Python strings may hold lone surrogates, which UTF-8 (and so PostgreSQL) cannot."""
    before = await Unchanged(admin, text_store).take()
    bad = "a\ud800b"
    options: dict[str, Any] = {
        "metadata value": {"metadata": [{}, {"k": bad}]},
        "metadata key": {"metadata": [{}, {bad: 1}]},
        "content": {"contents": ["fine", bad]},
        "id": {},
    }[where]
    ids = ["s1", bad if where == "id" else "s2"]
    with pytest.raises(ValueError):
        await text_store.add_vectors(vectors(2), ids=ids, **options)
    await before.check()


# -- names ----------------------------------------------------------------------------------------------------

BREAKOUTS = [
    'x"; DROP SCHEMA public CASCADE; --', 'a"b', "a'b", "a b", "a;b", "a.b", "a-b", "1abc", "", " ", "ü", "$x", "x$",
    "a\x00b", "a\nb", "abc\n", '"', '""', "x" * 64, "tab\t", "a/*c*/b", "pg_catalog.pg_class",
]
identifier_candidates = st.one_of(st.sampled_from(BREAKOUTS), st.text(max_size=70))


def _valid_identifier(name: str) -> bool:
    return bool(name) and len(name.encode()) <= 63 and (name[0].isascii() and (name[0].isalpha() or name[0] == "_")
                                                        ) and all(c.isascii() and (c.isalnum() or c == "_")
                                                                  for c in name)


@settings(max_examples=200, deadline=None)
@given(name=identifier_candidates, option=st.sampled_from(["schema", "table_name", "columns"]),
       logical=st.sampled_from(["id", "embedding", "content", "metadata", "domain_id", "document_id", "chunk_index",
                                "created_at"]))
def test_names_that_try_to_break_out_of_quoting_fail_at_construction(name: str, option: str, logical: str) -> None:
    options: dict[str, Any] = {"dimensions": DIM, "connection_string": "postgresql://nowhere/db"}
    options[option] = {logical: name} if option == "columns" else name
    if not _valid_identifier(name):
        with pytest.raises(ValueError, match=option if option != "columns" else "columns"):
            PgVectorStore(options)
        return
    try:
        store = PgVectorStore(options)
    except ValueError as exc:  # a valid name can still clash with another mapped column, or the text-search one
        assert option == "columns" and (
            "more than one logical column" in str(exc)
            or "(which full-text search keeps) is already the column of" in str(exc)
        )
        return
    assert store.table.qualified.count('"') == 4  # nothing to escape: the quotes are only ours


@pytest.mark.parametrize("name", BREAKOUTS)
def test_every_breakout_name_is_refused_for_every_option(name: str) -> None:
    for options in ({"schema": name}, {"table_name": name}, {"columns": {"metadata": name}},
                    {"columns": {name: "x"}}):
        with pytest.raises(ValueError):
            PgVectorStore(dimensions=DIM, **options)


async def test_reserved_and_mixed_case_names_are_quoted_not_interpreted(
    make_store: StoreMaker, admin: asyncpg.Connection, schema: str
) -> None:
    before = await catalog_counts(admin)
    store = make_store(dimensions=DIM, id_type="text", table_name="Select", columns={
        "id": "from", "metadata": "Where", "content": "user", "domain_id": "table", "embedding": "order"})
    await store.add_vectors(vectors(2), ids=["a", "b"], metadata=[{"x": 1}, {"x": 2}], contents=["c", "d"])
    assert await store.count({"x": 2}) == 1
    tables = await admin.fetch(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = $1 AND c.relkind = 'r' ORDER BY 1", schema)
    assert [row[0] for row in tables] == ["Select", "Select_text_docs", "Select_text_terms"]
    columns = {r[0] for r in await admin.fetch(
        "SELECT attname FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0", f'"{schema}"."Select"')}
    assert {"from", "Where", "user", "table", "order"} <= columns
    after = await catalog_counts(admin)
    # Exactly one schema and one table (with its TOAST table and index, primary key, support indexes and the
    # full-text GIN index: 7) and its two term-statistics tables (each with TOAST table and index and primary key:
    # 8) appeared, with the two text-search trigger functions and five triggers.
    assert after["schemas"] == before["schemas"] + 1
    assert after["relations"] - before["relations"] == 15
    assert (after["functions"] - before["functions"], after["triggers"] - before["triggers"]) == (2, 5)


# -- hostile domains --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("rls", [False, True])
async def test_hostile_domain_ids_are_values_not_sql(
    make_store: StoreMaker, admin: asyncpg.Connection, rls: bool
) -> None:
    evil = make_store(dimensions=DIM, domain_id="a' OR '1'='1", row_level_security=rls)
    plain = make_store(dimensions=DIM, domain_id="a", row_level_security=rls)
    weird = make_store(dimensions=DIM, domain_id="名前 $1 \\ ;--", row_level_security=rls)
    await evil.add_vectors(vectors(2, 1))
    await plain.add_vectors(vectors(3, 2))
    await weird.add_vectors(vectors(4, 3))
    assert (await evil.count(), await plain.count(), await weird.count()) == (2, 3, 4)
    assert len(await evil.search(np.ones(DIM), k=10)) == 2
    assert await evil.clear() == 2
    assert (await plain.count(), await weird.count()) == (3, 4)
    domains = {r[0]: r[1] for r in await admin.fetch(
        f"SELECT domain_id, count(*) FROM {plain.table.qualified} GROUP BY 1")}
    assert domains == {"a": 3, "名前 $1 \\ ;--": 4}
