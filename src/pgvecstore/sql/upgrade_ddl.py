"""Statements of the online layout upgrade (`pgvecstore.upgrade`): the table's layout record, the snapshot the
count of the statistics reads, the count itself (step by step in id order, into temporary tables), and adding it.

DDL takes no bound parameters: these statements hold only names validated by `StoreConfig` (quoted by
`quote_ident`), role names read from the catalog (quoted by `quote_ident`) and the comment of `layout.comment_text`
(built from integers) as a quoted literal. Step sizes and ids are bound parameters; the snapshot's
name, which the server gives, is a quoted literal.
"""

from __future__ import annotations

from pgvecstore.identifiers import quote_ident, quote_literal
from pgvecstore.layout import comment_text
from pgvecstore.sql import text_ddl
from pgvecstore.sql.params import Params, Statement
from pgvecstore.sql.table import TableRef


def set_comment(t: TableRef, version: int, upgrading_to: int | None = None) -> str:
    """Record the table's layout in its comment (the store owns the table's comment)."""
    return f"COMMENT ON TABLE {t.qualified} IS {quote_literal(comment_text(version, upgrading_to))}"


def session_lock(t: TableRef) -> Statement:
    """The session-level advisory lock that lets one upgrade of the table run at a time (held until the session
    ends)."""
    p = Params()
    return p.statement(f"SELECT pg_advisory_lock(hashtextextended({p.add(t.lock_key + ':upgrade')}, 0))")


# The temporary tables the count goes into (on the counting connection, for its session).
COUNTED_TERMS = "pg_temp.pgvecstore_counted_terms"
COUNTED_DOCS = "pg_temp.pgvecstore_counted_docs"
EXPORT_SNAPSHOT = Statement("SELECT pg_export_snapshot()")


def import_snapshot(name: str) -> Statement:
    """Make the counting transaction (REPEATABLE READ; this must be its first statement) read the rows as the
    upgrade's first transaction saw them. The snapshot's name comes from the server."""
    return Statement(f"SET TRANSACTION SNAPSHOT {quote_literal(name)}")


def create_count_tables() -> list[str]:
    """Empty temporary tables for the count (a table created in ``pg_temp`` is temporary; left from an interrupted
    count on the same session: emptied)."""
    return [
        f"CREATE TABLE IF NOT EXISTS {COUNTED_TERMS} (lexeme text COLLATE \"C\", "
        "domain_key text COLLATE \"C\", df bigint NOT NULL, PRIMARY KEY (lexeme, domain_key))",
        f"CREATE TABLE IF NOT EXISTS {COUNTED_DOCS} (domain_key text COLLATE \"C\" "
        "PRIMARY KEY, n bigint NOT NULL, total_len bigint NOT NULL)",
        f"TRUNCATE {COUNTED_TERMS}, {COUNTED_DOCS}",
    ]


def drop_count_tables() -> str:
    """Drop the count's temporary tables once it has been added."""
    return f"DROP TABLE IF EXISTS {COUNTED_TERMS}, {COUNTED_DOCS}"


def count_rows(t: TableRef) -> Statement:
    """The rows the count will read (for its progress)."""
    return Statement(f"SELECT count(*) FROM {t.qualified}")


def next_step(t: TableRef, size: int, after: object | None) -> Statement:
    """The next `size` rows in id order (after id `after` when given): one row, their number and the last id."""
    p = Params()
    id_col = t.col("id")
    where = f"WHERE {id_col} > {p.add(after)} " if after is not None else ""
    return p.statement(
        f"WITH s AS MATERIALIZED (SELECT {id_col} AS id FROM {t.qualified} {where}ORDER BY {id_col} "
        f"LIMIT {p.add(size)}) SELECT (SELECT count(*) FROM s), (SELECT id FROM s ORDER BY id DESC LIMIT 1)"
    )


def count_step(t: TableRef, after: object | None, last: object) -> list[Statement]:
    """Add the statistics of the rows with ids in (`after`, `last`] to the count."""
    p = Params()
    id_col = t.col("id")
    bounds = f"{id_col} <= {p.add(last)}" + (f" AND {id_col} > {p.add(after)}" if after is not None else "")
    rows = f"(SELECT * FROM {t.qualified} WHERE {bounds})"
    terms = p.statement(
        f"INSERT INTO {COUNTED_TERMS} AS s (lexeme, domain_key, df) {text_ddl.term_counts(t, rows)} "
        "ON CONFLICT (lexeme, domain_key) DO UPDATE SET df = s.df + excluded.df"
    )
    docs = Statement(
        f"INSERT INTO {COUNTED_DOCS} AS s (domain_key, n, total_len) {text_ddl.domain_counts(t, rows)} "
        "ON CONFLICT (domain_key) DO UPDATE SET n = s.n + excluded.n, total_len = s.total_len + excluded.total_len",
        terms.args,
    )
    return [terms, docs]


def add_count(t: TableRef) -> list[str]:
    """Add the count to the statistics, which hold the changes writers made since the snapshot."""
    return text_ddl.add_statistics(t, f"SELECT * FROM {COUNTED_TERMS}", f"SELECT * FROM {COUNTED_DOCS}")


def clear_statistics(t: TableRef) -> list[str]:
    """Empty the statistics tables (of an older layout, or left by a dropped table of the same name) before the
    triggers and the count fill them."""
    return [f"DELETE FROM {t.in_schema(t.text_terms_table)}", f"DELETE FROM {t.in_schema(t.text_docs_table)}"]


def grant_select(t: TableRef, table: str, role: str | None) -> str:
    """Give `role` (None: PUBLIC) SELECT on `table` of the table's schema (a statistics table)."""
    grantee = "PUBLIC" if role is None else quote_ident(role)
    return f"GRANT SELECT ON {t.in_schema(table)} TO {grantee}"
