"""Filter values: each checked and classified before it is bound to a filter's SQL (`pgvecstore.sql.filters`).

A value that cannot be compared (NaN, a huge integer, a NUL character, an object where a scalar belongs) is an
`InvalidInputError` that quotes it and says where in the filter it is.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import numbers
from collections.abc import Mapping
from typing import Any

from pgvecstore.errors import InvalidInputError

MAX_DEPTH = 32
INT64 = (-(2**63), 2**63 - 1)

# The ISO-8601 text a metadata value must have to compare as a timestamp (the reference evaluator in the tests
# uses the same pattern). No backslashes, so it needs no escaping inside a SQL string literal.
ISO_TIMESTAMP_PATTERN = (
    "^[0-9]{4}-[0-9]{2}-[0-9]{2}"
    "([T ]([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9]([.][0-9]{1,6})?)?(Z|[+-](0[0-9]|1[0-5]):[0-5][0-9])?)?$"
)
ISO_OFFSET_PATTERN = "(Z|[+-][0-9]{2}:[0-9]{2})$"


class Value:
    """A filter value checked and classified: kind is 'null', 'bool', 'number', 'string' or 'datetime'."""

    __slots__ = ("kind", "value")

    def __init__(self, kind: str, value: Any) -> None:
        self.kind = kind
        self.value = value


def show(value: Any, limit: int = 80) -> str:
    """repr of a filter part for an error message, shortened when long."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_text(value: str, where: str) -> str:
    if "\x00" in value:
        raise InvalidInputError(f"{where}: {show(value)} contains a NUL character, which PostgreSQL text cannot hold")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInputError(f"{where}: {show(value)} is not valid Unicode text (lone surrogate)") from None
    return value


def as_utc(value: dt.date) -> dt.datetime:
    """A date or datetime as an aware UTC datetime (naive datetimes and dates are taken as UTC)."""
    if not isinstance(value, dt.datetime):
        value = dt.datetime(value.year, value.month, value.day)
    if value.tzinfo is None or value.utcoffset() is None:
        return value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


def scalar(value: Any, where: str) -> Value:
    """Check one scalar filter value and classify it."""
    if type(value).__module__ == "numpy" and getattr(value, "ndim", None) == 0:
        value = value.item()  # a numpy scalar (np.int64, np.float32, np.bool_) as the Python value it holds
    if value is None:
        return Value("null", None)
    if isinstance(value, bool):
        return Value("bool", value)
    if isinstance(value, numbers.Integral):
        if int(value).bit_length() > 10_000:
            raise InvalidInputError(f"{where}: an integer of {int(value).bit_length()} bits is too large to compare")
        return Value("number", int(value))
    if isinstance(value, numbers.Real):
        number = float(value)
        if not math.isfinite(number):
            raise InvalidInputError(f"{where}: {show(value)} is not a finite number")
        return Value("number", number)
    if isinstance(value, str):
        return Value("string", check_text(value, where))
    if isinstance(value, dt.date):
        return Value("datetime", as_utc(value))
    raise InvalidInputError(
        f"{where}: {show(value)} ({type(value).__name__}) is not a filter value; use a string, number, boolean, "
        "None, date or datetime"
    )


def json_value(value: Any, where: str, depth: int = 0) -> Any:
    """Check a JSON value for ``$contains`` (scalars, lists, dicts with string keys) and return it plain."""
    if depth > MAX_DEPTH:
        raise InvalidInputError(f"{where}: value is nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidInputError(f"{where}: object key {show(key)} must be a string")
            out[check_text(key, where)] = json_value(item, where, depth + 1)
        return out
    if isinstance(value, list | tuple):
        return [json_value(item, where, depth + 1) for item in value]
    checked = scalar(value, where)
    if checked.kind == "datetime":
        raise InvalidInputError(f"{where}: {show(value)}: dates cannot be inside $contains; use an ISO string")
    return checked.value


def json_text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, allow_nan=False)


def parse_timestamp(value: Any, where: str) -> dt.datetime:
    """A created_at filter value: date, datetime or ISO-8601 string, as an aware UTC datetime."""
    if isinstance(value, dt.date):
        return as_utc(value)
    if isinstance(value, str):
        try:
            return as_utc(dt.datetime.fromisoformat(value))
        except ValueError:
            raise InvalidInputError(f"{where}: {show(value)} is not an ISO-8601 date or datetime") from None
    raise InvalidInputError(
        f"{where}: created_at compares with a date, datetime or ISO-8601 string, got {show(value)}"
    )


def plain_json_texts(values: list[Any]) -> list[str] | None:
    """The JSON texts of a list of only plain ints or only plain strings, checked as `scalar` would check each
    (the fast path of long ``$in`` lists); None for any other list, which goes value by value."""
    if not values:
        return None
    kind = type(values[0])
    if kind is int:
        if all(type(v) is int and -(1 << 10_000) < v < 1 << 10_000 for v in values):
            return [str(v) for v in values]  # str of an int is its JSON text
    elif kind is str and all(type(v) is str for v in values):
        joined = "".join(values)
        if "\x00" not in joined:
            try:
                joined.encode("utf-8")
            except UnicodeEncodeError:
                return None  # value by value, so the error names the bad one
            return [json.dumps(v, ensure_ascii=False) for v in values]
    return None
