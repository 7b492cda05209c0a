"""Full-text and hybrid search, each one statement.

The text side (`_text_candidates`) ranks rows by an IDF-weighted ``ts_rank`` over the table's generated tsvector
column; the hybrid statement runs it beside the vector side (`_vector_candidates`) and fuses the two candidate
lists. See docs/hybrid.md for the measurements behind these choices. Every part reads the table as alias ``t``.
"""

from __future__ import annotations

from typing import Any

from pgvecstore.identifiers import quote_ident, quote_literal
from pgvecstore.metric import Metric
from pgvecstore.sql.params import Params, Statement
from pgvecstore.sql.queries import Filter, scope, select_columns
from pgvecstore.sql.table import TableRef

# The most query terms a text or hybrid search uses (the first distinct ones of the query text): bounds a query's
# work.
MAX_TEXT_QUERY_TERMS = 64
# ts_rank normalisation: divide by 1 + log(document length), so long documents do not win by length alone.
TEXT_RANK_NORMALIZATION = 1


def _text_candidates(
    t: TableRef, p: Params, scope_where: str, where: str, config: str, text: str, limit: int, *, tenant: bool
) -> list[str]:
    """The text side, as CTEs ending in ``text_candidates(id, score, rank)``: the `limit` best rows by an
    IDF-weighted ``ts_rank``.

    - Terms: the distinct lexemes of the query text under the configuration (stop words dropped, words stemmed),
      the first `MAX_TEXT_QUERY_TERMS` by position. Each becomes a one-lexeme tsquery through the server's own
      tsvector output (``array_to_tsvector(ARRAY[lexeme])::text``), so no user text is ever parsed as tsquery
      syntax and no input can make the query fail.
    - Matching: a row matches when it contains any term (OR, as BM25 does). The GIN index serves it.
    - Weights: each term gets BM25's IDF, ``ln(1 + (N - df + 0.5) / (df + 0.5))``, with df counted by the GIN
      index within the store's scope (`scope_where`: its domain, not the user filter) and N the row count of that
      scope: the table's row estimate (pg_class.reltuples), or for a `tenant` store its own rows counted; at
      least the sum of the dfs. ts_rank takes one weight per label A-D, so with
      up to four distinct IDFs each gets a label of its own; with more, the terms are put in four equal-width IDF
      bands. Labels are set with setweight; each weighs its mean IDF, relative to the largest.
    - Score: ``ts_rank(weights, labelled vector, query, 1)``, normalised by 1 + log(document length).
    """
    table = t.qualified
    tsv = f"t.{quote_ident(t.text_search_column)}"
    ranked = "setweight(setweight(setweight(setweight(m.tsv, 'D', w.d), 'C', w.c), 'B', w.b), 'A', w.a)"
    bands = ", ".join(
        f"coalesce(least(1, avg(idf) FILTER (WHERE band = {band}) / max(idf)), 0)" for band in range(4)
    )
    labels = ", ".join(
        f"coalesce(array_agg(lexeme) FILTER (WHERE band = {band}), '{{}}') AS {label}"
        for band, label in enumerate("dcba")
    )
    config_ph, text_ph = p.add(config, "text::regconfig"), p.add(text, "text")
    rows = _scope_rows(table, scope_where, tenant=tenant)
    return [
        "text_terms AS MATERIALIZED ("
        "SELECT u.lexeme, array_to_tsvector(ARRAY[u.lexeme])::text::tsquery AS term "
        f"FROM unnest(to_tsvector({config_ph}, {text_ph})) AS u "
        f"ORDER BY u.positions[1], u.lexeme LIMIT {p.add(MAX_TEXT_QUERY_TERMS)})",
        "text_query AS MATERIALIZED ("
        "SELECT CASE WHEN count(*) > 0 THEN string_agg(term::text, ' | ')::tsquery END AS q FROM text_terms)",
        "text_df AS MATERIALIZED ("
        f"SELECT tt.lexeme, (SELECT count(*) FROM {table} AS t {scope_where} AND {tsv} @@ tt.term) AS df "
        "FROM text_terms AS tt)",
        "text_idf AS MATERIALIZED ("
        "SELECT d.lexeme, ln(1 + (n.n - d.df + 0.5) / (d.df + 0.5)) AS idf "
        f"FROM text_df AS d, (SELECT greatest({rows}, "
        "(SELECT sum(df)::float8 FROM text_df)) AS n) AS n WHERE d.df > 0)",
        "text_bands AS MATERIALIZED ("
        "SELECT lexeme, idf, CASE WHEN max(r) OVER () <= 4 THEN (r - 1)::int "
        "ELSE least(3, floor(4 * (idf - min(idf) OVER ()) / (max(idf) OVER () - min(idf) OVER ())))::int "
        "END AS band FROM (SELECT lexeme, idf, dense_rank() OVER (ORDER BY idf) AS r FROM text_idf) AS ranked)",
        f"text_weights AS MATERIALIZED (SELECT ARRAY[{bands}]::float4[] AS weights, {labels} FROM text_bands)",
        "text_candidates AS ("
        "SELECT r.id, r.score, row_number() OVER (ORDER BY r.score DESC, r.id) AS rank FROM ("
        f"SELECT m.id, ts_rank(w.weights, {ranked}, tq.q, {TEXT_RANK_NORMALIZATION})::float8 AS score "
        f"FROM (SELECT t.{t.col('id')} AS id, {tsv} AS tsv "
        f"FROM {table} AS t, text_query AS tq {where} AND {tsv} @@ tq.q) AS m, "
        "text_weights AS w, text_query AS tq "
        f"ORDER BY score DESC, m.id LIMIT {p.add(limit)}) AS r)",
    ]


def _scope_rows(table: str, scope_where: str, *, tenant: bool) -> str:
    """N of the IDF: a tenant's own rows, counted (the statistics know no tenant's share); else the table's row
    estimate."""
    if tenant:
        return f"(SELECT count(*)::float8 FROM {table} AS t {scope_where})"
    return f"(SELECT c.reltuples::float8 FROM pg_class AS c WHERE c.oid = {quote_literal(table)}::regclass)"


def text_search(
    t: TableRef, domain_id: str | None, filter: Filter, config: str, text: str, k: int,
    *, metadata: bool, vectors: bool,
) -> Statement:
    """The `k` best rows of the text side alone, best first, with their score last."""
    p = Params()
    where = scope(t, p, domain_id, filter, alias="t").sql
    scope_where = scope(t, p, domain_id, alias="t").sql
    ctes = _text_candidates(t, p, scope_where, where, config, text, k, tenant=domain_id is not None)
    cols = select_columns(t, vectors=vectors, metadata=metadata, alias="t")
    return p.statement(
        f"WITH {', '.join(ctes)} "
        f"SELECT {cols}, x.score AS score FROM text_candidates AS x "
        f"JOIN {t.qualified} AS t ON t.{t.col('id')} = x.id ORDER BY x.rank LIMIT {p.add(k)}"
    )


def _vector_candidates(t: TableRef, metric: Metric, where: str, query_ph: str, limit_ph: str) -> str:
    """The vector side: id and distance of the nearest rows, in the plain ``ORDER BY embedding <op> query LIMIT n``
    form that lets the planner use the vector index (so index settings apply to it as to a vector search)."""
    emb, op = f"t.{t.col('embedding')}", metric.operator
    return (
        f"SELECT t.{t.col('id')} AS id, {emb} {op} {query_ph} AS distance FROM {t.qualified} AS t {where} "
        f"ORDER BY {emb} {op} {query_ph} LIMIT {limit_ph}"
    )


def hybrid_search(
    t: TableRef, metric: Metric, domain_id: str | None, filter: Filter, *, query: Any, config: str, text: str,
    k: int, vector_k: int, text_k: int, rrf_k: float | None, alpha: float | None, metadata: bool, vectors: bool,
) -> tuple[Statement, bool]:
    """Both candidate lists in one statement, fused, best first, with ``score, vector_rank, text_rank`` last.

    Fusion is reciprocal rank fusion, ``sum 1 / (rrf_k + rank)`` over the lists a row is in, or, with `alpha`,
    ``alpha * v + (1 - alpha) * x`` where v and x are the vector similarity and text score min-max normalised
    within their candidate lists (0 for a row missing from a list). Ties go to the better vector rank, then text
    rank, then id. Also returns whether the vector side is restricted by a filter or the domain.
    """
    if (rrf_k is None) == (alpha is None):
        raise ValueError("hybrid_search needs exactly one of rrf_k and alpha")
    p = Params()
    where = scope(t, p, domain_id, filter, alias="t")
    scope_where = scope(t, p, domain_id, alias="t").sql
    text_ctes = _text_candidates(t, p, scope_where, where.sql, config, text, text_k, tenant=domain_id is not None)
    vector_sql = _vector_candidates(t, metric, where.sql, p.add(query), p.add(vector_k))
    ctes = [
        "vector_candidates AS (SELECT v.id, v.distance, row_number() OVER (ORDER BY v.distance, v.id) AS rank "
        f"FROM ({vector_sql}) AS v)",
        *text_ctes,
    ]
    if alpha is None:
        rrf = p.add(float(rrf_k), "float8")  # type: ignore[arg-type]
        ctes.append(
            "fused AS (SELECT coalesce(v.id, x.id) AS id, v.rank AS vector_rank, x.rank AS text_rank, "
            f"coalesce(1 / ({rrf} + v.rank), 0) + coalesce(1 / ({rrf} + x.rank), 0) AS score "
            "FROM vector_candidates AS v FULL JOIN text_candidates AS x ON x.id = v.id)"
        )
    else:
        weight = p.add(float(alpha), "float8")
        norm = "coalesce((s - min(s) OVER ()) / nullif(max(s) OVER () - min(s) OVER (), 0), 1)::float8 AS norm"
        ctes += [
            f"vector_norm AS (SELECT id, rank, {norm} FROM "
            f"(SELECT id, rank, {metric.score_sql('distance')}::float8 AS s FROM vector_candidates) AS z)",
            f"text_norm AS (SELECT id, rank, {norm} FROM (SELECT id, rank, score AS s FROM text_candidates) AS z)",
            "fused AS (SELECT coalesce(v.id, x.id) AS id, v.rank AS vector_rank, x.rank AS text_rank, "
            f"{weight} * coalesce(v.norm, 0) + (1 - {weight}) * coalesce(x.norm, 0) AS score "
            "FROM vector_norm AS v FULL JOIN text_norm AS x ON x.id = v.id)",
        ]
    cols = select_columns(t, vectors=vectors, metadata=metadata, alias="t")
    sql = (
        f"WITH {', '.join(ctes)} "
        f"SELECT {cols}, f.score AS score, f.vector_rank AS vector_rank, f.text_rank AS text_rank "
        f"FROM fused AS f JOIN {t.qualified} AS t ON t.{t.col('id')} = f.id "
        f"ORDER BY f.score DESC, f.vector_rank NULLS LAST, f.text_rank NULLS LAST, f.id LIMIT {p.add(k)}"
    )
    return p.statement(sql), where.restricts
