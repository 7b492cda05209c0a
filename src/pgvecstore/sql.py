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

# Full-text search: the text-search configuration of new text-search columns, and the most query terms a text or
# hybrid search uses (the first distinct ones of the query text), which bounds the work of one query.
DEFAULT_TEXT_SEARCH_CONFIG = "english"
MAX_TEXT_QUERY_TERMS = 64
# ts_rank normalisation: divide by 1 + log(document length), so long documents do not win by length alone.
TEXT_RANK_NORMALIZATION = 1

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


def validate_text_search_config(name: object, option: str) -> str:
    """Return `name` if it is a valid text-search configuration name (``english`` or ``schema.name``)."""
    if not isinstance(name, str):
        raise ValueError(f"{option} must be a string such as 'english', got {type(name).__name__}")
    parts = name.split(".")
    if len(parts) > 2:
        raise ValueError(
            f"{option}={name!r} is not a valid text-search configuration name: use 'name' or 'schema.name'"
        )
    for part in parts:
        try:
            validate_identifier(part, option)
        except ValueError:
            raise ValueError(
                f"{option}={name!r} is not a valid text-search configuration name: use letters, digits and "
                "underscores ('english', 'simple', 'myschema.my_config')"
            ) from None
    return name


def quote_literal(text: str) -> str:
    """A SQL string literal of an already validated name, for DDL that takes no parameters (quotes doubled)."""
    if "\\" in text or "\x00" in text:
        raise ValueError(f"refusing to render {text!r} as a SQL literal")
    return "'" + text.replace("'", "''") + "'"


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


# Constant statements about the session and the server (no identifiers, no values).
CURRENT_DATABASE_AND_ROLE = "SELECT current_database(), current_user"
TEXT_SEARCH_CONFIGS = "SELECT cfgname FROM pg_ts_config ORDER BY 1"
# maintenance_work_mem in bytes and max_parallel_maintenance_workers, as the session has them.
BUILD_SETTINGS_NOW = (
    "SELECT pg_size_bytes(current_setting('maintenance_work_mem')), "
    "current_setting('max_parallel_maintenance_workers')::int"
)


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
    text_search: bool = True
    text_search_column: str = "content_tsv"
    text_search_config: str = DEFAULT_TEXT_SEARCH_CONFIG

    @classmethod
    def from_config(cls, config: StoreConfig) -> TableSQL:
        return cls(
            schema=config.schema,
            table=config.table_name,
            columns=dict(config.columns),
            dimensions=config.dimensions,
            metric=config.metric,
            id_type=config.id_type,
            text_search=config.text_search,
            text_search_column=config.resolved_text_search_column,
            text_search_config=config.text_search_config or DEFAULT_TEXT_SEARCH_CONFIG,
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
    def text_search_index_name(self) -> str:
        """The deterministic name of the GIN index on the text-search column (found by name in the catalog)."""
        return derived_name(self.table, f"{self.text_search_column}_gin_idx")

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
            f"    {self.col('created_at')} TIMESTAMP DEFAULT NOW()"
            + (f",\n    {self.text_search_column_definition()}" if self.text_search else "")
            + "\n)"
        )

    # -- full-text search DDL ------------------------------------------------------------------------------
    def text_search_column_definition(self) -> str:
        """The generated tsvector column over content. DDL takes no parameters, so the configuration name is
        validated and rendered as a quoted literal (the generation expression must be immutable, hence the
        two-argument to_tsvector with a constant configuration)."""
        config = quote_literal(validate_text_search_config(self.text_search_config, "text_search_config"))
        return (
            f"{quote_ident(self.text_search_column)} tsvector GENERATED ALWAYS AS "
            f"(to_tsvector({config}::regconfig, coalesce({self.col('content')}, ''))) STORED"
        )

    def add_text_search_column(self) -> str:
        """Add the generated column to an existing table: PostgreSQL rewrites the whole table to fill it."""
        return f"ALTER TABLE {self.qualified_table} ADD COLUMN IF NOT EXISTS {self.text_search_column_definition()}"

    def create_text_search_index(self) -> str:
        return (
            f"CREATE INDEX IF NOT EXISTS {quote_ident(self.text_search_index_name)} "
            f"ON {self.qualified_table} USING gin ({quote_ident(self.text_search_column)})"
        )

    @staticmethod
    def text_search_state() -> str:
        """The type of the text-search column ($1 schema, $2 table, $3 column), from the catalog alone (no lock on
        the table); no row when the column does not exist."""
        return (
            "SELECT format_type(a.atttypid, a.atttypmod) "
            "FROM pg_attribute AS a JOIN pg_class AS c ON c.oid = a.attrelid "
            "JOIN pg_namespace AS n ON n.oid = c.relnamespace "
            "WHERE n.nspname = $1 AND c.relname = $2 AND a.attname = $3 AND a.attnum > 0 AND NOT a.attisdropped"
        )

    @staticmethod
    def text_search_config_used() -> str:
        """The text-search configuration the column ($1 schema, $2 table, $3 column) is generated with, read from
        the deparsed expression (``to_tsvector('english'::regconfig, ...)``: built-in configurations get no
        pg_depend entry to read instead) and canonicalised by a regconfig cast. NULL when the column is not
        generated from a constant configuration. Deparsing takes an ACCESS SHARE lock on the table."""
        quoted = r"""'''((?:[^'']|'''')*)''::regconfig'"""  # the pattern '((?:[^']|'')*)'::regconfig as a literal
        return (
            f"SELECT replace(substring(pg_get_expr(ad.adbin, ad.adrelid) FROM {quoted}), '''''', '''')"
            "::regconfig::text FROM pg_attrdef AS ad "
            "JOIN pg_attribute AS a ON a.attrelid = ad.adrelid AND a.attnum = ad.adnum "
            "JOIN pg_class AS c ON c.oid = a.attrelid JOIN pg_namespace AS n ON n.oid = c.relnamespace "
            "WHERE n.nspname = $1 AND c.relname = $2 AND a.attname = $3 AND a.attgenerated = 's'"
        )

    @staticmethod
    def resolve_text_search_config() -> str:
        """The canonical name of the text-search configuration $1 (an error when the server has none by that
        name): a bound value cast to regconfig, never SQL text."""
        return "SELECT $1::text::regconfig::text"

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

    def has_vector_index(self) -> str:
        """Whether the table ($1: its qualified name) has any HNSW or IVFFlat index, whatever its name."""
        return (
            "SELECT EXISTS (SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "JOIN pg_am a ON a.oid = c.relam WHERE i.indrelid = to_regclass($1) AND a.amname IN ('hnsw', 'ivfflat'))"
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

    # -- text and hybrid search ----------------------------------------------------------------------------
    # Every part below reads the table as alias "t": `where` and `scope_where` must be compiled with alias "t".

    def similarity(self, distance: str) -> str:
        """The score of a distance expression, as `search` reports it: cosine 1 - d, euclidean 1 / (1 + d),
        inner product the raw product (pgvector's <#> is its negative)."""
        if self.metric == "cosine":
            return f"(1 - {distance})"
        if self.metric == "euclidean":
            return f"(1 / (1 + {distance}))"
        return f"(-{distance})"

    def vector_candidates(self, where: str, query_ph: str, limit_ph: str) -> str:
        """The vector side of a hybrid search: id and distance of the `limit` nearest rows, in the plain
        ``ORDER BY embedding <op> query LIMIT n`` form that lets the planner use the vector index.

        This is the one place where the vector part of a hybrid query is built, so index-scan choices (settings
        or an exact scan) apply to it exactly as they do to a vector search.
        """
        emb = f"t.{self.col('embedding')}"
        return (
            f"SELECT t.{self.col('id')} AS id, {emb} {self.distance_operator} {query_ph} AS distance "
            f"FROM {self.qualified_table} AS t {where} "
            f"ORDER BY {emb} {self.distance_operator} {query_ph} LIMIT {limit_ph}"
        )

    def text_candidates(
        self, scope_where: str, where: str, config_ph: str, text_ph: str, max_terms_ph: str, limit_ph: str
    ) -> list[str]:
        """The text side of a search, as CTEs ending in ``text_candidates(id, score, rank)``: the `limit` best
        rows by an IDF-weighted ``ts_rank``.

        - Terms: the distinct lexemes of the query text under the configuration (stop words dropped, words
          stemmed), the first `max_terms` by position. Each becomes a one-lexeme tsquery through the server's
          own tsvector output (``array_to_tsvector(ARRAY[lexeme])::text``), so no user text is ever parsed as
          tsquery syntax and no input can make the query fail.
        - Matching: a row matches when it contains any term (OR, as BM25 does; an AND of every word of a
          natural-language question matches almost nothing). The GIN index serves it.
        - Weights: PostgreSQL's ranking has no inverse document frequency, so each term gets BM25's IDF,
          ``ln(1 + (N - df + 0.5) / (df + 0.5))``, with df counted by the GIN index within the store's scope
          (`scope_where`: its domain, not the user filter) and N the table's row estimate (pg_class.reltuples,
          at least the sum of the dfs). ts_rank takes one weight per label A-D, so with up to four distinct IDFs
          each gets a label of its own (exact weights); with more, the terms are put in four equal-width IDF
          bands. Labels are set with setweight; each weighs its mean IDF, relative to the largest.
        - Score: ``ts_rank(weights, labelled vector, query, 1)``, normalised by 1 + log(document length).
        """
        table = self.qualified_table
        tsv = f"t.{quote_ident(self.text_search_column)}"
        ranked = (
            "setweight(setweight(setweight(setweight(m.tsv, 'D', w.d), 'C', w.c), 'B', w.b), 'A', w.a)"
        )
        bands = ", ".join(
            f"coalesce(least(1, avg(idf) FILTER (WHERE band = {band}) / max(idf)), 0)" for band in range(4)
        )
        labels = ", ".join(
            f"coalesce(array_agg(lexeme) FILTER (WHERE band = {band}), '{{}}') AS {label}"
            for band, label in enumerate("dcba")
        )
        return [
            "text_terms AS MATERIALIZED ("
            "SELECT u.lexeme, array_to_tsvector(ARRAY[u.lexeme])::text::tsquery AS term "
            f"FROM unnest(to_tsvector({config_ph}, {text_ph})) AS u "
            f"ORDER BY u.positions[1], u.lexeme LIMIT {max_terms_ph})",
            "text_query AS MATERIALIZED ("
            "SELECT CASE WHEN count(*) > 0 THEN string_agg(term::text, ' | ')::tsquery END AS q FROM text_terms)",
            "text_df AS MATERIALIZED ("
            f"SELECT tt.lexeme, (SELECT count(*) FROM {table} AS t {scope_where} AND {tsv} @@ tt.term) AS df "
            "FROM text_terms AS tt)",
            "text_idf AS MATERIALIZED ("
            "SELECT d.lexeme, ln(1 + (n.n - d.df + 0.5) / (d.df + 0.5)) AS idf "
            "FROM text_df AS d, (SELECT greatest("
            "(SELECT c.reltuples::float8 FROM pg_class AS c WHERE c.oid = "
            f"{quote_literal(self.qualified_table)}::regclass), "
            "(SELECT sum(df)::float8 FROM text_df)) AS n) AS n WHERE d.df > 0)",
            "text_bands AS MATERIALIZED ("
            "SELECT lexeme, idf, CASE WHEN max(r) OVER () <= 4 THEN (r - 1)::int "
            "ELSE least(3, floor(4 * (idf - min(idf) OVER ()) / (max(idf) OVER () - min(idf) OVER ())))::int "
            "END AS band FROM (SELECT lexeme, idf, dense_rank() OVER (ORDER BY idf) AS r FROM text_idf) AS ranked)",
            f"text_weights AS MATERIALIZED (SELECT ARRAY[{bands}]::float4[] AS weights, {labels} FROM text_bands)",
            "text_candidates AS ("
            "SELECT r.id, r.score, row_number() OVER (ORDER BY r.score DESC, r.id) AS rank FROM ("
            f"SELECT m.id, ts_rank(w.weights, {ranked}, tq.q, {TEXT_RANK_NORMALIZATION})::float8 AS score "
            f"FROM (SELECT t.{self.col('id')} AS id, {tsv} AS tsv "
            f"FROM {table} AS t, text_query AS tq {where} AND {tsv} @@ tq.q) AS m, "
            "text_weights AS w, text_query AS tq "
            f"ORDER BY score DESC, m.id LIMIT {limit_ph}) AS r)",
        ]

    def full_text_search(self, text_ctes: list[str], k_ph: str, include_metadata: bool) -> str:
        """Rows of the text side alone (built by `text_candidates` with limit k), best first, with their rank."""
        cols = ", ".join(self.select_columns(False, include_metadata, alias="t"))
        return (
            f"WITH {', '.join(text_ctes)} "
            f"SELECT {cols}, x.score AS score FROM text_candidates AS x "
            f"JOIN {self.qualified_table} AS t ON t.{self.col('id')} = x.id "
            f"ORDER BY x.rank LIMIT {k_ph}"
        )

    def hybrid_search(
        self,
        vector_sql: str,
        text_ctes: list[str],
        k_ph: str,
        include_metadata: bool,
        *,
        rrf_k_ph: str | None = None,
        alpha_ph: str | None = None,
    ) -> str:
        """Both candidate lists in one statement, fused, best first.

        `vector_sql` is `vector_candidates`; `text_ctes` is `text_candidates`. Fusion is reciprocal rank fusion,
        ``sum 1 / (rrf_k + rank)`` over the lists a row is in, or, with `alpha_ph`, ``alpha * v + (1 - alpha) *
        x`` where v and x are the vector similarity and text score min-max normalised within their candidate
        lists (0 for a row missing from a list). Ties go to the better vector rank, then text rank, then id.
        """
        if (rrf_k_ph is None) == (alpha_ph is None):
            raise ValueError("hybrid_search needs exactly one of rrf_k_ph and alpha_ph")
        ctes = [
            "vector_candidates AS ("
            "SELECT v.id, v.distance, row_number() OVER (ORDER BY v.distance, v.id) AS rank "
            f"FROM ({vector_sql}) AS v)",
            *text_ctes,
        ]
        if alpha_ph is None:
            ctes.append(
                "fused AS (SELECT coalesce(v.id, x.id) AS id, v.rank AS vector_rank, x.rank AS text_rank, "
                f"coalesce(1 / ({rrf_k_ph} + v.rank), 0) + coalesce(1 / ({rrf_k_ph} + x.rank), 0) AS score "
                "FROM vector_candidates AS v FULL JOIN text_candidates AS x ON x.id = v.id)"
            )
        else:
            normalised = (
                "coalesce((s - min(s) OVER ()) / nullif(max(s) OVER () - min(s) OVER (), 0), 1)::float8 AS norm"
            )
            ctes += [
                f"vector_norm AS (SELECT id, rank, {normalised} FROM "
                f"(SELECT id, rank, {self.similarity('distance')}::float8 AS s FROM vector_candidates) AS z)",
                f"text_norm AS (SELECT id, rank, {normalised} FROM "
                "(SELECT id, rank, score AS s FROM text_candidates) AS z)",
                "fused AS (SELECT coalesce(v.id, x.id) AS id, v.rank AS vector_rank, x.rank AS text_rank, "
                f"{alpha_ph} * coalesce(v.norm, 0) + (1 - {alpha_ph}) * coalesce(x.norm, 0) AS score "
                "FROM vector_norm AS v FULL JOIN text_norm AS x ON x.id = v.id)",
            ]
        cols = ", ".join(self.select_columns(False, include_metadata, alias="t"))
        return (
            f"WITH {', '.join(ctes)} "
            f"SELECT {cols}, f.score AS score, f.vector_rank AS vector_rank, f.text_rank AS text_rank "
            f"FROM fused AS f JOIN {self.qualified_table} AS t ON t.{self.col('id')} = f.id "
            f"ORDER BY f.score DESC, f.vector_rank NULLS LAST, f.text_rank NULLS LAST, f.id LIMIT {k_ph}"
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

    def estimate_rows(self, where: str) -> str:
        """``EXPLAIN`` (planned, never run) whose plan holds the planner's estimates of the rows matching `where`
        and of all the table's rows (read by `search_tuning.parse_estimate`)."""
        return (
            f"EXPLAIN (FORMAT JSON) SELECT 1 FROM {self.qualified_table} {where} "
            f"UNION ALL SELECT 1 FROM {self.qualified_table}"
        )

    def count(self, where: str) -> str:
        return f"SELECT count(*) FROM {self.qualified_table} {where}"

    def stats(self, where: str, name_ph: str) -> str:
        """Rows, documents and tenants within `where`, and the table's sizes (`name_ph`: its qualified name)."""
        return (
            f"SELECT count(*) AS rows, count(DISTINCT {self.col('document_id')}) AS documents, "
            f"count(DISTINCT {self.col('domain_id')}) AS tenants, "
            f"pg_table_size(to_regclass({name_ph})) AS table_bytes, "
            f"pg_total_relation_size(to_regclass({name_ph})) AS total_bytes "
            f"FROM {self.qualified_table} {where}"
        )

    def count_up_to(self, limit_ph: str) -> str:
        """Row count capped at a limit, so checking an index threshold never scans a big table."""
        return f"SELECT count(*) FROM (SELECT 1 FROM {self.qualified_table} LIMIT {limit_ph}) AS capped"

    def total_rows(self) -> str:
        return f"SELECT count(*) FROM {self.qualified_table}"
