"""Reads and writes of rows: vector search, rows by id or filter, counts, deletes, metadata updates, upserts.

Each builder compiles the store's scope (its ``domain_id``) and the user's filter itself, with the same `Params`
as the rest of the statement, and returns a `Statement`. Rows come back as ``id``, then the vector when asked
for, then ``metadata, content, document_id, chunk_index`` when asked for (`select_columns`), then any computed
column; `pgvecstore.results` reads them by that layout.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any, NamedTuple

from pgvecstore.compact import HAMMING_OPERATOR, check_vector_type
from pgvecstore.identifiers import WRITE_COLUMNS, quote_ident, quote_literal
from pgvecstore.metric import Metric
from pgvecstore.sql.ddl import quantized
from pgvecstore.sql.filters import compile_filter
from pgvecstore.sql.params import Params, Statement
from pgvecstore.sql.table import TableRef

Filter = Mapping[str, Any] | None


class Where(NamedTuple):
    """A WHERE clause and whether it restricts anything (False for ``WHERE TRUE``)."""

    sql: str
    restricts: bool


def scope(t: TableRef, p: Params, domain_id: str | None, filter: Filter = None, alias: str = "") -> Where:
    """The WHERE clause of the store's domain and a user filter, their values bound in `p`."""
    prefix = f"{alias}." if alias else ""
    conditions = []
    if domain_id is not None:
        conditions.append(f"{prefix}{t.col('domain_id')} = {p.add(domain_id, 'text')}")
    compiled = compile_filter(filter, t, p, alias)
    if compiled != "TRUE":
        conditions.append(f"({compiled})")
    if not conditions:
        return Where("WHERE TRUE", False)
    return Where("WHERE " + " AND ".join(conditions), True)


def select_columns(t: TableRef, *, vectors: bool, metadata: bool, alias: str = "") -> str:
    """Columns read back for a row: id, then optionally the vector, then the metadata and document columns."""
    a = f"{alias}." if alias else ""
    cols = [f"{a}{t.col('id')}::text"]
    if vectors:
        cols.append(f"{a}{t.col('embedding')}")
    if metadata:  # metadata as JSON text: json.loads is faster than asyncpg's jsonb decoding
        cols.append(f"{a}{t.col('metadata')}::text")
        cols += [f"{a}{t.col(c)}" for c in ("content", "document_id", "chunk_index")]
    return ", ".join(cols)


def vector_search(
    t: TableRef, metric: Metric, domain_id: str | None, filter: Filter, query: Any, k: int,
    *, metadata: bool, vectors: bool, exact: bool = False,
) -> tuple[Statement, bool]:
    """The `k` nearest rows to `query`, nearest first, with their distance last (`vector_searches`: the ORDER BY
    the vector index serves, or with `exact` the exact scan's). Slots ``query`` and ``k``. Also whether the WHERE
    clause restricts rows."""
    statement, exact_sql, restricts = vector_searches(t, metric, domain_id, filter, query, k,
                                                      metadata=metadata, vectors=vectors)
    return (replace(statement, sql=exact_sql) if exact else statement), restricts


def vector_searches(
    t: TableRef, metric: Metric, domain_id: str | None, filter: Filter, query: Any, k: int,
    *, metadata: bool, vectors: bool,
) -> tuple[Statement, str, bool]:
    """The `k` nearest rows to `query`, nearest first, with their distance last, as two texts over one compile of
    the filter (the same values and slots, ``query`` and ``k``): the statement, whose ORDER BY matches the vector
    index's operator class, and the text of its exact twin, whose ORDER BY no vector index serves (the distance
    ``+ 0``, computed once per row as the selected column), so that PostgreSQL reads the matching rows by any other
    index (a covering one among them) and sorts them. Also whether the WHERE clause restricts rows.

    A restricted search, and every exact twin, find the ids first and read the other columns of those `k` rows
    only: on the exact path every row scanned goes through the sort, and PostgreSQL computes the selected columns
    (the metadata's text among them) for each before sorting (about a quarter of a 1% filter's time at 1,000,000
    rows, docs/selective-filters.md; half an unfiltered scan's, docs/vector-storage.md). An unrestricted search
    through the index reads its `k` rows straight (the index hands on no more)."""
    p = Params()
    where = scope(t, p, domain_id, filter)
    emb, op = t.col("embedding"), metric.operator
    q = p.named("query", query)
    limit = p.named("k", k)
    by_index = f"{emb} {op} {q}"
    # The exact scan orders by the selected column itself (a second expression would compute each distance twice).
    sql = _nearest_sql(t, where, by_index, by_index, limit, metadata=metadata, vectors=vectors,
                       ids_first=where.restricts)
    exact_sql = _nearest_sql(t, where, f"({by_index}) + 0", "distance", limit, metadata=metadata, vectors=vectors,
                             ids_first=True)
    return p.statement(sql), exact_sql, where.restricts


def _nearest_sql(
    t: TableRef, where: Where, distance: str, order: str, limit: str, *, metadata: bool, vectors: bool,
    ids_first: bool,
) -> str:
    """A nearest-rows query selecting `distance` and ordered by `order`; with `ids_first`, the rows' ids are found
    first and their other columns read after (see `vector_searches`)."""
    if not ids_first:
        cols = select_columns(t, vectors=vectors, metadata=metadata)
        return f"SELECT {cols}, {distance} AS distance FROM {t.qualified} {where.sql} ORDER BY {order} LIMIT {limit}"
    nearest = (
        f"SELECT {t.carry_key()}, {distance} AS distance FROM {t.qualified} {where.sql} "
        f"ORDER BY {order} LIMIT {limit}"
    )
    cols = select_columns(t, vectors=vectors, metadata=metadata, alias="t")
    return (
        f"SELECT {cols}, n.distance FROM ({nearest}) AS n JOIN {t.qualified} AS t ON {t.is_carried('t', 'n')} "
        "ORDER BY n.distance"
    )


class Rerank(NamedTuple):
    """A binary-quantized search: the column's type and dimensions (the index's ``bit(d)``) and how many
    candidates the index scan hands to the re-ranking."""

    vector_type: str
    dimensions: int
    candidates: int


def binary_candidates(t: TableRef, where: str, query: str, rerank: Rerank, limit: str, alias: str = "") -> str:
    """The rows nearest to `query` by the Hamming distance of their binary-quantized vectors, in the form the
    binary index serves (``ORDER BY binary_quantize(embedding)::bit(d) <~> binary_quantize(query) LIMIT n``).
    `where` reads the table as `alias`; `query` and `limit` are placeholders."""
    emb = f"{alias}.{t.col('embedding')}" if alias else t.col("embedding")
    target = quantized(f"{query}::{check_vector_type(rerank.vector_type)}", rerank.dimensions)
    table = f"{t.qualified} AS {alias}" if alias else t.qualified
    return (
        f"SELECT * FROM {table} {where} "
        f"ORDER BY {quantized(emb, rerank.dimensions)} {HAMMING_OPERATOR} {target} LIMIT {limit}"
    )


def reranked_distance(t: TableRef, metric: Metric, query: str, rerank: Rerank) -> str:
    """The exact distance by `metric` of a candidate of `binary_candidates` (read as ``c``) to the `query`
    placeholder, cast to the column's type: what a binary-quantized search re-ranks by."""
    return f"c.{t.col('embedding')} {metric.operator} {query}::{check_vector_type(rerank.vector_type)}"


def reranked_nearest(
    t: TableRef, metric: Metric, where: str, query: str, rerank: Rerank, candidates: str, limit: str, alias: str = ""
) -> str:
    """The carried key (`TableRef.carry_key`) and exact distance by `metric` of the `limit` nearest of the binary
    index's `candidates` rows (`binary_candidates`, whose `where` reads the table as `alias`), nearest first.
    `query`, `candidates` and `limit` are placeholders."""
    inner = binary_candidates(t, where, query, rerank, candidates, alias)
    distance = reranked_distance(t, metric, query, rerank)
    return f"SELECT {t.carry_key('c')}, {distance} AS distance FROM ({inner}) AS c ORDER BY distance LIMIT {limit}"


def reranked_search(
    t: TableRef, metric: Metric, domain_id: str | None, filter: Filter, query: Any, k: int, rerank: Rerank,
    *, metadata: bool, vectors: bool,
) -> tuple[Statement, bool]:
    """`vector_search` of a binary-quantized store, in one statement: ``rerank.candidates`` rows from the binary
    index, re-ranked by the exact distance of `metric` on their stored vectors; the `k` nearest, nearest first,
    with their distance last. Slots ``query``, ``k`` and ``candidates``.

    The re-ranking sorts keys and distances only and reads the other columns (content, metadata) of the `k` rows
    afterwards, not of every candidate: a long content in TOAST is read for the results only.
    """
    p = Params()
    where = scope(t, p, domain_id, filter)
    q = p.named("query", query)
    nearest = reranked_nearest(t, metric, where.sql, q, rerank, p.named("candidates", rerank.candidates),
                               p.named("k", k))
    cols = select_columns(t, vectors=vectors, metadata=metadata, alias="t")
    sql = (
        f"SELECT {cols}, n.distance FROM ({nearest}) AS n JOIN {t.qualified} AS t ON {t.is_carried('t', 'n')} "
        "ORDER BY n.distance"
    )
    return p.statement(sql), where.restricts


def estimate_rows(t: TableRef, domain_id: str | None, filter: Filter) -> Statement:
    """``EXPLAIN`` (planned, never run) whose plan holds the planner's estimates of the rows matching the
    filter and of all the table's rows (read by `search_tuning.parse_estimate`)."""
    p = Params()
    where = scope(t, p, domain_id, filter)
    return p.statement(
        f"EXPLAIN (FORMAT JSON) SELECT 1 FROM {t.qualified} {where.sql} UNION ALL SELECT 1 FROM {t.qualified}"
    )


def rows_by_ids(t: TableRef, domain_id: str | None, ids: Sequence[str], *, metadata: bool) -> Statement:
    """Rows (with their vectors) of the given ids, in no particular order."""
    p = Params()
    where = scope(t, p, domain_id)
    cols = select_columns(t, vectors=True, metadata=metadata)
    id_match = f"{t.col('id')} = ANY({p.add(sorted(set(ids)), f'{t.id_cast}[]')})"
    return p.statement(f"SELECT {cols} FROM {t.qualified} {where.sql} AND {id_match}")


def select_rows(
    t: TableRef, domain_id: str | None, filter: Filter, ids: Sequence[str] | None, limit: int | None,
    *, vectors: bool,
) -> Statement:
    """Rows matching the filter (and ids, when given) in a stable order (document, chunk, id), optionally
    limited."""
    p = Params()
    where = scope(t, p, domain_id, filter).sql
    if ids is not None:
        where += f" AND {t.col('id')} = ANY({p.add(list(ids), f'{t.id_cast}[]')})"
    cols = select_columns(t, vectors=vectors, metadata=True)
    order = f"{t.col('document_id')}, {t.col('chunk_index')}, {t.col('id')}"
    limit_sql = f" LIMIT {p.add(limit)}" if limit is not None else ""
    return p.statement(f"SELECT {cols} FROM {t.qualified} {where} ORDER BY {order}{limit_sql}")


def count(t: TableRef, domain_id: str | None, filter: Filter = None) -> Statement:
    p = Params()
    return p.statement(f"SELECT count(*) FROM {t.qualified} {scope(t, p, domain_id, filter).sql}")


def count_up_to(t: TableRef, limit: int) -> Statement:
    """Row count capped at a limit, so checking an index threshold never scans a big table."""
    p = Params()
    return p.statement(f"SELECT count(*) FROM (SELECT 1 FROM {t.qualified} LIMIT {p.add(limit)}) AS capped")


def total_rows(t: TableRef) -> Statement:
    return Statement(f"SELECT count(*) FROM {t.qualified}")


def stats(t: TableRef, domain_id: str | None) -> Statement:
    """Rows, documents and tenants within the store's scope, and sizes in bytes. A store with a domain_id sees
    only its own rows' size (``table_bytes``: the sum of their sizes; ``total_bytes`` NULL, since index space is
    not kept per tenant), never the size of the other tenants' data."""
    p = Params()
    where = scope(t, p, domain_id, alias="t").sql
    if domain_id is None:
        name = p.add(t.qualified, "text")
        sizes = (f"pg_table_size(to_regclass({name})) AS table_bytes, "
                 f"pg_total_relation_size(to_regclass({name})) AS total_bytes")
    else:
        sizes = "coalesce(sum(pg_column_size(t.*)), 0)::bigint AS table_bytes, NULL::bigint AS total_bytes"
    return p.statement(
        f"SELECT count(*) AS rows, count(DISTINCT t.{t.col('document_id')}) AS documents, "
        f"count(DISTINCT t.{t.col('domain_id')}) AS tenants, {sizes} "
        f"FROM {t.qualified} AS t {where}"
    )


def delete(t: TableRef, domain_id: str | None, filter: Filter = None, ids: Sequence[str] | None = None) -> Statement:
    """Delete the rows in scope that match the filter and, when given, the ids."""
    p = Params()
    where = scope(t, p, domain_id, filter).sql
    if ids is not None:
        where += f" AND {t.col('id')} = ANY({p.add(list(ids), f'{t.id_cast}[]')})"
    return p.statement(f"DELETE FROM {t.qualified} {where}")


def update_metadata(
    t: TableRef, domain_id: str | None, ids: Sequence[str], metadata: Sequence[str], columns: Sequence[str]
) -> Statement:
    """Replace metadata by id, keeping content/document_id/chunk_index in step when the new metadata has them:
    `columns` is aligned with ids, each a JSON object of the column values that metadata carried."""
    p = Params()
    where = scope(t, p, domain_id, alias="t").sql
    c = t.col
    follow = ", ".join(
        f"{c(name)} = CASE WHEN u.cols ? {quote_literal(name)} THEN (u.cols->>{quote_literal(name)}){cast} "
        f"ELSE t.{c(name)} END"
        for name, cast in (("content", ""), ("document_id", ""), ("chunk_index", "::integer"))
    )
    arrays = f"{p.add(list(ids))}::{t.id_cast}[], {p.add(list(metadata))}::jsonb[], {p.add(list(columns))}::jsonb[]"
    source = f"unnest({arrays})"
    return p.statement(
        f"UPDATE {t.qualified} AS t SET {c('metadata')} = u.meta, {follow} "
        f"FROM {source} AS u(id, meta, cols) {where} AND t.{c('id')} = u.id"
    )


def existing_ids(t: TableRef, ids: Sequence[str], domain_id: str | None = None) -> Statement:
    """Which of the ids exist already, with their domain: in any domain, or with the domain key (where the same
    id in another domain is another row) in `domain_id`'s."""
    p = Params()
    in_domain = f"{t.col('domain_id')} = {p.add(domain_id, 'text')} AND " if t.domain_keyed else ""
    return p.statement(
        f"SELECT {t.col('id')}::text, {t.col('domain_id')} FROM {t.qualified} "
        f"WHERE {in_domain}{t.col('id')} = ANY({p.add(list(ids), f'{t.id_cast}[]')})"
    )


def upsert_from_staging(t: TableRef, staging: str) -> Statement:
    """Move staged rows into the table; an existing id is replaced only inside the same domain. `created_at`
    keeps its first value; RETURNING names the ids that landed (ids of another domain are neither inserted nor
    updated). Rows go in key order, so concurrent upserts of the same ids lock them in the same order and do not
    deadlock. The conflict target is the table's primary key; its columns are never updated (Citus refuses
    updates of the distribution column), and with the domain key a conflict is always inside the domain."""
    cols = [t.col(c) for c in WRITE_COLUMNS]
    updates = ", ".join(f"{t.col(c)} = EXCLUDED.{t.col(c)}" for c in WRITE_COLUMNS if c not in t.primary_key)
    dom = t.col("domain_id")
    same_domain = "" if t.domain_keyed else f"WHERE t.{dom} IS NOT DISTINCT FROM EXCLUDED.{dom} "
    return Statement(
        f"INSERT INTO {t.qualified} AS t ({', '.join(cols)}) "
        f"SELECT {', '.join(cols)} FROM {quote_ident(staging)} ORDER BY {t.key_columns} "
        f"ON CONFLICT ({t.key_columns}) DO UPDATE SET {updates} "
        f"{same_domain}"
        f"RETURNING t.{t.col('id')}::text"
    )


def document_chunk_counts(t: TableRef, domain_id: str | None, like: str) -> Statement:
    """The documents of the store's table (in its domain) whose document_id matches the LIKE pattern `like`, and
    how many rows (chunks) each has, ordered by document_id."""
    p = Params()
    where = scope(t, p, domain_id, {"document_id": {"$like": like}}).sql
    column = t.col("document_id")
    return p.statement(f"SELECT {column}, count(*) FROM {t.qualified} {where} GROUP BY {column} ORDER BY {column}")
