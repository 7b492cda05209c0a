"""DDL of full-text search: the tsvector column, the term statistics and the triggers that keep them (see
docs/hybrid.md, "How the text side works").

- Each row carries its tsvector (`TableRef.text_search_column`), set by a BEFORE row trigger from the content
  whenever it is written or changed. A row's length, for BM25, is its number of distinct lexemes (``length`` of
  the tsvector); a lexeme's count in the row is the number of its positions, read at query time.
- Two tables hold the statistics BM25 needs, per domain (rows without a domain under ``''``): the document
  frequency of each lexeme (`TableRef.text_terms_table`) and the row count and total length
  (`TableRef.text_docs_table`). Statement-level AFTER triggers with transition tables keep them exact and
  transactional: inserts add, deletes subtract, updates move the rows whose content, domain or tsvector changed
  (rows whose tsvector is NULL are not counted). A transaction's first write to a domain locks the domain's
  statistics row until it ends: writers of one domain take turns (writers of different domains do not wait for
  each other), which keeps them free of deadlocks. Counts may go below zero for a while during an upgrade (rows
  deleted before the upgrade's count of them is added, `pgvecstore.upgrade`), so only entries at exactly zero
  are pruned.
- The statistics trigger runs as the table's owner (SECURITY DEFINER, fixed search_path), so roles that may write
  the table need no privilege on the statistics tables; roles that search need SELECT on them.

PostgreSQL takes no bound parameters in DDL: these statements hold only names validated by `StoreConfig` (quoted by
`quote_ident`) and a validated text-search configuration name as a quoted literal.
"""

from __future__ import annotations

from collections.abc import Callable

from pgvecstore.identifiers import TENANT_SETTING, quote_ident, quote_literal, validate_text_search_config
from pgvecstore.sql.table import TableRef


def column_definitions(t: TableRef) -> list[str]:
    """The text-search column, for CREATE TABLE."""
    return [f"{quote_ident(t.text_search_column)} tsvector"]


def add_columns(t: TableRef) -> list[str]:
    """Add the text-search column to an existing table (no rewrite: it starts NULL)."""
    return [f"ALTER TABLE {t.qualified} ADD COLUMN IF NOT EXISTS {column}" for column in column_definitions(t)]


def keep_terms_in_heap(t: TableRef) -> str:
    """The tsvector column's storage MAIN: it stays in the heap row (the content goes to TOAST first), so a text
    search reads one page per candidate, not also a TOAST index and page. Catalog only: it affects rows written
    afterwards. See docs/text-search-scaling.md, "Layout 3"."""
    return f"ALTER TABLE {t.qualified} ALTER COLUMN {quote_ident(t.text_search_column)} SET STORAGE MAIN"


def drop_terms_column(t: TableRef) -> str:
    """Drop the term-frequency column of layout 2 (catalog only: the space is reclaimed as rows are rewritten)."""
    return f"ALTER TABLE {t.qualified} DROP COLUMN IF EXISTS {quote_ident(t.text_terms_column)}"


def lock_writers(t: TableRef) -> str:
    """Make writers of the table wait until the transaction ends (readers go on)."""
    return f"LOCK TABLE {t.qualified} IN SHARE ROW EXCLUSIVE MODE"


def lock_exclusively(t: TableRef) -> str:
    """Make readers and writers of the table wait until the transaction ends (for DDL that needs it anyway)."""
    return f"LOCK TABLE {t.qualified} IN ACCESS EXCLUSIVE MODE"


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


def _lengths_of(t: TableRef, rows: str, sign: int) -> str:
    """(domain key, ±1, ±length) for each row of `rows`; a row's length is its number of distinct lexemes."""
    return (
        f"SELECT coalesce(r.{t.col('domain_id')}, '') AS domain_key, {sign} AS c, "
        f"{sign} * length(r.{quote_ident(t.text_search_column)}) AS l FROM {rows} AS r"
    )


def _apply(t: TableRef, terms: str, lengths: str) -> list[str]:
    """Upsert signed counts into the statistics, in key order. The domains' rows come first and are always
    written (a zero change too): the first write of a transaction to a domain locks that domain's row until
    commit, so writers of one domain take turns and never wait for each other's term rows (no deadlock)."""
    terms_table, docs_table = t.in_schema(t.text_terms_table), t.in_schema(t.text_docs_table)
    return [
        f"INSERT INTO {docs_table} AS s (domain_key, n, total_len) "
        f"SELECT z.domain_key, sum(z.c), sum(z.l) FROM ({lengths}) AS z GROUP BY 1 "
        "ORDER BY 1 ON CONFLICT (domain_key) DO UPDATE "
        "SET n = s.n + excluded.n, total_len = s.total_len + excluded.total_len",
        f"INSERT INTO {terms_table} AS s (lexeme, domain_key, df) "
        f"SELECT z.lexeme, z.domain_key, sum(z.c) FROM ({terms}) AS z GROUP BY 1, 2 HAVING sum(z.c) <> 0 "
        "ORDER BY 1, 2 ON CONFLICT (lexeme, domain_key) DO UPDATE SET df = s.df + excluded.df",
    ]


def _prune(t: TableRef, terms: str) -> list[str]:
    """Drop the statistics entries of `terms` (lexeme, domain_key) whose count is now zero (a missing entry and a
    zero one count the same; a negative one, during an upgrade, must stay)."""
    terms_table, docs_table = t.in_schema(t.text_terms_table), t.in_schema(t.text_docs_table)
    return [
        f"DELETE FROM {terms_table} AS s USING (SELECT DISTINCT z.lexeme, z.domain_key FROM ({terms}) AS z) AS d "
        "WHERE s.lexeme = d.lexeme AND s.domain_key = d.domain_key AND s.df = 0",
        f"DELETE FROM {docs_table} WHERE n = 0 AND total_len = 0",
    ]


def create_row_function(t: TableRef) -> str:
    """The BEFORE row trigger's function: the tsvector of the row's content (the trigger's argument names the
    text-search configuration). An update that keeps the content keeps the tsvector it had (a NULL one, of a row
    written before the trigger existed, is computed)."""
    tsv, content = quote_ident(t.text_search_column), t.col("content")
    return (
        f"CREATE OR REPLACE FUNCTION {t.in_schema(t.text_object('row'))}() RETURNS trigger LANGUAGE plpgsql "
        "AS $pgvecstore$\nBEGIN\n"
        f"  IF TG_OP = 'UPDATE' AND NEW.{content} IS NOT DISTINCT FROM OLD.{content} AND OLD.{tsv} IS NOT NULL THEN\n"
        f"    NEW.{tsv} := OLD.{tsv};\n  ELSE\n"
        f"    NEW.{tsv} := to_tsvector(TG_ARGV[0]::regconfig, coalesce(NEW.{content}, ''));\n  END IF;\n"
        "  RETURN NEW;\nEND\n$pgvecstore$"
    )


def create_statistics_function(t: TableRef) -> str:
    """The statement-level AFTER trigger's function that keeps the statistics (see the module docstring): inserts
    add the rows, deletes subtract them, updates move the rows whose content, domain or tsvector changed; rows
    whose tsvector is NULL are not counted."""
    tsv = quote_ident(t.text_search_column)
    return statistics_function(t, tsv, f"n.{tsv} IS DISTINCT FROM o.{tsv}", _lengths_of)


LengthsOf = Callable[[TableRef, str, int], str]


def statistics_function(t: TableRef, counted: str, also_moved: str, lengths_of: LengthsOf) -> str:
    """The statistics trigger's function for rows counted while column `counted` (quoted) is not NULL, updates
    moving the rows whose content, domain or `also_moved` (a condition on old ``o`` and new ``n``) changed, and
    row lengths by `lengths_of` (the SELECT of (domain key, ±1, ±length) of a set of rows)."""
    id_col, content, domain = t.col("id"), t.col("content"), t.col("domain_id")
    moved = f"n.{content} IS DISTINCT FROM o.{content} OR n.{domain} IS DISTINCT FROM o.{domain} OR {also_moved}"
    changed = (
        f"(SELECT o.* FROM old_rows AS o LEFT JOIN new_rows AS n ON {t.same_row('n', 'o')} "
        f"WHERE o.{counted} IS NOT NULL AND (n.{id_col} IS NULL OR {moved}))"
    )
    changed_new = (
        f"(SELECT n.* FROM new_rows AS n LEFT JOIN old_rows AS o ON {t.same_row('o', 'n')} "
        f"WHERE n.{counted} IS NOT NULL AND (o.{id_col} IS NULL OR {moved}))"
    )
    counted_new = f"(SELECT * FROM new_rows WHERE {counted} IS NOT NULL)"
    counted_old = f"(SELECT * FROM old_rows WHERE {counted} IS NOT NULL)"
    inserted = _apply(t, _terms_of(t, counted_new, 1), lengths_of(t, counted_new, 1))
    deleted = _apply(t, _terms_of(t, counted_old, -1), lengths_of(t, counted_old, -1))
    deleted += _prune(t, _terms_of(t, counted_old, -1))
    updated = _apply(
        t,
        f"{_terms_of(t, changed_new, 1)} UNION ALL {_terms_of(t, changed, -1)}",
        f"{lengths_of(t, changed_new, 1)} UNION ALL {lengths_of(t, changed, -1)}",
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
    """Set the tsvector of rows written before the triggers existed (the row trigger computes a NULL one)."""
    tsv = quote_ident(t.text_search_column)
    return f"UPDATE {t.qualified} SET {t.col('content')} = {t.col('content')} WHERE {tsv} IS NULL"


def _counted(t: TableRef, rows: str) -> str:
    """The rows of `rows` that the statistics count (those with a tsvector)."""
    return f"(SELECT * FROM {rows} WHERE {quote_ident(t.text_search_column)} IS NOT NULL)"


def term_counts(t: TableRef, rows: str) -> str:
    """SELECT of (lexeme, domain_key, df) over the counted rows of `rows` (a table, or a subquery in parentheses)."""
    terms = _terms_of(t, _counted(t, rows), 1)
    return f"SELECT z.lexeme, z.domain_key, sum(z.c) AS df FROM ({terms}) AS z GROUP BY 1, 2"


def domain_counts(t: TableRef, rows: str) -> str:
    """SELECT of (domain_key, n, total_len) over the counted rows of `rows`."""
    return (
        f"SELECT z.domain_key, sum(z.c) AS n, sum(z.l) AS total_len FROM ({_lengths_of(t, _counted(t, rows), 1)}) "
        "AS z GROUP BY 1"
    )


def rebuild_statistics(t: TableRef) -> list[str]:
    """Count the statistics again from every row (used when the triggers are first added to a table with rows,
    while writers wait)."""
    terms_table, docs_table = t.in_schema(t.text_terms_table), t.in_schema(t.text_docs_table)
    return [
        f"DELETE FROM {terms_table}",
        f"DELETE FROM {docs_table}",
        f"INSERT INTO {terms_table} (lexeme, domain_key, df) {term_counts(t, t.qualified)}",
        f"INSERT INTO {docs_table} (domain_key, n, total_len) {domain_counts(t, t.qualified)}",
    ]


def add_statistics(t: TableRef, terms: str, docs: str) -> list[str]:
    """Add counts to the statistics: `terms` yields (lexeme, domain_key, df), `docs` (domain_key, n, total_len).
    As the statistics trigger adds a statement's rows (`_apply`, `_prune`): domains first, then terms, in key
    order; entries that reach zero are dropped."""
    as_terms = f"SELECT d.lexeme, d.domain_key, d.df AS c FROM ({terms}) AS d"
    as_lengths = f"SELECT d.domain_key, d.n AS c, d.total_len AS l FROM ({docs}) AS d"
    return [*_apply(t, as_terms, as_lengths), *_prune(t, as_terms)]
