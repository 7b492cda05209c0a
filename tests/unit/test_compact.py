"""Compact vectors without a server: the halfvec codec against pgvector-python's `HalfVector`, the SQL of halfvec
and binary-quantized stores, how the planner sizes the re-ranked candidate list, and the options' errors."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pgvector import HalfVector

from pgvecstore import InvalidInputError, InvalidOptionError, Metric, StoreConfig
from pgvecstore.planner import SearchPlanner, SearchRequest
from pgvecstore.sql import ddl, hybrid, queries
from pgvecstore.sql.queries import Rerank
from pgvecstore.sql.table import TableRef
from pgvecstore.vectors import (
    codec,
    decode_half,
    encode_half,
    half_query_wire,
    half_wire_block,
    half_wire_vectors,
)

TABLE = TableRef.plain("my schema", 'we"ird', id_type="text")
HOSTILE = "'); DROP TABLE x; --"
DIM = 8


def placeholders(sql: str) -> set[int]:
    return {int(n) for n in re.findall(r"\$(\d+)", sql)}


# -- the halfvec codec -------------------------------------------------------------------------------------------
finite16 = st.floats(min_value=-65504, max_value=65504, width=32, allow_nan=False)


@settings(max_examples=200, deadline=None)
@given(values=st.lists(finite16, min_size=1, max_size=16))
def test_halfvec_wire_format_is_pgvector_halfvectors(values: list[float]) -> None:
    array = np.asarray(values, dtype=np.float32)
    reference = HalfVector(array).to_binary()
    assert half_wire_block(array[None, :]) == [reference]
    assert half_wire_vectors([values], len(values), 0) == [reference]
    assert half_query_wire(values, len(values)) == reference == half_query_wire(array, len(values))
    for given_as in (array, values, HalfVector(array), reference):
        assert encode_half(given_as) == reference
    decoded = decode_half(reference)
    assert decoded.dtype == np.float32
    np.testing.assert_array_equal(decoded, HalfVector.from_binary(reference).to_numpy().astype(np.float32))
    np.testing.assert_array_equal(decoded, array.astype(np.float16).astype(np.float32))  # rounded to half


def test_halfvec_codec_refuses_what_half_precision_cannot_hold() -> None:
    block = np.array([[1.0, 2.0], [65504.0, -65504.0], [70000.0, 0.0]], dtype=np.float32)
    with pytest.raises(InvalidInputError, match=r"vector at position 12 has a value beyond half precision's range"):
        half_wire_block(block, 10)
    with pytest.raises(InvalidInputError, match="vector at position 5 contains NaN or infinity"):
        half_wire_vectors([[1.0, 2.0], [float("nan"), 0.0]], 2, 4)
    with pytest.raises(InvalidInputError, match="vector at position 3 has dimension 3, expected 2"):
        half_wire_vectors([[1.0, 2.0], [1.0, 2.0, 3.0]], 2, 2)
    with pytest.raises(InvalidInputError, match="query vector has a value beyond half precision's range"):
        half_query_wire([1e6, 0.0], 2)
    assert codec("halfvec").wire_block(block[:2], 0) == half_wire_block(block[:2])


# -- SQL -----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("metric", list(Metric))
def test_halfvec_tables_and_indexes_are_half_precision(metric: Metric) -> None:
    assert '"embedding" halfvec(3)' in ddl.create_table(TABLE, 3, vector_type="halfvec")
    prefix = {"cosine": "cosine", "euclidean": "l2", "inner_product": "ip"}[metric]
    index = ddl.create_vector_index(TABLE, metric, "hnsw", {"m": 16, "ef_construction": 64}, vector_type="halfvec")
    assert f'USING hnsw ("embedding" halfvec_{prefix}_ops)' in index
    ivf = ddl.create_vector_index(TABLE, metric, "ivfflat", {"lists": 4}, vector_type="halfvec")
    assert f'USING ivfflat ("embedding" halfvec_{prefix}_ops) WITH (lists = 4)' in ivf
    with pytest.raises(ValueError, match="vector_type must be one of"):
        ddl.create_table(TABLE, 3, vector_type=HOSTILE)


def test_the_binary_index_and_its_search_read_the_same_expression() -> None:
    index = ddl.create_vector_index(TABLE, Metric.COSINE, "hnsw", {"m": 16, "ef_construction": 64},
                                    quantization="binary", dimensions=64)
    expression = 'binary_quantize("embedding")::bit(64)'
    assert index == (
        'CREATE INDEX IF NOT EXISTS "we""ird_embedding_hnsw_binary_idx" ON "my schema"."we""ird" '
        f"USING hnsw (({expression}) bit_hamming_ops) WITH (m = 16, ef_construction = 64)"
    )
    statement, restricts = queries.reranked_search(
        TABLE, Metric.EUCLIDEAN, None, None, b"q", 10, Rerank("vector", 64, 240), metadata=True, vectors=False
    )
    assert not restricts
    assert f"ORDER BY {expression} <~> binary_quantize($1::vector)::bit(64) LIMIT $2" in statement.sql
    assert "ORDER BY distance LIMIT $3) AS n" in statement.sql  # keys and distances sorted, then the k rows read
    assert statement.sql.endswith('AS t ON t."id" = n.id ORDER BY n.distance')
    assert 'c."embedding" <-> $1::vector AS distance' in statement.sql  # re-ranked by the store's metric
    assert statement.args == (b"q", 240, 10)
    assert statement.bind(query=b"z", k=5, candidates=120) == [b"z", 120, 5]


def test_a_binary_search_is_one_statement_with_every_value_bound() -> None:
    rerank = Rerank("halfvec", 16, 96)
    built = [
        queries.reranked_search(TABLE, Metric.COSINE, HOSTILE, {"k": HOSTILE}, b"q", 4, rerank,
                                metadata=True, vectors=True)[0],
        hybrid.hybrid_search(TABLE, Metric.INNER_PRODUCT, HOSTILE, {"k": HOSTILE}, query=b"q", config=HOSTILE,
                             text=HOSTILE, k=3, vector_k=4, text_k=5, rrf_k=None, alpha=0.5, metadata=True,
                             vectors=False, rerank=rerank)[0],
    ]
    for statement in built:
        assert ";" not in statement.sql  # one statement: the candidates and their re-ranking together
        assert HOSTILE not in statement.sql and HOSTILE in statement.args
        assert placeholders(statement.sql) == set(range(1, len(statement.args) + 1))
        assert re.search(r"binary_quantize\(\$\d+::halfvec\)::bit\(16\)", statement.sql)
        assert 96 in statement.args
    vector_side = built[1].sql
    assert re.search(r'c\."embedding" <#> \$\d+::halfvec AS distance', vector_side)


# -- the planner ---------------------------------------------------------------------------------------------------
def planner(vector_type: str = "vector", **options: Any) -> SearchPlanner:
    config = StoreConfig.from_options(dimensions=DIM, **options)
    return SearchPlanner(config, TableRef.from_config(config), DIM, vector_type)


QUERY = [0.5, 0.1, -0.2, 0.9, 0.0, 1.0, -1.0, 0.25]


def test_binary_searches_take_k_times_rerank_factor_candidates() -> None:
    p = planner(quantization="binary", index_type="hnsw")
    plan = p.plan(SearchRequest(QUERY, k=10))
    assert plan.candidates == 640 and plan.args[1:] == [640, 10]  # k * DEFAULT_RERANK_FACTOR (64)
    assert plan.settings == {"hnsw.ef_search": "640"}  # the scan returns at most ef_search rows per pass
    assert plan.exact is not None and "binary_quantize" not in plan.exact.sql  # the exact twin
    wider = p.plan(SearchRequest(QUERY, k=10, search_params={"rerank_factor": 32}))
    assert wider.sql is plan.sql and wider.candidates == 320 and wider.args[1] == 320
    assert wider.settings == {"hnsw.ef_search": "320"}
    many = p.plan(SearchRequest(QUERY, k=100))
    assert many.candidates == 6400 and many.settings == {"hnsw.ef_search": "1000"}  # the rest: iterative scans
    store_factor = planner(quantization="binary", rerank_factor=2).plan(SearchRequest(QUERY, k=10))
    assert store_factor.candidates == 20 and store_factor.settings == {}
    hybrid_plan = p.plan(SearchRequest(QUERY, k=5, mode="hybrid", query_text="x", vector_k=20), "english")
    # 20 * 64 = 1,280, but a hybrid search's vector side re-ranks at most one pass of the index
    assert 1000 in hybrid_plan.args and 1280 not in hybrid_plan.args
    assert hybrid_plan.settings == {"hnsw.ef_search": "1000"}
    few = p.plan(SearchRequest(QUERY, k=5, mode="hybrid", query_text="x", vector_k=10), "english")
    assert 640 in few.args and few.settings == {"hnsw.ef_search": "640"}
    assert hybrid_plan.exact is not None and "binary_quantize" not in hybrid_plan.exact.sql
    filtered = p.plan(SearchRequest(QUERY, k=10, filter={"a": 1}))
    assert filtered.filtered and filtered.candidates == 640 and filtered.exact is not None


def test_halfvec_plans_send_half_precision_queries() -> None:
    plan = planner("halfvec").plan(SearchRequest(QUERY, k=3))
    assert plan.args[0] == HalfVector(QUERY).to_binary() and plan.candidates is None
    assert plan.exact is not None and plan.exact.args[0] == plan.args[0]


# -- options --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("options", "message"), [
    ({"vector_type": "float16"}, "vector_type must be one of 'vector', 'halfvec'"),
    ({"quantization": "pq"}, "quantization must be one of 'binary'"),
    ({"rerank_factor": 0}, "rerank_factor must be between 1 and 1000"),
    ({"rerank_factor": 2.5}, "rerank_factor must be an integer"),
    ({"search_params": {"rerank_factor": 0}}, "search_params.rerank_factor must be between 1 and 1000"),
    ({"quantization": "binary", "index_type": "ivfflat"}, "quantization='binary' needs index_type='hnsw'"),
    ({"dimensions": 2001, "index_type": "hnsw"},
     "index_type='hnsw' with vector_type='vector' indexes at most 2,000 dimensions .*dimensions=2001"),
    ({"dimensions": 4001, "index_type": "ivfflat", "vector_type": "halfvec"},
     "index_type='ivfflat' with vector_type='halfvec' indexes at most 4,000"),
    ({"dimensions": 16001, "vector_type": "halfvec"}, "dimensions must be between 1 and 16000"),
])
def test_compact_options_name_what_is_wrong(options: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidOptionError, match=message):
        StoreConfig.from_options(**options)


def test_compact_options_pgvector_can_index() -> None:
    for options in (
        {"dimensions": 4000, "index_type": "hnsw", "vector_type": "halfvec"},
        {"dimensions": 16000, "index_type": "hnsw", "quantization": "binary"},
        {"dimensions": 16000, "index_type": "hnsw", "quantization": "binary", "vector_type": "halfvec"},
        {"dimensions": 3000, "index_type": "none"},
    ):
        config = StoreConfig.from_options(**options)
        assert config.rerank_factor == 64 and config.vector_type == options.get("vector_type")
