"""`SearchPlanner`: turns a search request into the SQL, settings and steps that answer it. No I/O.

A request is checked here (every argument, naming the one that is wrong) before anything runs. The plan says
which statement to run with which values, which transaction-local settings to set, whether the vector side is
filtered (the store's domain or a user filter), and how to read the rows back. `pgvecstore.searcher` runs it.

Two caches, both bounded: the statements of unfiltered vector searches (built once per column choice, then
re-bound), and the planner's row estimates of filters (`EstimateCache`: bounded in entries and bytes, with a
time to live), which steer filtered searches between the index and an exact scan.
"""

from __future__ import annotations

import functools
import math
import sys
import time
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

import numpy as np

from pgvecstore import search_tuning
from pgvecstore.config import StoreConfig
from pgvecstore.errors import InvalidInputError
from pgvecstore.filter_limits import check_filter_size
from pgvecstore.metric import Metric
from pgvecstore.rows import MAX_ROWS
from pgvecstore.search_tuning import SearchOptions
from pgvecstore.sql import hybrid, queries
from pgvecstore.sql.params import Statement
from pgvecstore.sql.queries import Rerank
from pgvecstore.sql.table import TableRef
from pgvecstore.vectors import codec

SEARCH_MODES = ("vector", "text", "hybrid")
_NO_SETTINGS: Mapping[str, str] = MappingProxyType({})
_INTEGERS = (int, np.integer)
# query_text, rrf_k, alpha, vector_k, text_k of a request that sets none of them.
_NO_TEXT_OPTIONS = (None, None, None, None, None)
# The fusion of a hybrid search that names neither rrf_k nor alpha: weighted, equal weights. It beat reciprocal
# rank fusion (rrf_k 60) on SciFact and on two retrieval sets the project never tuned on (docs/hybrid.md).
DEFAULT_ALPHA = 0.5
# Candidates each side of a hybrid search contributes by default: at least k (so either side alone can fill the
# result), and at least pgvector's default hnsw.ef_search (40), the list an HNSW scan builds anyway.
DEFAULT_CANDIDATES = 40
MAX_CANDIDATES = 10_000
# Query text beyond this many characters is ignored (only the first MAX_TEXT_QUERY_TERMS terms count anyway).
MAX_QUERY_TEXT_CHARS = 100_000


class SearchRequest(NamedTuple):
    """The arguments of one `PgVectorStore.search` call, as given."""

    query: Any = None
    k: Any = 10
    filter: Mapping[str, Any] | None = None
    include_metadata: bool = True
    mode: str = "vector"
    query_text: Any = None
    rrf_k: Any = None
    alpha: Any = None
    vector_k: Any = None
    text_k: Any = None
    search_params: Mapping[str, Any] | None = None
    include_vectors: bool = False


class SearchPlan(NamedTuple):
    """How to answer one search: run `sql` with `args`, under `settings` unless `filtered` (then the searcher's
    filtered flow decides the settings, helped by `estimate`), and read rows into results with `score` (a
    distance column `at` from the end turned into a score, or None when that column is the score). A
    binary-quantized search re-ranks `candidates` rows of the index scan. `exact` is the exact twin of a vector
    search (and of a binary-quantized hybrid one), run where the vector index is not used (no index, a selective
    filter, an index scan that came back short): its ORDER BY is one the vector index cannot serve."""

    sql: str
    args: list[Any]
    k: int
    options: SearchOptions
    settings: Mapping[str, str] = _NO_SETTINGS
    filtered: bool = False
    estimate: Statement | None = None
    score: Callable[[float], float] | None = None
    at: int = -1
    metadata: bool = True
    vectors: bool = False
    by_distance: bool = False
    exact: Statement | None = None
    candidates: int | None = None


class SearchPlanner:
    """Plans searches of one table; holds the bounded caches (see the module docstring)."""

    def __init__(self, config: StoreConfig, table: TableRef, dimensions: int, vector_type: str = "vector") -> None:
        self._config = config
        self._table = table
        self._dimensions = dimensions
        self._vector_type = vector_type
        self._query_wire = codec(vector_type).query_wire
        self._metric = Metric(config.metric)
        self._domain = config.domain_id
        self._default_options = SearchOptions.from_params(config.search_params)
        self._plain: dict[tuple[bool, bool, bool], tuple[Statement, bool, str]] = {}
        self.estimates = EstimateCache()

    def check(self, r: SearchRequest) -> tuple[int, SearchOptions]:
        """Validate a request without building anything: its k and search options, or an error naming the
        argument that is wrong."""
        k = r.k
        if isinstance(k, bool) or not isinstance(k, _INTEGERS) or not 1 <= k <= MAX_ROWS:
            raise InvalidInputError(f"k must be an integer between 1 and {MAX_ROWS} (PostgreSQL's bigint), got {k!r}")
        check_filter_size(r.filter, self._config.max_filter_conditions, self._config.max_filter_values)
        if r.mode not in SEARCH_MODES:
            raise InvalidInputError(f"mode must be one of {', '.join(map(repr, SEARCH_MODES))}, got {r.mode!r}")
        if r.mode != "vector" or r[5:10] != _NO_TEXT_OPTIONS:  # a plain vector search leaves them at their defaults
            _check_hybrid_options(r)
        options = self._default_options
        if r.search_params is not None:
            options = SearchOptions.from_params(self._config.search_params, r.search_params)
        if r.mode == "vector" and r.query is None:
            raise InvalidInputError("search needs a query vector (or mode='text' with query_text)")
        if r.mode == "text" and r.query is not None:
            raise InvalidInputError("mode='text' searches by query_text alone; pass no query vector, or use "
                                    "mode='hybrid'")
        if r.mode == "hybrid" and r.query is None:
            raise InvalidInputError("mode='hybrid' needs a query vector as well as query_text")
        return int(k), options

    def plan(self, r: SearchRequest, text_config: str | None = None) -> SearchPlan:
        """The plan of a request; text and hybrid searches need the text-search configuration."""
        k, options = self.check(r)
        if r.mode == "vector":
            return self.vector(self._query_wire(r.query, self._dimensions), k, r.filter, options,
                               metadata=r.include_metadata, vectors=r.include_vectors)
        if text_config is None:
            raise ValueError("text and hybrid plans need the text-search configuration")
        text = clean_query_text(r.query_text)
        if r.mode == "text":
            statement = hybrid.text_search(self._table, self._domain, r.filter, text_config, text, k,
                                           metadata=r.include_metadata, vectors=r.include_vectors)
            return SearchPlan(statement.sql, list(statement.args), k, options,
                              metadata=r.include_metadata, vectors=r.include_vectors)
        depth = max(k, DEFAULT_CANDIDATES)
        vector_k = int(r.vector_k or depth)
        # The vector side of a hybrid search hands `vector_k` candidates (40 by default) to the fusion, which
        # needs them less exactly than a vector search's k: its re-ranking takes at most one pass of the binary
        # index (MAX_EF_SEARCH candidates), not `vector_k * rerank_factor` (2,560 at the defaults).
        rerank = self.rerank(options, vector_k, search_tuning.MAX_EF_SEARCH)
        build = functools.partial(
            hybrid.hybrid_search,
            self._table, self._metric, self._domain, r.filter, query=self._query_wire(r.query, self._dimensions),
            config=text_config, text=text, k=k, vector_k=vector_k, text_k=int(r.text_k or depth),
            rrf_k=None if r.rrf_k is None else float(r.rrf_k),
            alpha=None if r.rrf_k is not None else float(DEFAULT_ALPHA if r.alpha is None else r.alpha),
            metadata=r.include_metadata, vectors=r.include_vectors,
        )
        statement, filtered = build(rerank=rerank)
        scanned = vector_k if rerank is None else rerank.candidates
        settings = search_tuning.search_settings(options, filtered=filtered, k=scanned)
        exact = None if rerank is None else build(rerank=None)[0]  # for a table without an index
        return SearchPlan(statement.sql, list(statement.args), k, options, settings, at=-3,
                          metadata=r.include_metadata, vectors=r.include_vectors, exact=exact)

    def rerank(self, options: SearchOptions, k: int, most: int = MAX_ROWS) -> Rerank | None:
        """How a binary-quantized store re-ranks a search for `k` rows (``k * rerank_factor`` candidates, the
        call's factor or the store's, at most `most`); None for a store without quantization."""
        if self._config.quantization != "binary":
            return None
        factor = options.rerank_factor or self._config.rerank_factor
        return Rerank(self._vector_type, self._dimensions, min(k * factor, most))

    def vector(
        self, wire: bytes, k: int, filter: Mapping[str, Any] | None, options: SearchOptions,
        *, metadata: bool = True, vectors: bool = False,
    ) -> SearchPlan:
        """A vector search of the checked query vector `wire` (pgvector's binary format)."""
        rerank = self.rerank(options, k)
        sql, args, filtered, exact_sql = self._statement(wire, k, filter, None, metadata, vectors)
        exact = Statement(exact_sql, tuple(args))  # the exact twin: the same values, from the same compile
        if rerank is not None:
            sql, args, filtered, _ = self._statement(wire, k, filter, rerank, metadata, vectors)
        candidates = None if rerank is None else rerank.candidates
        if not filtered:
            settings = search_tuning.search_settings(options, filtered=False, k=candidates or k)
            return SearchPlan(sql, args, k, options, settings, score=self._metric.score,
                              metadata=metadata, vectors=vectors, by_distance=True, exact=exact,
                              candidates=candidates)
        estimate = None
        if search_tuning.wants_estimate(options, filtered=True):
            estimate = queries.estimate_rows(self._table, self._domain, filter)
        return SearchPlan(sql, args, k, options, filtered=True, estimate=estimate,
                          score=self._metric.score, metadata=metadata, vectors=vectors, by_distance=True,
                          exact=exact, candidates=candidates)

    def _statement(
        self, wire: bytes, k: int, filter: Mapping[str, Any] | None, rerank: Rerank | None,
        metadata: bool, vectors: bool,
    ) -> tuple[str, list[Any], bool, str]:
        """The SQL of a vector search, its values, whether it is restricted (a filter or the domain), and the SQL
        of its exact twin with the same values (`queries.vector_searches`; the re-ranking statement's twin is the
        plain search's, so with `rerank` this is its own SQL). Without a filter the same texts serve every call:
        built once per column choice, then re-bound."""
        def build(query: bytes, f: Mapping[str, Any] | None) -> tuple[Statement, bool, str]:
            if rerank is None:
                statement, exact_sql, filtered = queries.vector_searches(
                    self._table, self._metric, self._domain, f, query, k, metadata=metadata, vectors=vectors)
                return statement, filtered, exact_sql
            statement, filtered = queries.reranked_search(self._table, self._metric, self._domain, f, query, k,
                                                          rerank, metadata=metadata, vectors=vectors)
            return statement, filtered, statement.sql

        if filter is not None:
            statement, filtered, exact_sql = build(wire, filter)
            return statement.sql, list(statement.args), filtered, exact_sql
        key = (metadata, vectors, rerank is not None)
        built = self._plain.get(key)
        if built is None:
            built = self._plain[key] = build(wire, None)
        template, filtered, exact_sql = built
        if rerank is None:
            return template.sql, template.bind(query=wire, k=k), filtered, exact_sql
        return template.sql, template.bind(query=wire, k=k, candidates=rerank.candidates), filtered, exact_sql


def _check_hybrid_options(r: SearchRequest) -> None:
    """Validate the text and hybrid options of a request, naming the option; reject ones the mode does not use."""
    mode = r.mode
    if mode == "vector":
        if r.query_text is not None:
            raise InvalidInputError(
                "query_text is used by mode='text' and mode='hybrid'; pass mode='hybrid' to use both"
            )
    elif not isinstance(r.query_text, str):
        got = "none" if r.query_text is None else type(r.query_text).__name__
        raise InvalidInputError(f"mode={mode!r} needs query_text, a string; got {got}")
    rrf_k = r.rrf_k
    if rrf_k is not None:
        if mode != "hybrid":
            raise InvalidInputError("rrf_k (reciprocal rank fusion) is used by mode='hybrid' only")
        if isinstance(rrf_k, bool) or not isinstance(rrf_k, int | float) or not math.isfinite(rrf_k) or rrf_k < 0:
            raise InvalidInputError(f"rrf_k must be a non-negative number, got {rrf_k!r}")
        if r.alpha is not None:
            raise InvalidInputError(
                "give rrf_k (reciprocal rank fusion) or alpha (weighted fusion), not both; with neither, hybrid "
                f"search fuses by weight with alpha={DEFAULT_ALPHA}"
            )
    alpha = r.alpha
    if alpha is not None:
        if mode != "hybrid":
            raise InvalidInputError("alpha (the vector weight of weighted fusion) is used by mode='hybrid' only")
        if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0.0 <= alpha <= 1.0:
            raise InvalidInputError(
                f"alpha must be a number between 0 and 1 (the weight of the vector side), got {alpha!r}"
            )
    for name, value in (("vector_k", r.vector_k), ("text_k", r.text_k)):
        if value is None:
            continue
        if mode != "hybrid":
            raise InvalidInputError(f"{name} (candidates of one side of a hybrid search) is used by mode='hybrid' only")
        if isinstance(value, bool) or not isinstance(value, _INTEGERS) or not 1 <= value <= MAX_CANDIDATES:
            raise InvalidInputError(f"{name} must be an integer between 1 and {MAX_CANDIDATES}, got {value!r}")


def clean_query_text(text: str) -> str:
    """User text as PostgreSQL accepts it: NUL characters (which text values cannot hold) become spaces, lone
    surrogates '?', and text past MAX_QUERY_TEXT_CHARS is dropped. Nothing else is changed or parsed here."""
    text = text[:MAX_QUERY_TEXT_CHARS].replace("\x00", " ")
    return text.encode("utf-8", "replace").decode("utf-8")


class EstimateCache:
    """The planner's estimates of filters, ``(matching rows, table rows)``, for `ttl` seconds per filter.

    Keyed by the estimate statement and its values; holds at most `max_entries` entries and `max_bytes` bytes of
    keys in memory (a filter with a long ``$in`` list makes a long key: one larger than an eighth of the budget is not
    kept). The oldest entries go first. An estimate only steers how to scan, never which rows are right.
    """

    def __init__(self, ttl: float = 60.0, max_entries: int = 1024, max_bytes: int = 1 << 20) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._entries: dict[str, tuple[float, float, float]] = {}
        self._bytes = 0

    @staticmethod
    def key(statement: Statement) -> str:
        return f"{statement.sql}\x00{statement.args!r}"

    def get(self, key: str, now: float | None = None) -> tuple[float, float] | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if (time.monotonic() if now is None else now) - entry[2] >= self.ttl:
            self._drop(key)
            return None
        return entry[0], entry[1]

    def put(self, key: str, matching: float, total: float, now: float | None = None) -> None:
        size = sys.getsizeof(key)
        if size > self.max_bytes // 8:
            return
        if key in self._entries:
            self._drop(key)
        while self._entries and (len(self._entries) >= self.max_entries or self._bytes + size > self.max_bytes):
            self._drop(next(iter(self._entries)))
        self._entries[key] = (matching, total, time.monotonic() if now is None else now)
        self._bytes += size

    def _drop(self, key: str) -> None:
        del self._entries[key]
        self._bytes -= sys.getsizeof(key)

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def bytes(self) -> int:
        return self._bytes
