"""LangChain texts and metadata to the core's rows, and the core's results back to LangChain `Document`s.

A Document's ``page_content`` is the ``content`` column and its metadata is stored exactly as given (the core
keeps the metadata dict as it is). The ``document_id`` column comes from metadata ``document_id``, else ``source``;
``chunk_index`` from metadata ``chunk_index``, else the ``start_index`` order of the chunks of one document in
the call, else their position in the call. No SQL here: the core writes and reads.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

import numpy as np
from langchain_core.documents import Document

from pgvecstore import InvalidInputError, Metric, SearchResult
from pgvecstore.rows import MAX_DOCUMENT_ID_CHARS

_is_str = str.__instancecheck__
SEARCH_OPTIONS = ("filter", "search_params")
# Options of hybrid_search beyond those of similarity search: the core's fusion settings.
HYBRID_OPTIONS = (*SEARCH_OPTIONS, "rrf_k", "alpha", "vector_k", "text_k")


def _clamp(value: float) -> float:
    return min(1.0, max(0.0, value))


def _symmetric(score: float) -> float:
    """A similarity in [-1, 1] (cosine; inner product of normalised vectors) to relevance in [0, 1]."""
    return _clamp((1.0 + score) / 2.0)


def _euclidean(score: float) -> float:
    """The core's euclidean score 1 / (1 + distance) is already in (0, 1]."""
    return _clamp(score)


RELEVANCE: dict[Metric, Callable[[float], float]] = {
    Metric.COSINE: _symmetric,
    Metric.EUCLIDEAN: _euclidean,
    Metric.INNER_PRODUCT: _symmetric,
}


def document_id_of(metadata: Mapping[str, Any]) -> Any:
    """The document a chunk belongs to: metadata ``document_id``, else ``source`` (when it fits the column)."""
    if "document_id" in metadata and metadata["document_id"] is not None:
        value = metadata["document_id"]
        # An explicit document_id that does not fit is passed on so the core names the problem.
        return value if isinstance(value, bool) or not isinstance(value, int) else str(value)
    source = metadata.get("source")
    if isinstance(source, bool) or not isinstance(source, str | int):
        return None
    text = str(source)
    # A long URL as source must not make the add fail: it simply gets no document_id column.
    if not text or len(text) > MAX_DOCUMENT_ID_CHARS or "\x00" in text:
        return None
    return text


def _is_number(value: object) -> bool:
    return (
        not isinstance(value, bool)
        and isinstance(value, int | float | np.integer | np.floating)
        and math.isfinite(float(value))
    )


def chunk_indexes(metadatas: Sequence[Mapping[str, Any]], document_ids: Sequence[Any]) -> list[int | None]:
    """chunk_index per row: metadata ``chunk_index`` when it is an integer; otherwise, within each document of this
    call, the order of ``start_index`` (rows without one after those with one), else the position in the call."""
    result: list[int | None] = [None] * len(metadatas)
    pending: dict[str, list[int]] = {}
    for position, (meta, doc) in enumerate(zip(metadatas, document_ids, strict=True)):
        explicit = meta.get("chunk_index")
        if explicit is not None and not isinstance(explicit, bool) and isinstance(explicit, int | np.integer):
            result[position] = int(explicit)
        elif isinstance(doc, str):  # an unusable explicit document_id is left to the core, which names it
            pending.setdefault(doc, []).append(position)

    def order(position: int) -> tuple[int, float, int]:
        start = metadatas[position].get("start_index")
        return (0, float(cast(float, start)), position) if _is_number(start) else (1, 0.0, position)

    sortable = bool(pending) and any("start_index" in meta for meta in metadatas)
    for positions in pending.values():
        # Positions are in call order already: sort only a document whose rows carry a start_index.
        if sortable and any(_is_number(metadatas[p].get("start_index")) for p in positions):
            positions = sorted(positions, key=order)
        for rank, position in enumerate(positions):
            result[position] = rank
    return result


def rows(
    texts: Sequence[str], metadatas: Sequence[Mapping[str, Any] | None] | None
) -> tuple[list[str], list[Mapping[str, Any]], list[Any], list[int | None]]:
    """Contents, metadata (as given), document_ids and chunk_indexes of LangChain texts and metadatas; an error
    names the position of a text that is not a string or metadata that is not a dict."""
    if metadatas is None:
        metas: list[Mapping[str, Any]] = [{} for _ in texts]
    else:
        metas = [m if m is not None else {} for m in metadatas]
        if len(metas) != len(texts):
            raise InvalidInputError(f"metadatas has {len(metas)} entries but there are {len(texts)} texts")
    if not (all(map(_is_str, texts)) and all(type(m) is dict for m in metas)):
        for position, (text, meta) in enumerate(zip(texts, metas, strict=True)):
            if not isinstance(text, str):
                raise InvalidInputError(f"text at position {position} must be a string, got {type(text).__name__}")
            if not isinstance(meta, Mapping):
                raise InvalidInputError(
                    f"metadata at position {position} must be a dict, got {type(meta).__name__}"
                )
    document_ids = [document_id_of(meta) for meta in metas]
    return list(texts), metas, document_ids, chunk_indexes(metas, document_ids)


def to_document(result: SearchResult | Any) -> Document:
    """A LangChain Document of a core result or row: its id, content and the metadata it was written with."""
    return Document(id=result.id, page_content=result.content or "", metadata=dict(result.metadata or {}))


def check_kwargs(method: str, kwargs: Mapping[str, Any], allowed: Sequence[str] = SEARCH_OPTIONS) -> None:
    """LangChain passes search options as keyword arguments: refuse any the method does not take."""
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise TypeError(
            f"PgVecStore.{method}() got unexpected keyword argument(s) {', '.join(map(repr, unknown))}; "
            f"it accepts {', '.join(allowed)}"
        )


def check_mmr(fetch_k: object, lambda_mult: object) -> None:
    if isinstance(fetch_k, bool) or not isinstance(fetch_k, int) or fetch_k < 1:
        raise InvalidInputError(f"fetch_k must be a positive integer, got {fetch_k!r}")
    if isinstance(lambda_mult, bool) or not isinstance(lambda_mult, int | float) or not 0.0 <= lambda_mult <= 1.0:
        raise InvalidInputError(f"lambda_mult must be a number between 0 and 1, got {lambda_mult!r}")
