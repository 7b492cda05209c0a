"""A pure-Python evaluator of pgvecstore's filter language, written from its documented rules (not from the SQL).

The tests run a filter both ways, in PostgreSQL through the store and here over the same rows, and expect the same
rows. A row is a dict with ``id``, ``document_id``, ``chunk_index``, ``content``, ``created_at`` (a datetime,
naive = UTC) and ``metadata`` (the stored JSON, a dict). The evaluator assumes a valid filter: checking filters
for mistakes is the compiler's job and is tested on its own.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

COLUMNS = ("id", "document_id", "chunk_index", "content", "created_at")
ISO_TIMESTAMP = re.compile(
    "^[0-9]{4}-[0-9]{2}-[0-9]{2}"
    "([T ]([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9]([.][0-9]{1,6})?)?(Z|[+-](0[0-9]|1[0-5]):[0-5][0-9])?)?$"
)


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


def matching_ids(filter: Mapping[str, Any] | None, rows: Iterable[Mapping[str, Any]]) -> set[str]:
    """Ids of the rows that `filter` matches."""
    return {row["id"] for row in rows if matches(filter, row)}


def matches(filter: Mapping[str, Any] | None, row: Mapping[str, Any]) -> bool:
    """Whether `filter` matches `row`: every entry of the dict holds."""
    if not filter:
        return True
    for key, condition in filter.items():
        if key == "$and":
            ok = all(matches(sub, row) for sub in condition)
        elif key == "$or":
            ok = any(matches(sub, row) for sub in condition)
        elif key == "$not":
            ok = not matches(condition, row)
        else:
            ok = _field(key, condition, row)
        if not ok:
            return False
    return True


# -- values -------------------------------------------------------------------------------------------------------


def _lookup(key: str, row: Mapping[str, Any]) -> Any:
    """The value under `key`: a column (None = missing), else a path through metadata objects (never lists)."""
    if key in COLUMNS:
        value = row[key]
        return MISSING if value is None else value
    current: Any = row.get("metadata") or {}
    for segment in key.split("."):
        if isinstance(current, dict) and segment in current:
            current = current[segment]
        else:
            return MISSING
    return current


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float | Decimal):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, dt.date):
        return "timestamp"
    raise TypeError(f"not a JSON value: {value!r}")


def _number(value: Any) -> Decimal:
    """A number as the decimal PostgreSQL stores: JSON numbers are exact decimals of their text."""
    if isinstance(value, float):
        return Decimal(repr(value))
    return Decimal(value)


def _utc(value: dt.date) -> dt.datetime:
    if not isinstance(value, dt.datetime):
        value = dt.datetime(value.year, value.month, value.day)
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


def _timestamp_of(actual: Any, key: str) -> dt.datetime | None:
    """The timestamp a stored value stands for, or None: created_at itself, or an ISO-8601 metadata string."""
    if key == "created_at" and isinstance(actual, dt.datetime):
        return _utc(actual)
    if isinstance(actual, str) and ISO_TIMESTAMP.match(actual):
        try:
            return _utc(dt.datetime.fromisoformat(actual))
        except ValueError:
            return None
    return None


def _filter_timestamp(value: Any) -> dt.datetime:
    if isinstance(value, str):
        return _utc(dt.datetime.fromisoformat(value))
    return _utc(value)


def _uses_timestamps(key: str, value: Any) -> bool:
    return key == "created_at" or (isinstance(value, dt.date) and not isinstance(value, bool))


def _same(actual: Any, expected: Any) -> bool:
    """Typed equality of two JSON scalars (1 == 1.0, but 1 != "1" and 1 != True)."""
    kind = _json_type(actual)
    if kind != _json_type(expected):
        return False
    if kind == "number":
        return _number(actual) == _number(expected)
    return bool(actual == expected)


def _json_equal(actual: Any, expected: Any) -> bool:
    """jsonb equality: objects by keys, lists in order, scalars typed (1 == 1.0)."""
    if isinstance(expected, Mapping):
        return (isinstance(actual, Mapping) and set(actual) == set(expected)
                and all(_json_equal(actual[k], expected[k]) for k in expected))
    if isinstance(expected, list | tuple):
        return (isinstance(actual, list) and len(actual) == len(expected)
                and all(_json_equal(a, e) for a, e in zip(actual, expected, strict=True)))
    if isinstance(actual, Mapping | list):
        return False
    return _same(actual, expected)


def _eq(key: str, actual: Any, expected: Any) -> bool:
    if isinstance(expected, Mapping | list | tuple):
        return actual is not MISSING and _json_equal(actual, expected)
    if expected is None:
        return actual is MISSING or actual is None
    if actual is MISSING:
        return False
    if _uses_timestamps(key, expected):
        stamp = _timestamp_of(actual, key)
        return stamp is not None and stamp == _filter_timestamp(expected)
    if key == "id" and isinstance(expected, int):
        expected = str(expected)
    if key == "id":
        return str(actual).lower() == str(expected).lower() if _is_uuid(actual) else actual == expected
    return _same(actual, expected)


def _is_uuid(value: Any) -> bool:
    return isinstance(value, str) and len(value) == 36 and value.count("-") == 4


def _compare(key: str, actual: Any, op: str, expected: Any) -> bool:
    if actual is MISSING:
        return False
    if _uses_timestamps(key, expected):
        left = _timestamp_of(actual, key)
        if left is None:
            return False
        right = _filter_timestamp(expected)
    elif _json_type(expected) == "number":
        if _json_type(actual) != "number":
            return False
        left, right = _number(actual), _number(expected)
    else:  # strings, by code point
        if not isinstance(actual, str):
            return False
        left, right = (actual.lower(), expected.lower()) if key == "id" and _is_uuid(actual) else (actual, expected)
    return {"$gt": left > right, "$gte": left >= right, "$lt": left < right, "$lte": left <= right}[op]


def _lower(text: str) -> str:
    """Character-by-character lower case, as PostgreSQL's lower() does (no multi-character mappings)."""
    return "".join("i" if ch == "\u0130" else ch.lower() for ch in text)


def like_match(pattern: str, text: str, ignore_case: bool = False) -> bool:
    """SQL LIKE: % is any run of characters, _ one character, a backslash escapes the next character."""
    if ignore_case:
        pattern, text = _lower(pattern), _lower(text)
    regex = []
    chars = iter(pattern)
    for ch in chars:
        if ch == "\\":
            regex.append(re.escape(next(chars)))
        elif ch == "%":
            regex.append(".*")
        elif ch == "_":
            regex.append(".")
        else:
            regex.append(re.escape(ch))
    return re.fullmatch("".join(regex), text, flags=re.DOTALL) is not None


def json_contains(container: Any, contained: Any) -> bool:
    """PostgreSQL's jsonb containment below the top level: objects hold sub-objects, arrays hold elements."""
    if isinstance(contained, dict):
        return isinstance(container, dict) and all(
            k in container and json_contains(container[k], v) for k, v in contained.items()
        )
    if isinstance(contained, list | tuple):
        if not isinstance(container, list | tuple):
            return False
        for item in contained:
            if isinstance(item, dict | list | tuple):
                found = any(isinstance(c, type(item) if isinstance(item, dict) else list | tuple)
                            and json_contains(c, item) for c in container)
            else:
                found = any(not isinstance(c, dict | list | tuple) and _same(c, item) for c in container)
            if not found:
                return False
        return True
    return not isinstance(container, dict | list | tuple) and _same(container, contained)


def _field(key: str, condition: Any, row: Mapping[str, Any]) -> bool:
    actual = _lookup(key, row)
    if not isinstance(condition, Mapping):
        return _eq(key, actual, condition)
    return all(_operator(key, actual, op, value) for op, value in condition.items())


def _operator(key: str, actual: Any, op: str, value: Any) -> bool:
    if op == "$eq":
        return _eq(key, actual, value)
    if op == "$ne":
        return not _eq(key, actual, value)
    if op in ("$gt", "$gte", "$lt", "$lte"):
        return _compare(key, actual, op, value)
    if op == "$between":
        return _compare(key, actual, "$gte", value[0]) and _compare(key, actual, "$lte", value[1])
    if op == "$in":
        return any(_eq(key, actual, v) for v in value)
    if op == "$nin":
        return not any(_eq(key, actual, v) for v in value)
    if op in ("$like", "$ilike"):
        return isinstance(actual, str) and actual is not MISSING and like_match(value, actual, op == "$ilike")
    if op == "$exists":
        return (actual is not MISSING) == value
    if op == "$contains":
        if actual is MISSING:
            return False
        wanted = value if isinstance(value, dict | list | tuple) else [value]
        return json_contains(actual, wanted)
    if op == "$not":
        return not all(_operator(key, actual, inner, v) for inner, v in value.items())
    raise ValueError(f"reference evaluator: unknown operator {op!r}")
