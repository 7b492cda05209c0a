"""DDL of the store: schema, table, indexes and the tenant policy (full-text search's is in `text_ddl`).

PostgreSQL takes no bound parameters in DDL, so these statements hold only names validated by `StoreConfig`
(quoted by `quote_ident`) and integers rendered by `int_literal`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pgvecstore.compact import BINARY_OPCLASS, check_vector_type, index_kind, opclass
from pgvecstore.identifiers import (
    TENANT_SETTING,
    WRITE_COLUMNS,
    int_literal,
    quote_ident,
)
from pgvecstore.metric import Metric
from pgvecstore.sql.table import TableRef

VECTOR_INDEX_TYPES = ("hnsw", "ivfflat")
# The vector indexes a store table may have, each by its own name (`TableRef.index_name`): a method, or HNSW on
# the binary-quantized vectors (`pgvecstore.compact.index_kind`).
VECTOR_INDEX_KINDS = ("hnsw", "ivfflat", "hnsw_binary")


def create_schema(t: TableRef) -> str:
    return f"CREATE SCHEMA IF NOT EXISTS {quote_ident(t.schema)}"


def create_table(
    t: TableRef, dimensions: int, extra_columns: Sequence[str] = (), vector_type: str = "vector"
) -> str:
    """The seed backend's table, with mapped column names, the configured id type, a `vector_type` column
    (``vector`` or ``halfvec``) and `extra_columns` (definitions from `pgvecstore.sql.text_ddl`). With the
    domain key (`TableRef.domain_keyed`) the primary key is (domain_id, id) and domain_id is NOT NULL."""
    id_def = "UUID PRIMARY KEY DEFAULT gen_random_uuid()" if t.id_type == "uuid" else "TEXT PRIMARY KEY"
    domain_def = "VARCHAR(100)"
    dims = int_literal(dimensions, "dimensions")
    text = "".join(f",\n    {column}" for column in extra_columns)
    if t.domain_keyed:
        id_def = id_def.replace("PRIMARY KEY", "NOT NULL")
        domain_def += " NOT NULL"
        text += f",\n    PRIMARY KEY ({t.key_columns})"
    return (
        f"CREATE TABLE IF NOT EXISTS {t.qualified} (\n"
        f"    {t.col('id')} {id_def},\n"
        f"    {t.col('domain_id')} {domain_def},\n"
        f"    {t.col('document_id')} VARCHAR(255),\n"
        f"    {t.col('chunk_index')} INTEGER,\n"
        f"    {t.col('content')} TEXT,\n"
        f"    {t.col('embedding')} {check_vector_type(vector_type)}({dims}),\n"
        f"    {t.col('metadata')} JSONB DEFAULT '{{}}',\n"
        f"    {t.col('created_at')} TIMESTAMP DEFAULT NOW()"
        f"{text}\n)"
    )


def keep_searched_columns_in_heap(t: TableRef) -> str:
    """Storage MAIN for the columns a search reads of every row it looks at: the vector and the metadata (what a
    filter tests). A row over 2 kB then keeps both in the heap (its content is compressed and moved to TOAST
    first; they leave the row only if it would not fit in a page), so neither an exact scan nor a filter reads
    TOAST. Catalog only: it affects rows written afterwards. See docs/vector-storage.md."""
    return (
        f"ALTER TABLE {t.qualified} ALTER COLUMN {t.col('embedding')} SET STORAGE MAIN, "
        f"ALTER COLUMN {t.col('metadata')} SET STORAGE MAIN"
    )


def support_indexes(t: TableRef) -> list[str]:
    """B-tree indexes that keep tenant scoping and per-document deletes from scanning the table (the domain key's
    primary key index serves tenant scoping: no index of its own on domain_id)."""
    domain = [] if t.domain_keyed else [
        f"CREATE INDEX IF NOT EXISTS {quote_ident(t.domain_index_name)} ON {t.qualified} ({t.col('domain_id')})"
    ]
    return [
        *domain,
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


def quantized(column: str, dimensions: int) -> str:
    """The binary-quantized vectors of `column` (a quoted column or a query placeholder cast to its type), as
    the binary index holds them: ``binary_quantize(column)::bit(d)``."""
    return f"binary_quantize({column})::bit({int_literal(dimensions, 'dimensions')})"


def create_vector_index(
    t: TableRef, metric: Metric, index_type: str, params: Mapping[str, int],
    *, vector_type: str = "vector", quantization: str | None = None, dimensions: int | None = None,
) -> str:
    """CREATE INDEX for `index_type` with validated integer options: on the `vector_type` column, or, with
    ``quantization="binary"``, on its binary-quantized `dimensions` bits (Hamming distance)."""
    name = quote_ident(t.index_name(index_kind(index_type, quantization)))
    if index_type == "hnsw":
        options = (
            f"m = {int_literal(params['m'], 'index_params.m')}, "
            f"ef_construction = {int_literal(params['ef_construction'], 'index_params.ef_construction')}"
        )
    elif index_type == "ivfflat":
        options = f"lists = {int_literal(params['lists'], 'index_params.lists')}"
    else:
        raise ValueError(f"index_type must be 'hnsw' or 'ivfflat', got {index_type!r}")
    if quantization == "binary":
        if dimensions is None:
            raise ValueError("a binary-quantized index needs the dimensions")
        keyed = f"({quantized(t.col('embedding'), dimensions)}) {BINARY_OPCLASS}"
    else:
        keyed = f"{t.col('embedding')} {opclass(vector_type, metric)}"
    return f"CREATE INDEX IF NOT EXISTS {name} ON {t.qualified} USING {index_type} ({keyed}) WITH ({options})"


def drop_vector_index(t: TableRef, kind: str) -> str:
    """Drop the table's vector index of `kind` (one of `VECTOR_INDEX_KINDS`)."""
    return f"DROP INDEX IF EXISTS {quote_ident(t.schema)}.{quote_ident(t.index_name(kind))}"


def reindex_vector_index(t: TableRef, kind: str) -> str:
    """Rebuild the table's vector index of `kind` while reads and writes go on (outside a transaction)."""
    return f"REINDEX INDEX CONCURRENTLY {quote_ident(t.schema)}.{quote_ident(t.index_name(kind))}"


def drop_index_concurrently(t: TableRef, index_name: str) -> str:
    """Drop an index of the table's schema without blocking writers (outside a transaction)."""
    return f"DROP INDEX CONCURRENTLY IF EXISTS {quote_ident(t.schema)}.{quote_ident(index_name)}"


def create_staging_table(t: TableRef, staging: str) -> str:
    """A temporary table shaped like the target's written columns, dropped at commit."""
    cols = ", ".join(t.col(c) for c in WRITE_COLUMNS)
    return f"CREATE TEMP TABLE {quote_ident(staging)} ON COMMIT DROP AS SELECT {cols} FROM {t.qualified} WITH NO DATA"


def truncate_staging(staging: str) -> str:
    return f"TRUNCATE {quote_ident(staging)}"
