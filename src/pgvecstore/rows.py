"""Turning user input (vectors, ids, metadata) into validated rows, in bounded batches.

Every check happens here: a bad dimension, NaN, a duplicate id, metadata that is not JSON or text PostgreSQL
cannot store is an `InvalidInputError` (a `ValueError`) that names the position of the offending item. Most are
made before anything is sent; the vectors given as lists and the JSON text of metadata are made (and checked) a
chunk at a time while the rows are sent (`RowBatch.iter_records`), inside the call's transaction, so a bad item
there also leaves nothing written. Metadata is stored exactly as given; its ``content``, ``document_id`` and
``chunk_index`` keys also fill those columns when the explicit lists are not given.
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence, Sized
from dataclasses import dataclass
from typing import Any

import numpy as np

from pgvecstore.errors import InvalidInputError
from pgvecstore.row_metadata import DeferredMetadata, PendingMetadata, encode_metadata, is_utf8, plain_metadata
from pgvecstore.vectors import check_vectors, codec

# Longest text id accepted: a B-tree entry must fit in a third of a page (about 2,700 bytes).
MAX_ID_BYTES = 2000
# Longest document_id: the column is VARCHAR(255).
MAX_DOCUMENT_ID_CHARS = 255
# Largest k or limit: PostgreSQL's LIMIT is a bigint.
MAX_ROWS = 2**63 - 1

_MISSING = object()


# Rows per chunk whose vectors are converted to their binary wire format while the COPY runs (see
# `RowBatch.iter_records`): small enough that the server always has rows to work on, large enough for numpy.
WIRE_CHUNK_ROWS = 128


@dataclass
class RowBatch:
    """One batch of validated rows, as columns in COPY order, and whether the caller chose any of the ids.

    The vectors are kept as given (a checked float32 block, or lists of floats as embedding APIs return them)
    and turned into PostgreSQL's binary vector format a chunk at a time while the rows are sent
    (`iter_records`): that conversion costs about as much Python as the server spends storing a row, so doing it
    between sends, while the server stores the rows before, hides it instead of adding it before the COPY. The
    metadata of a batch that passed the fast checks is JSON-encoded the same way (`PendingMetadata`); the per-row
    path gives its texts ready.
    """

    ids: list[str]
    caller_ids: bool
    vectors: Any
    contents: list[Any]
    metadata: list[str] | PendingMetadata
    domain_id: str | None
    document_ids: list[Any]
    chunk_indexes: list[Any]
    offset: int = 0
    dimensions: int = 0
    vector_type: str = "vector"  # the column's (the writer sets it): `pgvecstore.vectors.codec` converts for it

    def iter_records(self, chunk_rows: int = WIRE_CHUNK_ROWS) -> Iterator[tuple[Any, ...]]:
        """The batch's COPY records, converting vectors (and pending metadata) one chunk at a time; a vector or
        metadata dict that cannot be stored raises a ValueError naming its position when its chunk is reached
        (inside the caller's transaction, which then writes nothing)."""
        for start in range(0, len(self.ids), chunk_rows):
            stop = start + chunk_rows
            yield from zip(
                self.ids[start:stop],
                self._wire(start, stop),
                self.contents[start:stop],
                self._metadata(start, stop),
                itertools.repeat(self.domain_id),
                self.document_ids[start:stop],
                self.chunk_indexes[start:stop],
            )

    def records(self) -> list[tuple[Any, ...]]:
        """Every COPY record, vectors and metadata converted."""
        return list(self.iter_records(max(1, len(self.ids))))

    def _metadata(self, start: int, stop: int) -> list[str]:
        pending = self.metadata
        if isinstance(pending, PendingMetadata):
            return pending.texts(start, stop, self.offset)
        return pending[start:stop]

    def _wire(self, start: int, stop: int) -> list[bytes]:
        part, convert = self.vectors[start:stop], codec(self.vector_type)
        if isinstance(part, np.ndarray):  # checked when the batch was made
            return convert.wire_block(part, self.offset + start)
        return convert.wire_vectors(part, self.dimensions, self.offset + start)


def normalize_id(value: object, id_type: str, position: int | None = None) -> str:
    """Canonical text of an id, or a ValueError naming the id (and its position) when it is not valid."""
    where = f" at position {position}" if position is not None else ""
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise InvalidInputError(f"id{where} must be a string, got {type(value).__name__} {value!r}")
    text = str(value)
    if id_type == "uuid":
        try:
            return str(uuid.UUID(text))
        except ValueError:
            raise InvalidInputError(
                f"id {text!r}{where} is not a UUID, and this store has id_type='uuid'; "
                "use UUID ids or create the store with id_type='text'"
            ) from None
    if not text:
        raise InvalidInputError(f"id{where} must not be empty")
    if "\x00" in text:
        raise InvalidInputError(f"id{where} contains a NUL character, which PostgreSQL text cannot store")
    if not is_utf8(text):
        raise InvalidInputError(f"id{where} is not valid Unicode text (it holds a lone surrogate)")
    if len(text.encode()) > MAX_ID_BYTES:
        raise InvalidInputError(
            f"id{where} is {len(text.encode())} bytes long; ids may be at most {MAX_ID_BYTES} bytes "
            "(the primary-key index cannot hold longer values)"
        )
    return text


def normalize_ids(ids: Iterable[Any], id_type: str) -> list[str]:
    """Canonical ids, or an error naming the first one that is not valid."""
    if isinstance(ids, str | bytes) or not isinstance(ids, Iterable):
        raise InvalidInputError(f"ids must be a list of ids, got {type(ids).__name__}")
    return [normalize_id(value, id_type, i) for i, value in enumerate(ids)]


def check_content(value: object, position: int) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInputError(
            f"content at position {position} must be a string, got {type(value).__name__}"
        )
    if "\x00" in value:
        raise InvalidInputError(
            f"content at position {position} contains a NUL character, which PostgreSQL cannot store"
        )
    if not is_utf8(value):
        raise InvalidInputError(f"content at position {position} is not valid Unicode text (it holds a lone surrogate)")
    return value


def check_document_id(value: object, position: int) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise InvalidInputError(f"document_id at position {position} must be a string, got {type(value).__name__}")
    text = str(value)
    if len(text) > MAX_DOCUMENT_ID_CHARS:
        raise InvalidInputError(
            f"document_id at position {position} is longer than 255 characters (the column's limit)"
        )
    if "\x00" in text:
        raise InvalidInputError(f"document_id at position {position} contains a NUL character")
    if not is_utf8(text):
        raise InvalidInputError(
            f"document_id at position {position} is not valid Unicode text (it holds a lone surrogate)"
        )
    return text


def check_chunk_index(value: object, position: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise InvalidInputError(f"chunk_index at position {position} must be an integer, got {value!r}")
    if not -(2**31) <= int(value) < 2**31:
        raise InvalidInputError(f"chunk_index at position {position} is out of the INTEGER range: {value}")
    return int(value)


def _length(value: object) -> int | None:
    return len(value) if isinstance(value, Sized) and not isinstance(value, str | bytes) else None


def _column(name: str, values: Iterable[Any] | None, expected: int | None) -> Iterator[Any]:
    if values is None:
        return itertools.repeat(_MISSING)
    if isinstance(values, DeferredMetadata):  # its items: `iter_row_batches` wraps each batch's, unmade
        values = values.items
    if isinstance(values, str | bytes | Mapping):
        raise InvalidInputError(f"{name} must be a list with one entry per vector, got {type(values).__name__}")
    size = _length(values)
    if expected is not None and size is not None and size != expected:
        raise InvalidInputError(f"{name} has {size} entries but there are {expected} vectors")
    return iter(values)


# -- fast checks of whole batches ------------------------------------------------------------------------------
# The common case (ids that are canonical UUID strings or plain text, dict metadata with string keys, explicit
# column lists of plain str/int) is checked per batch with a few vectorised passes. Anything unusual, and every
# error, goes through the per-row path below, which is the reference: it names the position of the first bad item.
# Both give the same rows for the same input.

_HEX_DIGITS = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
# Hex pairs of every byte value, as ASCII codes: _HEX_PAIRS[b] == [ord(hex(b)[0]), ord(hex(b)[1])].
_HEX_PAIRS = np.stack([_HEX_DIGITS[np.arange(256) >> 4], _HEX_DIGITS[np.arange(256) & 15]], axis=1)
_LOWER_HEX = np.zeros(256, dtype=bool)
_LOWER_HEX[_HEX_DIGITS] = True
_UUID_DASHES = np.array([8, 13, 18, 23])
_UUID_HEX = np.array([i for i in range(36) if i not in (8, 13, 18, 23)])
# (start, end) of the hex groups of a UUID's text, and of the bytes each group shows.
_UUID_GROUPS = ((0, 8, 0, 4), (9, 13, 4, 6), (14, 18, 6, 8), (19, 23, 8, 10), (24, 36, 10, 16))


def generated_ids(n: int) -> list[str]:
    """`n` random (version 4) UUIDs as canonical text, like ``str(uuid.uuid4())`` but built in one pass."""
    raw = np.frombuffer(os.urandom(16 * n), dtype=np.uint8).reshape(n, 16).copy()
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40  # version 4
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80  # RFC 4122 variant
    pairs = _HEX_PAIRS[raw].reshape(n, 32)
    text = np.full((n, 36), ord("-"), dtype=np.uint8)
    for start, end, first, last in _UUID_GROUPS:
        text[:, start:end] = pairs[:, 2 * first : 2 * last]
    joined = text.tobytes().decode("ascii")
    return [joined[i : i + 36] for i in range(0, 36 * n, 36)]


def _canonical_uuids(values: list[Any]) -> bool:
    """True when every value is a str in canonical UUID form (lowercase, dashed): its own normalised id."""
    if not all(type(v) is str for v in values) or any(len(v) != 36 for v in values):
        return False
    try:
        codes = np.frombuffer("".join(values).encode("ascii"), dtype=np.uint8).reshape(len(values), 36)
    except UnicodeEncodeError:
        return False
    return bool((codes[:, _UUID_DASHES] == ord("-")).all() and _LOWER_HEX[codes[:, _UUID_HEX]].all())


def _fast_ids(values: list[Any], id_type: str) -> list[str] | None:
    """The batch's ids when all are plain, valid and already normalised; None means: check them row by row."""
    if id_type == "uuid":
        return values if _canonical_uuids(values) else None
    if all(type(v) is str for v in values) and all(values):
        joined = "".join(values)
        if "\x00" not in joined and is_utf8(joined) and max(map(len, values)) * 4 <= MAX_ID_BYTES:
            return values
    return None


def _fast_texts(values: list[Any], max_length: int | None) -> list[Any] | None:
    """An explicit contents/document_ids list when every entry is None or a str PostgreSQL can store."""
    present = [v for v in values if v is not None]
    joined = "".join(v for v in present if type(v) is str)
    if not all(type(v) is str for v in present) or "\x00" in joined or not is_utf8(joined):
        return None
    if max_length is not None and present and max(map(len, present)) > max_length:
        return None
    return values


def _fast_chunk_indexes(values: list[Any]) -> list[Any] | None:
    present = [v for v in values if v is not None]
    if not all(type(v) is int for v in present):
        return None
    if present and (min(present) < -(2**31) or max(present) >= 2**31):
        return None
    return values


# A batch's items of each input column, by name: lists, None for a column not given; the metadata may be a
# `DeferredMetadata` (made while the rows are sent).
Chunks = dict[str, Any]


def _fast_batch(
    vectors: Sequence[Any],
    domain_id: str | None,
    id_type: str,
    seen: set[str],
    chunks: Chunks,
) -> RowBatch | None:
    """The batch's rows when every item passes the vectorised checks; None when any needs the per-row path.
    `vectors`: the batch's vectors (a checked float32 block, or a list converted while the rows are sent)."""
    n = len(vectors)
    if any(values is not None and len(values) != n for values in chunks.values()):
        return None
    given_ids = chunks["ids"]
    if given_ids is None:
        ids, caller_ids = generated_ids(n), False
    else:
        if any(v is None for v in given_ids):
            return None
        checked = _fast_ids(given_ids, id_type)
        if checked is None:
            return None
        batch_seen = set(checked)
        if len(batch_seen) != n or not seen.isdisjoint(batch_seen):
            return None
        ids, caller_ids = list(checked), True
    metas = chunks["metadata"]
    columns_given = all(chunks[name] is not None for name in ("contents", "document_ids", "chunk_indexes"))
    if isinstance(metas, DeferredMetadata) and not columns_given:
        metas = list(metas)  # its document-column keys fill the columns: made now
    if metas is not None and not isinstance(metas, DeferredMetadata) and not plain_metadata(metas, columns_given):
        return None
    texts: list[str] | PendingMetadata = ["{}"] * n if metas is None else PendingMetadata(metas)
    nones = [None] * n
    contents = chunks["contents"]
    contents = nones if contents is None else _fast_texts(contents, None)
    documents = chunks["document_ids"]
    documents = nones if documents is None else _fast_texts(documents, MAX_DOCUMENT_ID_CHARS)
    indexes = chunks["chunk_indexes"]
    indexes = nones if indexes is None else _fast_chunk_indexes(indexes)
    if contents is None or documents is None or indexes is None:
        return None
    if caller_ids:
        seen.update(ids)
    return RowBatch(ids=ids, caller_ids=caller_ids, vectors=vectors, contents=contents, metadata=texts,
                    domain_id=domain_id, document_ids=documents, chunk_indexes=indexes)


def _checked_batch(
    vectors: Sequence[Any],
    offset: int,
    domain_id: str | None,
    id_type: str,
    seen: set[str],
    chunks: Chunks,
) -> RowBatch:
    """The batch's rows checked one by one; raises a ValueError naming the position of the first bad item."""

    def item(name: str, row: int) -> Any:
        values = chunks[name]
        if values is None or row >= len(values):
            return _MISSING
        return values[row]

    texts: list[str] = []
    batch = RowBatch(ids=[], caller_ids=False, vectors=vectors, contents=[], metadata=texts, domain_id=domain_id,
                     document_ids=[], chunk_indexes=[])
    for row_number in range(len(vectors)):
        position = offset + row_number
        raw_id = item("ids", row_number)
        if chunks["ids"] is not None and raw_id is _MISSING:
            raise InvalidInputError(f"ids ran out at position {position}: give one id per vector")
        if raw_id is _MISSING or raw_id is None:
            row_id = str(uuid.uuid4())
        else:
            batch.caller_ids = True
            row_id = normalize_id(raw_id, id_type, position)
            if row_id in seen:
                raise InvalidInputError(f"duplicate id {row_id!r} at position {position} in one batch")
            seen.add(row_id)
        meta_raw = item("metadata", row_number)
        if meta_raw is _MISSING and chunks["metadata"] is not None:
            raise InvalidInputError(f"metadata ran out at position {position}: give one dict per vector")
        meta_text, from_meta = encode_metadata(None if meta_raw is _MISSING else meta_raw, position)
        content = item("contents", row_number)
        doc = item("document_ids", row_number)
        chunk = item("chunk_indexes", row_number)
        batch.ids.append(row_id)
        texts.append(meta_text)
        batch.contents.append(
            check_content(from_meta.get("content") if content is _MISSING else content, position))
        batch.document_ids.append(
            check_document_id(from_meta.get("document_id") if doc is _MISSING else doc, position))
        batch.chunk_indexes.append(
            check_chunk_index(from_meta.get("chunk_index") if chunk is _MISSING else chunk, position))
    return batch


def _checked_vectors(vectors: Any, dimensions: int) -> Any:
    """`vectors` as a 2-D array when given as numpy (a single vector becomes one row), after checking its shape;
    other input as given, if it is an iterable of vectors."""
    if isinstance(vectors, np.ndarray):
        if vectors.ndim == 1:
            vectors = vectors.reshape(1, -1)
        if vectors.ndim != 2:
            raise InvalidInputError(f"vectors must be a 2-D array (n, {dimensions}), got shape {vectors.shape}")
        if vectors.shape[1] != dimensions:
            raise InvalidInputError(f"vector at position 0 has dimension {vectors.shape[1]}, expected {dimensions}")
    elif isinstance(vectors, str | bytes | Mapping) or not isinstance(vectors, Iterable):
        raise InvalidInputError("vectors must be a numpy array (n, d) or a list of vectors")
    return vectors


def _vector_blocks(vectors: Any, dimensions: int, batch_size: int) -> Iterator[Any]:
    """The vectors in blocks of `batch_size`. A numpy array is checked here, a block at a time; vectors given
    otherwise (lists) stay as given until the rows are sent (`RowBatch.iter_records`), which converts and checks
    them."""
    if isinstance(vectors, np.ndarray):
        return (
            check_vectors(np.asarray(vectors[i : i + batch_size], dtype=np.float32), dimensions, i)
            for i in range(0, len(vectors), batch_size)
        )
    iterator = iter(vectors)
    return iter(lambda: list(itertools.islice(iterator, batch_size)), [])


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
    vectors = _checked_vectors(vectors, dimensions)
    total = _length(vectors)
    columns = {
        "ids": (ids, _column("ids", ids, total)),
        "metadata": (metadata, _column("metadata", metadata, total)),
        "contents": (contents, _column("contents", contents, total)),
        "document_ids": (document_ids, _column("document_ids", document_ids, total)),
        "chunk_indexes": (chunk_indexes, _column("chunk_indexes", chunk_indexes, total)),
    }
    seen: set[str] = set()
    offset = 0

    for block in _vector_blocks(vectors, dimensions, batch_size):
        n = len(block)
        chunks: Chunks = {
            name: None if given is None else list(itertools.islice(it, n)) for name, (given, it) in columns.items()
        }
        items = chunks["metadata"]
        if isinstance(metadata, DeferredMetadata) and items is not None:  # made while the rows are sent
            chunks["metadata"] = DeferredMetadata(items, metadata.make)
        batch = _fast_batch(block, domain_id, id_type, seen, chunks)
        if batch is None:
            batch = _checked_batch(block, offset, domain_id, id_type, seen, chunks)
        batch.offset, batch.dimensions = offset, dimensions
        offset += n
        yield batch

    for name, (given, it) in columns.items():
        if given is not None and next(it, _MISSING) is not _MISSING:
            raise InvalidInputError(f"{name} has more entries than the {offset} vectors given")
