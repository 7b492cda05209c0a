"""The metadata column's JSON text: made and checked per row (`encode_metadata`, the reference that names the
position of a bad value), or a batch's values a chunk at a time while its rows are sent (`PendingMetadata`), and
metadata that the caller makes only then (`DeferredMetadata`). Used by `pgvecstore.rows`."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, overload

from pgvecstore.errors import InvalidInputError
from pgvecstore.identifiers import DOCUMENT_COLUMNS

# A NUL escape in JSON text: "\u0000" not preceded by an escaped backslash ("\\u0000" is a harmless literal).
_JSON_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")
_is_str = str.__instancecheck__


def is_utf8(text: str) -> bool:
    """False for text PostgreSQL cannot store as UTF-8 (lone surrogates)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def encode_metadata(value: object, position: int) -> tuple[str, dict[str, Any]]:
    """JSON text of one metadata dict (stored as given) and the document-column values it carries."""
    if value is None:
        value = {}
    if not isinstance(value, Mapping):
        raise InvalidInputError(f"metadata at position {position} must be a dict, got {type(value).__name__}")
    columns: dict[str, Any] = {}
    for key, item in value.items():
        if not isinstance(key, str):
            raise InvalidInputError(f"metadata at position {position}: key {key!r} must be a string")
        if key in DOCUMENT_COLUMNS:
            columns[key] = item
    try:
        text = json.dumps(value if type(value) is dict else dict(value), allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"metadata at position {position} is not JSON-serialisable: {exc}") from None
    except RecursionError:
        raise InvalidInputError(f"metadata at position {position} is nested too deeply to store") from None
    if "\x00" in text or _JSON_NUL.search(text):
        raise InvalidInputError(
            f"metadata at position {position} contains a NUL character, which PostgreSQL cannot store"
        )
    if not is_utf8(text):
        raise InvalidInputError(
            f"metadata at position {position} is not valid Unicode text (it holds a lone surrogate)"
        )
    return text, columns


def json_encoder(
    item_separator: str = ", ", key_separator: str = ": ", *, check_circular: bool = True
) -> Callable[[Any], str]:
    """``json.dumps(value, allow_nan=False, ensure_ascii=False, separators=(item_separator, key_separator))``
    without its per-call set-up: the C encoder, made once, used the way ``JSONEncoder.iterencode`` uses it.

    With `check_circular`, the encoder's circular-reference markers are its own: make one per group of values and
    drop one that raised. Without, it keeps no state between calls and may live as long as its caller, for values
    that cannot refer to themselves.
    """
    reference = json.JSONEncoder(allow_nan=False, ensure_ascii=False, check_circular=check_circular,
                                 separators=(item_separator, key_separator))
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is not None:
        try:
            encode = make({} if check_circular else None, reference.default, json.encoder.encode_basestring, None,
                          key_separator, item_separator, False, False, False)
            sample = {"a": [1, 2.5, None, True, "é"]}
            if "".join(encode(sample, 0)) == reference.encode(sample):
                return lambda value: "".join(encode(value, 0))
        except Exception:  # another Python's C encoder: use the public API
            pass
    return reference.encode


def plain_metadata(values: Sequence[Any], columns_given: bool) -> bool:
    """Whether every metadata value is None or a dict with string keys (its JSON text is made while the rows are
    sent, `PendingMetadata`); False also when a dict carries a document-column key and `columns_given` is False
    (the per-row path then fills the columns from it)."""
    return all(
        value is None
        or (
            type(value) is dict
            and (columns_given or value.keys().isdisjoint(DOCUMENT_COLUMNS))
            and all(map(_is_str, value))
        )
        for value in values
    )


def encode_metadata_values(values: list[Any]) -> list[str] | None:
    """JSON text of each value (None is ``{}``) as `encode_metadata` makes it; None when any value cannot be
    encoded or stored (the per-row path then names it)."""
    texts: list[str] = []
    append = texts.append
    encode = json_encoder()  # a new one per chunk: see its docstring
    try:
        for value in values:
            append("{}" if value is None else encode(value))
    except (TypeError, ValueError, RecursionError):
        return None
    joined = "".join(texts)
    if "\x00" in joined or "\\u0000" in joined or not is_utf8(joined):
        return None
    return texts


class DeferredMetadata(Sequence[Any]):
    """Metadata made from `items` by `make` (one mapping or None per item) only when its rows are sent.

    For callers whose metadata costs Python work per row (the LlamaIndex adapter serialises each node): given as
    ``add_vectors(metadata=...)`` together with the ``contents``, ``document_ids`` and ``chunk_indexes`` lists,
    `make` runs a chunk at a time during the COPY, while the server stores the rows before (`PendingMetadata`),
    instead of for every row before the first is sent. An error `make` raises, or metadata that cannot be stored,
    fails the call inside its transaction, so nothing is written. Indexing or iterating calls `make` as well.
    """

    def __init__(self, items: Sequence[Any], make: Callable[[Any], Mapping[str, Any] | None]) -> None:
        self.items, self.make = items, make

    def __len__(self) -> int:
        return len(self.items)

    @overload
    def __getitem__(self, index: int) -> Any: ...
    @overload
    def __getitem__(self, index: slice) -> list[Any]: ...
    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            return [self.make(item) for item in self.items[index]]
        return self.make(self.items[index])


class PendingMetadata:
    """A batch's metadata values (dicts or None), or its `DeferredMetadata`, JSON-encoded a chunk at a time while
    the rows are sent (`RowBatch.iter_records`)."""

    def __init__(self, values: Sequence[Any]) -> None:
        self.values = values

    def texts(self, start: int, stop: int, offset: int) -> list[str]:
        """The JSON text of values ``start:stop``; a value that cannot be stored raises `InvalidInputError` naming
        its position in the call (`offset` is the batch's first)."""
        values = list(self.values[start:stop])
        # A batch's own values were checked when it was made (`rows._fast_batch`); deferred ones exist only now.
        unchecked = isinstance(self.values, DeferredMetadata)
        texts = encode_metadata_values(values) if not unchecked or plain_metadata(values, True) else None
        if texts is None:  # the per-row encoder names the first value that cannot be stored
            texts = [encode_metadata(value, offset + start + i)[0] for i, value in enumerate(values)]
        return texts
