"""DDL of indexed metadata (the `indexed_metadata` option) and of the metadata column's own GIN index.

Each indexed key has a column (`TableRef.indexed_column`), a b-tree index on it (and with ``covering_metadata`` a
covering one, `pgvecstore.covering`), and a BEFORE INSERT OR UPDATE row trigger that sets the column from the row's
metadata, so every write path fills it: the store's COPY and upserts, `update_metadata`, and any other client's
INSERT, UPDATE or COPY. The column holds the key's value exactly when the JSON value is of the declared kind, else
NULL (and a covered key's trigger refuses a row whose covering entry would be too large):

- ``text``: a JSON string; ``bool``: a JSON boolean;
- ``int``: a JSON number; one that is not an integer in bigint's range is refused (SQLSTATE 22023, naming the row
  and the key), so every number of the key is in the column, exactly;
- ``float``: a JSON number; one that a double cannot hold as written (more digits than the double's shortest
  form, or beyond its normal range) is refused the same way;
- ``timestamp``: a JSON string in the ISO-8601 form the filter compiler compares as a timestamp (naive = UTC),
  computed as the compiler computes it; any other string is NULL.

PostgreSQL takes no bound parameters in DDL: these statements hold names validated by `StoreConfig` (quoted by
`quote_ident`), keys validated as names (rendered by `quote_literal`) and fixed fragments.
"""

from __future__ import annotations

from pgvecstore import covering
from pgvecstore.filter_values import ISO_OFFSET_PATTERN, ISO_TIMESTAMP_PATTERN
from pgvecstore.identifiers import (
    INDEXED_METADATA_TYPES,
    indexed_metadata_column_name,
    int_literal,
    quote_ident,
    quote_literal,
)
from pgvecstore.sql.table import TableRef

# The range of a double's normal numbers (a "float" key refuses numbers outside it, except 0).
_DOUBLE_MIN = "2.2250738585072014e-308"
_DOUBLE_MAX = "1.7976931348623157e308"


def _refuse(t: TableRef, key: str, why: str) -> str:
    """PL/pgSQL that refuses the row: an error naming the key, the row and the value."""
    message = quote_literal(f"metadata key {key!r} of row %s is %s: {why} (indexed_metadata)")
    return (
        f"RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value', "
        f"MESSAGE = format({message}, NEW.{t.col('id')}, v::text);"
    )


def entry_bytes(t: TableRef, key: str, kind: str, row: str = "") -> str:
    """SQL of the size of a covered key's index entry columns (its value, domain_id, id and vector) of the row
    read as `row` (``NEW.`` in the trigger, empty in a query of the table), text uncompressed: the same for a row
    being written and a stored one, so a value is refused or taken whether it was there first or not."""
    def text(column: str) -> str:
        return f"coalesce(octet_length({row}{column}) + 4, 0)"  # the bytes and a 4-byte length

    value = t.indexed_column(key)
    sizes = [
        text(value) if kind == "text" else f"pg_column_size({row}{value})",
        text(t.col("domain_id")),
        text(t.col("id")) if t.id_cast == "text" else f"pg_column_size({row}{t.col('id')})",
        f"pg_column_size({row}{t.col('embedding')})",
    ]
    return " + ".join(sizes)


def _fits_covering(t: TableRef, key: str, kind: str) -> str:
    """PL/pgSQL that refuses a row whose entry in the key's covering index would be over the b-tree's limit."""
    room = int_literal(covering.ENTRY_ROOM, "covering entry room")
    message = quote_literal(
        f"metadata key {key!r} of row %s: its value with the row's id, domain_id and vector takes %s bytes, more "
        f"than the {room} a b-tree entry of the key's covering index holds (covering_metadata); store shorter "
        "values under this key, or drop it from covering_metadata"
    )
    return (
        f"IF NEW.{t.indexed_column(key)} IS NOT NULL THEN\n    size := {entry_bytes(t, key, kind, 'NEW.')};\n"
        f"    IF size > {room} THEN\n      RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value', "
        f"MESSAGE = format({message}, NEW.{t.col('id')}, size);\n    END IF;\n  END IF;"
    )


def _fill(t: TableRef, key: str, kind: str) -> str:
    """PL/pgSQL that sets the key's column from `v` (the key's JSON value, NULL when missing)."""
    column = f"NEW.{t.indexed_column(key)}"
    if kind == "text":
        return f"{column} := CASE WHEN jsonb_typeof(v) = 'string' THEN v #>> '{{}}' END;"
    if kind == "bool":
        return f"{column} := CASE WHEN jsonb_typeof(v) = 'boolean' THEN v::boolean END;"
    if kind == "int":
        low, high = int_literal(-(2**63), "bigint min"), int_literal(2**63 - 1, "bigint max")
        return (
            f"{column} := NULL;\n  IF jsonb_typeof(v) = 'number' THEN\n    n := v::numeric;\n"
            f"    IF n <> trunc(n) OR n < {low} OR n > {high} THEN\n      "
            f"{_refuse(t, key, 'an int key holds integers of bigint range only')}\n    END IF;\n"
            f"    {column} := n::bigint;\n  END IF;"
        )
    if kind == "float":
        return (
            f"{column} := NULL;\n  IF jsonb_typeof(v) = 'number' THEN\n    n := v::numeric;\n"
            f"    IF n <> 0 AND (abs(n) < {_DOUBLE_MIN} OR abs(n) > {_DOUBLE_MAX}) OR n <> n::float8::text::numeric "
            f"THEN\n      {_refuse(t, key, 'a float key holds numbers a double holds exactly as written')}\n"
            f"    END IF;\n    {column} := n::float8;\n  END IF;"
        )
    if kind == "timestamp":
        return (
            f"{column} := NULL;\n  IF jsonb_typeof(v) = 'string' THEN\n    s := v #>> '{{}}';\n"
            f"    IF s ~ '{ISO_TIMESTAMP_PATTERN}' AND pg_input_is_valid(s, 'timestamptz') THEN\n"
            f"      {column} := CASE WHEN s ~ '{ISO_OFFSET_PATTERN}' THEN s::timestamptz "
            "ELSE (s::timestamp AT TIME ZONE 'UTC') END;\n    END IF;\n  END IF;"
        )
    raise ValueError(f"unknown indexed metadata type {kind!r}")


def add_column(t: TableRef, key: str, kind: str) -> str:
    """Add the key's column (NULL everywhere until filled)."""
    return f"ALTER TABLE {t.qualified} ADD COLUMN IF NOT EXISTS {t.indexed_column(key)} {INDEXED_METADATA_TYPES[kind]}"


def create_fill_function(t: TableRef, key: str, kind: str, covered: bool = False) -> str:
    """The trigger function that sets the key's column from the row's metadata (see the module docstring); for
    a `covered` key it also refuses a row too large for the covering index's entry."""
    fits = f"\n  {_fits_covering(t, key, kind)}" if covered else ""
    return (
        f"CREATE OR REPLACE FUNCTION {t.in_schema(t.indexed_object(key, 'fill'))}() RETURNS trigger "
        "LANGUAGE plpgsql AS $pgvecstore$\nDECLARE\n"
        f"  v jsonb := NEW.{t.col('metadata')} -> {quote_literal(key)};\n  n numeric;\n  s text;\n  size integer;\n"
        f"BEGIN\n  {_fill(t, key, kind)}{fits}\n  RETURN NEW;\nEND\n$pgvecstore$"
    )


def create_fill_trigger(t: TableRef, key: str) -> str:
    function = t.in_schema(t.indexed_object(key, "fill"))
    return (
        f"CREATE OR REPLACE TRIGGER {quote_ident(t.indexed_object(key, 'trg'))} BEFORE INSERT OR UPDATE "
        f"ON {t.qualified} FOR EACH ROW EXECUTE FUNCTION {function}()"
    )


def back_fill(t: TableRef, key: str) -> str:
    """Fill the column of the rows that have the key (their update runs the trigger; a refused value fails it)."""
    return (
        f"UPDATE {t.qualified} SET {t.indexed_column(key)} = NULL "
        f"WHERE {t.col('metadata')} ? {quote_literal(key)}"
    )


def create_column_index(t: TableRef, key: str) -> str:
    return (
        f"CREATE INDEX IF NOT EXISTS {quote_ident(t.indexed_object(key, 'idx'))} "
        f"ON {t.qualified} ({t.indexed_column(key)})"
    )


def create_covering_index(t: TableRef, key: str) -> str:
    """The key's covering b-tree (`pgvecstore.covering`): its value, then each row's domain_id, id and vector, for
    the rows that have the key."""
    column = t.indexed_column(key)
    include = ", ".join(t.col(c) for c in ("domain_id", "id", "embedding"))
    return (
        f"CREATE INDEX IF NOT EXISTS {quote_ident(t.indexed_object(key, 'cov'))} "
        f"ON {t.qualified} ({column}) INCLUDE ({include}) WHERE {column} IS NOT NULL"
    )


def oversized_entry(t: TableRef, key: str, kind: str) -> str:
    """A row (its id as text, and the entry's size) whose entry in the key's covering index would be over the
    b-tree's limit, if any."""
    room = int_literal(covering.ENTRY_ROOM, "covering entry room")
    size = entry_bytes(t, key, kind)
    return (
        f"SELECT {t.col('id')}::text, {size} FROM {t.qualified} "
        f"WHERE {t.indexed_column(key)} IS NOT NULL AND {size} > {room} LIMIT 1"
    )


def create_metadata_gin(t: TableRef) -> str:
    """The GIN index that serves equality and containment filters (``metadata @> ...``) on any key."""
    return (
        f"CREATE INDEX IF NOT EXISTS {quote_ident(t.metadata_gin_index_name)} "
        f"ON {t.qualified} USING gin ({t.col('metadata')} jsonb_path_ops)"
    )


def set_metadata_statistics(t: TableRef, target: int) -> str:
    """The planner's statistics target of the metadata column (more samples: better estimates of jsonb filters)."""
    return (
        f"ALTER TABLE {t.qualified} ALTER COLUMN {t.col('metadata')} "
        f"SET STATISTICS {int_literal(target, 'metadata_statistics')}"
    )


def column_name(key: str) -> str:
    """The (unquoted) column name of an indexed key, for catalog lookups."""
    return indexed_metadata_column_name(key)
