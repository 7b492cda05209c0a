"""What the store reads about the server, the session and its table: each a `Statement` with its values bound.

They read the system catalogs only (no lock on the table), except `text_search_config_used`, which deparses the
generation expression of a text-search column of the pgvecstore 0.1 layout.
"""

from __future__ import annotations

from collections.abc import Mapping

from pgvecstore.sql.params import Params, Statement
from pgvecstore.sql.table import TableRef

# Constant statements about the session and the server (no identifiers, no values).
CURRENT_DATABASE_AND_ROLE = Statement("SELECT current_database(), current_user")
TEXT_SEARCH_CONFIGS = Statement("SELECT cfgname FROM pg_ts_config ORDER BY 1")
# maintenance_work_mem in bytes and max_parallel_maintenance_workers, as the session has them.
BUILD_SETTINGS_NOW = Statement(
    "SELECT pg_size_bytes(current_setting('maintenance_work_mem')), "
    "current_setting('max_parallel_maintenance_workers')::int"
)
VECTOR_EXTENSION_SCHEMA = Statement(
    "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'vector'"
)
CREATE_VECTOR_EXTENSION = "CREATE EXTENSION IF NOT EXISTS vector"
_EXTENSION_LOCK_KEY = "pgvecstore:create-extension"


def advisory_lock(key: str) -> Statement:
    """Take the transaction-level advisory lock of `key` (held until the transaction ends)."""
    p = Params()
    return p.statement(f"SELECT pg_advisory_xact_lock(hashtextextended({p.add(key)}, 0))")


def extension_lock() -> Statement:
    """The advisory lock that serialises CREATE EXTENSION across sessions."""
    return advisory_lock(_EXTENSION_LOCK_KEY)


def table_lock(t: TableRef) -> Statement:
    """The advisory lock that serialises DDL on this table across sessions."""
    return advisory_lock(t.lock_key)


def set_config(settings: Mapping[str, str], *, local: bool = True) -> Statement:
    """One statement that sets `settings` until the current transaction ends (with `local`, the default) or for
    the rest of the session; names and values are bound."""
    p = Params()
    scope = "true" if local else "false"
    calls = ", ".join(f"set_config({p.add(name)}, {p.add(value)}, {scope})" for name, value in settings.items())
    return p.statement(f"SELECT {calls}")


def reindex_leftovers(t: TableRef, index_name: str) -> Statement:
    """The invalid indexes an interrupted ``REINDEX ... CONCURRENTLY`` of `index_name` left on the table (named
    ``<index>_ccnew``, ``<index>_ccnew1``, ...), to drop before trying again."""
    p = Params()
    return p.statement(
        "SELECT c.relname FROM pg_index AS i JOIN pg_class AS c ON c.oid = i.indexrelid "
        f"WHERE i.indrelid = to_regclass({p.add(t.qualified)}) AND NOT i.indisvalid "
        f"AND left(c.relname, {p.add(len(index_name), 'int4')}) = {p.add(index_name)} "
        f"AND substr(c.relname, {p.add(len(index_name) + 1, 'int4')}) ~ '^_ccnew[0-9]*$'"
    )


def schema_exists(schema: str) -> Statement:
    p = Params()
    return p.statement(f"SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = {p.add(schema)})")


def relation_exists(schema: str, name: str) -> Statement:
    """Whether a relation (a table or an index) of that name exists in `schema`."""
    p = Params()
    return p.statement(
        "SELECT EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        f"WHERE n.nspname = {p.add(schema)} AND c.relname = {p.add(name)})"
    )


def describe_columns(t: TableRef) -> Statement:
    """Column names and formatted types of the table (``vector(384)``, ``uuid``, ``tsvector`` ...)."""
    p = Params()
    return p.statement(
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod) "
        "FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
        f"WHERE n.nspname = {p.add(t.schema)} AND c.relname = {p.add(t.name)} AND a.attnum > 0 "
        "AND NOT a.attisdropped"
    )


def primary_key_columns(t: TableRef) -> Statement:
    """The columns of the table's primary key, in key order (NULL when it has none)."""
    p = Params()
    return p.statement(
        "SELECT array_agg(a.attname::text ORDER BY k.ord) FROM pg_index AS i "
        "CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) "
        "JOIN pg_attribute AS a ON a.attrelid = i.indrelid AND a.attnum = k.attnum "
        f"WHERE i.indrelid = to_regclass({p.add(t.qualified)}) AND i.indisprimary"
    )


def searched_columns_storage(t: TableRef) -> Statement:
    """Whether the vector and metadata columns both have storage MAIN (``pg_attribute.attstorage`` 'm'), and
    whether the current role owns the table (may alter it); NULLs when the table is not there."""
    p = Params()
    return p.statement(
        "SELECT bool_and(a.attstorage = 'm'), bool_or(pg_has_role(c.relowner, 'USAGE')) "
        "FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
        f"WHERE n.nspname = {p.add(t.schema)} AND c.relname = {p.add(t.name)} "
        f"AND a.attname IN ({p.add(t.columns['embedding'])}, {p.add(t.columns['metadata'])}) "
        "AND NOT a.attisdropped"
    )


def text_search_config_used(t: TableRef) -> Statement:
    """The text-search configuration the text-search column is generated with, read from the deparsed
    expression (``to_tsvector('english'::regconfig, ...)``: built-in configurations get no pg_depend entry to
    read instead) and canonicalised by a regconfig cast. NULL when the column is not generated from a constant
    configuration. Deparsing takes an ACCESS SHARE lock on the table."""
    quoted = r"""'''((?:[^'']|'''')*)''::regconfig'"""  # the pattern '((?:[^']|'')*)'::regconfig as a literal
    p = Params()
    return p.statement(
        f"SELECT replace(substring(pg_get_expr(ad.adbin, ad.adrelid) FROM {quoted}), '''''', '''')"
        "::regconfig::text FROM pg_attrdef AS ad "
        "JOIN pg_attribute AS a ON a.attrelid = ad.adrelid AND a.attnum = ad.adnum "
        "JOIN pg_class AS c ON c.oid = a.attrelid JOIN pg_namespace AS n ON n.oid = c.relnamespace "
        f"WHERE n.nspname = {p.add(t.schema)} AND c.relname = {p.add(t.name)} "
        f"AND a.attname = {p.add(t.text_search_column)} AND a.attgenerated = 's'"
    )


def text_search_layout(t: TableRef) -> Statement:
    """The table's full-text search parts: the text-search column's type (NULL without it), whether that column is
    generated (the layout of pgvecstore 0.1), whether the term-frequency column, the statistics tables and the
    row trigger exist, the configuration named by the row trigger's argument (canonical; NULL without it), and the
    table's comment (its layout record, `pgvecstore.layout`). No row without the table."""
    p = Params()

    def column(expression: str, name: str) -> str:
        return (
            f"(SELECT {expression} FROM pg_attribute AS a WHERE a.attrelid = c.oid AND a.attname = {p.add(name)} "
            "AND a.attnum > 0 AND NOT a.attisdropped)"
        )

    generated = "a.attgenerated = 's'"
    trigger_config = (
        "(SELECT convert_from(substring(g.tgargs FROM 1 FOR position('\\x00'::bytea IN g.tgargs) - 1), 'UTF8')"
        f"::regconfig::text FROM pg_trigger AS g WHERE g.tgrelid = c.oid AND g.tgname = {p.add(t.text_object('row'))})"
    )
    return p.statement(
        f"SELECT {column('format_type(a.atttypid, a.atttypmod)', t.text_search_column)}, "
        f"coalesce({column(generated, t.text_search_column)}, false), "
        f"EXISTS {column('1', t.text_terms_column)}, "
        f"to_regclass({p.add(t.in_schema(t.text_terms_table))}) IS NOT NULL "
        f"AND to_regclass({p.add(t.in_schema(t.text_docs_table))}) IS NOT NULL, {trigger_config}, "
        "obj_description(c.oid, 'pg_class') "
        "FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace "
        f"WHERE n.nspname = {p.add(t.schema)} AND c.relname = {p.add(t.name)}"
    )


def resolve_text_search_config(name: str) -> Statement:
    """The canonical name of the text-search configuration `name` (an error when the server has none)."""
    p = Params()
    return p.statement(f"SELECT {p.add(name)}::text::regconfig::text")


def row_security_state(t: TableRef) -> Statement:
    """Row-level security of the table: whether it is enabled, forced and active for the current role (false for
    owners, superusers and BYPASSRLS roles), and whether the tenant policy exists. No row without the table."""
    p = Params()
    return p.statement(
        "SELECT c.relrowsecurity, c.relforcerowsecurity, row_security_active(c.oid), "
        f"EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid AND p.polname = {p.add(t.policy_name)}) "
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        f"WHERE n.nspname = {p.add(t.schema)} AND c.relname = {p.add(t.name)}"
    )


def has_vector_index(t: TableRef) -> Statement:
    """Whether the table has any HNSW or IVFFlat index, whatever its name."""
    p = Params()
    return p.statement(
        "SELECT EXISTS (SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        f"JOIN pg_am a ON a.oid = c.relam WHERE i.indrelid = to_regclass({p.add(t.qualified)}) "
        "AND a.amname IN ('hnsw', 'ivfflat'))"
    )


# -- the inventory of a server (`pgvecstore.inventory`: the command line's ``tables`` and its "no such table") ------
def vector_tables() -> Statement:
    """Every table with a column of pgvector's ``vector`` or ``halfvec`` type, one row each (its first such
    column), ordered by schema and table: schema, table, column, dimensions (NULL for a column without a length)
    and PostgreSQL's row estimate (``reltuples``: -1 for a table never vacuumed or analysed). Partitions are left
    out (their parent is listed); no row without the pgvector extension."""
    return Statement(
        "SELECT DISTINCT ON (n.nspname, c.relname) n.nspname, c.relname, a.attname, "
        "NULLIF(a.atttypmod, -1), c.reltuples::bigint "
        "FROM pg_attribute AS a JOIN pg_class AS c ON c.oid = a.attrelid "
        "JOIN pg_namespace AS n ON n.oid = c.relnamespace JOIN pg_type AS ty ON ty.oid = a.atttypid "
        "JOIN pg_extension AS e ON e.extname = 'vector' AND e.extnamespace = ty.typnamespace "
        "WHERE ty.typname IN ('vector', 'halfvec') AND c.relkind IN ('r', 'p') AND NOT c.relispartition "
        "AND a.attnum > 0 AND NOT a.attisdropped AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
        "ORDER BY n.nspname, c.relname, a.attnum"
    )


def count_rows_up_to(schema: str, table: str, limit: int) -> Statement:
    """The rows of any table, counted up to `limit` (so counting never scans a big table to its end)."""
    p = Params()
    qualified = TableRef.plain(schema, table).qualified
    return p.statement(f"SELECT count(*) FROM (SELECT 1 FROM {qualified} LIMIT {p.add(limit)}) AS capped")



def metadata_index_state(t: TableRef) -> Statement:
    """The table's trigger names, index names and the metadata column's statistics target (NULL or -1: the
    default), for the set-up of indexed metadata."""
    p = Params()
    return p.statement(
        "SELECT ARRAY(SELECT tg.tgname::text FROM pg_trigger tg WHERE tg.tgrelid = c.oid AND NOT tg.tgisinternal), "
        "ARRAY(SELECT i.relname::text FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid "
        "WHERE x.indrelid = c.oid), "
        "(SELECT a.attstattarget::int FROM pg_attribute a WHERE a.attrelid = c.oid "
        f"AND a.attname = {p.add(t.columns['metadata'])}) "
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        f"WHERE n.nspname = {p.add(t.schema)} AND c.relname = {p.add(t.name)}"
    )


# -- upgrades of the table's layout (`pgvecstore.upgrade`) ----------------------------------------------------------
def table_owner(t: TableRef) -> Statement:
    """Whether the current role owns the table (is a member of its owner), the owner's name, and whether the
    table has row-level security enabled. No row without the table."""
    p = Params()
    return p.statement(
        "SELECT pg_has_role(c.relowner, 'USAGE'), pg_get_userbyid(c.relowner), c.relrowsecurity "
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        f"WHERE n.nspname = {p.add(t.schema)} AND c.relname = {p.add(t.name)}"
    )


def index_validity(schema: str, name: str) -> Statement:
    """Whether index `name` of `schema` is valid (false: left INVALID by an interrupted concurrent build); no row
    without the index."""
    p = Params()
    return p.statement(
        "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        f"JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = {p.add(schema)} AND c.relname = {p.add(name)}"
    )


def select_grantees(t: TableRef) -> Statement:
    """The roles granted SELECT on the table other than its owner, by name (NULL: PUBLIC)."""
    p = Params()
    return p.statement(
        "SELECT DISTINCT CASE WHEN a.grantee = 0 THEN NULL ELSE pg_get_userbyid(a.grantee) END "
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace, aclexplode(c.relacl) AS a "
        f"WHERE n.nspname = {p.add(t.schema)} AND c.relname = {p.add(t.name)} "
        "AND a.privilege_type = 'SELECT' AND a.grantee <> c.relowner"
    )
