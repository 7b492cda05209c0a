"""DDL of the store: schema, table, indexes and the tenant policy (full-text search's is in `text_ddl`).

PostgreSQL takes no bound parameters in DDL, so these statements hold only names validated by `StoreConfig`
(quoted by `quote_ident`) and integers rendered by `int_literal`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pgvecstore.identifiers import (
    TENANT_SETTING,
    WRITE_COLUMNS,
    int_literal,
    quote_ident,
)
from pgvecstore.metric import Metric
from pgvecstore.sql.table import TableRef

VECTOR_INDEX_TYPES = ("hnsw", "ivfflat")


def create_schema(t: TableRef) -> str:
    return f"CREATE SCHEMA IF NOT EXISTS {quote_ident(t.schema)}"


def create_table(t: TableRef, dimensions: int, extra_columns: Sequence[str] = ()) -> str:
    """The seed backend's table, with mapped column names and the configured id type, and `extra_columns`
    (definitions from `pgvecstore.sql.text_ddl`)."""
    id_def = "UUID PRIMARY KEY DEFAULT gen_random_uuid()" if t.id_type == "uuid" else "TEXT PRIMARY KEY"
    dims = int_literal(dimensions, "dimensions")
    text = "".join(f",\n    {column}" for column in extra_columns)
    return (
        f"CREATE TABLE IF NOT EXISTS {t.qualified} (\n"
        f"    {t.col('id')} {id_def},\n"
        f"    {t.col('domain_id')} VARCHAR(100),\n"
        f"    {t.col('document_id')} VARCHAR(255),\n"
        f"    {t.col('chunk_index')} INTEGER,\n"
        f"    {t.col('content')} TEXT,\n"
        f"    {t.col('embedding')} vector({dims}),\n"
        f"    {t.col('metadata')} JSONB DEFAULT '{{}}',\n"
        f"    {t.col('created_at')} TIMESTAMP DEFAULT NOW()"
        f"{text}\n)"
    )


def keep_vectors_in_heap(t: TableRef) -> str:
    """Vector column storage MAIN: a row over 2 kB keeps its vector in the heap (its metadata and content are
    compressed or moved to TOAST first), so an exact scan reads no TOAST. Catalog only: it affects rows written
    afterwards. See docs/vector-storage.md."""
    return f"ALTER TABLE {t.qualified} ALTER COLUMN {t.col('embedding')} SET STORAGE MAIN"


def support_indexes(t: TableRef) -> list[str]:
    """B-tree indexes that keep tenant scoping and per-document deletes from scanning the table."""
    return [
        f"CREATE INDEX IF NOT EXISTS {quote_ident(t.domain_index_name)} ON {t.qualified} ({t.col('domain_id')})",
        f"CREATE INDEX IF NOT EXISTS {quote_ident(t.document_index_name)} "
        f"ON {t.qualified} ({t.col('document_id')}, {t.col('chunk_index')})",
    ]


def enable_row_security(t: TableRef) -> str:
    return f"ALTER TABLE {t.qualified} ENABLE ROW LEVEL SECURITY"


def create_tenant_policy(t: TableRef) -> str:
    """The tenant policy: a role subject to row-level security reads, updates and deletes only rows whose
    domain equals the tenant setting, and may write only such rows. Unset setting: no row at all."""
    check = f"{t.col('domain_id')} = current_setting('{TENANT_SETTING}', true)"
    return (
        f"CREATE POLICY {quote_ident(t.policy_name)} ON {t.qualified} "
        f"AS PERMISSIVE FOR ALL TO PUBLIC USING ({check}) WITH CHECK ({check})"
    )


def create_vector_index(t: TableRef, metric: Metric, index_type: str, params: Mapping[str, int]) -> str:
    """CREATE INDEX for `index_type` with validated integer options."""
    name = quote_ident(t.index_name(index_type))
    if index_type == "hnsw":
        options = (
            f"m = {int_literal(params['m'], 'index_params.m')}, "
            f"ef_construction = {int_literal(params['ef_construction'], 'index_params.ef_construction')}"
        )
    elif index_type == "ivfflat":
        options = f"lists = {int_literal(params['lists'], 'index_params.lists')}"
    else:
        raise ValueError(f"index_type must be 'hnsw' or 'ivfflat', got {index_type!r}")
    return (
        f"CREATE INDEX IF NOT EXISTS {name} ON {t.qualified} "
        f"USING {index_type} ({t.col('embedding')} {metric.opclass}) WITH ({options})"
    )


def drop_vector_index(t: TableRef, index_type: str) -> str:
    return f"DROP INDEX IF EXISTS {quote_ident(t.schema)}.{quote_ident(t.index_name(index_type))}"


def create_staging_table(t: TableRef, staging: str) -> str:
    """A temporary table shaped like the target's written columns, dropped at commit."""
    cols = ", ".join(t.col(c) for c in WRITE_COLUMNS)
    return f"CREATE TEMP TABLE {quote_ident(staging)} ON COMMIT DROP AS SELECT {cols} FROM {t.qualified} WITH NO DATA"


def truncate_staging(staging: str) -> str:
    return f"TRUNCATE {quote_ident(staging)}"
