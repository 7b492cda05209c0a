"""The search planner without a server: which SQL, values and settings each search gets, and its bounded caches."""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np
import pytest
from pgvector import Vector

from pgvecstore import InvalidInputError, InvalidOptionError, StoreConfig, search_tuning
from pgvecstore.planner import MAX_CANDIDATES, EstimateCache, SearchPlan, SearchPlanner, SearchRequest
from pgvecstore.search_tuning import SearchOptions
from pgvecstore.sql.table import TableRef

DIM = 4
QUERY = [0.5, 0.1, -0.2, 0.9]


def planner(**options: Any) -> SearchPlanner:
    config = StoreConfig.from_options(dimensions=DIM, **options)
    return SearchPlanner(config, TableRef.from_config(config), DIM)


def placeholders(sql: str) -> set[int]:
    return {int(n) for n in re.findall(r"\$(\d+)", sql)}


def assert_bound(plan: SearchPlan) -> None:
    """Every value has its placeholder and every placeholder its value: $1..$n, n the number of values."""
    assert placeholders(plan.sql) == set(range(1, len(plan.args) + 1))


def test_an_unfiltered_search_is_one_plain_statement_built_once() -> None:
    p = planner()
    first = p.plan(SearchRequest(QUERY, k=5))
    second = p.plan(SearchRequest(np.array(QUERY[::-1]), k=7))
    assert not first.filtered and first.estimate is None and first.settings == {}
    assert first.sql is second.sql  # built once, then re-bound
    assert first.args == [Vector(QUERY).to_binary(), 5]
    assert second.args == [Vector(QUERY[::-1]).to_binary(), 7]
    assert 'ORDER BY "embedding" <=> $1 LIMIT $2' in first.sql
    assert_bound(first)
    assert first.score is not None and first.score(0.25) == pytest.approx(0.75)  # cosine: 1 - distance


def test_search_options_become_transaction_settings() -> None:
    assert planner().plan(SearchRequest(QUERY, k=100)).settings == {"hnsw.ef_search": "100"}  # k > 40
    tuned = planner(search_params={"ef_search": 80, "probes": 3}).plan(SearchRequest(QUERY, k=5))
    assert tuned.settings == {"hnsw.ef_search": "80", "ivfflat.probes": "3"}
    per_call = planner(search_params={"ef_search": 80}).plan(SearchRequest(QUERY, k=5, search_params={"ef_search": 9}))
    assert per_call.settings == {"hnsw.ef_search": "9"}


def test_a_filter_or_a_domain_makes_a_filtered_plan_with_an_estimate() -> None:
    filtered = planner().plan(SearchRequest(QUERY, k=5, filter={"lang": "en"}))
    assert filtered.filtered and filtered.estimate is not None
    assert filtered.estimate.sql.startswith("EXPLAIN (FORMAT JSON)")
    assert placeholders(filtered.estimate.sql) == set(range(1, len(filtered.estimate.args) + 1))
    assert_bound(filtered)
    tenant = planner(domain_id="acme").plan(SearchRequest(QUERY, k=5))
    assert tenant.filtered and '"domain_id" = $1::text' in tenant.sql and tenant.args[0] == "acme"
    assert not planner().plan(SearchRequest(QUERY, k=5, filter={"$and": [{}]})).filtered  # restricts nothing
    no_estimate = planner(search_params={"exact_selectivity": 0}).plan(SearchRequest(QUERY, filter={"a": 1}))
    assert no_estimate.filtered and no_estimate.estimate is None


def test_columns_follow_include_metadata_and_include_vectors() -> None:
    p = planner()
    bare = p.plan(SearchRequest(QUERY, include_metadata=False))
    assert bare.sql.startswith('SELECT "id"::text, "embedding" <=>')
    with_vectors = p.plan(SearchRequest(QUERY, include_vectors=True))
    assert with_vectors.sql.startswith('SELECT "id"::text, "embedding", "metadata"::text, "content"')
    assert with_vectors.vectors and with_vectors.metadata


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (SearchRequest(QUERY, k=0), "k must be an integer between 1 and"),
        (SearchRequest(QUERY, k=2**63), r"k must be an integer between 1 and 9223372036854775807 \(PostgreSQL"),
        (SearchRequest(QUERY, filter={"$or": [{"a": i} for i in range(300)]}), "max_filter_conditions"),
        (SearchRequest(QUERY, filter={"a": {"$in": list(range(100_001))}}), r"100001 values .*max_filter_values"),
        (SearchRequest([[1.0, 2.0, 3.0, 4.0]] * 2), r"query must be one vector, got 2 vectors \(shape \(2, 4\)\)"),
        (SearchRequest(QUERY, mode="semantic"), "mode must be one of"),
        (SearchRequest(None), "search needs a query vector"),
        (SearchRequest(QUERY, mode="text", query_text="x"), "searches by query_text alone"),
        (SearchRequest(None, mode="hybrid", query_text="x"), "needs a query vector as well"),
        (SearchRequest(None, mode="text"), "needs query_text, a string; got none"),
        (SearchRequest(QUERY, query_text="x"), "query_text is used by mode='text'"),
        (SearchRequest(QUERY, alpha=0.5), "used by mode='hybrid' only"),
        (SearchRequest(QUERY, mode="hybrid", query_text="x", alpha=2), "alpha must be a number between 0 and 1"),
        (SearchRequest(QUERY, mode="hybrid", query_text="x", vector_k=0), "vector_k must be an integer"),
        (SearchRequest(QUERY, rrf_k=10), "rrf_k .* is used by mode='hybrid' only"),
        (SearchRequest(QUERY, mode="hybrid", query_text="x", rrf_k=-1), "rrf_k must be a non-negative number"),
        (SearchRequest(QUERY, mode="hybrid", query_text="x", rrf_k=60, alpha=0.5), "not both"),
        (SearchRequest(QUERY, mode="hybrid", query_text="x", rrf_k=True), "rrf_k must be a non-negative number"),
        (SearchRequest(QUERY, mode="hybrid", query_text="x", rrf_k=float("inf")), "rrf_k must be a non-negative"),
        (SearchRequest(QUERY, mode="hybrid", query_text="x", rrf_k="60"), "rrf_k must be a non-negative number"),
        (SearchRequest(QUERY, mode="hybrid", query_text="x", alpha=True), "alpha must be a number between 0 and 1"),
        (SearchRequest(QUERY, mode="hybrid", query_text="x", alpha=-0.01), "alpha must be a number between 0 and 1"),
        (SearchRequest(QUERY, mode="hybrid", query_text="x", vector_k=MAX_CANDIDATES + 1), "vector_k must be an"),
        (SearchRequest(QUERY, mode="hybrid", query_text="x", text_k=True), "text_k must be an integer"),
        (SearchRequest(QUERY, mode="hybrid", query_text="x", text_k=2.0), "text_k must be an integer"),
        (SearchRequest(QUERY, search_params={"ef_serch": 5}), "did you mean 'ef_search'"),
        (SearchRequest([1.0, 2.0]), "query vector has dimension 2, expected 4"),
    ],
)
def test_bad_requests_name_the_argument(request_: SearchRequest, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        planner().plan(request_, text_config="english")


@pytest.mark.parametrize(
    "options",
    [{"rrf_k": 0}, {"rrf_k": 0.5}, {"alpha": 0}, {"alpha": 1}, {"alpha": 0.25},
     {"vector_k": 1, "text_k": MAX_CANDIDATES}, {"vector_k": MAX_CANDIDATES, "text_k": 1}],
)
def test_hybrid_options_at_their_bounds_are_accepted(options: dict[str, Any]) -> None:
    plan = planner().plan(SearchRequest(QUERY, k=3, mode="hybrid", query_text="cells", **options), "english")
    assert_bound(plan)
    for name in ("vector_k", "text_k"):
        if name in options:
            assert options[name] in plan.args  # each side's candidate count reaches the statement


def test_text_and_hybrid_plans_bind_every_value() -> None:
    p = planner(domain_id="acme")
    text = p.plan(SearchRequest(None, k=3, mode="text", query_text="cell membranes", filter={"y": 1}), "english")
    assert_bound(text)
    assert "english" in text.args and "cell membranes" in text.args and not text.filtered
    rrf = p.plan(SearchRequest(QUERY, k=3, mode="hybrid", query_text="cells", rrf_k=10), "english")
    assert_bound(rrf)
    assert "1 / ($" in rrf.sql and 10.0 in rrf.args and rrf.at == -3
    assert rrf.settings["hnsw.iterative_scan"] == "strict_order"  # the domain filters the vector side
    weighted = planner().plan(SearchRequest(QUERY, k=3, mode="hybrid", query_text="cells", alpha=0.3), "english")
    assert_bound(weighted)
    assert 0.3 in weighted.args and "vector_norm" in weighted.sql and weighted.settings == {}
    assert "(1 - distance)" in weighted.sql  # the metric's score formula, in SQL
    default = planner().plan(SearchRequest(QUERY, k=3, mode="hybrid", query_text="cells"), "english")
    assert "vector_norm" in default.sql and 0.5 in default.args  # weighted fusion, equal weights, by default
    with pytest.raises(ValueError, match="text-search configuration"):
        p.plan(SearchRequest(None, mode="text", query_text="x"))


def test_query_text_is_cleaned_not_parsed() -> None:
    plan = planner().plan(SearchRequest(None, mode="text", query_text="a\x00b & !(c" + "\ud800"), "simple")
    assert "a b & !(c?" in plan.args


# -- the estimate cache ------------------------------------------------------------------------------------------
def test_estimates_expire_and_stay_within_their_entry_bound() -> None:
    cache = EstimateCache(ttl=60, max_entries=3, max_bytes=1 << 20)
    for i in range(5):
        cache.put(f"k{i}", float(i), 100.0, now=0.0)
    assert len(cache) == 3 and cache.get("k0", now=1.0) is None and cache.get("k4", now=1.0) == (4.0, 100.0)
    assert cache.get("k4", now=61.0) is None  # expired entries are dropped
    assert len(cache) == 2
    cache.put("late", 1.0, 2.0, now=1000.0)  # an entry's age counts from when it was put
    assert cache.get("late", now=1059.0) == (1.0, 2.0)
    assert cache.get("late", now=1060.0) is None


def test_estimates_stay_within_their_byte_bound() -> None:
    cache = EstimateCache(ttl=60, max_entries=1000, max_bytes=10_000)
    for i in range(50):
        cache.put(f"{i:04d}" + "x" * 900, 1.0, 2.0, now=0.0)
        assert cache.bytes <= 10_000
    assert 0 < len(cache) < 50
    cache.put("y" * 5000, 1.0, 2.0, now=0.0)  # larger than an eighth of the budget: not kept
    assert cache.get("y" * 5000, now=0.0) is None
    assert cache.bytes <= 10_000


# -- search_tuning's rules at their bounds ------------------------------------------------------------------------
def test_an_index_scan_that_returned_k_rows_is_not_run_again() -> None:
    options = SearchOptions()
    assert not search_tuning.should_retry_exact(options, 10, 10, filtered=True, exact=False)
    assert search_tuning.should_retry_exact(options, 9, 10, filtered=True, exact=False)
    assert not search_tuning.should_retry_exact(options, 9, 10, filtered=True, exact=True)
    assert not search_tuning.should_retry_exact(options, 9, 10, filtered=False, exact=False)
    assert not search_tuning.should_retry_exact(SearchOptions(retry_exact=False), 9, 10, filtered=True, exact=False)


@pytest.mark.parametrize(
    ("name", "low", "high"),
    [("ef_search", 1, 1000), ("probes", 1, 32768), ("max_probes", 1, 32768), ("rerank_factor", 1, 1000),
     ("max_scan_tuples", 1, 2**31 - 1), ("scan_mem_multiplier", 1, 1000)],
)
def test_search_params_take_exactly_their_documented_range(name: str, low: int, high: int) -> None:
    assert search_tuning.validate_search_options({name: low}) == {name: low}
    assert search_tuning.validate_search_options({name: high}) == {name: high}
    for outside in (low - 1, high + 1):
        with pytest.raises(InvalidOptionError, match=name):
            search_tuning.validate_search_options({name: outside})


def test_exact_selectivity_takes_zero_to_one() -> None:
    for value in (0.0, 0.035, 1.0):
        assert search_tuning.validate_search_options({"exact_selectivity": value}) == {"exact_selectivity": value}
    for value in (-0.001, 1.001):
        with pytest.raises(InvalidOptionError, match="exact_selectivity"):
            search_tuning.validate_search_options({"exact_selectivity": value})


def test_estimated_share_and_the_exact_scan_rule() -> None:
    assert search_tuning.estimated_share(5, 0) is None and search_tuning.estimated_share(1, 1) == 1.0
    options = SearchOptions()  # exact at or below 3.5% of the rows
    assert search_tuning.use_exact_scan(options, 35, 1000, 10)
    assert not search_tuning.use_exact_scan(options, 36, 1000, 10)
    assert not search_tuning.use_exact_scan(options, 0, 0, 10)  # no rows in the table: nothing to decide
    assert not search_tuning.use_exact_scan(SearchOptions(exact_selectivity=0), 0, 1000, 10)
    # Too few matches for the iterative scan's budget to find k of them: exact, even above the share.
    tight = SearchOptions(exact_selectivity=0.01, max_scan_tuples=100)
    assert search_tuning.use_exact_scan(tight, 50, 1000, 10)  # 5% of 100 visited tuples = 5 < 10
    assert not search_tuning.use_exact_scan(tight, 100, 1000, 10)  # 10% of 100 = 10, not fewer than k


def test_filtered_candidate_lists_grow_with_selectivity_up_to_pgvectors_bound() -> None:
    options = SearchOptions()
    base = search_tuning.filtered_ef(options, 10)
    assert search_tuning.filtered_ef(options, 10, share=None) == base
    assert search_tuning.filtered_ef(options, 10, share=0.05) == max(base, 400)  # 2 * 10 / 0.05
    assert search_tuning.filtered_ef(options, 10, share=0.001) == 1000  # pgvector's bound
    assert search_tuning.filtered_ef(options, 10, share=0.0) == base


def test_unfiltered_settings_change_only_what_differs_from_pgvectors_defaults() -> None:
    plain = SearchOptions()
    assert search_tuning.search_settings(plain, filtered=False, k=40) == {}  # pgvector's ef_search is 40
    assert search_tuning.search_settings(plain, filtered=False, k=41) == {"hnsw.ef_search": "41"}
    assert search_tuning.search_settings(plain, filtered=False, k=5000) == {"hnsw.ef_search": "1000"}
    assert search_tuning.search_settings(SearchOptions(ef_search=10), filtered=False, k=10) == {"hnsw.ef_search": "10"}
    assert search_tuning.search_settings(SearchOptions(probes=7), filtered=False, k=10) == {"ivfflat.probes": "7"}
    filtered = search_tuning.search_settings(SearchOptions(max_probes=9), filtered=True, k=10)
    assert filtered["ivfflat.max_probes"] == "9" and filtered["plan_cache_mode"] == "force_custom_plan"
    assert "ivfflat.max_probes" not in search_tuning.search_settings(SearchOptions(max_probes=9), filtered=False, k=10)


def test_the_estimate_is_read_from_the_plans_two_branches() -> None:
    plan = [{"Plan": {"Node Type": "Append", "Plan Rows": 1010,
                      "Plans": [{"Node Type": "Bitmap Heap Scan", "Plan Rows": 10}, {"Plan Rows": 1000}]}}]
    assert search_tuning.parse_estimate(plan) == (10.0, 1000.0)
    assert search_tuning.parse_estimate(json.dumps(plan)) == (10.0, 1000.0)  # as EXPLAIN's text
    # A constant-false filter: the planner drops its branch, so the plan is the table's scan alone.
    assert search_tuning.parse_estimate([{"Plan": {"Node Type": "Seq Scan", "Plan Rows": 1000}}]) == (0.0, 1000.0)


# -- survivors of the planner's mutation run (scripts/mutation.sh planner) ---------------------------------------
def test_k_is_checked_at_both_ends() -> None:
    from pgvecstore.rows import MAX_ROWS

    p = planner()
    for k in (1, MAX_ROWS):
        assert p.plan(SearchRequest(QUERY, k=k)).k == k
    for k in (0, MAX_ROWS + 1, True, 2.0, "3"):
        with pytest.raises(InvalidInputError, match="k must be an integer"):
            p.plan(SearchRequest(QUERY, k=k))


def test_a_binary_store_takes_k_times_the_rerank_factor_candidates() -> None:
    p = planner(quantization="binary", rerank_factor=6)
    plan = p.plan(SearchRequest(QUERY, k=5))
    assert plan.candidates == 30 and 30 in plan.args
    per_call = p.plan(SearchRequest(QUERY, k=5, search_params={"rerank_factor": 3}))
    assert per_call.candidates == 15 and 15 in per_call.args
    assert plan.exact is not None and "binary_quantize" not in plan.exact.sql  # the exact twin re-ranks nothing
    assert "binary_quantize" in plan.sql


def test_every_vector_plan_and_a_binary_stores_hybrid_plan_have_an_exact_twin() -> None:
    text = {"mode": "hybrid", "query_text": "alpha beta"}
    for mode_options in ({}, text):
        binary = planner(quantization="binary").plan(SearchRequest(QUERY, k=5, **mode_options), "english")
        plain = planner().plan(SearchRequest(QUERY, k=5, **mode_options), "english")
        assert binary.exact is not None and "binary_quantize" not in binary.exact.sql
        assert set(placeholders(binary.exact.sql)) == set(range(1, len(binary.exact.args) + 1))
        if mode_options:
            assert plain.exact is None  # a hybrid search's vector side reads its candidates as they come
        else:
            # An unfiltered vector search through the index reads its k rows straight; its exact twin (a table
            # without an index) finds the k nearest ids first and reads their other columns after.
            assert plain.exact is not None and plain.exact.args == tuple(plain.args)
            assert "JOIN" not in plain.sql and "ORDER BY distance LIMIT" in plain.exact.sql
            assert plain.exact.sql.index("ORDER BY distance LIMIT") < plain.exact.sql.index(" JOIN ")


def test_vector_plans_are_read_by_distance_and_text_plans_by_score() -> None:
    vector = planner().plan(SearchRequest(QUERY, k=5))
    filtered = planner().plan(SearchRequest(QUERY, k=5, filter={"a": 1}))
    text = planner().plan(SearchRequest(None, k=5, mode="text", query_text="alpha"), "english")
    hybrid = planner().plan(SearchRequest(QUERY, k=5, mode="hybrid", query_text="alpha"), "english")
    assert vector.by_distance and filtered.by_distance
    assert not text.by_distance and not hybrid.by_distance
    assert vector.metadata and not vector.vectors  # the defaults of search(): metadata, no vectors
    assert not planner().plan(SearchRequest(QUERY, k=5, include_metadata=False)).metadata


@pytest.mark.parametrize("given", [{"query_text": "x"}, {"rrf_k": 60}, {"alpha": 0.5}, {"vector_k": 5},
                                   {"text_k": 5}])
def test_a_vector_search_refuses_each_text_option(given: dict[str, Any]) -> None:
    with pytest.raises(InvalidInputError):
        planner().plan(SearchRequest(QUERY, k=5, **given))


def test_hybrid_candidates_default_to_40_and_are_bounded() -> None:
    p = planner()
    plan = p.plan(SearchRequest(QUERY, k=5, mode="hybrid", query_text="alpha"), "english")
    assert plan.args.count(40) == 2  # each side: max(k, 40)
    wide = p.plan(SearchRequest(QUERY, k=50, mode="hybrid", query_text="alpha"), "english")
    assert wide.args.count(50) >= 2
    assert MAX_CANDIDATES == 10_000  # docs/hybrid.md states it
    for side in ("vector_k", "text_k"):
        p.plan(SearchRequest(QUERY, k=5, mode="hybrid", query_text="a", **{side: MAX_CANDIDATES}), "english")
        with pytest.raises(InvalidInputError, match=side):
            p.plan(SearchRequest(QUERY, k=5, mode="hybrid", query_text="a", **{side: MAX_CANDIDATES + 1}), "english")


def test_estimates_are_kept_for_the_60_seconds_the_docs_state() -> None:
    cache = EstimateCache()  # docs/production.md: "kept 60 s per filter"
    cache.put("f", 1.0, 2.0, now=0.0)
    assert cache.get("f", now=59.9) == (1.0, 2.0) and cache.get("f", now=60.0) is None


def test_query_text_is_cut_at_its_limit() -> None:
    from pgvecstore.planner import MAX_QUERY_TEXT_CHARS, clean_query_text

    assert MAX_QUERY_TEXT_CHARS == 100_000  # docs/hybrid.md states it
    text = "a" * (MAX_QUERY_TEXT_CHARS + 5)
    assert clean_query_text(text) == "a" * MAX_QUERY_TEXT_CHARS


def test_an_estimate_the_size_of_an_eighth_of_the_budget_is_kept_and_fills_it_exactly() -> None:
    import sys

    key = "k" * 100
    size = sys.getsizeof(key)
    cache = EstimateCache(ttl=60, max_entries=100, max_bytes=size * 8)
    cache.put(key, 1.0, 2.0, now=0.0)
    assert cache.get(key, now=0.0) == (1.0, 2.0) and cache.bytes == size
    too_big = "k" * 101
    cache.put(too_big, 1.0, 2.0, now=0.0)
    assert cache.get(too_big, now=0.0) is None
    for i in range(1, 8):  # seven more of the same size fill the budget exactly: nothing is evicted
        cache.put(f"{i}" + "k" * 99, 1.0, 2.0, now=0.0)
    assert len(cache) == 8 and cache.bytes == size * 8 and cache.get(key, now=0.0) is not None
    cache.put("9" + "k" * 99, 1.0, 2.0, now=0.0)  # one more: the oldest goes
    assert len(cache) == 8 and cache.get(key, now=0.0) is None


def test_search_params_validation_keeps_going_after_a_none_and_refuses_non_numbers() -> None:
    assert search_tuning.validate_search_options({"ef_search": None, "probes": 5}) == {"ef_search": None, "probes": 5}
    for bad in ("0.5", float("nan"), float("inf"), -0.1, 1.5, True):
        with pytest.raises(InvalidOptionError, match="exact_selectivity"):
            search_tuning.validate_search_options({"exact_selectivity": bad})
    assert search_tuning.validate_search_options({"filtered_ef_search": 1, "max_probes": 1}) == {
        "filtered_ef_search": 1, "max_probes": 1}
    assert search_tuning.validate_search_options({"filtered_ef_search": 1000})["filtered_ef_search"] == 1000
    for bad_ef in (0, 1001):
        with pytest.raises(InvalidOptionError, match="filtered_ef_search"):
            search_tuning.validate_search_options({"filtered_ef_search": bad_ef})


def test_an_estimate_of_a_one_row_table_still_decides() -> None:
    options = SearchOptions()
    assert search_tuning.use_exact_scan(options, 0.0, 1.0, 10)  # nothing of one row matches: exact
    assert not search_tuning.use_exact_scan(options, 1.0, 0.0, 10)  # no table rows: no estimate to go by


def test_an_estimate_whose_top_node_is_not_an_append_of_two_matches_nothing() -> None:
    one_branch = [{"Plan": {"Node Type": "Append", "Plan Rows": 7, "Plans": [{"Plan Rows": 3}]}}]
    assert search_tuning.parse_estimate(one_branch) == (0.0, 7.0)
    two_plans = [{"Plan": {"Node Type": "Nested Loop", "Plan Rows": 9, "Plans": [{"Plan Rows": 3},
                                                                                {"Plan Rows": 4}]}}]
    assert search_tuning.parse_estimate(two_plans) == (0.0, 9.0)
