"""Layout versions of the store's table: what each version is, how the table records its version (its comment),
and how the version of a table without that record is inferred from the catalog (see docs/upgrading.md).

- Layout 1 (pgvecstore 0.1): a generated tsvector column over the content, its GIN index; no term frequencies,
  no term statistics.
- Layout 2 (pgvecstore 0.2): a plain tsvector and a term-frequency column set by a row trigger, the per-domain
  term statistics kept by statement triggers (row length: its token count), the vector column stored MAIN.
- Layout 3 (pgvecstore 0.3): as layout 2 without the term-frequency column (BM25 reads term counts from the
  tsvector); a row's length in the statistics is its number of distinct lexemes.

The store owns the table's comment: ``pgvecstore layout 3``, or ``pgvecstore layout 1, upgrading to 3`` while
`PgVectorStore.upgrade` runs. No I/O here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

CURRENT_LAYOUT = 3
_COMMENT = re.compile(r"pgvecstore layout (\d+)(?:, upgrading to (\d+))?")


def comment_text(version: int, upgrading_to: int | None = None) -> str:
    """The table comment that records `version` (and, during an upgrade, the version it is going to)."""
    text = f"pgvecstore layout {int(version)}"
    return text if upgrading_to is None else f"{text}, upgrading to {int(upgrading_to)}"


@dataclass(frozen=True)
class LayoutVersion:
    """A table's layout: its version, the version an unfinished upgrade is going to (else None), and whether the
    table's comment recorded it (False: inferred from the catalog)."""

    version: int
    upgrading_to: int | None
    recorded: bool

    @property
    def current(self) -> bool:
        """At the current layout, with no upgrade unfinished."""
        return self.version >= CURRENT_LAYOUT and self.upgrading_to is None


def read_version(
    comment: str | None, *, has_text_column: bool, generated: bool, text_complete: bool, has_terms_column: bool
) -> LayoutVersion:
    """The table's layout: its comment when that is a pgvecstore record; else inferred from its text-search parts
    (a table without a text-search column, or with every part of the current layout, is current; a generated
    column or missing term statistics is layout 1; statistics with the term-frequency column are layout 2, as
    tables made by pgvecstore 0.2.0, which wrote no comment)."""
    match = _COMMENT.fullmatch(comment.strip()) if comment else None
    if match is not None:
        upgrading = match.group(2)
        return LayoutVersion(int(match.group(1)), int(upgrading) if upgrading else None, True)
    if not has_text_column or text_complete:
        return LayoutVersion(CURRENT_LAYOUT, None, False)
    if generated or not has_terms_column:
        return LayoutVersion(1, None, False)
    return LayoutVersion(2, None, False)
