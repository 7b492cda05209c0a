"""How a search uses the vector index: query-time settings, and when to scan exactly instead.

Pure functions, no I/O: `pgvecstore.planner` and `pgvecstore.searcher` call them around the SQL. The problem they
solve is filtered search. pgvector's HNSW and IVFFlat indexes find nearest neighbours first and apply the WHERE
clause afterwards, so a selective filter can leave fewer than ``k`` rows. pgvector 0.8's iterative index scans
(``hnsw.iterative_scan``/``ivfflat.iterative_scan``) keep scanning until ``k`` rows match, up to
``hnsw.max_scan_tuples`` visited tuples (``ivfflat.max_probes`` lists): that gives ``k`` rows, but not the right
ones once the filter is selective. Measured on 200,000 clustered 384-dimensional vectors (HNSW m=16,
ef_construction=64, recall@10 against the exact filtered answer; ``benchmarks/filtered.py``):

- a filter matching 3% to 50% of the rows: the index's own recall, which depends on the build of the graph (HNSW
  levels are drawn at random). With a candidate list of 200, builds found 0.94-0.98 of the right rows; with 400,
  0.96-0.98: the weaker builds gain 0.01-0.02, the others next to nothing, and 600 or 1,000 add at most 0.005
  more. 400 costs 5-20% of the speed of 200 and is still 10-20 times faster than the exact scan;
- 2%: 0.88-0.92; 1%: 0.65-0.85, and the scan takes about as long as reading every matching row exactly, which
  finds all of them.

So a filtered search:

1. asks the planner how many rows the filter matches (`sql.queries.estimate_rows`: ``EXPLAIN``, planning only,
   no rows read);
2. if the estimated share is at most ``exact_selectivity``, runs the plan's exact twin, whose ORDER BY no vector
   index serves (`EXACT_SCAN_SETTINGS`): PostgreSQL reads the matching rows (by a b-tree where one applies, e.g.
   ``document_id``, the tenant's ``domain_id`` or an indexed metadata key, by an index-only scan of a covering
   index) and sorts them by distance. The default, 3.5%, allows for the
   planner's estimate of a metadata equality, which counts matches in a sample of 99 values (with the default
   statistics target): one 1% filter in 17 is estimated at 3 in 99 (the exact scan still takes it), one in 55
   at 4 or more (the index scan, with a longer list, takes it); one 10% filter in 120 is estimated at 3 in 99
   or less (the exact scan takes it: slower, never less right). A higher statistics target of the metadata
   (the ``metadata_statistics`` option; 300 sent no 1% filter to the index at 1,000,000 rows, at the price of a
   larger ``ANALYZE``: ``benchmarks/filter_estimates.py``) narrows the estimates;
3. otherwise runs the index scan with `search_settings`: a candidate list of ``filtered_ef_search`` (400), made
   longer for selective filters so that by the estimate it holds ``2 * k`` matching rows (`filtered_ef`, at most
   1,000), so that the ``k`` rows come from the index's first, exactly ordered pass rather than from the
   iterative scan's later passes (strict order drops what a later pass finds nearer than a row already
   returned). At k=10, filters of 5% or more keep 400; the longer list helps the filters near the threshold that
   the estimate sends to the index (a 2% filter: 0.88 -> 0.92);
4. if the index scan still returned fewer than ``k`` rows (the estimate was wrong, or the scan hit its limit),
   runs the exact scan: a search returns ``k`` rows whenever ``k`` rows match (`should_retry_exact`).

Both paths plan each search afresh (`CUSTOM_PLAN`): a prepared statement's generic plan would keep one value's
plan for the other values' searches on the same connection. The store's own connections start with that setting
(so a selective filter's exact scan is one statement, no transaction); the index path sets it again with its
other settings. Unfiltered searches skip steps 1, 2 and 4: no extra round
trip. `record_paths` tells which of these paths each
filtered search took (for benchmarks and tests).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, fields, replace
from typing import Any

from pgvecstore.errors import InvalidOptionError, did_you_mean

# Integer knobs: name -> (low, high). Ranges are pgvector 0.8's for the settings they map to.
INT_OPTION_RANGES: dict[str, tuple[int, int]] = {
    "ef_search": (1, 1000),
    "filtered_ef_search": (1, 1000),
    "max_scan_tuples": (1, 2**31 - 1),
    "scan_mem_multiplier": (1, 1000),
    "probes": (1, 32768),
    "max_probes": (1, 32768),
    "rerank_factor": (1, 1000),
}
FLOAT_OPTION_RANGES: dict[str, tuple[float, float]] = {"exact_selectivity": (0.0, 1.0)}
BOOL_OPTIONS = ("retry_exact",)

# Every filtered search is planned for its own settings and values. PostgreSQL switches a prepared statement (the
# pool's statement cache) to a generic plan after five runs and keeps it whatever the values and settings of later
# runs: a plan that reads one filter value's few rows by an index would read a broad value's rows the same way,
# and a plan made for an index scan would ignore later settings. Direct connections of the store start with it
# (`connection.startup_settings`); measured, the store's unfiltered searches were planned afresh each time anyway
# (PostgreSQL found no generic plan cheaper), so it costs them nothing.
CUSTOM_PLAN: dict[str, str] = {"plan_cache_mode": "force_custom_plan"}
# Transaction-local settings of the exact scan, where the connections do not plan each statement afresh already
# (an application's pool, a pooler with a statement cache: `PoolRegistry.plans_each_statement`). Its statement
# (the plan's exact twin) orders by an expression no vector index serves (`sql.queries.vector_search`), so every
# other index stays allowed: a filter on an indexed
# column (document_id, domain_id, an indexed metadata key) finds its rows by b-tree, and a covering index
# (`covering_metadata`) gives them with their vectors by an index-only scan. (Turning index scans off, as this
# once did, rules out index-only scans too in PostgreSQL 18.)
EXACT_SCAN_SETTINGS: dict[str, str] = {**CUSTOM_PLAN}
# pgvector 0.8 iterative index scans: keep scanning until k rows pass the filter. HNSW keeps exact order; IVFFlat
# only offers relaxed order (the store sorts its k rows by distance).
ITERATIVE_SCAN: dict[str, str] = {"hnsw.iterative_scan": "strict_order", "ivfflat.iterative_scan": "relaxed_order"}
# Matching rows per requested row that a filtered HNSW search's first pass should hold, by the planner's estimate.
MATCHES_PER_RESULT = 2
MAX_EF_SEARCH = 1000  # pgvector's upper bound of hnsw.ef_search


@dataclass(frozen=True)
class SearchOptions:
    """Query-time knobs of `PgVectorStore.search` (store option ``search_params``, or per call).

    - ``ef_search``: HNSW candidate list of unfiltered searches (pgvector default 40). Raised to ``k`` when
      smaller, since HNSW returns at most ``ef_search`` rows per pass.
    - ``filtered_ef_search``: HNSW candidate list of filtered searches (default 400): filtered candidates are
      lost recall, so filtered searches look wider; longer still for a selective filter, so that the list holds
      ``2 * k`` matching rows by the planner's estimate (`filtered_ef`, at most 1,000).
    - ``max_scan_tuples``: most tuples a filtered HNSW iterative scan visits before it gives up (default 20,000,
      pgvector's).
    - ``scan_mem_multiplier``: memory of that scan as a multiple of ``work_mem`` (default 2).
    - ``probes`` / ``max_probes``: IVFFlat lists probed first / at most by an iterative scan (pgvector defaults:
      1 / all lists).
    - ``exact_selectivity``: a filtered search whose filter the planner estimates to match at most this share of
      the table scans exactly instead of using the index (default 0.035, i.e. 3.5%; 0 disables the estimate,
      and with it the longer candidate list of selective filters).
    - ``retry_exact``: when a filtered index scan returns fewer than ``k`` rows, run the exact scan (default
      True), so a search returns ``k`` rows whenever ``k`` rows match.
    - ``rerank_factor``: with ``quantization="binary"``, the candidates re-ranked per requested row (default
      None: the store's ``rerank_factor`` option, 64). The index scan returns ``k * rerank_factor`` rows, so
      ``ef_search`` is raised to that (at most 1,000; iterative scans fetch the rest). Stores without
      quantization ignore it.
    """

    ef_search: int | None = None
    filtered_ef_search: int = 400
    max_scan_tuples: int = 20_000
    scan_mem_multiplier: int = 2
    probes: int | None = None
    max_probes: int | None = None
    exact_selectivity: float = 0.035
    retry_exact: bool = True
    rerank_factor: int | None = None

    @classmethod
    def from_params(cls, *layers: Mapping[str, Any] | None) -> SearchOptions:
        """Options from the defaults overlaid by each mapping in turn (the store's, then the call's)."""
        options = cls()
        for layer in layers:
            if layer:
                options = replace(options, **validate_search_options(layer))
        return options


def validate_search_options(params: object) -> dict[str, Any]:
    """Check search options; an unknown name or a bad value raises a ValueError that names the option."""
    if params is None:
        return {}
    if not isinstance(params, Mapping):
        raise InvalidOptionError(f"search_params must be a mapping, got {params!r}")
    known = [f.name for f in fields(SearchOptions)]
    result: dict[str, Any] = {}
    for name, value in params.items():
        if name in INT_OPTION_RANGES:
            low, high = INT_OPTION_RANGES[name]
            if value is None and name in ("ef_search", "probes", "max_probes", "rerank_factor"):
                result[name] = None
                continue
            if isinstance(value, bool) or not isinstance(value, int):
                raise InvalidOptionError(
                    f"search_params.{name} must be an integer between {low} and {high}, got {value!r}"
                )
            if not low <= value <= high:
                raise InvalidOptionError(f"search_params.{name} must be between {low} and {high}, got {value}")
            result[name] = int(value)
        elif name in FLOAT_OPTION_RANGES:
            low_f, high_f = FLOAT_OPTION_RANGES[name]
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or not low_f <= value <= high_f
            ):
                raise InvalidOptionError(
                    f"search_params.{name} must be a number between {low_f} and {high_f}, got {value!r}"
                )
            result[name] = float(value)
        elif name in BOOL_OPTIONS:
            if not isinstance(value, bool):
                raise InvalidOptionError(f"search_params.{name} must be True or False, got {value!r}")
            result[name] = value
        else:
            raise InvalidOptionError(f"search_params: unknown parameter {name!r}{did_you_mean(str(name), known)}")
    return result


def search_settings(options: SearchOptions, *, filtered: bool, k: int, share: float | None = None) -> dict[str, str]:
    """Transaction-local server settings (name -> value, for ``set_config``) of an index search.

    Unfiltered searches set only what the options change from pgvector's defaults, so a plain search with
    default options costs no extra statement; filtered searches also set the iterative scan's limits, and a
    candidate list sized by `share`, the planner's estimate of the share of rows the filter matches (`filtered_ef`).
    """
    settings: dict[str, str] = {}
    if filtered:
        # The pool's connections scan iteratively already; saying so here keeps a filtered search right on any
        # connection (it rides on the same set_config statement, so it costs nothing).
        settings.update(ITERATIVE_SCAN)
        settings.update(CUSTOM_PLAN)
        settings["hnsw.ef_search"] = str(filtered_ef(options, k, share))
        settings["hnsw.max_scan_tuples"] = str(options.max_scan_tuples)
        settings["hnsw.scan_mem_multiplier"] = str(options.scan_mem_multiplier)
    elif options.ef_search is not None or k > 40:
        settings["hnsw.ef_search"] = str(max(options.ef_search or 40, min(k, MAX_EF_SEARCH)))
    if options.probes is not None:
        settings["ivfflat.probes"] = str(options.probes)
    if options.max_probes is not None and filtered:
        settings["ivfflat.max_probes"] = str(options.max_probes)
    return settings


def filtered_ef(options: SearchOptions, k: int, share: float | None = None) -> int:
    """HNSW candidate list of a filtered search: ``filtered_ef_search`` (or ``ef_search`` or ``k`` if larger),
    lengthened to ``MATCHES_PER_RESULT * k / share`` so that by the estimate the list holds ``2 * k`` matching
    rows; at most 1,000. Without an estimate (`share` None), the list is not lengthened."""
    ef = max(options.filtered_ef_search, options.ef_search or 0, k)
    if share is not None and share > 0:
        ef = max(ef, math.ceil(MATCHES_PER_RESULT * k / share))
    return min(ef, MAX_EF_SEARCH)


def wants_estimate(options: SearchOptions, *, filtered: bool) -> bool:
    """Whether a search should ask the planner how selective its filter is (filtered searches, unless disabled)."""
    return filtered and options.exact_selectivity > 0


def parse_estimate(plan: str | list[Any]) -> tuple[float, float]:
    """``(matching rows, table rows)`` from the JSON plan of `sql.queries.estimate_rows` (its Append's two branches)."""
    document = json.loads(plan) if isinstance(plan, str) else plan
    top = document[0]["Plan"]
    branches = top.get("Plans") or []
    if top.get("Node Type") == "Append" and len(branches) == 2:
        return float(_rows(branches[0])), float(_rows(branches[1]))
    # The planner dropped the filtered branch: the filter is constant-false (e.g. {"$in": []}), so nothing matches.
    return 0.0, float(_rows(top))


def _rows(node: Mapping[str, Any]) -> float:
    """Estimated rows of a plan node, looking through wrappers (Subquery Scan, Result, Gather) to the scan."""
    return float(node.get("Plan Rows", 0.0))


def estimated_share(matching: float, total: float) -> float | None:
    """The share of the table's rows that the planner estimates the filter to match (None without table rows)."""
    return matching / total if total > 0 else None


def use_exact_scan(options: SearchOptions, matching: float, total: float, k: int) -> bool:
    """Whether the planner's estimate says the filter is selective enough to read its rows exactly.

    Exact when the estimated share is at most ``exact_selectivity``, or when the filter matches so few rows that
    an iterative index scan could not find ``k`` of them within ``max_scan_tuples`` visited tuples.
    """
    if options.exact_selectivity <= 0 or total <= 0:
        return False
    share = matching / total
    if share <= options.exact_selectivity:
        return True
    return share * options.max_scan_tuples < k


def should_retry_exact(options: SearchOptions, returned: int, k: int, *, filtered: bool, exact: bool) -> bool:
    """Whether a filtered index search that returned `returned` rows must be re-run exactly: it found fewer than
    `k`, which an exact scan answers definitively (fewer rows then means fewer rows match)."""
    return options.retry_exact and filtered and not exact and returned < k


# -- diagnostics ---------------------------------------------------------------------------------------------------
_recorded_paths: ContextVar[list[str] | None] = ContextVar("pgvecstore_search_paths", default=None)


@contextmanager
def record_paths() -> Iterator[list[str]]:
    """Diagnostics for benchmarks and tests, not part of the public API: a list that receives the path each
    filtered vector search run in this context (and in tasks started from it) takes, in order: ``"index"``,
    ``"exact"`` (the estimate chose the exact scan) or ``"index+exact"`` (the index scan came back short and was
    re-run exactly). Context-local, so concurrent callers never see each other's searches; nothing is recorded
    outside it."""
    paths: list[str] = []
    token = _recorded_paths.set(paths)
    try:
        yield paths
    finally:
        _recorded_paths.reset(token)


def note_path(path: str) -> None:
    """Record the path a filtered search took in the list of the enclosing `record_paths`, if any."""
    paths = _recorded_paths.get()
    if paths is not None:
        paths.append(path)
