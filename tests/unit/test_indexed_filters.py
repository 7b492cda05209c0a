"""The filter compiler on indexed metadata keys, without a server: which conditions use the key's column (the
rows they give are checked against PostgreSQL in tests/integration/test_indexed_metadata.py)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from pgvecstore import StoreConfig
from pgvecstore.sql.filters import compile_filter
from pgvecstore.sql.params import Params
from pgvecstore.sql.table import TableRef

TABLE = TableRef.plain("s", "t", indexed_metadata={"year": "int", "lang": "text", "w": "float", "ok": "bool",
                                                   "at": "timestamp"})


def compiled(filter: dict[str, Any], alias: str = "") -> str:
    return compile_filter(filter, TABLE, Params(), alias)


@pytest.mark.parametrize(
    ("filter", "column"),
    [
        ({"year": 2024}, '"meta_year" = $1::bigint'),
        ({"year": 2024.0}, '"meta_year" = $1::bigint'),
        ({"year": {"$lt": 5}}, '"meta_year" < $1::bigint'),
        ({"lang": {"$gte": "m"}}, '"meta_lang" COLLATE "C" >= $1::text'),
        ({"lang": {"$ilike": "e%"}}, '"meta_lang" COLLATE "default" ILIKE $1::text'),
        ({"w": 0.1}, '"meta_w" = $1::float8'),
        ({"ok": False}, '"meta_ok" = $1::boolean'),
        ({"at": {"$gt": dt.date(2024, 1, 1)}}, '"meta_at" > $1::timestamptz'),
        ({"year": {"$in": [1, 2]}}, '"meta_year" = ANY($1::bigint[])'),
        ({"year": 2**63 - 1}, '"meta_year" = $1::bigint'),  # the bigint column's bounds themselves
        ({"year": -(2**63)}, '"meta_year" = $1::bigint'),
    ],
)
def test_conditions_of_the_column_kind_use_the_column(filter: dict[str, Any], column: str) -> None:
    assert column in compiled(filter)


@pytest.mark.parametrize(
    "filter",
    [
        {"year": 2.5},
        {"year": 2**63},
        {"year": -(2**63) - 1},
        {"year": "2024"},
        {"year": None},
        {"year": {"$exists": True}},
        {"year": {"$contains": 5}},
        {"year": {"$in": [1, "1"]}},
        {"w": 2**60 + 1},
        {"lang": 5},
        {"ok": 1},
        {"at": "2024-01-01"},
        {"at": {"$like": "2024%"}},
        {"year.x": 5},
    ],
)
def test_other_conditions_test_the_metadata(filter: dict[str, Any]) -> None:
    assert "meta_" not in compiled(filter)


def test_the_alias_prefixes_the_column() -> None:
    assert 'x."meta_year" = $1::bigint' in compiled({"year": 1}, alias="x")


def test_the_option_is_validated_and_kept() -> None:
    config = StoreConfig(dimensions=2, indexed_metadata={"year": "int"}, metadata_index="gin")
    assert TableRef.from_config(config).indexed_metadata == {"year": "int"}
    with pytest.raises(ValueError, match="metadata_statistics must be between 1 and 10000"):
        StoreConfig(dimensions=2, metadata_statistics=0)
