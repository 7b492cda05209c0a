"""DDL of full-text search: the tsvector and term-frequency columns, the term statistics and the triggers that keep
them (see docs/hybrid.md, "How the text side works").

- Each row carries its tsvector (`TableRef.text_search_column`) and its term frequencies as a pgvector sparsevec
  (`TableRef.text_terms_column`: dimension `hash(lexeme)`, value the lexeme's count in the row), both set by a
  BEFORE row trigger from the content whenever it is written or changed.
- Two tables hold the statistics BM25 needs, per domain (rows without a domain under ``''``): the document
  frequency of each lexeme (`TableRef.text_terms_table`) and the row count and total length
  (`TableRef.text_docs_table`). Statement-level AFTER triggers with transition tables keep them exact and
  transactional: inserts add, deletes subtract, updates move the rows whose content or domain changed (rows whose
  term frequencies are NULL, not filled yet by an upgrade, are not counted: `create_statistics_function`). A
  transaction's first write to a domain locks the domain's statistics row until it ends: writers of one domain
  take turns (writers of different domains do not wait for each other), which keeps them free of deadlocks.
- The statistics trigger runs as the table's owner (SECURITY DEFINER, fixed search_path), so roles that may write
  the table need no privilege on the statistics tables; roles that search need SELECT on them.

PostgreSQL takes no bound parameters in DDL: these statements hold only names validated by `StoreConfig` (quoted by
`quote_ident`), integers rendered by `int_literal` and a validated text-search configuration name as a quoted
literal.
"""

from __future__ import annotations

from pgvecstore.identifiers import TENANT_SETTING, int_literal, quote_ident, quote_literal, validate_text_search_config
from pgvecstore.sql.table import TableRef

# Term ids are (hashtext(lexeme) & (TERM_DIMENSIONS - 1)) + 1: the dimension of the term-frequency sparsevecs.
TERM_DIMENSIONS = 2**29
# pgvector stores at most 16,000 non-zero entries in a sparsevec: a row with more distinct lexemes keeps its most
# frequent ones.
MAX_TERMS_PER_ROW = 16_000
# The key of rows without a domain in the statistics tables (a domain_id is never empty).
NO_DOMAIN_KEY = ""


def sparsevec_type(vector_schema: str) -> str:
    """pgvector's sparse vector type of the term frequencies, qualified by the extension's schema."""
    return f"{quote_ident(vector_schema)}.sparsevec({int_literal(TERM_DIMENSIONS, 'term dimensions')})"


def term_id_sql(lexeme: str) -> str:
    """The SQL expression of a lexeme's term id (its dimension in the term-frequency vectors)."""
    return f"((hashtext({lexeme}) & {int_literal(TERM_DIMENSIONS - 1, 'term mask')}) + 1)"


# The text of a term-frequency vector without terms.
EMPTY_TERMS = f"{{}}/{TERM_DIMENSIONS}"


def empty_terms_literal() -> str:
    """`EMPTY_TERMS` as an SQL literal (for DDL, which takes no parameters)."""
    return quote_literal(EMPTY_TERMS)


def column_definitions(t: TableRef, vector_schema: str) -> list[str]:
    """The two text-search columns, for CREATE TABLE."""
    return [
        f"{quote_ident(t.text_search_column)} tsvector",
        f"{quote_ident(t.text_terms_column)} {sparsevec_type(vector_schema)}",
    ]


def add_columns(t: TableRef, vector_schema: str) -> list[str]:
    """Add the text-search columns to an existing table (no rewrite: both start NULL)."""
    columns = column_definitions(t, vector_schema)
    return [f"ALTER TABLE {t.qualified} ADD COLUMN IF NOT EXISTS {column}" for column in columns]


def lock_writers(t: TableRef) -> str:
    """Make writers of the table wait until the transaction ends (readers go on)."""
    return f"LOCK TABLE {t.qualified} IN SHARE ROW EXCLUSIVE MODE"


def drop_generation(t: TableRef) -> str:
    """Turn a generated tsvector column (the layout of pgvecstore 0.1) into a plain one that keeps its values."""
    return f"ALTER TABLE {t.qualified} ALTER COLUMN {quote_ident(t.text_search_column)} DROP EXPRESSION IF EXISTS"


def create_index(t: TableRef, *, concurrently: bool = False) -> str:
    """The text-search GIN index; `concurrently`: built while reads and writes go on (outside a transaction)."""
    how = "CONCURRENTLY " if concurrently else ""
    return (
        f"CREATE INDEX {how}IF NOT EXISTS {quote_ident(t.text_search_index_name)} "
        f"ON {t.qualified} USING gin ({quote_ident(t.text_search_column)})"
    )


def create_statistics_tables(t: TableRef) -> list[str]:
    """The document frequencies per (lexeme, domain) and the row count and total length per domain."""
    return [
        f"CREATE TABLE IF NOT EXISTS {t.in_schema(t.text_terms_table)} (lexeme text COLLATE \"C\" NOT NULL, "
        "domain_key text COLLATE \"C\" NOT NULL, df bigint NOT NULL, PRIMARY KEY (lexeme, domain_key)) "
        "WITH (fillfactor = 50)",
        f"CREATE TABLE IF NOT EXISTS {t.in_schema(t.text_docs_table)} (domain_key text COLLATE \"C\" PRIMARY KEY, "
        "n bigint NOT NULL, total_len bigint NOT NULL) WITH (fillfactor = 50)",
    ]


def statistics_row_security(t: TableRef) -> list[str]:
    """Row-level security on the statistics tables, as on the table: a tenant reads its own domain's statistics."""
    check = f"domain_key = current_setting('{TENANT_SETTING}', true)"
    statements = []
    for table in (t.text_terms_table, t.text_docs_table):
        statements += [
            f"ALTER TABLE {t.in_schema(table)} ENABLE ROW LEVEL SECURITY",
            f"DROP POLICY IF EXISTS {quote_ident(t.policy_name)} ON {t.in_schema(table)}",
            f"CREATE POLICY {quote_ident(t.policy_name)} ON {t.in_schema(table)} AS PERMISSIVE FOR SELECT "
            f"TO PUBLIC USING ({check})",
        ]
    return statements


def _terms_of(t: TableRef, rows: str, sign: int) -> str:
    """(lexeme, domain key, ±1) for each distinct lexeme of each row of `rows`."""
    return (
        f"SELECT u.lexeme COLLATE \"C\" AS lexeme, coalesce(r.{t.col('domain_id')}, '') AS domain_key, {sign} AS c "
        f"FROM {rows} AS r, unnest(tsvector_to_array(r.{quote_ident(t.text_search_column)})) AS u(lexeme)"
    )


def _lengths_of(t: TableRef, rows: str, sign: int, vector_schema: str) -> str:
    """(domain key, ±1, ±length) for each row of `rows`; a row's length is the sum of its term frequencies."""
    vs = quote_ident(vector_schema)
    length = (
        f"coalesce({vs}.l1_distance(r.{quote_ident(t.text_terms_column)}, "
        f"{empty_terms_literal()}::{sparsevec_type(vector_schema)}), 0)"
    )
    return (
        f"SELECT coalesce(r.{t.col('domain_id')}, '') AS domain_key, {sign} AS c, {sign} * {length} AS l "
        f"FROM {rows} AS r"
    )


def _apply(t: TableRef, terms: str, lengths: str) -> list[str]:
    """Upsert signed counts into the statistics, in key order. The domains' rows come first and are always
    written (a zero change too): the first write of a transaction to a domain locks that domain's row until
    commit, so writers of one domain take turns and never wait for each other's term rows (no deadlock)."""
    terms_table, docs_table = t.in_schema(t.text_terms_table), t.in_schema(t.text_docs_table)
    return [
        f"INSERT INTO {docs_table} AS s (domain_key, n, total_len) "
        f"SELECT z.domain_key, sum(z.c), round(sum(z.l))::bigint FROM ({lengths}) AS z GROUP BY 1 "
        "ORDER BY 1 ON CONFLICT (domain_key) DO UPDATE "
        "SET n = s.n + excluded.n, total_len = s.total_len + excluded.total_len",
        f"INSERT INTO {terms_table} AS s (lexeme, domain_key, df) "
        f"SELECT z.lexeme, z.domain_key, sum(z.c) FROM ({terms}) AS z GROUP BY 1, 2 HAVING sum(z.c) <> 0 "
        "ORDER BY 1, 2 ON CONFLICT (lexeme, domain_key) DO UPDATE SET df = s.df + excluded.df",
    ]


def _prune(t: TableRef, terms: str) -> list[str]:
    """Drop the statistics entries of `terms` (lexeme, domain_key) whose count is now zero."""
    terms_table, docs_table = t.in_schema(t.text_terms_table), t.in_schema(t.text_docs_table)
    return [
        f"DELETE FROM {terms_table} AS s USING (SELECT DISTINCT z.lexeme, z.domain_key FROM ({terms}) AS z) AS d "
        "WHERE s.lexeme = d.lexeme AND s.domain_key = d.domain_key AND s.df <= 0",
        f"DELETE FROM {docs_table} WHERE n <= 0",
    ]


def create_row_function(t: TableRef, vector_schema: str) -> str:
    """The BEFORE row trigger's function: the tsvector and term frequencies of the row's content (the trigger's
    argument names the text-search configuration). An update that keeps the content keeps both, unless it sets
    the term frequencies to NULL, which computes both again."""
    tsv, tf, content = quote_ident(t.text_search_column), quote_ident(t.text_terms_column), t.col("content")
    dims = int_literal(TERM_DIMENSIONS, "term dimensions")

    def frequencies(limit: str) -> str:
        return (
            f"SELECT coalesce('{{' || string_agg(z.i::text || ':' || z.n::text, ',') || '}}/{dims}', "
            f"{empty_terms_literal()})::{sparsevec_type(vector_schema)} INTO NEW.{tf} "
            f"FROM (SELECT {term_id_sql('u.lexeme')} AS i, sum(greatest(cardinality(u.positions), 1)) AS n "
            f"FROM unnest(NEW.{tsv}) AS u GROUP BY 1{limit}) AS z;"
        )

    most = int_literal(MAX_TERMS_PER_ROW, "terms per row")
    return (
        f"CREATE OR REPLACE FUNCTION {t.in_schema(t.text_object('row'))}() RETURNS trigger LANGUAGE plpgsql "
        "AS $pgvecstore$\nBEGIN\n"
        f"  IF TG_OP = 'UPDATE' AND NEW.{content} IS NOT DISTINCT FROM OLD.{content} AND NEW.{tf} IS NOT NULL THEN\n"
        f"    NEW.{tsv} := OLD.{tsv};\n    NEW.{tf} := OLD.{tf};\n    RETURN NEW;\n  END IF;\n"
        f"  NEW.{tsv} := to_tsvector(TG_ARGV[0]::regconfig, coalesce(NEW.{content}, ''));\n"
        f"  IF length(NEW.{tsv}) <= {most} THEN\n    {frequencies('')}\n"
        f"  ELSE\n    {frequencies(f' ORDER BY 2 DESC, 1 LIMIT {most}')}\n  END IF;\n"
        "  RETURN NEW;\nEND\n$pgvecstore$"
    )


def create_statistics_function(t: TableRef, vector_schema: str) -> str:
    """The statement-level AFTER trigger's function that keeps the statistics (see the module docstring).

    A row is counted while its term frequencies are set: rows whose term-frequency column is NULL (rows of an
    older layout not yet filled by `pgvecstore.upgrade`) are not counted, so deletes and updates subtract only
    counted old rows, and updates add every new row whose content, domain or term frequencies changed (a row
    filled for the first time, or whose term frequencies were computed again). With every row counted this is
    the rule of inserts add, deletes subtract, updates move changed rows."""
    id_col, content, domain = t.col("id"), t.col("content"), t.col("domain_id")
    tf = quote_ident(t.text_terms_column)
    differs = f"OPERATOR({quote_ident(vector_schema)}.<>)"  # sparsevec's operator (search_path is pg_catalog)
    moved = (
        f"n.{content} IS DISTINCT FROM o.{content} OR n.{domain} IS DISTINCT FROM o.{domain} "
        f"OR o.{tf} IS NULL OR n.{tf} {differs} o.{tf}"
    )
    changed = (
        f"(SELECT o.* FROM old_rows AS o LEFT JOIN new_rows AS n ON {t.same_row('n', 'o')} "
        f"WHERE o.{tf} IS NOT NULL AND (n.{id_col} IS NULL OR {moved}))"
    )
    changed_new = (
        f"(SELECT n.* FROM new_rows AS n LEFT JOIN old_rows AS o ON {t.same_row('o', 'n')} "
        f"WHERE n.{tf} IS NOT NULL AND (o.{id_col} IS NULL OR {moved}))"
    )
    counted_new = f"(SELECT * FROM new_rows WHERE {tf} IS NOT NULL)"
    counted_old = f"(SELECT * FROM old_rows WHERE {tf} IS NOT NULL)"
    inserted = _apply(t, _terms_of(t, counted_new, 1), _lengths_of(t, counted_new, 1, vector_schema))
    deleted = _apply(t, _terms_of(t, counted_old, -1), _lengths_of(t, counted_old, -1, vector_schema))
    deleted += _prune(t, _terms_of(t, counted_old, -1))
    updated = _apply(
        t,
        f"{_terms_of(t, changed_new, 1)} UNION ALL {_terms_of(t, changed, -1)}",
        f"{_lengths_of(t, changed_new, 1, vector_schema)} UNION ALL {_lengths_of(t, changed, -1, vector_schema)}",
    )
    updated += _prune(t, _terms_of(t, changed, -1))

    def block(statements: list[str]) -> str:
        return "".join(f"    {s};\n" for s in statements)

    terms_table, docs_table = t.in_schema(t.text_terms_table), t.in_schema(t.text_docs_table)
    return (
        f"CREATE OR REPLACE FUNCTION {t.in_schema(t.text_object('stats'))}() RETURNS trigger LANGUAGE plpgsql "
        "SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $pgvecstore$\nBEGIN\n"
        f"  IF TG_OP = 'INSERT' THEN\n{block(inserted)}"
        f"  ELSIF TG_OP = 'DELETE' THEN\n{block(deleted)}"
        f"  ELSIF TG_OP = 'UPDATE' THEN\n{block(updated)}"
        f"  ELSE\n{block([f'DELETE FROM {terms_table}', f'DELETE FROM {docs_table}'])}"
        "  END IF;\n  RETURN NULL;\nEND\n$pgvecstore$"
    )


def create_triggers(t: TableRef, config: str) -> list[str]:
    """The row trigger (with the configuration as its argument) and the four statistics triggers."""
    literal = quote_literal(validate_text_search_config(config, "text_search_config"))
    row, stats = t.in_schema(t.text_object("row")), t.in_schema(t.text_object("stats"))
    return [
        f"CREATE OR REPLACE TRIGGER {quote_ident(t.text_object('row'))} BEFORE INSERT OR UPDATE ON {t.qualified} "
        f"FOR EACH ROW EXECUTE FUNCTION {row}({literal})",
        f"CREATE OR REPLACE TRIGGER {quote_ident(t.text_object('ins'))} AFTER INSERT ON {t.qualified} "
        f"REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION {stats}()",
        f"CREATE OR REPLACE TRIGGER {quote_ident(t.text_object('upd'))} AFTER UPDATE ON {t.qualified} "
        f"REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION {stats}()",
        f"CREATE OR REPLACE TRIGGER {quote_ident(t.text_object('del'))} AFTER DELETE ON {t.qualified} "
        f"REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION {stats}()",
        f"CREATE OR REPLACE TRIGGER {quote_ident(t.text_object('trunc'))} AFTER TRUNCATE ON {t.qualified} "
        f"FOR EACH STATEMENT EXECUTE FUNCTION {stats}()",
    ]


def fill_rows(t: TableRef) -> str:
    """Set the text-search columns of rows written before the triggers existed (the row trigger computes them when
    the term frequencies are NULL)."""
    tf = quote_ident(t.text_terms_column)
    return f"UPDATE {t.qualified} SET {t.col('content')} = {t.col('content')} WHERE {tf} IS NULL"


def rebuild_statistics(t: TableRef, vector_schema: str) -> list[str]:
    """Count the statistics again from every row (used when the triggers are first added to a table with rows)."""
    terms_table, docs_table = t.in_schema(t.text_terms_table), t.in_schema(t.text_docs_table)
    return [
        f"DELETE FROM {terms_table}",
        f"DELETE FROM {docs_table}",
        f"INSERT INTO {terms_table} (lexeme, domain_key, df) SELECT z.lexeme, z.domain_key, sum(z.c) "
        f"FROM ({_terms_of(t, t.qualified, 1)}) AS z GROUP BY 1, 2",
        f"INSERT INTO {docs_table} (domain_key, n, total_len) SELECT z.domain_key, sum(z.c), round(sum(z.l))::bigint "
        f"FROM ({_lengths_of(t, t.qualified, 1, vector_schema)}) AS z GROUP BY 1",
    ]
