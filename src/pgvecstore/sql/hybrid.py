"""Full-text and hybrid search, each one statement.

The text side (`pgvecstore.sql.text_query`) ranks a bounded set of candidate rows by BM25; the hybrid statement
runs it beside the vector side (`_vector_candidates`) and fuses the two candidate lists. See docs/hybrid.md for
the measurements behind these choices. Every part reads the table as alias ``t``.
"""

from __future__ import annotations

from typing import Any

from pgvecstore.metric import Metric
from pgvecstore.sql.params import Params, Statement
from pgvecstore.sql.queries import Filter, Rerank, reranked_nearest, scope, select_columns
from pgvecstore.sql.table import TableRef
from pgvecstore.sql.text_query import text_candidates


def text_search(
    t: TableRef, domain_id: str | None, filter: Filter, config: str, text: str, k: int,
    *, metadata: bool, vectors: bool,
) -> Statement:
    """The `k` best rows of the text side alone, best first, with their score last."""
    p = Params()
    where = scope(t, p, domain_id, filter, alias="t").sql
    ctes = text_candidates(t, p, domain_id, where, config, text, k)
    cols = select_columns(t, vectors=vectors, metadata=metadata, alias="t")
    return p.statement(
        f"WITH {', '.join(ctes)} "
        f"SELECT {cols}, x.score AS score FROM text_candidates AS x "
        f"JOIN {t.qualified} AS t ON {t.is_carried('t', 'x')} ORDER BY x.rank LIMIT {p.add(k)}"
    )


def _vector_candidates(
    t: TableRef, metric: Metric, where: str, query_ph: str, limit_ph: str, rerank: Rerank | None, p: Params
) -> str:
    """The vector side: id and distance of the nearest rows, in the plain ``ORDER BY embedding <op> query LIMIT n``
    form that lets the planner use the vector index (so index settings apply to it as to a vector search). With
    `rerank`, the binary index's candidates re-ranked by `metric` (`queries.reranked_search`)."""
    emb, op = f"t.{t.col('embedding')}", metric.operator
    if rerank is not None:
        return reranked_nearest(t, metric, where, query_ph, rerank, p.add(rerank.candidates), limit_ph, alias="t")
    return (
        f"SELECT {t.carry_key('t')}, {emb} {op} {query_ph} AS distance FROM {t.qualified} AS t {where} "
        f"ORDER BY {emb} {op} {query_ph} LIMIT {limit_ph}"
    )


def hybrid_search(
    t: TableRef, metric: Metric, domain_id: str | None, filter: Filter, *, query: Any, config: str, text: str,
    k: int, vector_k: int, text_k: int, rrf_k: float | None, alpha: float | None, metadata: bool, vectors: bool,
    rerank: Rerank | None = None,
) -> tuple[Statement, bool]:
    """Both candidate lists in one statement, fused, best first, with ``score, vector_rank, text_rank`` last.

    Fusion is reciprocal rank fusion, ``sum 1 / (rrf_k + rank)`` over the lists a row is in, or, with `alpha`,
    ``alpha * v + (1 - alpha) * x`` where v and x are the vector similarity and text score min-max normalised
    within their candidate lists (0 for a row missing from a list). Ties go to the better vector rank, then text
    rank, then id. Also returns whether the vector side is restricted by a filter or the domain. With `rerank`
    (a binary-quantized store), the vector side re-ranks the binary index's candidates.
    """
    if (rrf_k is None) == (alpha is None):
        raise ValueError("hybrid_search needs exactly one of rrf_k and alpha")
    p = Params()
    where = scope(t, p, domain_id, filter, alias="t")
    text_ctes = text_candidates(t, p, domain_id, where.sql, config, text, text_k)
    vector_sql = _vector_candidates(t, metric, where.sql, p.add(query), p.add(vector_k), rerank, p)
    ctes = [
        f"vector_candidates AS (SELECT {t.carried('v')}, v.distance, "
        "row_number() OVER (ORDER BY v.distance, v.id) AS rank "
        f"FROM ({vector_sql}) AS v)",
        *text_ctes,
    ]
    if alpha is None:
        rrf = p.add(float(rrf_k), "float8")  # type: ignore[arg-type]
        ctes.append(
            f"fused AS (SELECT {t.coalesce_carried('v', 'x')}, v.rank AS vector_rank, x.rank AS text_rank, "
            f"coalesce(1 / ({rrf} + v.rank), 0) + coalesce(1 / ({rrf} + x.rank), 0) AS score "
            f"FROM vector_candidates AS v FULL JOIN text_candidates AS x ON {t.same_carried('x', 'v')})"
        )
    else:
        weight = p.add(float(alpha), "float8")
        norm = "coalesce((s - min(s) OVER ()) / nullif(max(s) OVER () - min(s) OVER (), 0), 1)::float8 AS norm"
        ctes += [
            f"vector_norm AS (SELECT {t.carried('z')}, rank, {norm} FROM "
            f"(SELECT {t.carried('c')}, rank, {metric.score_sql('distance')}::float8 AS s "
            "FROM vector_candidates AS c) AS z)",
            f"text_norm AS (SELECT {t.carried('z')}, rank, {norm} FROM "
            f"(SELECT {t.carried('c')}, rank, score AS s FROM text_candidates AS c) AS z)",
            f"fused AS (SELECT {t.coalesce_carried('v', 'x')}, v.rank AS vector_rank, x.rank AS text_rank, "
            f"{weight} * coalesce(v.norm, 0) + (1 - {weight}) * coalesce(x.norm, 0) AS score "
            f"FROM vector_norm AS v FULL JOIN text_norm AS x ON {t.same_carried('x', 'v')})",
        ]
    cols = select_columns(t, vectors=vectors, metadata=metadata, alias="t")
    sql = (
        f"WITH {', '.join(ctes)} "
        f"SELECT {cols}, f.score AS score, f.vector_rank AS vector_rank, f.text_rank AS text_rank "
        f"FROM fused AS f JOIN {t.qualified} AS t ON {t.is_carried('t', 'f')} "
        f"ORDER BY f.score DESC, f.vector_rank NULLS LAST, f.text_rank NULLS LAST, f.id LIMIT {p.add(k)}"
    )
    return p.statement(sql), where.restricts
