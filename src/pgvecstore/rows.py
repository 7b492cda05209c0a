"""Turning user input (vectors, ids, metadata) into validated rows, in bounded batches.

Every check happens here, before anything is written: a bad dimension, NaN, a duplicate id, metadata that is not
JSON or text PostgreSQL cannot store is a `ValueError` that names the position of the offending item.
"""

from __future__ import annotations

import itertools
import json
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence, Sized
from dataclasses import dataclass
from typing import Any

import numpy as np

# Metadata keys that live in their own columns; the store reads them back into the metadata it returns.
COLUMN_KEYS = ("content", "document_id", "chunk_index")
_MISSING = object()


@dataclass
class RowBatch:
    """One batch of validated rows, in COPY column order, and whether the caller chose any of the ids."""

    records: list[tuple[Any, ...]]
    ids: list[str]
    caller_ids: bool


def normalize_id(value: object, id_type: str, position: int | None = None) -> str:
    """Canonical text of an id, or a ValueError naming the id (and its position) when it is not valid."""
    where = f" at position {position}" if position is not None else ""
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError(f"id{where} must be a string, got {type(value).__name__} {value!r}")
    text = str(value)
    if id_type == "uuid":
        try:
            return str(uuid.UUID(text))
        except ValueError:
            raise ValueError(
                f"id {text!r}{where} is not a UUID, and this store has id_type='uuid'; "
                "use UUID ids or create the store with id_type='text'"
            ) from None
    if not text:
        raise ValueError(f"id{where} must not be empty")
    if "\x00" in text:
        raise ValueError(f"id{where} contains a NUL character, which PostgreSQL text cannot store")
    return text


def encode_metadata(value: object, position: int) -> tuple[str, dict[str, Any]]:
    """JSON text of one metadata dict (without the column keys) and the column values it carried."""
    if value is None:
        value = {}
    if not isinstance(value, Mapping):
        raise ValueError(f"metadata at position {position} must be a dict, got {type(value).__name__}")
    stored = {}
    columns: dict[str, Any] = {}
    for key, item in value.items():
        if not isinstance(key, str):
            raise ValueError(f"metadata at position {position}: key {key!r} must be a string")
        if key in COLUMN_KEYS:
            columns[key] = item
        else:
            stored[key] = item
    try:
        text = json.dumps(stored, allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"metadata at position {position} is not JSON-serialisable: {exc}") from None
    if "\\u0000" in text or "\x00" in text:
        raise ValueError(f"metadata at position {position} contains a NUL character, which PostgreSQL cannot store")
    return text, columns


def check_content(value: object, position: int) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"content at position {position} must be a string, got {type(value).__name__}")
    if "\x00" in value:
        raise ValueError(f"content at position {position} contains a NUL character, which PostgreSQL cannot store")
    return value


def check_document_id(value: object, position: int) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError(f"document_id at position {position} must be a string, got {type(value).__name__}")
    text = str(value)
    if len(text) > 255:
        raise ValueError(f"document_id at position {position} is longer than 255 characters (the column's limit)")
    if "\x00" in text:
        raise ValueError(f"document_id at position {position} contains a NUL character")
    return text


def check_chunk_index(value: object, position: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ValueError(f"chunk_index at position {position} must be an integer, got {value!r}")
    if not -(2**31) <= int(value) < 2**31:
        raise ValueError(f"chunk_index at position {position} is out of the INTEGER range: {value}")
    return int(value)


def check_vectors(block: np.ndarray, dimensions: int, offset: int) -> np.ndarray:
    """Validate a (n, d) block of vectors: right width, finite values."""
    if block.ndim != 2 or block.shape[1] != dimensions:
        width = block.shape[1] if block.ndim == 2 else "?"
        raise ValueError(f"vector at position {offset} has dimension {width}, expected {dimensions}")
    finite = np.isfinite(block).all(axis=1)
    if not finite.all():
        bad = int(np.argmin(finite))
        raise ValueError(f"vector at position {offset + bad} contains NaN or infinity")
    return block


def as_vector_block(items: Sequence[Any], dimensions: int, offset: int) -> np.ndarray:
    """Stack a list of vectors into a float32 (n, d) block, naming the first one that does not fit."""
    try:
        block = np.asarray(items, dtype=np.float32)
    except (ValueError, TypeError):
        block = None
    if block is None or block.ndim != 2:
        for i, item in enumerate(items):
            try:
                row = np.asarray(item, dtype=np.float32)
            except (ValueError, TypeError):
                raise ValueError(f"vector at position {offset + i} is not a sequence of numbers") from None
            if row.ndim != 1 or row.shape[0] != dimensions:
                raise ValueError(
                    f"vector at position {offset + i} has dimension {row.shape[0] if row.ndim == 1 else row.shape}, "
                    f"expected {dimensions}"
                )
        raise ValueError(f"vectors starting at position {offset} could not be read as numbers")
    return check_vectors(block, dimensions, offset)


def _length(value: object) -> int | None:
    return len(value) if isinstance(value, Sized) and not isinstance(value, str | bytes) else None


def _column(name: str, values: Iterable[Any] | None, expected: int | None) -> Iterator[Any]:
    if values is None:
        return itertools.repeat(_MISSING)
    if isinstance(values, str | bytes | Mapping):
        raise ValueError(f"{name} must be a list with one entry per vector, got {type(values).__name__}")
    size = _length(values)
    if expected is not None and size is not None and size != expected:
        raise ValueError(f"{name} has {size} entries but there are {expected} vectors")
    return iter(values)


def iter_row_batches(
    vectors: Any,
    *,
    dimensions: int,
    id_type: str,
    domain_id: str | None,
    batch_size: int,
    ids: Iterable[Any] | None = None,
    metadata: Iterable[Any] | None = None,
    contents: Iterable[Any] | None = None,
    document_ids: Iterable[Any] | None = None,
    chunk_indexes: Iterable[Any] | None = None,
) -> Iterator[RowBatch]:
    """Validate input and yield it as batches of COPY-ready rows; memory stays bounded by `batch_size`."""
    if isinstance(vectors, np.ndarray):
        if vectors.ndim == 1:
            vectors = vectors.reshape(1, -1)
        if vectors.ndim != 2:
            raise ValueError(f"vectors must be a 2-D array (n, {dimensions}), got shape {vectors.shape}")
        if vectors.shape[1] != dimensions:
            raise ValueError(f"vector at position 0 has dimension {vectors.shape[1]}, expected {dimensions}")
    elif isinstance(vectors, str | bytes | Mapping) or not isinstance(vectors, Iterable):
        raise ValueError("vectors must be a numpy array (n, d) or a list of vectors")
    total = _length(vectors)
    id_iter = _column("ids", ids, total)
    meta_iter = _column("metadata", metadata, total)
    content_iter = _column("contents", contents, total)
    doc_iter = _column("document_ids", document_ids, total)
    chunk_iter = _column("chunk_indexes", chunk_indexes, total)
    seen: set[str] = set()
    offset = 0

    if isinstance(vectors, np.ndarray):
        blocks: Iterator[np.ndarray] = (
            check_vectors(np.asarray(vectors[i : i + batch_size], dtype=np.float32), dimensions, i)
            for i in range(0, len(vectors), batch_size)
        )
    else:
        def _blocks() -> Iterator[np.ndarray]:
            iterator = iter(vectors)
            start = 0
            while chunk := list(itertools.islice(iterator, batch_size)):
                yield as_vector_block(chunk, dimensions, start)
                start += len(chunk)

        blocks = _blocks()

    for block in blocks:
        records: list[tuple[Any, ...]] = []
        batch_ids: list[str] = []
        caller_ids = False
        for row_number in range(block.shape[0]):
            position = offset + row_number
            raw_id = next(id_iter, _MISSING)
            if ids is not None and raw_id is _MISSING:
                raise ValueError(f"ids ran out at position {position}: give one id per vector")
            if raw_id is _MISSING or raw_id is None:
                row_id = str(uuid.uuid4())
            else:
                caller_ids = True
                row_id = normalize_id(raw_id, id_type, position)
                if row_id in seen:
                    raise ValueError(f"duplicate id {row_id!r} at position {position} in one batch")
                seen.add(row_id)
            meta_raw = next(meta_iter, _MISSING)
            if meta_raw is _MISSING and metadata is not None:
                raise ValueError(f"metadata ran out at position {position}: give one dict per vector")
            meta_text, from_meta = encode_metadata(None if meta_raw is _MISSING else meta_raw, position)
            content = next(content_iter, _MISSING)
            doc = next(doc_iter, _MISSING)
            chunk = next(chunk_iter, _MISSING)
            records.append(
                (
                    row_id,
                    block[row_number],
                    check_content(from_meta.get("content") if content is _MISSING else content, position),
                    meta_text,
                    domain_id,
                    check_document_id(from_meta.get("document_id") if doc is _MISSING else doc, position),
                    check_chunk_index(from_meta.get("chunk_index") if chunk is _MISSING else chunk, position),
                )
            )
            batch_ids.append(row_id)
        offset += block.shape[0]
        yield RowBatch(records=records, ids=batch_ids, caller_ids=caller_ids)

    for name, it, given in (
        ("ids", id_iter, ids),
        ("metadata", meta_iter, metadata),
        ("contents", content_iter, contents),
        ("document_ids", doc_iter, document_ids),
        ("chunk_indexes", chunk_iter, chunk_indexes),
    ):
        if given is not None and next(it, _MISSING) is not _MISSING:
            raise ValueError(f"{name} has more entries than the {offset} vectors given")
