"""The metadata filter language, compiled to a SQL boolean expression with bound parameters only.

A filter is a dict. ``{"key": value}`` is equality; ``{"key": {"$op": value, ...}}`` applies operators (several
in one dict must all hold); ``$and`` / ``$or`` take a list of filters and ``$not`` a filter, nested to any depth;
several entries in one dict must all hold.

Keys: ``id``, ``document_id``, ``chunk_index``, ``content`` and ``created_at`` are the table's columns (compared
as such, so their indexes help); any other key addresses the metadata JSON, a dotted key (``"a.b.c"``) a nested
object. Comparisons are typed: numbers match numbers, strings strings, booleans booleans (``5`` never matches
``"5"``); a `datetime`/`date` compares as a timestamp with ISO-8601 strings in metadata (naive means UTC).
Strings order by Unicode code point, whatever the database collation.

Missing keys: a condition on a key the row lacks is false, except ``$ne``, ``$nin``, ``$exists: False`` and
equality with ``None`` (which means "null or missing"), which are true; ``$not`` is the exact complement.
Every value and every key of a JSON path travels as a ``$n`` parameter; the SQL text holds only fixed fragments
and the store's quoted column names. A malformed filter is an `InvalidInputError` (a `ValueError`) that
quotes the offending part.
"""

from __future__ import annotations

import numbers
import uuid
from collections.abc import Mapping
from functools import cached_property
from typing import Any

from pgvecstore.errors import InvalidInputError, did_you_mean
from pgvecstore.filter_values import (
    INT64,
    ISO_OFFSET_PATTERN,
    ISO_TIMESTAMP_PATTERN,
    MAX_DEPTH,
    Value,
    check_text,
    json_text,
    json_value,
    parse_timestamp,
    plain_json_texts,
    scalar,
    show,
)
from pgvecstore.identifiers import FILTER_COLUMNS
from pgvecstore.sql.params import Params
from pgvecstore.sql.table import TableRef

COMBINATORS = ("$and", "$or", "$not")
FIELD_OPERATORS = (
    "$eq",
    "$ne",
    "$gt",
    "$gte",
    "$lt",
    "$lte",
    "$in",
    "$nin",
    "$between",
    "$like",
    "$ilike",
    "$exists",
    "$contains",
    "$not",
)
RANGE_SQL = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}

MAX_PATH_SEGMENTS = 32  # with MAX_DEPTH (nesting): a hostile filter cannot exhaust the stack


def compile_filter(filter: Mapping[str, Any] | None, table: TableRef, params: Params, alias: str = "") -> str:
    """Compile `filter` to a SQL boolean expression over `table`, adding its values to `params`.

    Returns ``"TRUE"`` for a filter that restricts nothing (None, ``{}``, ``{"$and": [{}]}``, ...). Raises
    `InvalidInputError` for a malformed filter.
    """
    if filter is None:
        return "TRUE"
    if not isinstance(filter, Mapping):
        raise InvalidInputError(f"filter must be a dict such as {{'category': 'science'}}, got {show(filter)}")
    if not filter:
        return "TRUE"
    return _Compiler(table, params, alias).node(filter, "filter", 0)


# From this many values on, $in/$nin compare through a set (``IN (SELECT unnest(...))``), hashed in any plan; a generic
# plan scans ``= ANY(...)`` row by row (100,000 values, 3,000 rows: 15 s, not 0.25 s). Shorter lists keep ``= ANY``.
LARGE_LIST = 100


def restricts(filter: Mapping[str, Any] | None, table: TableRef) -> bool:
    """Whether `filter` can exclude a row: False for None, ``{}`` and filters that fold to nothing."""
    return compile_filter(filter, table, Params()) != "TRUE"


class _Compiler:
    def __init__(self, table: TableRef, params: Params, alias: str) -> None:
        self.table = table
        self.params = params
        self.prefix = f"{alias}." if alias else ""

    def column(self, logical: str) -> str:
        return f"{self.prefix}{self.table.col(logical)}"

    # -- filters and combinators ---------------------------------------------------------------------------
    def node(self, node: Any, where: str, depth: int) -> str:
        """A filter dict: every entry must hold."""
        if depth > MAX_DEPTH:
            raise InvalidInputError(f"{where}: filter is nested deeper than {MAX_DEPTH} levels")
        if not isinstance(node, Mapping):
            raise InvalidInputError(
                f"{where}: expected a filter dict such as {{'category': 'science'}}, got {show(node)}"
            )
        mark = self.params.mark()
        parts = []
        for key, value in node.items():
            if not isinstance(key, str):
                raise InvalidInputError(f"{where}: key {show(key)} must be a string")
            at = f"{where}[{show(key)}]"
            if key.startswith("$"):
                parts.append(self.combinator(key, value, at, depth))
            else:
                parts.append(self.field(key, value, at, depth))
        return self.fold(parts, "AND", mark)

    def fold(self, parts: list[str], joiner: str, mark: int) -> str:
        """`parts` joined by AND or OR, constants folded (``{"$or": [{}, {...}]}`` is TRUE); a constant result
        drops the values its parts bound since `mark`."""
        absorbing, neutral = ("FALSE", "TRUE") if joiner == "AND" else ("TRUE", "FALSE")
        if absorbing in parts:
            self.params.rewind(mark)
            return absorbing
        kept = [part for part in parts if part != neutral]
        if not kept:
            return neutral
        return kept[0] if len(kept) == 1 else "(" + f" {joiner} ".join(kept) + ")"

    def combinator(self, op: str, value: Any, where: str, depth: int) -> str:
        if op == "$not":
            if not isinstance(value, Mapping):
                raise InvalidInputError(f"{where}: $not takes a filter dict such as {{'k': 1}}, got {show(value)}")
            return _negate(self.node(value, where, depth + 1))
        if op in ("$and", "$or"):
            if not isinstance(value, list | tuple) or not value:
                raise InvalidInputError(f"{where}: {op} takes a non-empty list of filter dicts, got {show(value)}")
            mark = self.params.mark()
            parts = [self.node(item, f"{where}[{i}]", depth + 1) for i, item in enumerate(value)]
            return self.fold(parts, "AND" if op == "$and" else "OR", mark)
        if op in FIELD_OPERATORS:
            raise InvalidInputError(f"{where}: {op!r} needs a key, as in {{'price': {{{op!r}: ...}}}}")
        raise InvalidInputError(f"{where}: unknown operator {show(op)}{did_you_mean(op, COMBINATORS)}")

    # -- one key -------------------------------------------------------------------------------------------
    def field(self, key: str, condition: Any, where: str, depth: int) -> str:
        target = self.target(key, where)
        if isinstance(condition, Mapping):
            return self.operators(target, condition, where, depth)
        if isinstance(condition, list | tuple | set | frozenset):
            raise InvalidInputError(
                f"{where}: {show(condition)} is a list; use {{'$in': [...]}} for one of several values or "
                "{'$contains': ...} for list membership"
            )
        return target.eq(condition, where)

    def operators(self, target: _Target, ops: Mapping[Any, Any], where: str, depth: int) -> str:
        if depth > MAX_DEPTH:
            raise InvalidInputError(f"{where}: filter is nested deeper than {MAX_DEPTH} levels")
        if not ops:
            raise InvalidInputError(f"{where}: empty operator dict; give an operator such as {{'$eq': 1}}")
        mark = self.params.mark()
        parts = []
        for op, value in ops.items():
            at = f"{where}[{show(op)}]"
            if not isinstance(op, str) or not op.startswith("$"):
                raise InvalidInputError(
                    f"{at}: {show(op)} is not an operator; to match inside a nested object use a dotted key "
                    "such as 'a.b', or {'$contains': {...}}"
                )
            if op not in FIELD_OPERATORS:
                if op in ("$and", "$or"):
                    raise InvalidInputError(f"{at}: {op} combines whole filters; put it outside the key")
                raise InvalidInputError(f"{at}: unknown operator {show(op)}{did_you_mean(op, FIELD_OPERATORS)}")
            parts.append(self.operator(target, op, value, at, depth))
        return self.fold(parts, "AND", mark)

    def operator(self, target: _Target, op: str, value: Any, where: str, depth: int) -> str:
        if op in ("$eq", "$ne"):
            if isinstance(value, Mapping | list | tuple):
                # A whole list or object: exact JSON equality (e.g. {"tags": {"$eq": []}} finds empty lists).
                if not isinstance(target, _MetadataTarget):
                    raise InvalidInputError(f"{where}: {op} with a list or object applies to metadata keys only")
                test = target.json_eq(value, where)
            else:
                test = target.eq(value, where)
            return test if op == "$eq" else _negate(test)
        if op in RANGE_SQL:
            return target.compare(RANGE_SQL[op], value, where)
        if op == "$between":
            if not isinstance(value, list | tuple) or len(value) != 2:
                raise InvalidInputError(f"{where}: $between takes a list [low, high], got {show(value)}")
            low, high = value
            target.check_same_kind(low, high, where)
            return f"({target.compare('>=', low, where)} AND {target.compare('<=', high, where)})"
        if op == "$in":
            return target.isin(_as_list(value, where), where)
        if op == "$nin":
            return _negate(target.isin(_as_list(value, where), where))
        if op in ("$like", "$ilike"):
            if not isinstance(value, str):
                raise InvalidInputError(f"{where}: {op} takes a string pattern such as 'abc%', got {show(value)}")
            check_text(value, where)
            if _ends_with_escape(value):
                raise InvalidInputError(f"{where}: pattern {show(value)} ends with the escape character '\\'")
            return target.like(value, "LIKE" if op == "$like" else "ILIKE", where)
        if op == "$exists":
            if not isinstance(value, bool):
                raise InvalidInputError(f"{where}: $exists takes True or False, got {show(value)}")
            return target.exists(value)
        if op == "$contains":
            return target.contains(value, where)
        # "$not" at key level: the complement of an operator dict.
        if not isinstance(value, Mapping):
            raise InvalidInputError(
                f"{where}: $not on a key takes an operator dict such as {{'$gt': 5}}, got {show(value)}"
            )
        return _negate(self.operators(target.fresh(), value, where, depth + 1))

    def target(self, key: str, where: str) -> _Target:
        if not key:
            raise InvalidInputError(f"{where}: filter keys must not be empty")
        check_text(key, where)
        segments = key.split(".")
        if any(not segment for segment in segments):
            raise InvalidInputError(
                f"{where}: key {show(key)} has an empty path segment; use dots only between names, as in 'a.b'"
            )
        if len(segments) > MAX_PATH_SEGMENTS:
            raise InvalidInputError(f"{where}: key {show(key)} has more than {MAX_PATH_SEGMENTS} path segments")
        if segments[0] in FILTER_COLUMNS:
            if len(segments) > 1:
                raise InvalidInputError(
                    f"{where}: {segments[0]!r} is a column, not an object; {show(key)} cannot address a field "
                    "inside it"
                )
            return _ColumnTarget(self, key)
        return _MetadataTarget(self, segments)


def _negate(expression: str) -> str:
    """NOT that treats NULL (unknown, e.g. a missing key) as false, so $not is the exact complement."""
    if expression in ("TRUE", "FALSE"):
        return "FALSE" if expression == "TRUE" else "TRUE"
    return f"(NOT COALESCE({expression}, FALSE))"


def _member(expression: str, array: str, length: int) -> str:
    """`expression` is one of the values of the array parameter `array` (see `LARGE_LIST`)."""
    return f"{expression} IN (SELECT unnest({array}))" if length >= LARGE_LIST else f"{expression} = ANY({array})"


def _as_list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list | tuple | set | frozenset):
        raise InvalidInputError(f"{where}: takes a list of values, got {show(value)}")
    return list(value)


def _ends_with_escape(pattern: str) -> bool:
    trailing = len(pattern) - len(pattern.rstrip("\\"))
    return trailing % 2 == 1


class _Target:
    """Where a key's value lives; builds each operator's SQL for it."""

    def __init__(self, compiler: _Compiler) -> None:
        self.c = compiler
        self.p = compiler.params

    def fresh(self) -> _Target:
        """The same target without placeholders bound yet (a nested ``$not`` may drop the values it bound)."""
        return self

    def check_same_kind(self, low: Any, high: Any, where: str) -> None:
        raise NotImplementedError

    def eq(self, value: Any, where: str) -> str:
        raise NotImplementedError

    def compare(self, op: str, value: Any, where: str) -> str:
        raise NotImplementedError

    def isin(self, values: list[Any], where: str) -> str:
        raise NotImplementedError

    def like(self, pattern: str, op: str, where: str) -> str:
        raise NotImplementedError

    def exists(self, flag: bool) -> str:
        raise NotImplementedError

    def contains(self, value: Any, where: str) -> str:
        raise NotImplementedError


class _MetadataTarget(_Target):
    """A (possibly nested) key of the metadata JSON. `value` is the jsonb at the path, NULL when missing.

    The path walks objects only (``->`` with a text key yields NULL on arrays and scalars), so ``a.0`` never
    indexes into a list.
    """

    def __init__(self, compiler: _Compiler, segments: list[str]) -> None:
        super().__init__(compiler)
        self.segments = segments
        self.metadata = compiler.column("metadata")

    def fresh(self) -> _MetadataTarget:
        return _MetadataTarget(self.c, self.segments)

    @cached_property
    def value(self) -> str:
        """The jsonb at the path (its keys bound once, on first use: an unused parameter would be an error)."""
        path = "".join(f" -> {self.p.add(segment, 'text')}" for segment in self.segments)
        return f"({self.metadata}{path})"

    @cached_property
    def text(self) -> str:
        """The text of a scalar value at the path."""
        return f"({self.value} #>> '{{}}')"

    def nested(self, inner: Any) -> str:
        """A jsonb parameter holding `inner` at this path, for GIN-friendly containment (``@>``)."""
        for segment in reversed(self.segments):
            inner = {segment: inner}
        return self.p.add(json_text(inner), "jsonb")

    def timestamp_test(self, op: str, rhs: str) -> str:
        """True when the value is an ISO-8601 string whose timestamp satisfies ``<ts> op rhs``; never an error."""
        text = self.text
        as_timestamp = (
            f"(CASE WHEN {text} ~ '{ISO_OFFSET_PATTERN}' THEN {text}::timestamptz "
            f"ELSE ({text}::timestamp AT TIME ZONE 'UTC') END)"
        )
        return (
            f"(CASE WHEN jsonb_typeof({self.value}) = 'string' AND {text} ~ '{ISO_TIMESTAMP_PATTERN}' "
            f"AND pg_input_is_valid({text}, 'timestamptz') THEN {as_timestamp} {op} {rhs} ELSE FALSE END)"
        )

    def eq(self, value: Any, where: str) -> str:
        checked = scalar(value, where)
        if checked.kind == "null":
            return f"({self.value} IS NULL OR jsonb_typeof({self.value}) = 'null')"
        if checked.kind == "datetime":
            return self.timestamp_test("=", self.p.add(checked.value, "timestamptz"))
        return f"({self.metadata} @> {self.nested(checked.value)})"

    def json_eq(self, value: Any, where: str) -> str:
        """The value at the path equals this list or object as JSON (numbers by value, lists in order)."""
        return f"({self.value} = {self.p.add(json_text(json_value(value, where)), 'jsonb')})"

    def check_same_kind(self, low: Any, high: Any, where: str) -> None:
        kinds = {self.range_value(low, where).kind, self.range_value(high, where).kind}
        if len(kinds) != 1:
            raise InvalidInputError(f"{where}: $between bounds must be of one type, got {show(low)} and {show(high)}")

    def range_value(self, value: Any, where: str) -> Value:
        checked = scalar(value, where)
        if checked.kind not in ("number", "string", "datetime"):
            raise InvalidInputError(f"{where}: compares with a number, string, date or datetime, got {show(value)}")
        return checked

    def compare(self, op: str, value: Any, where: str) -> str:
        checked = self.range_value(value, where)
        if checked.kind == "number":
            return (
                f"(jsonb_typeof({self.value}) = 'number' AND {self.value} {op} "
                f"{self.p.add(json_text(checked.value), 'jsonb')})"
            )
        if checked.kind == "string":
            operand = self.p.add(checked.value, "text")
            return f"(jsonb_typeof({self.value}) = 'string' AND {self.text} COLLATE \"C\" {op} {operand})"
        return self.timestamp_test(op, self.p.add(checked.value, "timestamptz"))

    def isin(self, values: list[Any], where: str) -> str:
        fast = plain_json_texts(values)
        checked = [] if fast is not None else [scalar(v, f"{where}[{i}]") for i, v in enumerate(values)]
        parts = []
        plain = fast or [json_text(c.value) for c in checked if c.kind not in ("null", "datetime")]
        if plain:
            parts.append(_member(self.value, self.p.add(plain, "jsonb[]"), len(plain)))
        if any(c.kind == "null" for c in checked):
            parts.append(f"{self.value} IS NULL OR jsonb_typeof({self.value}) = 'null'")
        stamps = [c.value for c in checked if c.kind == "datetime"]
        if stamps:
            parts.append(self.timestamp_test("= ANY", f"({self.p.add(stamps, 'timestamptz[]')})"))
        if not parts:
            return "FALSE"
        return "(" + " OR ".join(parts) + ")"

    def like(self, pattern: str, op: str, where: str) -> str:
        return f"(jsonb_typeof({self.value}) = 'string' AND {self.text} {op} {self.p.add(pattern, 'text')})"

    def exists(self, flag: bool) -> str:
        return f"({self.value} IS {'NOT ' if flag else ''}NULL)"

    def contains(self, value: Any, where: str) -> str:
        checked = json_value(value, where)
        if not isinstance(checked, dict | list):
            checked = [checked]
        return f"({self.metadata} @> {self.nested(checked)})"


class _ColumnTarget(_Target):
    """One of the table's columns, compared with its own type so its indexes can serve the filter."""

    def __init__(self, compiler: _Compiler, name: str) -> None:
        super().__init__(compiler)
        self.name = name
        self.sql = compiler.column(name)
        self.uuid_ids = name == "id" and compiler.table.id_type == "uuid"

    def operand(self, value: Any, where: str, *, ordering: bool = False) -> tuple[Any, str]:
        """The filter value converted to the column's type, and the cast of its parameter."""
        name = self.name
        if name == "created_at":
            return parse_timestamp(value, where), "timestamptz"
        if name == "chunk_index":
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise InvalidInputError(f"{where}: chunk_index is an integer column, got {show(value)}")
            number = int(value)
            if not INT64[0] <= number <= INT64[1]:
                raise InvalidInputError(f"{where}: {number.bit_length()}-bit integer is out of range for chunk_index")
            return number, "bigint"
        if name == "id":
            if isinstance(value, uuid.UUID):
                value = str(value)
            if isinstance(value, int) and not isinstance(value, bool) and not self.uuid_ids and not ordering:
                value = str(value)
            if not isinstance(value, str):
                raise InvalidInputError(f"{where}: id compares with a string, got {show(value)}")
            check_text(value, where)
            if self.uuid_ids:
                try:
                    return str(uuid.UUID(value)), "uuid"
                except ValueError:
                    raise InvalidInputError(
                        f"{where}: {show(value)} is not a UUID, and this store has id_type='uuid'"
                    ) from None
            return value, "text"
        if not isinstance(value, str):
            raise InvalidInputError(f"{where}: {name} is a text column; compare it with a string, got {show(value)}")
        return check_text(value, where), "text"

    def eq(self, value: Any, where: str) -> str:
        if value is None:
            return f"({self.sql} IS NULL)"
        operand, cast = self.operand(value, where)
        return f"({self.sql} = {self.p.add(operand, cast)})"

    def check_same_kind(self, low: Any, high: Any, where: str) -> None:
        return None  # operand() enforces the column's one type on both bounds

    def compare(self, op: str, value: Any, where: str) -> str:
        if value is None:
            raise InvalidInputError(f"{where}: compares with a {self.name} value, got None")
        operand, cast = self.operand(value, where, ordering=True)
        collate = ' COLLATE "C"' if cast == "text" else ""
        return f"({self.sql}{collate} {op} {self.p.add(operand, cast)})"

    def isin(self, values: list[Any], where: str) -> str:
        operands: list[Any] = []
        cast = ""
        has_null = False
        for i, value in enumerate(values):
            if value is None:
                has_null = True
                continue
            operand, cast = self.operand(value, f"{where}[{i}]")
            operands.append(operand)
        parts = []
        if operands:
            parts.append(_member(self.sql, self.p.add(operands, cast + "[]"), len(operands)))
        if has_null:
            parts.append(f"{self.sql} IS NULL")
        if not parts:
            return "FALSE"
        return "(" + " OR ".join(parts) + ")"

    def like(self, pattern: str, op: str, where: str) -> str:
        if self.name in ("chunk_index", "created_at"):
            raise InvalidInputError(f"{where}: {self.name} is not a text column; LIKE applies to text")
        column = f"{self.sql}::text" if self.uuid_ids else self.sql
        return f"({column} {op} {self.p.add(pattern, 'text')})"

    def exists(self, flag: bool) -> str:
        return f"({self.sql} IS {'NOT ' if flag else ''}NULL)"

    def contains(self, value: Any, where: str) -> str:
        hint = "; use {'$like': '%text%'} for a substring" if self.name in ("content", "document_id", "id") else ""
        raise InvalidInputError(
            f"{where}: $contains applies to metadata lists and objects, not to the {self.name} column{hint}"
        )
