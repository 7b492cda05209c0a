"""SQL text for the store, built in one place from validated, quoted identifiers and bound parameters.

Nothing in this module pastes a value into SQL: identifiers are checked by `validate_identifier` and quoted by
`quote_ident`; every value (vectors, ids, ``k``, index parameters, settings) travels as a ``$n`` parameter or,
for DDL where PostgreSQL accepts no parameters, as an integer validated and rendered by `int_literal`.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pgvecstore.config import StoreConfig

# Unquoted-identifier syntax of PostgreSQL, minus the '$' that some tools choke on; at most 63 bytes (NAMEDATALEN-1).
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MAX_IDENTIFIER_BYTES = 63

LOGICAL_COLUMNS = (
    "id",
    "embedding",
    "content",
    "metadata",
    "domain_id",
    "document_id",
    "chunk_index",
    "created_at",
)

# pgvector distance operator, operator class and score expression of each metric.
METRIC_OPERATORS = {"cosine": "<=>", "euclidean": "<->", "inner_product": "<#>"}
METRIC_OPCLASSES = {"cosine": "vector_cosine_ops", "euclidean": "vector_l2_ops", "inner_product": "vector_ip_ops"}

# The custom setting that names the tenant of a session or transaction; the row-level security policy compares
# each row's domain with it. A fixed name (never user input), so it may appear in the policy's SQL text.
TENANT_SETTING = "pgvecstore.domain_id"


def validate_identifier(name: object, option: str) -> str:
    """Return `name` if it is a valid PostgreSQL name, else raise a ValueError that names `option`."""
    if not isinstance(name, str):
        raise ValueError(f"{option} must be a string, got {type(name).__name__}")
    if not _IDENTIFIER.fullmatch(name):  # fullmatch: "$" alone would also accept a trailing newline
        raise ValueError(
            f"{option}={name!r} is not a valid PostgreSQL name: use letters, digits and underscores, "
            "starting with a letter or underscore"
        )
    if len(name.encode()) > MAX_IDENTIFIER_BYTES:
        raise ValueError(f"{option}={name!r} is longer than PostgreSQL's {MAX_IDENTIFIER_BYTES}-byte name limit")
    return name


def quote_ident(name: str) -> str:
    """Quote an identifier for PostgreSQL (doubling any embedded quote), so it can never break out."""
    return '"' + name.replace('"', '""') + '"'


def int_literal(value: object, what: str) -> str:
    """Render a validated integer for DDL options that PostgreSQL does not accept as parameters."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{what} must be an integer, got {value!r}")
    return str(int(value))


def derived_name(base: str, suffix: str) -> str:
    """A deterministic object name `base_suffix`, shortened with a hash when it would pass 63 bytes."""
    name = f"{base}_{suffix}"
    if len(name.encode()) <= MAX_IDENTIFIER_BYTES:
        return name
    digest = hashlib.sha1(name.encode()).hexdigest()[:8]
    keep = MAX_IDENTIFIER_BYTES - len(suffix) - len(digest) - 2
    return f"{base.encode()[:keep].decode(errors='ignore')}_{digest}_{suffix}"


def set_config_sql(count: int) -> str:
    """One statement that sets `count` settings for the current transaction: names and values are parameters
    ($1/$2 the first name and value, $3/$4 the second, ...), so a value can never become SQL."""
    if count < 1:
        raise ValueError("set_config_sql needs at least one setting")
    calls = ", ".join(f"set_config(${2 * i + 1}, ${2 * i + 2}, true)" for i in range(count))
    return f"SELECT {calls}"


class Params:
    """Collects bound parameters and hands out their ``$n`` placeholders."""

    def __init__(self, start: list[Any] | None = None) -> None:
        self.values: list[Any] = list(start or [])

    def add(self, value: Any, cast: str | None = None) -> str:
        """Append `value` and return its placeholder, with an optional type cast (a fixed type name)."""
        self.values.append(value)
        placeholder = f"${len(self.values)}"
        return f"{placeholder}::{cast}" if cast else placeholder


@dataclass(frozen=True)
class TableSQL:
    """Every statement the store runs against its table, derived from one configuration."""

    schema: str
    table: str
    columns: dict[str, str]
    dimensions: int
    metric: str
    id_type: str

    @classmethod
    def from_config(cls, config: StoreConfig) -> TableSQL:
        return cls(
            schema=config.schema,
            table=config.table_name,
            columns=dict(config.columns),
            dimensions=config.dimensions,
            metric=config.metric,
            id_type=config.id_type,
        )

    # -- names ---------------------------------------------------------------------------------------------
    @property
    def qualified_table(self) -> str:
        return f"{quote_ident(self.schema)}.{quote_ident(self.table)}"

    def col(self, logical: str) -> str:
        """The quoted column that holds logical column `logical`."""
        return quote_ident(self.columns[logical])

    @property
    def id_cast(self) -> str:
        return "uuid" if self.id_type == "uuid" else "text"

    @property
    def distance_operator(self) -> str:
        return METRIC_OPERATORS[self.metric]

    @property
    def opclass(self) -> str:
        return METRIC_OPCLASSES[self.metric]

    def index_name(self, index_type: str) -> str:
        """The deterministic name of this table's vector index of `index_type` (found by name in the catalog)."""
        return derived_name(self.table, f"{self.columns['embedding']}_{index_type}_idx")

    @property
    def domain_index_name(self) -> str:
        return derived_name(self.table, f"{self.columns['domain_id']}_idx")

    @property
    def document_index_name(self) -> str:
        return derived_name(self.table, f"{self.columns['document_id']}_idx")

    @property
    def policy_name(self) -> str:
        """The deterministic name of the table's tenant-isolation policy (found by name in pg_policy)."""
        return derived_name(self.table, "tenant_isolation")

    @property
    def lock_key(self) -> str:
        """Text hashed into the advisory-lock key that serialises DDL on this table across processes."""
        return f"pgvecstore:{self.schema}.{self.table}"

    # -- DDL -----------------------------------------------------------------------------------------------
    def create_schema(self) -> str:
        return f"CREATE SCHEMA IF NOT EXISTS {quote_ident(self.schema)}"

    def create_table(self) -> str:
        """The seed backend's table, with mapped column names and the configured id type."""
        id_def = "UUID PRIMARY KEY DEFAULT gen_random_uuid()" if self.id_type == "uuid" else "TEXT PRIMARY KEY"
        dims = int_literal(self.dimensions, "dimensions")
        return (
            f"CREATE TABLE IF NOT EXISTS {self.qualified_table} (\n"
            f"    {self.col('id')} {id_def},\n"
            f"    {self.col('domain_id')} VARCHAR(100),\n"
            f"    {self.col('document_id')} VARCHAR(255),\n"
            f"    {self.col('chunk_index')} INTEGER,\n"
            f"    {self.col('content')} TEXT,\n"
            f"    {self.col('embedding')} vector({dims}),\n"
            f"    {self.col('metadata')} JSONB DEFAULT '{{}}',\n"
            f"    {self.col('created_at')} TIMESTAMP DEFAULT NOW()\n"
            ")"
        )

    def create_support_indexes(self) -> list[str]:
        """B-tree indexes that keep tenant scoping and per-document deletes from scanning the table."""
        return [
            f"CREATE INDEX IF NOT EXISTS {quote_ident(self.domain_index_name)} "
            f"ON {self.qualified_table} ({self.col('domain_id')})",
            f"CREATE INDEX IF NOT EXISTS {quote_ident(self.document_index_name)} "
            f"ON {self.qualified_table} ({self.col('document_id')}, {self.col('chunk_index')})",
        ]

    def rls_state(self) -> str:
        """Row-level security of the table ($1 schema, $2 table, $3 policy name): whether it is enabled, forced
        and active for the current role (false for owners, superusers and BYPASSRLS roles), and whether the
        tenant policy exists. No row when the table does not exist."""
        return (
            "SELECT c.relrowsecurity, c.relforcerowsecurity, row_security_active(c.oid), "
            "EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid AND p.polname = $3) "
            "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = $1 AND c.relname = $2"
        )

    def enable_rls(self) -> str:
        return f"ALTER TABLE {self.qualified_table} ENABLE ROW LEVEL SECURITY"

    def create_policy(self) -> str:
        """The tenant policy: a role subject to row-level security reads, updates and deletes only rows whose
        domain equals the tenant setting, and may write only such rows. Unset setting: no row at all."""
        check = f"{self.col('domain_id')} = current_setting('{TENANT_SETTING}', true)"
        return (
            f"CREATE POLICY {quote_ident(self.policy_name)} ON {self.qualified_table} "
            f"AS PERMISSIVE FOR ALL TO PUBLIC USING ({check}) WITH CHECK ({check})"
        )

    def describe_columns(self) -> str:
        """Column names and formatted types of the table ($1 schema, $2 table)."""
        return (
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod) "
            "FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped"
        )

    @staticmethod
    def relation_exists() -> str:
        """Whether a relation ($2) exists in schema ($1): used for the table and for its indexes."""
        return (
            "SELECT EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = $1 AND c.relname = $2)"
        )

    def create_vector_index(self, index_type: str, params: dict[str, int]) -> str:
        """CREATE INDEX for `index_type` with validated integer options (DDL takes no bound parameters)."""
        name = quote_ident(self.index_name(index_type))
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
            f"CREATE INDEX IF NOT EXISTS {name} ON {self.qualified_table} "
            f"USING {index_type} ({self.col('embedding')} {self.opclass}) WITH ({options})"
        )

    def drop_vector_index(self, index_type: str) -> str:
        return f"DROP INDEX IF EXISTS {quote_ident(self.schema)}.{quote_ident(self.index_name(index_type))}"

    # -- rows ----------------------------------------------------------------------------------------------
    @property
    def write_columns(self) -> list[str]:
        """Logical columns written by add_vectors, in COPY order."""
        return ["id", "embedding", "content", "metadata", "domain_id", "document_id", "chunk_index"]

    def create_staging_table(self, staging: str) -> str:
        """A temporary table shaped like the target's written columns, dropped at commit."""
        cols = ", ".join(self.col(c) for c in self.write_columns)
        return (
            f"CREATE TEMP TABLE {quote_ident(staging)} ON COMMIT DROP AS "
            f"SELECT {cols} FROM {self.qualified_table} WITH NO DATA"
        )

    def upsert_from_staging(self, staging: str) -> str:
        """Move staged rows into the table; an existing id is replaced only inside the same domain.

        `created_at` keeps its first value. RETURNING lets the caller detect ids that belong to another domain
        (those rows are neither inserted nor updated).
        """
        cols = [self.col(c) for c in self.write_columns]
        updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in cols[1:])
        dom = self.col("domain_id")
        return (
            f"INSERT INTO {self.qualified_table} AS t ({', '.join(cols)}) "
            f"SELECT {', '.join(cols)} FROM {quote_ident(staging)} "
            f"ON CONFLICT ({self.col('id')}) DO UPDATE SET {updates} "
            f"WHERE t.{dom} IS NOT DISTINCT FROM EXCLUDED.{dom} "
            f"RETURNING t.{self.col('id')}::text"
        )

    def existing_ids(self) -> str:
        """Which of the ids ($1, an array) exist already, with their domain."""
        return (
            f"SELECT {self.col('id')}::text, {self.col('domain_id')} FROM {self.qualified_table} "
            f"WHERE {self.col('id')} = ANY($1::{self.id_cast}[])"
        )

    def truncate_staging(self, staging: str) -> str:
        return f"TRUNCATE {quote_ident(staging)}"

    def select_columns(self, include_embedding: bool, include_metadata: bool, alias: str = "") -> list[str]:
        """Columns read back for a row: id, then optionally the embedding, then the metadata columns."""
        p = f"{alias}." if alias else ""
        cols = [f"{p}{self.col('id')}::text"]
        if include_embedding:
            cols.append(f"{p}{self.col('embedding')}")
        if include_metadata:
            cols += [
                f"{p}{self.col('metadata')}::text",
                f"{p}{self.col('content')}",
                f"{p}{self.col('document_id')}",
                f"{p}{self.col('chunk_index')}",
            ]
        return cols

    def search(self, where: str, query_ph: str, k_ph: str, include_metadata: bool) -> str:
        """Nearest rows to the query vector, best first; the ORDER BY matches the index's operator class."""
        emb = self.col("embedding")
        cols = ", ".join(self.select_columns(False, include_metadata))
        return (
            f"SELECT {cols}, {emb} {self.distance_operator} {query_ph} AS distance "
            f"FROM {self.qualified_table} {where} "
            f"ORDER BY {emb} {self.distance_operator} {query_ph} LIMIT {k_ph}"
        )

    def get_by_ids(self, where: str, include_metadata: bool) -> str:
        cols = ", ".join(self.select_columns(True, include_metadata))
        return f"SELECT {cols} FROM {self.qualified_table} {where}"

    def select_rows(self, where: str, include_embedding: bool, limit_ph: str | None) -> str:
        """Rows matching `where` in a stable order (document, chunk, id), optionally limited."""
        cols = ", ".join(self.select_columns(include_embedding, True))
        order = f"{self.col('document_id')}, {self.col('chunk_index')}, {self.col('id')}"
        limit = f" LIMIT {limit_ph}" if limit_ph else ""
        return f"SELECT {cols} FROM {self.qualified_table} {where} ORDER BY {order}{limit}"

    def update_metadata_sql(self, where: str, ids_ph: str, meta_ph: str, cols_ph: str) -> str:
        """Replace metadata by id, keeping content/document_id/chunk_index in step when the new metadata has them.

        `cols_ph` is a jsonb array aligned with ids: each element holds the column values the metadata carried.
        """
        c = self.col
        return (
            f"UPDATE {self.qualified_table} AS t SET "
            f"{c('metadata')} = u.meta, "
            f"{c('content')} = CASE WHEN u.cols ? 'content' THEN u.cols->>'content' ELSE t.{c('content')} END, "
            f"{c('document_id')} = CASE WHEN u.cols ? 'document_id' THEN u.cols->>'document_id' "
            f"ELSE t.{c('document_id')} END, "
            f"{c('chunk_index')} = CASE WHEN u.cols ? 'chunk_index' THEN (u.cols->>'chunk_index')::integer "
            f"ELSE t.{c('chunk_index')} END "
            f"FROM unnest({ids_ph}::{self.id_cast}[], {meta_ph}::jsonb[], {cols_ph}::jsonb[]) AS u(id, meta, cols) "
            f"{where} AND t.{c('id')} = u.id"
        )

    def delete(self, where: str) -> str:
        return f"DELETE FROM {self.qualified_table} {where}"

    def count(self, where: str) -> str:
        return f"SELECT count(*) FROM {self.qualified_table} {where}"

    def count_up_to(self, limit_ph: str) -> str:
        """Row count capped at a limit, so checking an index threshold never scans a big table."""
        return f"SELECT count(*) FROM (SELECT 1 FROM {self.qualified_table} LIMIT {limit_ph}) AS capped"

    def total_rows(self) -> str:
        return f"SELECT count(*) FROM {self.qualified_table}"
