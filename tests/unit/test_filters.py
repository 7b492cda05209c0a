"""The filter compiler without a database: the SQL it emits, the parameters it binds, and the mistakes it rejects."""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.reference_filter import json_contains, like_match, matches

from pgvecstore.config import StoreConfig
from pgvecstore.errors import InvalidInputError
from pgvecstore.filter_limits import check_filter_size
from pgvecstore.sql.filters import LARGE_LIST, compile_filter, restricts
from pgvecstore.sql.params import Params
from pgvecstore.sql.table import TableRef


def table(**options: Any) -> TableRef:
    options.setdefault("id_type", "text")
    return TableRef.from_config(StoreConfig.from_options(dimensions=3, **options))


def compile_(filter: Any, tbl: TableRef | None = None, alias: str = "") -> tuple[str, list[Any]]:
    params = Params()
    return compile_filter(filter, tbl or table(), params, alias), params.values


# -- the SQL it emits -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("filter", [None, {}])
def test_no_filter_is_true_with_no_parameters(filter: Any) -> None:
    assert compile_(filter) == ("TRUE", [])


def test_plain_equality_is_gin_friendly_containment() -> None:
    sql, values = compile_({"category": "science"})
    assert sql == '("metadata" @> $1::jsonb)'
    assert json.loads(values[0]) == {"category": "science"}


def test_dotted_keys_address_nested_objects() -> None:
    sql, values = compile_({"author.name": "Ann"})
    assert sql == '("metadata" @> $1::jsonb)'
    assert json.loads(values[0]) == {"author": {"name": "Ann"}}
    sql, values = compile_({"author.age": {"$gt": 30}})
    assert '"metadata" -> $1::text -> $2::text' in sql
    assert values[:2] == ["author", "age"] and json.loads(values[2]) == 30


def test_column_keys_use_the_mapped_quoted_columns() -> None:
    mapped = table(columns={"content": "body", "document_id": "source", "chunk_index": "seg",
                            "created_at": "indexed_at", "id": "pk", "metadata": "attrs"})
    assert compile_({"content": "x"}, mapped)[0] == '("body" = $1::text)'
    assert compile_({"document_id": {"$in": ["a", "b"]}}, mapped) == ('("source" = ANY($1::text[]))', [["a", "b"]])
    assert compile_({"chunk_index": {"$gte": 2}}, mapped) == ('("seg" >= $1::bigint)', [2])
    assert compile_({"id": "x"}, mapped) == ('("pk" = $1::text)', ["x"])
    sql, values = compile_({"created_at": {"$lt": "2024-01-01"}}, mapped)
    assert sql == '("indexed_at" < $1::timestamptz)'
    assert values == [dt.datetime(2024, 1, 1, tzinfo=dt.UTC)]
    assert compile_({"tag": 1}, mapped)[0] == '("attrs" @> $1::jsonb)'


def test_alias_prefixes_every_column() -> None:
    sql, _ = compile_({"$or": [{"content": "x"}, {"k": {"$exists": True}}]}, alias="t")
    assert sql == '((t."content" = $1::text) OR ((t."metadata" -> $2::text) IS NOT NULL))'


def test_placeholders_continue_after_existing_parameters() -> None:
    params = Params()
    params.add("vector")
    params.add(10)
    sql = compile_filter({"a": 1, "b": {"$in": [1, 2]}}, table(), params)
    assert "$3" in sql and "$4" in sql and "$1" not in sql and "$2" not in sql
    assert params.values[:2] == ["vector", 10] and len(params.values) == 5


def test_uuid_ids_are_validated_and_cast() -> None:
    uuids = table(id_type="uuid")
    value = uuid.uuid4()
    assert compile_({"id": str(value).upper()}, uuids) == ('("id" = $1::uuid)', [str(value)])
    assert compile_({"id": value}, uuids) == ('("id" = $1::uuid)', [str(value)])
    assert compile_({"id": {"$like": "ab%"}}, uuids)[0] == '("id"::text LIKE $1::text)'


def test_negations_treat_unknown_as_false_so_missing_keys_are_kept() -> None:
    sql, _ = compile_({"k": {"$ne": 5}})
    assert sql == '(NOT COALESCE(("metadata" @> $1::jsonb), FALSE))'
    assert compile_({"$not": {"k": 5}})[0] == sql
    assert compile_({"k": {"$nin": [5]}})[0].startswith("(NOT COALESCE(")


def test_typed_comparisons_guard_the_json_type() -> None:
    sql, _ = compile_({"k": {"$gt": 5}})
    assert "jsonb_typeof" in sql and "'number'" in sql
    sql, _ = compile_({"k": {"$lt": "m"}})
    assert "'string'" in sql and 'COLLATE "C"' in sql
    sql, values = compile_({"k": {"$gte": dt.date(2024, 1, 1)}})
    assert "pg_input_is_valid" in sql and "CASE WHEN" in sql
    assert dt.datetime(2024, 1, 1, tzinfo=dt.UTC) in values


def test_in_with_none_also_matches_missing_and_null() -> None:
    sql, values = compile_({"k": {"$in": ["a", 1, None]}})
    assert "= ANY($2::jsonb[])" in sql and "IS NULL" in sql
    assert [json.loads(v) for v in values[1]] == ["a", 1]
    assert compile_({"k": {"$in": []}}) == ("FALSE", [])


def test_contains_wraps_a_scalar_as_a_one_element_list() -> None:
    _, values = compile_({"tags": {"$contains": "a"}})
    assert json.loads(values[0]) == {"tags": ["a"]}
    _, values = compile_({"a.b": {"$contains": {"x": [1]}}})
    assert json.loads(values[0]) == {"a": {"b": {"x": [1]}}}


def test_combinators_nest() -> None:
    sql, values = compile_({"$and": [{"a": 1}, {"$or": [{"b": 2}, {"$not": {"c": 3}}]}]})
    assert sql == (
        '(("metadata" @> $1::jsonb) AND (("metadata" @> $2::jsonb) OR '
        '(NOT COALESCE(("metadata" @> $3::jsonb), FALSE))))'
    )
    assert len(values) == 3


# -- values and keys never reach the SQL text -------------------------------------------------------------------

HOSTILE = ["'", "''", '"', "\\x", "';DROP TABLE t;--", "$1", "$$", "%", "😀", "ключ", "x" * 5000, ") OR TRUE --",
           "{}", "a'.b\"", "::jsonb"]


def shapes(key: str, value: str) -> list[dict[str, Any]]:
    return [
        {key: value}, {key: {"$ne": value}}, {key: {"$gt": value}}, {key: {"$in": [value, 1]}},
        {key: {"$like": value}}, {key: {"$ilike": value}}, {key: {"$contains": {value: [value]}}},
        {f"{key}.{key}": {"$between": [value, value]}}, {"$or": [{key: {"$exists": True}}, {"content": value}]},
        {"document_id": value}, {"id": {"$lt": value}},
    ]


@pytest.mark.parametrize("hostile", HOSTILE)
def test_sql_text_does_not_depend_on_keys_or_values(hostile: str) -> None:
    """The SQL is the same whatever the key and value: they can only be bound parameters."""
    key = hostile.replace(".", "_").replace("$", "_")  # dots make a path and '$' an operator: both tested apart
    for hostile_filter, plain_filter in zip(shapes(key, hostile), shapes("k", "v"), strict=True):
        sql, values = compile_(hostile_filter)
        assert sql == compile_(plain_filter)[0]
        assert len(values) == len(compile_(plain_filter)[1])


@settings(max_examples=100, deadline=None)
@given(
    key=st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00."), min_size=1),
    value=st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00\\")),
)
def test_sql_text_does_not_depend_on_random_keys_or_values(key: str, value: str) -> None:
    if key.startswith("$") or key in ("id", "content", "document_id", "chunk_index", "created_at"):
        key = "m" + key
    for hostile_filter, plain_filter in zip(shapes(key, value), shapes("k", "v"), strict=True):
        assert compile_(hostile_filter)[0] == compile_(plain_filter)[0]


# -- mistakes are ValueErrors that quote the offending part -----------------------------------------------------

BAD: list[tuple[Any, str]] = [
    ("category", "filter must be a dict"),
    ([{"a": 1}], "filter must be a dict"),
    ({"price": {"$gtt": 1}}, r"unknown operator '\$gtt'; did you mean '\$gt'\?"),
    ({"$nor": [{"a": 1}]}, r"unknown operator '\$nor'"),
    ({"$gt": 5}, r"'\$gt' needs a key"),
    ({"price": {"$and": [{"a": 1}]}}, r"\$and combines whole filters"),
    ({"tags": {"$in": "a"}}, r"\['tags'\]\['\$in'\]: takes a list of values, got 'a'"),
    ({"tags": {"$nin": 5}}, r"\['\$nin'\]: takes a list of values, got 5"),
    ({"k": {"$in": [[1]]}}, r"\[0\]: \[1\] \(list\) is not a filter value"),
    ({"k": {"$in": [{"a": 1}]}}, r"is not a filter value"),
    ({"price": {"$between": [1]}}, r"\$between takes a list \[low, high\], got \[1\]"),
    ({"price": {"$between": [1, 2, 3]}}, r"\$between takes a list"),
    ({"price": {"$between": "1-2"}}, r"\$between takes a list"),
    ({"price": {"$between": [1, "2"]}}, r"bounds must be of one type, got 1 and '2'"),
    ({"k": {"$exists": "yes"}}, r"\$exists takes True or False, got 'yes'"),
    ({"k": {"$like": 5}}, r"\$like takes a string pattern"),
    ({"k": {"$ilike": "abc\\"}}, r"ends with the escape character"),
    ({"k": {"$gt": None}}, r"compares with a number, string, date or datetime, got None"),
    ({"k": {"$gt": True}}, r"got True"),
    ({"k": {"$lt": [1]}}, r"is not a filter value"),
    ({"k": {"$not": 5}}, r"\$not on a key takes an operator dict"),
    ({"$not": [{"a": 1}]}, r"\$not takes a filter dict"),
    ({"$and": {"a": 1}}, r"\$and takes a non-empty list of filter dicts"),
    ({"$or": []}, r"\$or takes a non-empty list"),
    ({"$and": [{"a": 1}, "b"]}, r"\['\$and'\]\[1\]: expected a filter dict"),
    ({"": 1}, r"filter keys must not be empty"),
    ({1: "a"}, r"key 1 must be a string"),
    ({None: "a"}, r"key None must be a string"),
    ({"a..b": 1}, r"key 'a..b' has an empty path segment"),
    ({".a": 1}, r"key '.a' has an empty path segment"),
    ({"a.": 1}, r"key 'a.' has an empty path segment"),
    ({".".join("k" * 40): 1}, r"more than 32 path segments"),
    ({"content.x": 1}, r"'content' is a column, not an object"),
    ({"k\x00": 1}, r"contains a NUL character"),
    ({"k": "a\x00b"}, r"'a\\x00b' contains a NUL character"),
    ({"k": "\ud800"}, r"not valid Unicode text"),
    ({"k": float("nan")}, r"nan is not a finite number"),
    ({"k": {"$gt": float("inf")}}, r"inf is not a finite number"),
    ({"k": [1, 2]}, r"\[1, 2\] is a list; use \{'\$in'"),
    ({"k": {"a": 1}}, r"'a' is not an operator; to match inside a nested object use a dotted key"),
    ({"k": {}}, r"empty operator dict"),
    ({"k": b"bytes"}, r"b'bytes' \(bytes\) is not a filter value"),
    ({"k": object}, r"is not a filter value"),
    ({"k": {"$contains": {1: "a"}}}, r"object key 1 must be a string"),
    ({"k": {"$contains": dt.date(2024, 1, 1)}}, r"dates cannot be inside \$contains"),
    ({"chunk_index": "1"}, r"chunk_index is an integer column, got '1'"),
    ({"chunk_index": True}, r"chunk_index is an integer column, got True"),
    ({"chunk_index": 2.5}, r"chunk_index is an integer column, got 2.5"),
    ({"chunk_index": 2**70}, r"out of range for chunk_index"),
    ({"chunk_index": 10**5000}, r"out of range for chunk_index"),
    ({"k": {"$in": [1, 10**5000]}}, r"\[1\]: an integer of 16610 bits is too large"),
    ({"chunk_index": {"$like": "1%"}}, r"chunk_index is not a text column"),
    ({"content": 5}, r"content is a text column; compare it with a string, got 5"),
    ({"document_id": {"$in": ["a", 5]}}, r"\['\$in'\]\[1\]: document_id is a text column"),
    ({"content": {"$contains": "x"}}, r"\$contains applies to metadata.*use \{'\$like': '%text%'\}"),
    ({"created_at": "yesterday"}, r"'yesterday' is not an ISO-8601 date or datetime"),
    ({"created_at": {"$gt": 5}}, r"created_at compares with a date, datetime or ISO-8601 string, got 5"),
    ({"created_at": {"$like": "2024%"}}, r"created_at is not a text column"),
    ({"id": {"$gt": 5}}, r"id compares with a string, got 5"),
    ({"id": 2.5}, r"id compares with a string"),
]


@pytest.mark.parametrize(("filter", "message"), BAD, ids=[str(i) for i in range(len(BAD))])
def test_malformed_filters_are_value_errors_quoting_the_part(filter: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        compile_(filter)


def test_errors_say_where_the_problem_is() -> None:
    with pytest.raises(ValueError, match=re.escape("filter['$or'][1]['$and'][0]['price']['$gtt']")):
        compile_({"$or": [{"a": 1}, {"$and": [{"price": {"$gtt": 3}}]}]})


def test_uuid_store_rejects_ids_that_are_not_uuids() -> None:
    with pytest.raises(ValueError, match="'doc-1' is not a UUID, and this store has id_type='uuid'"):
        compile_({"id": "doc-1"}, table(id_type="uuid"))
    with pytest.raises(ValueError, match="not a UUID"):
        compile_({"id": {"$in": [str(uuid.uuid4()), "x"]}}, table(id_type="uuid"))


def test_deep_nesting_is_a_value_error_not_a_crash() -> None:
    deep: dict[str, Any] = {"a": 1}
    for _ in range(200):
        deep = {"$not": deep}
    with pytest.raises(ValueError, match="nested deeper than 32 levels"):
        compile_(deep)
    nested: Any = 1
    for _ in range(200):
        nested = [nested]
    with pytest.raises(ValueError, match="nested deeper than 32 levels"):
        compile_({"k": {"$contains": nested}})


def nested(levels: int, wrap: Any) -> Any:
    inner: Any = {"$gt": 1} if wrap is key_not else {"a": 1}
    for _ in range(levels):
        inner = wrap(inner)
    return {"k": inner} if wrap is key_not else inner


def key_not(inner: Any) -> Any:
    return {"$not": inner}


@pytest.mark.parametrize("wrap", [lambda f: {"$not": f}, lambda f: {"$and": [f]}, lambda f: {"$or": [{"b": 2}, f]},
                                  key_not], ids=["$not", "$and", "$or", "key-level $not"])
def test_every_level_of_nesting_counts_towards_the_limit(wrap: Any) -> None:
    assert compile_(nested(32, wrap))[0] != "TRUE"  # exactly MAX_DEPTH levels: allowed
    with pytest.raises(ValueError, match="nested deeper than 32 levels"):
        compile_(nested(33, wrap))


def test_integer_ids_match_text_ids_but_do_not_order_them() -> None:
    assert compile_({"id": 5}) == ('("id" = $1::text)', ["5"])
    assert compile_({"id": {"$in": [5, "r1"]}}) == ('("id" = ANY($1::text[]))', [["5", "r1"]])
    assert compile_({"id": {"$ne": 7}})[1] == ["7"]
    with pytest.raises(ValueError, match="id compares with a string, got 5"):
        compile_({"id": {"$gt": 5}})  # as text "10" < "9": refused rather than surprising
    with pytest.raises(ValueError, match="id compares with a string, got 5"):
        compile_({"id": 5}, table(id_type="uuid"))


@pytest.mark.parametrize("backslashes", range(1, 7))
def test_like_patterns_ending_in_an_odd_number_of_backslashes_are_refused(backslashes: int) -> None:
    pattern = "a" + "\\" * backslashes
    if backslashes % 2:
        with pytest.raises(ValueError, match="ends with the escape character"):
            compile_({"k": {"$like": pattern}})
    else:  # escaped backslashes: a valid pattern, bound as it is
        assert compile_({"k": {"$like": pattern}})[1][-1] == pattern


def test_keys_take_up_to_32_path_segments() -> None:
    key = ".".join(f"k{i}" for i in range(32))
    sql, values = compile_({key: {"$exists": True}})
    assert values == [f"k{i}" for i in range(32)] and sql.count("->") == 32
    with pytest.raises(ValueError, match="more than 32 path segments"):
        compile_({key + ".k32": {"$exists": True}})


def test_chunk_index_takes_every_64_bit_integer_and_no_other() -> None:
    for edge in (-(2**63), 2**63 - 1):
        assert compile_({"chunk_index": edge}) == ('("chunk_index" = $1::bigint)', [edge])
    for outside in (-(2**63) - 1, 2**63):
        with pytest.raises(ValueError, match="integer is out of range for chunk_index"):
            compile_({"chunk_index": {"$lte": outside}})


def test_long_hostile_values_are_shortened_in_messages() -> None:
    with pytest.raises(ValueError) as caught:
        compile_({"k": {"$like": "x" * 10_000 + "\\"}})
    assert len(str(caught.value)) < 300


def test_numpy_and_aware_values_are_accepted() -> None:
    np = pytest.importorskip("numpy")
    _, values = compile_({"k": np.int64(3), "f": np.float32(0.5)})
    assert [json.loads(v) for v in values] == [{"k": 3}, {"f": 0.5}]
    plus2 = dt.timezone(dt.timedelta(hours=2))
    _, values = compile_({"created_at": {"$gte": dt.datetime(2024, 1, 1, 2, tzinfo=plus2)}})
    assert values == [dt.datetime(2024, 1, 1, tzinfo=dt.UTC)]


# -- the reference evaluator's own rules (it is compared with PostgreSQL in the integration tests) ---------------


def test_reference_like_and_containment_basics() -> None:
    assert like_match("a%", "abc") and like_match("a_c", "abc") and not like_match("a_c", "ac")
    assert like_match("100\\%", "100%") and not like_match("100\\%", "1000")
    assert like_match("ABC", "abc", ignore_case=True) and not like_match("ABC", "abc")
    assert json_contains(["a", "b"], ["a"]) and not json_contains("a", ["a"])
    assert json_contains({"a": 1, "b": 2}, {"a": 1.0}) and not json_contains({"a": 1}, {"a": True})


def test_reference_missing_key_rules() -> None:
    row = {"id": "r", "document_id": None, "chunk_index": None, "content": None, "created_at": None,
           "metadata": {"k": None}}
    assert matches({"gone": {"$ne": 1}}, row) and matches({"gone": {"$nin": [1]}}, row)
    assert matches({"gone": None}, row) and matches({"k": None}, row)
    assert matches({"k": {"$exists": True}}, row) and not matches({"gone": {"$exists": True}}, row)
    assert not matches({"gone": {"$gt": 0}}, row) and matches({"$not": {"gone": {"$gt": 0}}}, row)
    assert matches({"document_id": None}, row) and not matches({"content": {"$exists": True}}, row)


# -- filters that restrict nothing, and filter size ----------------------------------------------------------------
NOTHING_RESTRICTED = [
    None, {}, {"$and": [{}]}, {"$or": [{}]}, {"$not": {"$not": {}}}, {"$or": [{}, {"a": 1}]},
    {"$or": [{"a": 1}, {"$and": [{}, {}]}]}, {"a": {"$nin": []}}, {"$and": [{}, {"$not": {"a": {"$in": []}}}]},
]


@pytest.mark.parametrize("filter", NOTHING_RESTRICTED)
def test_filters_that_restrict_nothing_fold_to_true_and_bind_nothing(filter: Any) -> None:
    assert compile_(filter) == ("TRUE", [])
    assert not restricts(filter, table())


@pytest.mark.parametrize("filter", [{"a": 1}, {"$not": {}}, {"$and": [{}, {"a": 1}]}, {"a": {"$in": []}},
                                    {"$or": [{}, {"a": 1}], "b": 2}])
def test_filters_that_restrict_rows_are_recognised(filter: Any) -> None:
    assert restricts(filter, table())


def test_folded_branches_leave_the_placeholders_in_step() -> None:
    sql, values = compile_({"$and": [{"$or": [{"a": 1}, {}]}, {"b": {"$gt": 2}}, {"$or": [{"c": 3}, {"d": 4}]}]})
    numbers = sorted({int(n) for n in re.findall(r"\$(\d+)", sql)})
    assert numbers == list(range(1, len(values) + 1))  # every value is used, in order, none left over
    assert "TRUE" not in sql


def test_large_lists_compare_through_a_set_small_ones_through_any() -> None:
    small, _ = compile_({"document_id": {"$in": ["a"] * 5}})
    assert "= ANY(" in small
    large, values = compile_({"document_id": {"$in": [str(i) for i in range(LARGE_LIST)]}})
    assert large == '("document_id" IN (SELECT unnest($1::text[])))' and len(values) == 1
    meta, values = compile_({"k": {"$nin": list(range(LARGE_LIST))}})
    assert "IN (SELECT unnest($2::jsonb[]))" in meta and len(values[1]) == LARGE_LIST


@pytest.mark.parametrize(
    ("filter", "message"),
    [
        ({"$or": [{"a": i} for i in range(11)]}, "more than 10 conditions .*max_filter_conditions"),
        ({"a": {"$in": list(range(21))}}, r"filter\['\$in'\]: 21 values is more than 20 .*max_filter_values"),
        ({"tags": {"$contains": list(range(21))}}, "max_filter_values"),
        ({"$and": [{"$not": {"a": {"$nin": list(range(21))}}}]}, "max_filter_values"),
    ],
)
def test_oversized_filters_are_refused_naming_the_option(filter: Any, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        check_filter_size(filter, max_conditions=10, max_values=20)


def test_filters_within_the_limits_pass_and_json_values_count_once() -> None:
    check_filter_size({"$or": [{"a": i} for i in range(10)]}, max_conditions=11, max_values=20)
    check_filter_size({"obj": {"$eq": {str(i): i for i in range(50)}}}, max_conditions=2, max_values=20)


@pytest.mark.parametrize(
    "values",
    [list(range(-50, 150)), [2**63 + i for i in range(120)], [f"doc-{i} ü\"'\\" for i in range(150)], ["only"]],
)
def test_long_lists_of_plain_ints_or_strings_compile_as_value_by_value(values: list[Any]) -> None:
    fast_sql, fast_values = compile_({"k": {"$in": values}})
    mixed = [*values, 1.5] if isinstance(values[0], str) else [*values, "x"]  # a mixed list goes value by value
    slow_sql, slow_values = compile_({"k": {"$in": mixed}})
    assert fast_sql == slow_sql
    assert fast_values[1] == slow_values[1][:-1]


@pytest.mark.parametrize(("bad", "message"), [("a\x00b", "NUL character"), ("\ud800", "lone surrogate")])
def test_a_bad_string_in_a_long_list_is_named(bad: str, message: str) -> None:
    with pytest.raises(InvalidInputError, match=rf"\[150\]: .*{message}"):
        compile_({"k": {"$in": [f"v{i}" for i in range(150)] + [bad]}})


@pytest.mark.parametrize(
    "filter",
    [
        {"k": {"$not": {"$gt": 1, "$in": []}, "$lt": 5}},  # the $not folds to TRUE after binding the path
        {"k": {"$gt": 1, "$not": {"$lt": 3, "$nin": []}}},
        {"a.b": {"$not": {"$exists": True, "$in": []}, "$eq": 2}},
    ],
)
def test_a_folded_key_level_not_leaves_the_other_operators_placeholders_in_step(filter: Any) -> None:
    sql, values = compile_(filter)
    numbers = sorted({int(n) for n in re.findall(r"\$(\d+)", sql)})
    assert numbers == list(range(1, len(values) + 1))
    for number in numbers:  # each path placeholder is used as text, each compared value as jsonb
        casts = set(re.findall(rf"\${number}::(\w+)", sql))
        assert len(casts) == 1, (number, casts, sql)
