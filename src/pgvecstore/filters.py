"""Metadata filters compiled to SQL with bound parameters only.

This first version supports equality: ``{"key": value, ...}`` matches rows whose metadata holds every pair.
Keys ``id``, ``document_id``, ``chunk_index`` and ``content`` address their columns (so indexes help); other
keys address metadata, compared with JSONB containment so types are kept (``5`` does not match ``"5"``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from pgvecstore.sql import Params, TableSQL

COLUMN_KEYS = {"id", "document_id", "chunk_index", "content"}


def compile_filter(filter: Mapping[str, Any] | None, table: TableSQL, params: Params, alias: str = "") -> str:
    """Compile `filter` to a SQL boolean expression over `table`, adding its values to `params`."""
    if filter is None:
        return "TRUE"
    if not isinstance(filter, Mapping):
        raise ValueError(f"filter must be a dict such as {{'category': 'science'}}, got {filter!r}")
    prefix = f"{alias}." if alias else ""
    conditions: list[str] = []
    for key, value in filter.items():
        if not isinstance(key, str) or not key:
            raise ValueError(f"filter key {key!r} must be a non-empty string")
        if key.startswith("$") or isinstance(value, Mapping):
            raise ValueError(
                f"filter {{{key!r}: {value!r}}}: operators are not supported in this version; "
                "use plain equality such as {'category': 'science'}"
            )
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"filter value for {key!r} must be a finite number, got {value!r}")
        if key in COLUMN_KEYS:
            column = f"{prefix}{table.col(key)}"
            if key == "id":
                conditions.append(f"{column} = {params.add(str(value), table.id_cast)}")
            elif key == "chunk_index":
                if isinstance(value, bool) or not isinstance(value, int):
                    raise ValueError(f"filter value for 'chunk_index' must be an integer, got {value!r}")
                conditions.append(f"{column} = {params.add(value, 'integer')}")
            else:
                conditions.append(f"{column} = {params.add(str(value), 'text')}")
        else:
            try:
                encoded = json.dumps({key: value}, allow_nan=False)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"filter value for {key!r} is not JSON: {value!r}") from exc
            conditions.append(f"{prefix}{table.col('metadata')} @> {params.add(encoded, 'jsonb')}")
    return " AND ".join(conditions) if conditions else "TRUE"
