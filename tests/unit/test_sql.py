"""The SQL builders without a server: values are always bound (never pasted), names always quoted, placeholders
always match their values, and each metric's facts agree between Python and SQL."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pgvecstore import Metric
from pgvecstore.sql import catalog, ddl, hybrid, queries, text_ddl
from pgvecstore.sql.params import Params, Statement
from pgvecstore.sql.table import TableRef

TABLE = TableRef.plain("my schema", 'we"ird', id_type="text")
HOSTILE = "'); DROP TABLE x; --"


def placeholders(sql: str) -> set[int]:
    return {int(n) for n in re.findall(r"\$(\d+)", sql)}


def assert_bound(statement: Statement) -> None:
    assert placeholders(statement.sql) == set(range(1, len(statement.args) + 1)), statement.sql


def test_params_name_their_slots_and_statements_rebind_them() -> None:
    p = Params()
    sql = f"SELECT {p.add('a')}, {p.named('query', b'q')}, {p.named('k', 3, 'int')}"
    statement = p.statement(sql)
    assert statement.sql == "SELECT $1, $2, $3::int" and statement.args == ("a", b"q", 3)
    assert statement.bind(k=9, query=b"z") == ["a", b"z", 9]
    with pytest.raises(ValueError, match="bound twice"):
        p.named("k", 4)
    with pytest.raises(KeyError):
        statement.bind(nope=1)


def test_names_are_quoted_and_values_are_bound() -> None:
    assert TABLE.qualified == '"my schema"."we""ird"'
    built = [
        queries.vector_search(TABLE, Metric.COSINE, HOSTILE, {"k": HOSTILE}, b"vec", 5, metadata=True, vectors=True)[0],
        queries.select_rows(TABLE, HOSTILE, {"k": HOSTILE}, [HOSTILE], 7, vectors=True),
        queries.count(TABLE, HOSTILE, {"k": HOSTILE}),
        queries.delete(TABLE, HOSTILE, {"k": HOSTILE}, ids=[HOSTILE]),
        queries.rows_by_ids(TABLE, HOSTILE, [HOSTILE], metadata=True),
        queries.stats(TABLE, HOSTILE),
        queries.update_metadata(TABLE, HOSTILE, [HOSTILE], ["{}"], ["{}"]),
        queries.existing_ids(TABLE, [HOSTILE]),
        queries.estimate_rows(TABLE, HOSTILE, {"k": HOSTILE}),
        hybrid.text_search(TABLE, HOSTILE, {"k": HOSTILE}, HOSTILE, HOSTILE, 3, metadata=True, vectors=False),
        hybrid.hybrid_search(TABLE, Metric.EUCLIDEAN, HOSTILE, {"k": HOSTILE}, query=b"v", config=HOSTILE,
                             text=HOSTILE, k=3, vector_k=4, text_k=5, rrf_k=60, alpha=None, metadata=True,
                             vectors=True)[0],
        catalog.set_config({"hnsw.ef_search": HOSTILE}),
    ]
    for statement in built:
        assert HOSTILE not in statement.sql  # never pasted
        assert_bound(statement)
        assert any(HOSTILE in repr(a) for a in statement.args)  # but bound
    for statement in (catalog.row_security_state(TABLE), catalog.describe_columns(TABLE)):
        assert TABLE.name not in statement.sql and TABLE.name in statement.args  # names are values to the catalog


scalars = st.one_of(st.integers(0, 3), st.text(alphabet="abc xyz", max_size=3))
leaves = st.one_of(
    st.dictionaries(st.sampled_from(["a", "b.c"]), st.one_of(scalars, st.fixed_dictionaries(
        {"$in": st.lists(scalars, max_size=3)})), max_size=2),
    st.fixed_dictionaries({"document_id": st.text(alphabet="abc xyz", max_size=3)}),
    st.fixed_dictionaries({"chunk_index": st.fixed_dictionaries({"$gte": st.integers(0, 5)})}),
)
filters = st.recursive(
    leaves,
    lambda inner: st.one_of(
        st.fixed_dictionaries({"$or": st.lists(inner, min_size=1, max_size=3)}),
        st.fixed_dictionaries({"$not": inner}),
    ),
    max_leaves=6,
)


@settings(max_examples=150, deadline=None)
@given(filter=filters, domain=st.one_of(st.none(), st.just("acme")), k=st.integers(1, 50))
def test_placeholders_always_match_their_values(filter: dict[str, Any], domain: str | None, k: int) -> None:
    for statement in (
        queries.vector_search(TABLE, Metric.COSINE, domain, filter, b"q", k, metadata=True, vectors=False)[0],
        queries.estimate_rows(TABLE, domain, filter),
        queries.select_rows(TABLE, domain, filter, ["x"], k, vectors=False),
        hybrid.hybrid_search(TABLE, Metric.COSINE, domain, filter, query=b"q", config="english", text="t", k=k,
                             vector_k=k, text_k=k, rrf_k=None, alpha=0.5, metadata=False, vectors=False)[0],
    ):
        assert_bound(statement)


@pytest.mark.parametrize("metric", list(Metric))
def test_each_metric_has_one_operator_opclass_and_score(metric: Metric) -> None:
    assert metric == metric.value and repr(metric) == repr(metric.value)
    index = ddl.create_vector_index(TABLE, metric, "hnsw", {"m": 16, "ef_construction": 64})
    assert f"USING hnsw (\"embedding\" {metric.opclass}) WITH (m = 16, ef_construction = 64)" in index
    search = queries.vector_search(TABLE, metric, None, None, b"q", 3, metadata=False, vectors=False)[0]
    assert f'ORDER BY "embedding" {metric.operator} $1' in search.sql
    for distance in (0.0, 0.25, 1.5, -0.75):
        # The SQL score formula is plain arithmetic: evaluated as Python it gives the Python score.
        assert eval(metric.score_sql("d"), {"d": distance}) == pytest.approx(metric.score(distance))


def test_ddl_renders_only_validated_integers_and_names() -> None:
    with pytest.raises(ValueError, match="index_params.m must be an integer"):
        ddl.create_vector_index(TABLE, Metric.COSINE, "hnsw", {"m": "16); DROP", "ef_construction": 64})
    with pytest.raises(ValueError, match="not a valid text-search configuration"):
        text_ddl.create_triggers(TABLE, HOSTILE)
    table = ddl.create_table(TABLE, 3, text_ddl.column_definitions(TABLE))
    assert '"embedding" vector(3)' in table
    assert '"content_tsv" tsvector' in table and "content_tsv_tf" not in table  # layout 2's column is gone
    row_trigger = text_ddl.create_triggers(TABLE, "english")[0]
    assert 'EXECUTE FUNCTION "my schema"."we""ird_text_row"(\'english\')' in row_trigger
    assert "TEXT PRIMARY KEY" in table
    assert ddl.drop_vector_index(TABLE, "hnsw") == 'DROP INDEX IF EXISTS "my schema"."we""ird_embedding_hnsw_idx"'


def test_a_restricted_search_reads_the_columns_of_its_k_rows_only() -> None:
    """The filtered (or tenant-scoped) search orders ids and distances, then reads metadata and contents of the
    `k` rows it keeps: on the exact path every matching row goes through the sort."""
    for domain, filter in ((None, {"year": 2024}), ("acme", None)):
        sql = queries.vector_search(TABLE, Metric.COSINE, domain, filter, b"q", 5, metadata=True, vectors=True)[0].sql
        inner = sql.split("FROM (", 1)[1].split(") AS n", 1)[0]
        assert inner.startswith('SELECT "id" AS id, "embedding" <=> $') and re.search(r"LIMIT \$\d+$", inner)
        assert '"content"' not in inner and '"metadata"::text' not in inner
        assert sql.startswith('SELECT t."id"::text, t."embedding", t."metadata"::text, t."content"')
    plain = queries.vector_search(TABLE, Metric.COSINE, None, None, b"q", 5, metadata=True, vectors=False)[0].sql
    assert "JOIN" not in plain  # unrestricted: the index scan returns only k rows, read as they come


def test_tenant_scoping_has_an_index_on_either_key() -> None:
    """An ``id`` table gets a b-tree on domain_id (a tenant's reads and deletes use it); a table keyed by
    (domain_id, id) has its primary key's index for that, and no second one."""
    from pgvecstore.config import StoreConfig

    by_id = TableRef.from_config(StoreConfig(dimensions=3))
    assert any(by_id.domain_index_name in s and '("domain_id")' in s for s in ddl.support_indexes(by_id))
    by_domain = TableRef.from_config(StoreConfig(dimensions=3, primary_key="domain_id, id"))
    assert not any(by_domain.domain_index_name in s for s in ddl.support_indexes(by_domain))
