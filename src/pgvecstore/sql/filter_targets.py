"""Where a filter key's value lives, and the SQL of each operator there: one class per kind of key.

`MetadataTarget` is a key of the metadata JSON, `ColumnTarget` one of the table's columns; `IndexedTarget`
(`pgvecstore.sql.indexed_target`) an indexed metadata key. `pgvecstore.sql.filters` parses the filter and asks the
target of each key for each operator's SQL; every value is bound through the scope's `Params`.
"""

from __future__ import annotations

import numbers
import uuid
from functools import cached_property
from typing import Any, Protocol

from pgvecstore.errors import InvalidInputError
from pgvecstore.filter_values import (
    INT64,
    ISO_OFFSET_PATTERN,
    ISO_TIMESTAMP_PATTERN,
    Value,
    check_text,
    json_text,
    json_value,
    parse_timestamp,
    plain_json_texts,
    scalar,
    show,
)
from pgvecstore.sql.params import Params
from pgvecstore.sql.table import TableRef

# From this many values on, $in/$nin compare through a set (``IN (SELECT unnest(...))``), hashed in any plan; a generic
# plan scans ``= ANY(...)`` row by row (100,000 values, 3,000 rows: 15 s, not 0.25 s). Shorter lists keep ``= ANY``.
LARGE_LIST = 100



class Scope(Protocol):
    """What a target needs of the compiler: the table, the statement's parameters and the column names."""

    table: TableRef
    params: Params
    prefix: str  # the table's alias and a dot, or ""

    def column(self, logical: str) -> str:
        """The quoted (and aliased) column of logical column `logical`."""
        ...


def member(expression: str, array: str, length: int) -> str:
    """`expression` is one of the values of the array parameter `array` (see `LARGE_LIST`)."""
    return f"{expression} IN (SELECT unnest({array}))" if length >= LARGE_LIST else f"{expression} = ANY({array})"



class Target:
    """Where a key's value lives; builds each operator's SQL for it."""

    def __init__(self, compiler: Scope) -> None:
        self.c = compiler
        self.p = compiler.params

    def fresh(self) -> Target:
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


class MetadataTarget(Target):
    """A (possibly nested) key of the metadata JSON. `value` is the jsonb at the path, NULL when missing.

    The path walks objects only (``->`` with a text key yields NULL on arrays and scalars), so ``a.0`` never
    indexes into a list.
    """

    def __init__(self, compiler: Scope, segments: list[str]) -> None:
        super().__init__(compiler)
        self.segments = segments
        self.metadata = compiler.column("metadata")

    def fresh(self) -> MetadataTarget:
        return MetadataTarget(self.c, self.segments)

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
            parts.append(member(self.value, self.p.add(plain, "jsonb[]"), len(plain)))
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


class ColumnTarget(Target):
    """One of the table's columns, compared with its own type so its indexes can serve the filter."""

    def __init__(self, compiler: Scope, name: str) -> None:
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
            parts.append(member(self.sql, self.p.add(operands, cast + "[]"), len(operands)))
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
