"""Typed results: what a search or a read returns, decoded from the rows of `pgvecstore.sql.queries`.

`SearchResult` unpacks as the seed backend's ``(id, score, metadata)`` tuple and also carries the row's
``content``, ``document_id``, ``chunk_index`` and, when asked for, its ``vector``. `Row` (from `get`) unpacks as
``(id, vector, metadata)``. ``metadata`` is the dict the row was written with, nothing added.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

_loads = json.loads


def metadata_of(raw: str | None) -> dict[str, Any]:
    """The metadata dict of a row's metadata column, read as JSON text (an empty dict for none)."""
    return _loads(raw) if raw else {}


class _Result:
    """A result that unpacks and indexes as a short tuple (`_fields`) and also has the row's columns."""

    __slots__ = ("chunk_index", "content", "document_id", "id", "metadata", "vector")
    _fields: tuple[str, ...] = ()

    id: str
    metadata: dict[str, Any] | None
    content: str | None
    document_id: str | None
    chunk_index: int | None
    vector: np.ndarray | None

    def _tuple(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self._fields)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._tuple())

    def __len__(self) -> int:
        return len(self._fields)

    def __getitem__(self, index: int | slice) -> Any:
        return self._tuple()[index]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, _Result):
            return type(other) is type(self) and _same(self._tuple(), other._tuple()) and _same(
                (self.content, self.document_id, self.chunk_index, self.vector),
                (other.content, other.document_id, other.chunk_index, other.vector),
            )
        if isinstance(other, tuple):
            return _same(self._tuple(), other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # holds a dict: not hashable, as the seed's tuples are not

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in (*self._fields, *_COLUMNS))
        return f"{type(self).__name__}({shown})"


_COLUMNS = ("content", "document_id", "chunk_index")


def _same(a: Sequence[Any], b: Sequence[Any]) -> bool:
    if len(a) != len(b):
        return False
    for x, y in zip(a, b, strict=True):
        if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
            if x is None or y is None or not np.array_equal(x, y):
                return False
        elif x != y:
            return False
    return True


class SearchResult(_Result):
    """One search hit: unpacks as ``(id, score, metadata)``; ``content``, ``document_id``, ``chunk_index`` and
    (with ``include_vectors=True``) ``vector`` are attributes."""

    __slots__ = ("score",)
    _fields = ("id", "score", "metadata")
    score: float

    def __init__(
        self,
        id: str,
        score: float,
        metadata: dict[str, Any] | None = None,
        content: str | None = None,
        document_id: str | None = None,
        chunk_index: int | None = None,
        vector: np.ndarray | None = None,
    ) -> None:
        self.id, self.score, self.metadata = id, score, metadata
        self.content, self.document_id, self.chunk_index, self.vector = content, document_id, chunk_index, vector


class Row(_Result):
    """One stored row from `get`: unpacks as ``(id, vector, metadata)``; ``content``, ``document_id`` and
    ``chunk_index`` are attributes."""

    __slots__ = ()
    _fields = ("id", "vector", "metadata")

    def __init__(
        self,
        id: str,
        vector: np.ndarray | None,
        metadata: dict[str, Any] | None,
        content: str | None = None,
        document_id: str | None = None,
        chunk_index: int | None = None,
    ) -> None:
        self.id, self.vector, self.metadata = id, vector, metadata
        self.content, self.document_id, self.chunk_index = content, document_id, chunk_index


# -- decoding ---------------------------------------------------------------------------------------------------
# Rows are laid out by `sql.queries.select_columns`: id, [vector], [metadata, content, document_id, chunk_index],
# then the computed column (distance or score) last.


def search_results(
    rows: Sequence[Any], score: Callable[[float], float] | None, *, metadata: bool, vectors: bool, at: int = -1
) -> list[SearchResult]:
    """Search results of `rows`, in order. Column `at` (from the end) holds a distance that `score` turns into
    the score, or, with `score` None, the score itself."""
    new = SearchResult.__new__
    out: list[SearchResult] = []
    append = out.append
    m = 2 if vectors else 1  # where the metadata columns start
    for row in rows:
        r = new(SearchResult)
        r.id = row[0]
        r.score = score(row[at]) if score is not None else float(row[at])
        r.vector = row[1] if vectors else None
        if metadata:
            raw = row[m]
            r.metadata = _loads(raw) if raw else {}  # metadata_of, written out in the per-row loop
            r.content, r.document_id, r.chunk_index = row[m + 1], row[m + 2], row[m + 3]
        else:
            r.metadata = r.content = r.document_id = r.chunk_index = None
        append(r)
    return out


def stored_row(row: Any, *, vectors: bool) -> Row:
    """The `Row` of a row read with metadata (and, with `vectors`, the vector)."""
    m = 2 if vectors else 1
    return Row(row[0], row[1] if vectors else None, metadata_of(row[m]), row[m + 1], row[m + 2], row[m + 3])
