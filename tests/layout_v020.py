"""A table of the pgvecstore 0.2 layout (layout 2): a 0.1 table (`tests.layout_v010`) given the text-search parts
of pgvecstore 0.2 as its ``enable_text_search()`` added them, with that version's DDL.

The DDL functions below are those of pgvecstore 0.2's src/pgvecstore/sql/text_ddl.py (``git show
94afc39:src/pgvecstore/sql/text_ddl.py``) that differ in 0.3, copied so that the tests keep building layout 2: the
tsvector and term-frequency (sparsevec) columns set by a row trigger, the statistics kept by statement triggers, a
row's length its token count. The parts 0.3 kept as they were (the statistics tables and their policy, the
triggers, the GIN index) come from the current module. `make_v020` applies them.
"""

from __future__ import annotations

import asyncpg

from pgvecstore.identifiers import int_literal, quote_ident, quote_literal
from pgvecstore.sql.table import TableRef
from pgvecstore.sql.text_ddl import (  # unchanged since 0.2 (or equivalent for its tables)
    _terms_of,
    create_index,
    create_statistics_tables,
    create_triggers,
    drop_generation,
    statistics_function,
    statistics_row_security,
)

# Term ids are (hashtext(lexeme) & (TERM_DIMENSIONS - 1)) + 1: the dimension of the term-frequency sparsevecs.
TERM_DIMENSIONS = 2**29
# pgvector stores at most 16,000 non-zero entries in a sparsevec: a row with more distinct lexemes keeps its most
# frequent ones.
MAX_TERMS_PER_ROW = 16_000


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
    """0.2's statistics trigger function: a row is counted while its term frequencies are set, and its length is
    the sum of its term frequencies."""
    tf = quote_ident(t.text_terms_column)
    differs = f"OPERATOR({quote_ident(vector_schema)}.<>)"  # sparsevec's operator (search_path is pg_catalog)

    def lengths_of(t: TableRef, rows: str, sign: int) -> str:
        return _lengths_of(t, rows, sign, vector_schema)

    return statistics_function(t, tf, f"o.{tf} IS NULL OR n.{tf} {differs} o.{tf}", lengths_of)


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


async def make_v020(conn: asyncpg.Connection, schema: str, table: str, *, config: str = "english",
                    row_security: bool = False) -> None:
    """Turn the 0.1 table `schema.table` (text ids) into a 0.2 one, as 0.2's ``enable_text_search()`` did."""
    t = TableRef.plain(schema, table, id_type="text")
    vector_schema = str(await conn.fetchval(
        "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace "
        "WHERE e.extname = 'vector'"))
    statements = [*add_columns(t, vector_schema), drop_generation(t), *create_statistics_tables(t),
                  create_row_function(t, vector_schema), create_statistics_function(t, vector_schema),
                  *create_triggers(t, config), create_index(t)]
    if row_security:
        statements += statistics_row_security(t)
    statements += [fill_rows(t), *rebuild_statistics(t, vector_schema),
                   f"COMMENT ON TABLE {t.qualified} IS 'pgvecstore layout 2'"]
    async with conn.transaction():
        for statement in statements:
            await conn.execute(statement)
