"""Bounds on a filter's size, checked before it is compiled: a hostile or generated filter (10,000 ``$or``
branches, a million-value ``$in``) must not run for minutes. The limits are store options; the errors name them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pgvecstore.errors import InvalidInputError
from pgvecstore.filter_values import show

# Defaults of the store options that bound a filter's size (a hostile or generated filter must not run for
# minutes): conditions in the whole filter, and values in one list ($in, $nin, $contains).
MAX_FILTER_CONDITIONS = 256
MAX_FILTER_VALUES = 100_000


def check_filter_size(
    filter: Mapping[str, Any] | None, max_conditions: int = MAX_FILTER_CONDITIONS, max_values: int = MAX_FILTER_VALUES
) -> None:
    """Refuse a filter with more than `max_conditions` conditions (each key, operator and combinator counts
    one) or a list of more than `max_values` values, before it is compiled; the error names the option."""
    stack: list[Any] = [filter] if filter else []
    conditions = 0
    while stack:
        node = stack.pop()
        if isinstance(node, Mapping):
            for key, value in node.items():
                conditions += 1
                if conditions > max_conditions:
                    raise InvalidInputError(
                        f"filter has more than {max_conditions} conditions (the store option "
                        "max_filter_conditions); use {'key': {'$in': [...]}} instead of many $or branches, or "
                        "raise the option"
                    )
                if isinstance(value, list | tuple | set | frozenset):
                    if len(value) > max_values:
                        raise InvalidInputError(
                            f"filter[{show(key)}]: {len(value)} values is more than {max_values} (the store "
                            "option max_filter_values); split the call or raise the option"
                        )
                    if key in ("$and", "$or"):
                        stack.extend(value)
                elif isinstance(value, Mapping) and key not in ("$contains", "$eq", "$ne"):
                    stack.append(value)  # a filter or an operator dict (a JSON value is one condition)
