"""Statements of the online layout upgrade (`pgvecstore.upgrade`): the table's layout record, the batched back-fill
of the term frequencies, their recomputation, and the text-search index built concurrently.

DDL takes no bound parameters: these statements hold only names validated by `StoreConfig` (quoted by
`quote_ident`), role names read from the catalog (quoted by `quote_ident`) and the comment of `layout.comment_text`
(built from integers) as a quoted literal. Batch sizes and ids are bound parameters.
"""

from __future__ import annotations

from pgvecstore.identifiers import quote_ident, quote_literal
from pgvecstore.layout import comment_text
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


def rows_left(t: TableRef) -> Statement:
    """The rows whose term frequencies are not set yet (not counted in the statistics)."""
    return Statement(f"SELECT count(*) FROM {t.qualified} WHERE {quote_ident(t.text_terms_column)} IS NULL")


def rows_left_up_to(t: TableRef, limit: int) -> Statement:
    """`rows_left`, counted up to `limit` (an error message's count need not scan a big table to its end)."""
    p = Params()
    return p.statement(
        f"SELECT count(*) FROM (SELECT 1 FROM {t.qualified} WHERE {quote_ident(t.text_terms_column)} IS NULL "
        f"LIMIT {p.add(limit)}) AS capped"
    )


def fill_batch(t: TableRef, size: int, after: object | None) -> Statement:
    """Fill the next `size` rows (in id order, after id `after` when given) whose term frequencies are NULL, skipping
    rows another transaction has locked: the row trigger computes their tsvector and term frequencies and the
    statistics trigger counts them. One row: the number of rows filled and the last id."""
    return _batch(t, size, after, where_null=True, assign=f"{t.col('content')} = r.{t.col('content')}",
                  lock="FOR UPDATE SKIP LOCKED")


def recompute_batch(t: TableRef, size: int, after: object | None) -> Statement:
    """Compute the term frequencies of the next `size` rows (in id order, after id `after`) again: setting them
    NULL makes the row trigger compute them, and the statistics trigger moves the rows whose terms changed.
    One row: the number of rows done and the last id."""
    return _batch(t, size, after, where_null=False, assign=f"{quote_ident(t.text_terms_column)} = NULL",
                  lock="FOR UPDATE")


def _batch(t: TableRef, size: int, after: object | None, *, where_null: bool, assign: str, lock: str) -> Statement:
    p = Params()
    id_col = t.col("id")
    conditions = []
    if after is not None:
        conditions.append(f"{id_col} > {p.add(after)}")
    if where_null:
        conditions.append(f"{quote_ident(t.text_terms_column)} IS NULL")
    where = f"WHERE {' AND '.join(conditions)} " if conditions else ""
    return p.statement(
        f"WITH b AS (SELECT {id_col} FROM {t.qualified} {where}ORDER BY {id_col} LIMIT {p.add(size)} {lock}), "
        f"u AS (UPDATE {t.qualified} AS r SET {assign} FROM b WHERE r.{id_col} = b.{id_col} RETURNING r.{id_col}) "
        f"SELECT (SELECT count(*) FROM u), (SELECT {id_col} FROM u ORDER BY {id_col} DESC LIMIT 1)"
    )


def clear_statistics(t: TableRef) -> list[str]:
    """Empty the statistics tables (left by a dropped table of the same name) before any row is counted."""
    return [f"DELETE FROM {t.in_schema(t.text_terms_table)}", f"DELETE FROM {t.in_schema(t.text_docs_table)}"]


def grant_select(t: TableRef, table: str, role: str | None) -> str:
    """Give `role` (None: PUBLIC) SELECT on `table` of the table's schema (a statistics table)."""
    grantee = "PUBLIC" if role is None else quote_ident(role)
    return f"GRANT SELECT ON {t.in_schema(table)} TO {grantee}"
