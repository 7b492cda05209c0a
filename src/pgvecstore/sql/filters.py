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

Each key's SQL comes from its target (`pgvecstore.sql.filter_targets`): a column, a metadata key, or an indexed
metadata key, whose own column serves the operators where it gives the same rows as the metadata JSON
(`pgvecstore.sql.indexed_target`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pgvecstore.errors import InvalidInputError, did_you_mean
from pgvecstore.filter_values import MAX_DEPTH, check_text, show
from pgvecstore.identifiers import FILTER_COLUMNS
from pgvecstore.sql.filter_targets import LARGE_LIST, ColumnTarget, MetadataTarget, Target
from pgvecstore.sql.indexed_target import IndexedTarget
from pgvecstore.sql.params import Params
from pgvecstore.sql.table import TableRef

__all__ = ["LARGE_LIST", "compile_filter", "restricts"]

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

    def operators(self, target: Target, ops: Mapping[Any, Any], where: str, depth: int) -> str:
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

    def operator(self, target: Target, op: str, value: Any, where: str, depth: int) -> str:
        if op in ("$eq", "$ne"):
            if isinstance(value, Mapping | list | tuple):
                # A whole list or object: exact JSON equality (e.g. {"tags": {"$eq": []}} finds empty lists).
                if not isinstance(target, MetadataTarget):
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

    def target(self, key: str, where: str) -> Target:
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
            return ColumnTarget(self, key)
        if len(segments) == 1 and key in self.table.indexed_metadata:
            return IndexedTarget(self, key, self.table.indexed_metadata[key])
        return MetadataTarget(self, segments)


def _negate(expression: str) -> str:
    """NOT that treats NULL (unknown, e.g. a missing key) as false, so $not is the exact complement."""
    if expression in ("TRUE", "FALSE"):
        return "FALSE" if expression == "TRUE" else "TRUE"
    return f"(NOT COALESCE({expression}, FALSE))"


def _as_list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list | tuple | set | frozenset):
        raise InvalidInputError(f"{where}: takes a list of values, got {show(value)}")
    return list(value)


def _ends_with_escape(pattern: str) -> bool:
    trailing = len(pattern) - len(pattern.rstrip("\\"))
    return trailing % 2 == 1


