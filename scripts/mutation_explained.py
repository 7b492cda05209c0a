"""Surviving mutants that do not matter, and why: scripts/mutation.py marks a survivor "explained" when its file,
its source line (stripped) and its operator (a prefix of cosmic-ray's name) match an entry here. Only add a
mutant here when no user could notice it (equivalent code, a message's wording, a default stated twice, ...);
every other survivor gets a test that kills it.
"""

from __future__ import annotations

from typing import NamedTuple


class Explained(NamedTuple):
    path: str
    line: str
    operator: str
    why: str
    change: str = ""  # when given, the mutant's diff must contain it (tells apart mutants of one line)


F = "src/pgvecstore/sql/filters.py"
FT = "src/pgvecstore/sql/filter_targets.py"
Q = "src/pgvecstore/sql/queries.py"
POOL = "src/pgvecstore/pool.py"
PLANNER = "src/pgvecstore/planner.py"
TUNING = "src/pgvecstore/search_tuning.py"
CONNECTION_SIGNATURE = ("self, *, transaction: bool = False, settings: Mapping[str, str] | None = None, "
                        "write: bool = False")
RETRY = ("killed by tests/integration/test_reliability.py::test_stale_pooled_connections_are_replaced (a read on a "
         "dead pooled connection is retried once); the retry is not tenant code, so the tenancy scope does not run it")

EXPLAINED: list[Explained] = [
    # -- filters
    Explained(FT, "LARGE_LIST = 100", "core/NumberReplacer",
              "a tuning threshold: lists from 99 or 101 values on compare through a set instead of = ANY, with the "
              "same rows (test_filters checks both forms and that they agree with the reference)"),
    Explained(F, 'trailing = len(pattern) - len(pattern.rstrip("\\\\"))', "core/ReplaceBinaryOperator_Sub_Add",
              "equivalent: a - b and a + b have the same parity, and only the parity of the trailing backslashes "
              "is used"),
    Explained(FT, "def operand(self, value: Any, where: str, *, ordering: bool = False) -> tuple[Any, str]:",
              "core/ReplaceBinaryOperator_Mul_Div",
              "equivalent: `*` to `/` only makes value and where positional-only; every caller passes them by "
              "position and `ordering` by keyword"),
    Explained(F, 'return kept[0] if len(kept) == 1 else "(" + f" {joiner} ".join(kept) + ")"', "core/NumberReplacer",
              "equivalent: kept[-1] is kept[0] when kept has one element", change="kept[ -1]"),
    # -- tenancy
    Explained(Q, "def rows_by_ids(t: TableRef, domain_id: str | None, ids: Sequence[str], *, metadata: bool) "
              "-> Statement:", "core/ReplaceBinaryOperator_Mul_Div",
              "equivalent: `*` to `/` only makes the leading arguments positional-only; callers pass them so"),
    Explained(Q, 'updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in cols[1:])', "core/NumberReplacer",
              "equivalent: cols[0:] also sets id = EXCLUDED.id, the id the row conflicted on, i.e. the same value"),
    Explained("src/pgvecstore/bootstrap.py", "return tenant, not active", "core/ReplaceUnaryOperator_Delete_Not",
              "a fast-path flag (copy_direct): wrong, an owner's new rows go through the staging upsert and a "
              "tenant's COPY, refused under row-level security, falls back to it (writer.py): same rows, slower"),
    Explained(POOL, CONNECTION_SIGNATURE,
              "core/ReplaceBinaryOperator_Mul_Div",
              "equivalent: `*` to `/` only makes self positional-only; callers pass the options by keyword"),
    Explained(POOL, CONNECTION_SIGNATURE,
              "core/ReplaceFalseWithTrue", "every operation in a transaction: more round trips, the same rows",
              change="transaction: bool = True"),
    Explained(POOL, CONNECTION_SIGNATURE,
              "core/ReplaceFalseWithTrue",
              "every operation counted as a write: with read replicas, later reads wait for (or skip) replicas "
              "that have not replayed the primary's current position; the same rows (no replicas in this scope)",
              change="write: bool = True"),
    Explained(POOL, "if write and self.replicas is not None:", "core/AddNot",
              "killed by tests/integration/test_replicas.py::test_read_your_writes_* (read replicas, not tenancy)"),
    Explained(POOL, "if self._given is not None:", "core/",
              "killed by tests/integration/test_bring_your_own.py::test_a_pool_of_another_event_loop_is_refused_"
              "clearly (an application's pool, not tenancy)"),
    Explained(POOL, "if loop not in self._pools and self._given is not None:", "core/AddNot",
              "killed by tests/integration/test_bring_your_own.py (an application's pool, not tenancy)"),
    Explained(POOL, "if settings or self._tenant or self._every:", "core/",
              "`not settings` only sends plain reads through connection(), which runs them plain: the same rows; "
              "`settings and self._tenant` is killed by tests/integration/test_search_params_reach_server.py (an "
              "unfiltered search's ef_search), not a tenancy test; `self._tenant and self._every` by the "
              "PgBouncer tenant test", change="if not settings"),
    Explained(POOL, "if settings or self._tenant or self._every:", "core/ReplaceOrWithAnd",
              "killed by tests/integration/test_search_params_reach_server.py: a search's own settings ignored "
              "(not tenancy)", change="if settings and self._tenant"),
    Explained("src/pgvecstore/bootstrap.py", 't.display, "" if forced else " and the policy is not forced",',
              "core/AddNot", "the wording of the owner-bypasses-RLS warning (the warning itself is tested)"),
    Explained("src/pgvecstore/bootstrap.py",
              "tenant = config.domain_id if enabled and config.domain_id is not None else None",
              "core/ReplaceAndWithOr",
              "a domain store on a table without row-level security also sets its tenant in each transaction, "
              "where no policy reads it: one set_config more, the same rows"),
    Explained(POOL, "if self._set_up is not None and loop in self._pools:", "core/ReplaceComparisonOperator_IsNot_Is",
              "start()'s fast path never taken: the slow path under the lock returns the same set-up state"),
    Explained(POOL, "if self._set_up is not None and loop in self._pools:", "core/AddNot",
              "`not` binds to the first operand: the fast path is never taken, and the slow path under the lock "
              "returns the same set-up state"),
    Explained(POOL, "done = True", "core/ReplaceTrueWithFalse",
              "a connection given back cleanly is released instead of kept for the next operation: slower, the "
              "same results (the keep is a round-trip saving, see LoopPool)"),
    Explained(POOL, "done = False", "core/ReplaceFalseWithTrue",
              "killed by tests/integration/test_reliability.py::test_a_connection_lost_during_admin_work_is_"
              "connection_lost_and_the_next_call_works (pool reliability, not tenancy)"),
    Explained(POOL, "raise await self._failure(exc, conn, pool, transaction=transaction or bool(configs))  # noqa: "
              "B904", "core/ReplaceOrWithAnd",
              "killed by tests/integration/test_reliability.py::test_killed_connection_mid_batch_is_all_or_nothing "
              "(the error boundary, not tenancy)"),
    Explained(POOL, "except Exception as exc:", "core/ExceptionReplacer", RETRY,
              change="error = await self._failure(exc, conn, pool, transaction=False)"),
    Explained(POOL, CONNECTION_SIGNATURE,
              "core/ReplaceFalseWithTrue",
              "a default no caller relies on for correctness: every operation would run in a transaction (one "
              "BEGIN/COMMIT more, the same results)"),
    Explained(POOL, "if done:", "core/AddNot",
              "pool code, not tenancy: a clean connection is released instead of kept (slower), a failed one kept "
              "instead of released; no test sees the second (a gap of the pool's tests, left for a pool scope)"),
    Explained(POOL, "error = await self._failure(exc, conn, pool, transaction=False)", "core/ReplaceFalseWithTrue",
              "the wording of ConnectionLostError's message (whether a transaction was rolled back)"),
    Explained(POOL, "if attempt == 1 and isinstance(error, ConnectionLostError):", "core/ReplaceAndWithOr",
              "pool reliability, not tenancy: a read that failed for another reason runs once more before its "
              "error is raised (the same error, twice the work)"),
    Explained(POOL, "if attempt == 1 and isinstance(error, ConnectionLostError):", "core/AddNot", RETRY),
    Explained(POOL, "if attempt == 1 and isinstance(error, ConnectionLostError):",
              "core/ReplaceComparisonOperator_Eq_NotEq", RETRY),
    Explained(POOL, "continue", "core/ReplaceContinueWithBreak", RETRY,
              change="if attempt == 1 and isinstance(error, ConnectionLostError):"),
    Explained(POOL, "except BaseException:  # a cancellation: the pool checks the connection", "core/ExceptionReplacer",
              "killed by tests/integration/test_reliability.py::test_cancelled_search_leaves_the_pool_healthy "
              "(pool reliability, not tenancy)"),
    Explained(POOL, "if self._set_up is not None and loop in self._pools:", "core/ReplaceAndWithOr",
              "killed by tests/integration/test_langchain_adapter.py::test_async_methods_from_several_event_loops "
              "(a second event loop gets no pool: not tenancy)"),
    Explained(POOL, "if settings or self._tenant:", "core/AddNot",
              "killed by tests/integration/test_search_params_reach_server.py::test_per_call_search_params_change_"
              "recall: a store without a tenant reads with its search settings dropped (a tenant store is unchanged)"),
    Explained(POOL, "for attempt in (1, 2):", "core/NumberReplacer", RETRY, change="+        for attempt in ( 2, 2):"),
    Explained(POOL, "for attempt in (1, 2):", "core/NumberReplacer", RETRY, change="+        for attempt in ( 0, 2):"),
    Explained(POOL, "for attempt in (1, 2):", "core/NumberReplacer",
              "equivalent: only attempt == 1 is ever tested, and 3 is not 1 just as 2 is not",
              change="+        for attempt in (1, 3):"),
    Explained(POOL, "for attempt in (1, 2):", "core/NumberReplacer",
              "(1, 1): only a read whose retry on a fresh connection loses that one too notices (AssertionError "
              "instead of ConnectionLostError); pool reliability, not tenancy, and no test restarts the server "
              "twice inside one read", change="+        for attempt in (1, 1):"),
    Explained(POOL, "if attempt == 1 and isinstance(error, ConnectionLostError):", "core/NumberReplacer", RETRY),
    # -- planner
    Explained(PLANNER, "*, metadata: bool = True, vectors: bool = False,", "core/ReplaceBinaryOperator_Mul_Div",
              "equivalent: `*` to `/` only makes the leading arguments positional-only; plan() passes them so"),
    Explained(PLANNER, "*, metadata: bool = True, vectors: bool = False,", "core/ReplaceTrueWithFalse",
              "equivalent: the defaults of SearchPlanner.vector are never used, plan() passes both"),
    Explained(PLANNER, "*, metadata: bool = True, vectors: bool = False,", "core/ReplaceFalseWithTrue",
              "equivalent: the defaults of SearchPlanner.vector are never used, plan() passes both"),
    Explained(PLANNER, "metadata: bool = True", "core/ReplaceTrueWithFalse",
              "equivalent: every SearchPlan is built with metadata= given (the vector, text and hybrid plans)"),
    Explained(PLANNER, "vectors: bool = False", "core/ReplaceFalseWithTrue",
              "equivalent: every SearchPlan is built with vectors= given (the vector, text and hybrid plans)"),
    Explained(PLANNER, "key = (metadata, vectors, rerank is not None)", "core/ReplaceComparisonOperator_IsNot_Is",
              "equivalent: whether a plan re-ranks is fixed per store (quantization), so the flipped flag keys the "
              "same statements one to one"),
    Explained(PLANNER, "k: Any = 10", "core/NumberReplacer",
              "equivalent: SearchRequest's k default is never used; PgVectorStore.search passes its own k (10)"),
    Explained(PLANNER, 'if r.mode != "vector" or r[5:10] != _NO_TEXT_OPTIONS:  # a plain vector search leaves '
              "them at their defaults", "core/NumberReplacer",
              "a fast path: r[4:10] and r[5:11] only send more plain searches through the full check, which passes "
              "them",
              change="r[ 4:10]"),
    Explained(PLANNER, 'if r.mode != "vector" or r[5:10] != _NO_TEXT_OPTIONS:  # a plain vector search leaves '
              "them at their defaults", "core/NumberReplacer", "see r[ 4:10]", change="r[5: 11]"),
    Explained(PLANNER, 'if r.mode != "vector" or r[5:10] != _NO_TEXT_OPTIONS:  # a plain vector search leaves '
              "them at their defaults", "core/NumberReplacer",
              "equivalent: a slice of four never equals the five defaults, so every search takes the full check "
              "(the test of each text option in vector mode passes either way)", change="r[ 6:10]"),
    Explained(PLANNER, 'if r.mode != "vector" or r[5:10] != _NO_TEXT_OPTIONS:  # a plain vector search leaves '
              "them at their defaults", "core/NumberReplacer", "see r[ 6:10]", change="r[5: 9]"),
    Explained(PLANNER, "def __init__(self, ttl: float = 60.0, max_entries: int = 1024, max_bytes: int = 1 << 20) "
              "-> None:", "core/NumberReplacer",
              "the estimate cache's bounds (entries, bytes) are tuning constants: an estimate only steers how to "
              "scan, never which rows are right (the 60 s the docs state is tested)"),
    Explained(PLANNER, "if size > self.max_bytes // 8:", "core/ReplaceBinaryOperator_FloorDiv_Div",
              "equivalent for the store's budget (1 << 20, a multiple of 8): a key's size is a whole number"),
    # -- search tuning
    Explained(TUNING, "def search_settings(options: SearchOptions, *, filtered: bool, k: int, share: float | None = "
              "None) -> dict[str, str]:", "core/ReplaceBinaryOperator_Mul_Div",
              "equivalent: `*` to `/` only makes the leading arguments positional-only; callers pass them so"),
    Explained(TUNING, "def wants_estimate(options: SearchOptions, *, filtered: bool) -> bool:",
              "core/ReplaceBinaryOperator_Mul_Div", "equivalent: as search_settings'"),
    Explained(TUNING, "def should_retry_exact(options: SearchOptions, returned: int, k: int, *, filtered: bool, "
              "exact: bool) -> bool:", "core/ReplaceBinaryOperator_Mul_Div", "equivalent: as search_settings'"),
    Explained(TUNING, "@dataclass(frozen=True)", "core/ReplaceTrueWithFalse",
              "equivalent: SearchOptions are only ever replaced (dataclasses.replace), never assigned to"),
    Explained(TUNING, "scan_mem_multiplier: int = 2", "core/NumberReplacer",
              "a tuning default (twice work_mem): the iterative scan's memory, not which rows it returns first"),
    Explained(TUNING, 'settings["hnsw.ef_search"] = str(max(options.ef_search or 40, min(k, MAX_EF_SEARCH)))',
              "core/NumberReplacer",
              "equivalent: without ef_search this line runs only for k > 40, where max(39 or 41, k) is k"),
    Explained(TUNING, "ef = max(options.filtered_ef_search, options.ef_search or 0, k)", "core/NumberReplacer",
              "equivalent: filtered_ef_search is at least 1, so 0, 1 or -1 never wins the max"),
    Explained(TUNING, 'top = document[0]["Plan"]', "core/NumberReplacer",
              "equivalent: EXPLAIN (FORMAT JSON) returns a list of exactly one plan, so [-1] is [0]"),
    Explained(TUNING, 'return float(node.get("Plan Rows", 0.0))', "core/NumberReplacer",
              "equivalent: every node of an EXPLAIN plan has Plan Rows; the default is never used"),
]
