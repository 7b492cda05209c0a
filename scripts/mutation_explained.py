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


F = "src/pgvecstore/sql/filters.py"
Q = "src/pgvecstore/sql/queries.py"
POOL = "src/pgvecstore/pool.py"
RETRY = ("killed by tests/integration/test_reliability.py::test_stale_pooled_connections_are_replaced (a read on a "
         "dead pooled connection is retried once); the retry is not tenant code, so the tenancy scope does not run it")

EXPLAINED: list[Explained] = [
    # -- filters
    Explained(F, "LARGE_LIST = 100", "core/NumberReplacer",
              "a tuning threshold: lists from 99 or 101 values on compare through a set instead of = ANY, with the "
              "same rows (test_filters checks both forms and that they agree with the reference)"),
    Explained(F, 'trailing = len(pattern) - len(pattern.rstrip("\\\\"))', "core/ReplaceBinaryOperator_Sub_Add",
              "equivalent: a - b and a + b have the same parity, and only the parity of the trailing backslashes "
              "is used"),
    Explained(F, "def operand(self, value: Any, where: str, *, ordering: bool = False) -> tuple[Any, str]:",
              "core/ReplaceBinaryOperator_Mul_Div",
              "equivalent: `*` to `/` only makes value and where positional-only; every caller passes them by "
              "position and `ordering` by keyword"),
    # -- tenancy
    Explained(Q, "def rows_by_ids(t: TableRef, domain_id: str | None, ids: Sequence[str], *, metadata: bool) "
              "-> Statement:", "core/ReplaceBinaryOperator_Mul_Div",
              "equivalent: `*` to `/` only makes the leading arguments positional-only; callers pass them so"),
    Explained(Q, 'updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in cols[1:])', "core/NumberReplacer",
              "equivalent: cols[0:] also sets id = EXCLUDED.id, the id the row conflicted on, i.e. the same value"),
    Explained("src/pgvecstore/bootstrap.py", "return tenant, not active", "core/ReplaceUnaryOperator_Delete_Not",
              "a fast-path flag (copy_direct): wrong, an owner's new rows go through the staging upsert and a "
              "tenant's COPY, refused under row-level security, falls back to it (writer.py): same rows, slower"),
    Explained(POOL, "self, *, transaction: bool = False, settings: Mapping[str, str] | None = None",
              "core/ReplaceBinaryOperator_Mul_Div",
              "equivalent: `*` to `/` only makes self positional-only; callers pass the options by keyword"),
    Explained(POOL, "for attempt in (1, 2):", "core/NumberReplacer", RETRY),
    Explained(POOL, "if attempt == 1 and isinstance(error, ConnectionLostError):", "core/NumberReplacer", RETRY),
]
