"""LlamaIndex `MetadataFilters` translated to pgvecstore's filter dict language (no SQL here).

The core compiles the dict to SQL with bound parameters; this module only maps each `FilterOperator` and
`FilterCondition` to the core's operators ``$eq $ne $gt $gte $lt $lte $in $nin $like $ilike $contains`` and
combinators ``$and $or $not``. Conditions on distinct keys joined by AND share one dict (``{"k1": v1, "k2":
{"$gt": 2}}``), whose entries the core ANDs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from llama_index.core.vector_stores.types import FilterCondition, FilterOperator, MetadataFilter, MetadataFilters

from pgvecstore import InvalidInputError

FilterDict = dict[str, Any]

_COMPARISONS = {
    FilterOperator.NE: "$ne",
    FilterOperator.GT: "$gt",
    FilterOperator.GTE: "$gte",
    FilterOperator.LT: "$lt",
    FilterOperator.LTE: "$lte",
}


def metadata_filters_to_dict(filters: MetadataFilters | None) -> FilterDict | None:
    """The core filter dict equivalent to `filters`, or None when they restrict nothing.

    Conditions follow LlamaIndex's own semantics: AND (all match), OR (any matches), NOT (none matches), nested
    to any depth. An empty filter list restricts nothing.
    """
    if filters is None:
        return None
    if not isinstance(filters, MetadataFilters):
        raise InvalidInputError(f"filters must be llama_index MetadataFilters, got {type(filters).__name__}")
    parts: list[FilterDict] = []
    for position, item in enumerate(filters.filters):
        if isinstance(item, MetadataFilters):
            part = metadata_filters_to_dict(item)
            if part is not None:
                parts.append(part)
        elif isinstance(item, MetadataFilter):
            parts.append(metadata_filter_to_dict(item))
        else:
            raise InvalidInputError(
                f"filters.filters[{position}] must be a MetadataFilter or MetadataFilters, got {item!r}"
            )
    if not parts:
        return None
    condition = filters.condition or FilterCondition.AND
    if condition == FilterCondition.AND:
        return and_filters(parts)
    if condition == FilterCondition.OR:
        return parts[0] if len(parts) == 1 else {"$or": parts}
    if condition == FilterCondition.NOT:
        return {"$not": parts[0] if len(parts) == 1 else {"$or": parts}}
    raise InvalidInputError(f"unsupported filter condition {condition!r}; use AND, OR or NOT")


def metadata_filter_to_dict(item: MetadataFilter) -> FilterDict:
    """One `MetadataFilter` as a core filter dict; an operator/value mismatch is a ValueError naming the key."""
    key, value, op = item.key, item.value, item.operator
    if not isinstance(key, str) or not key:
        raise InvalidInputError(f"filter key must be a non-empty string, got {key!r}")
    if op == FilterOperator.EQ:
        if isinstance(value, list):
            return {key: {"$eq": value}}
        return {key: value}
    if op in _COMPARISONS:
        return {key: {_COMPARISONS[op]: value}}
    if op in (FilterOperator.IN, FilterOperator.NIN):
        values = _as_list(key, op, value)
        return {key: {"$in" if op == FilterOperator.IN else "$nin": values}}
    if op == FilterOperator.CONTAINS:
        if isinstance(value, list):
            raise InvalidInputError(
                f"filter on {key!r}: CONTAINS takes one value, got a list; use ALL or ANY for several"
            )
        return {key: {"$contains": value}}
    if op in (FilterOperator.ANY, FilterOperator.ALL):
        values = _as_list(key, op, value)
        if not values:
            raise InvalidInputError(f"filter on {key!r}: {op.name} needs at least one value")
        if op == FilterOperator.ALL or len(values) == 1:
            # JSON containment of the whole list: the metadata list holds every value.
            return {key: {"$contains": values}}
        return {"$or": [{key: {"$contains": v}} for v in values]}
    if op in (FilterOperator.TEXT_MATCH, FilterOperator.TEXT_MATCH_INSENSITIVE):
        if not isinstance(value, str):
            raise InvalidInputError(f"filter on {key!r}: {op.name} needs a string value, got {value!r}")
        pattern = f"%{escape_like(value)}%"
        return {key: {"$like" if op == FilterOperator.TEXT_MATCH else "$ilike": pattern}}
    if op == FilterOperator.IS_EMPTY:
        # LlamaIndex: the key is missing, null, an empty string or an empty list ({key: None} is "missing or null").
        return {"$or": [{key: None}, {key: ""}, {key: {"$eq": []}}]}
    raise InvalidInputError(f"filter on {key!r}: unsupported operator {op!r}")


def and_filters(parts: Sequence[FilterDict | None]) -> FilterDict | None:
    """AND of filter dicts (None entries ignored); dicts on distinct keys (no combinators) merge into one."""
    present = [p for p in parts if p]
    if not present:
        return None
    if len(present) == 1:
        return present[0]
    merged: FilterDict = {}
    for part in present:
        if any(k.startswith("$") or k in merged for k in part):
            return {"$and": list(present)}
        merged.update(part)
    return merged


def in_filter(key: str, values: Sequence[Any]) -> FilterDict:
    """``key`` equal to one of `values` (shorthand equality when there is only one)."""
    values = list(values)
    return {key: values[0]} if len(values) == 1 else {key: {"$in": values}}


def escape_like(text: str) -> str:
    """Escape LIKE wildcards so the text matches literally (backslash is PostgreSQL's default escape)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _as_list(key: str, op: FilterOperator, value: Any) -> list[Any]:
    if isinstance(value, list):
        return list(value)
    if value is None:
        raise InvalidInputError(f"filter on {key!r}: {op.name} needs a list of values, got None")
    return [value]
