"""The text side of text and hybrid search: BM25 over a bounded set of candidates, in CTEs of one statement.

Cost does not grow with the table: the candidates come from at most `MAX_SCANS` GIN index scans of at most
`ROWS_PER_SCAN` rows each (`MAX_CANDIDATES` in all), and each is scored by exact BM25 from its stored term
frequencies and the statistics the triggers of `pgvecstore.sql.text_ddl` keep. docs/hybrid.md gives the
measurements behind every number here; `tests/bm25_reference.py` is the same rule in plain Python.

1. Terms: the distinct lexemes of the query text under the configuration (stop words dropped, words stemmed), the
   first `MAX_TEXT_QUERY_TERMS` by position. Each becomes a one-lexeme tsquery through the server's own tsvector
   output, so no user text is ever parsed as tsquery syntax and no input can make the query fail.
2. Statistics: each term's document frequency df within the store's scope (its domain, or every domain for a
   store without one), N the rows and avgdl their mean length there. Terms no row contains are dropped.
3. Candidates: the rarest terms (by df, then lexeme) while their dfs add up to at most `RARE_TERMS_DF`, and always
   the rarest one, read in one OR'ed scan; then pairs of the other terms (``a AND b``), least expected matches
   ``df_a * df_b / N`` first, while those estimates add up to at most `PAIRS_ESTIMATE`, each its own scan. Every
   scan applies the scope and the user filter and stops at `ROWS_PER_SCAN` rows; at most `MAX_CANDIDATES` distinct
   rows are scored.
4. Score: BM25, ``sum over the query terms in the row of idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * dl / avgdl))``
   with ``idf = ln(1 + (N - df + 0.5) / (df + 0.5))``, tf the term's count in the row (the number of its positions
   in the row's tsvector) and dl the row's length (its number of distinct lexemes). Best first, ties by id.
"""

from __future__ import annotations

from pgvecstore.identifiers import quote_ident
from pgvecstore.sql.params import Params
from pgvecstore.sql.table import TableRef

# The most query terms a text or hybrid search uses (the first distinct ones of the query text).
MAX_TEXT_QUERY_TERMS = 64
# BM25's term-frequency saturation and length normalisation (Anserini's defaults; the sweep is in docs/hybrid.md).
K1 = 0.9
B = 0.4
# Candidate selection (step 3 above; the sweep is in docs/text-search-scaling.md).
RARE_TERMS_DF = 400
PAIRS_ESTIMATE = 800
MAX_SCANS = 16
ROWS_PER_SCAN = 1000
MAX_CANDIDATES = 2000


def text_candidates(
    t: TableRef, p: Params, domain_id: str | None, where: str, config: str, text: str, limit: int
) -> list[str]:
    """The text side as CTEs ending in ``text_candidates(id, score, rank)`` (with the
    domain key also ``row_domain``, `TableRef.carry_key`): the `limit` best rows of the store's
    scope and filter (`where`, on alias ``t``) by BM25, best first."""
    terms_table, docs_table = t.in_schema(t.text_terms_table), t.in_schema(t.text_docs_table)
    tsv = f"t.{quote_ident(t.text_search_column)}"
    if domain_id is None:
        docs_scope, terms_scope = "", ""
    else:
        domain = p.add(domain_id, "text")
        docs_scope, terms_scope = f" WHERE d.domain_key = {domain}", f" AND s.domain_key = {domain}"
    k1, b = p.add(K1, "float8"), p.add(B, "float8")
    return [
        "text_terms AS MATERIALIZED ("
        "SELECT u.lexeme COLLATE \"C\" AS lexeme, array_to_tsvector(ARRAY[u.lexeme])::text::tsquery AS term "
        f"FROM unnest(to_tsvector({p.add(config, 'text::regconfig')}, {p.add(text, 'text')})) AS u "
        f"ORDER BY u.positions[1], u.lexeme COLLATE \"C\" LIMIT {p.add(MAX_TEXT_QUERY_TERMS)})",
        "text_corpus AS MATERIALIZED ("
        "SELECT sum(d.n)::float8 AS n, sum(d.total_len)::float8 / greatest(sum(d.n), 1) AS avgdl "
        f"FROM {docs_table} AS d{docs_scope})",
        "text_stats AS MATERIALIZED ("
        "SELECT tt.lexeme, tt.term, s.df, ln(1 + (c.n - s.df + 0.5) / (s.df + 0.5)) AS idf, "
        "sum(s.df) OVER (ORDER BY s.df, tt.lexeme) AS cum "
        "FROM text_terms AS tt JOIN (SELECT s.lexeme, sum(s.df)::float8 AS df "
        f"FROM {terms_table} AS s WHERE s.lexeme IN (SELECT lexeme FROM text_terms){terms_scope} "
        "GROUP BY s.lexeme) AS s ON s.lexeme = tt.lexeme CROSS JOIN text_corpus AS c WHERE s.df > 0)",
        "text_single AS MATERIALIZED (SELECT lexeme, term FROM text_stats "
        f"WHERE cum <= {p.add(RARE_TERMS_DF, 'float8')} OR cum = (SELECT min(cum) FROM text_stats))",
        "text_pairs AS MATERIALIZED ("
        "SELECT a.term && b.term AS tq, "
        "sum(a.df * b.df / c.n) OVER (ORDER BY a.df * b.df, a.lexeme, b.lexeme) AS estimate "
        "FROM text_stats AS a JOIN text_stats AS b ON a.lexeme < b.lexeme CROSS JOIN text_corpus AS c "
        "WHERE a.lexeme NOT IN (SELECT lexeme FROM text_single) AND b.lexeme NOT IN (SELECT lexeme FROM text_single))",
        "text_scans AS MATERIALIZED ("
        "(SELECT string_agg(term::text, ' | ')::tsquery AS tq FROM text_single HAVING count(*) > 0) UNION ALL "
        f"(SELECT tq FROM text_pairs WHERE estimate <= {p.add(PAIRS_ESTIMATE, 'float8')} "
        f"ORDER BY estimate LIMIT {p.add(MAX_SCANS - 1)}))",
        # Each candidate's tsvector is read once (from TOAST only in pre-layout-3 rows), by setweight, which marks
        # the query's lexemes (its copy gives the length); ts_filter keeps them: a term's count is its positions.
        "text_lexemes AS MATERIALIZED (SELECT array_agg(lexeme::text) AS lexemes FROM text_stats)",
        f"text_found AS MATERIALIZED (SELECT {t.carried('f')}, "
        "ts_filter(v.marked, '{a}') AS terms, length(v.marked) AS dl FROM ("
        f"SELECT DISTINCT ON ({t.carried('x')}) {t.carried('x')}, x.tsv FROM text_scans AS sc CROSS JOIN LATERAL ("
        f"SELECT {t.carry_key('t')}, {tsv} AS tsv FROM {t.qualified} AS t {where} AND {tsv} @@ sc.tq "
        f"LIMIT {p.add(ROWS_PER_SCAN)}) AS x) AS f CROSS JOIN text_lexemes AS l "
        "CROSS JOIN LATERAL (SELECT setweight(f.tsv, 'A', l.lexemes) AS marked OFFSET 0) AS v "
        f"LIMIT {p.add(MAX_CANDIDATES)})",
        "text_scored AS ("
        f"SELECT {t.carried('f')}, ({k1} + 1) * sum(s.idf * u.tf / (u.tf + {k1} * (1 - {b} + {b} * f.dl / c.avgdl))) "
        "AS score FROM text_found AS f CROSS JOIN LATERAL (SELECT u.lexeme, "
        "greatest(cardinality(u.positions), 1)::float8 AS tf FROM unnest(f.terms) AS u) AS u "
        "JOIN text_stats AS s ON s.lexeme = u.lexeme "
        f"CROSS JOIN text_corpus AS c GROUP BY {t.carried('f')})",
        "text_candidates AS ("
        f"SELECT {t.carried('r')}, r.score, row_number() OVER (ORDER BY r.score DESC, r.id) AS rank FROM ("
        f"SELECT {t.carried('s')}, s.score FROM text_scored AS s ORDER BY s.score DESC, s.id "
        f"LIMIT {p.add(limit)}) AS r)",
    ]
