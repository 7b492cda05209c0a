"""Vectors: checking what users give, and pgvector's binary wire formats (the store's one vector codec).

pgvector sends a ``vector`` as a big-endian uint16 dimension count, two zero bytes, then the values as big-endian
float32 (`pgvector.Vector.to_binary`). Every conversion to that format happens here: `wire_block` for a checked
float32 block, `wire_vectors` for vectors given as lists, `encode` for one value handed to asyncpg (the pool's
codec), `query_wire` for a query vector; `decode` reads it back. A check that fails names the vector's position.

A ``halfvec`` has the same header and big-endian float16 values (`pgvector.HalfVector.to_binary`): the
``half_*`` functions beside each, which check the input the same way and then that every value fits half
precision (at most 65,504 in magnitude). `codec` gives the set of functions of a column type.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np
from pgvector import HalfVector, Vector

from pgvecstore.errors import InvalidInputError

_HEADER = struct.Struct(">HH")
_FLOAT32 = np.dtype(np.float32)


@functools.lru_cache(maxsize=16)
def _float32_packer(width: int) -> Callable[..., bytes]:
    return struct.Struct(f"={width}f").pack


@functools.lru_cache(maxsize=16)
def _wire_packer(width: int) -> Callable[..., bytes]:
    return struct.Struct(f">HH{width}f").pack


def check_vectors(block: np.ndarray, dimensions: int, offset: int) -> np.ndarray:
    """Validate a (n, d) block of vectors: right width, finite values."""
    if block.ndim != 2 or block.shape[1] != dimensions:
        width = block.shape[1] if block.ndim == 2 else "?"
        raise InvalidInputError(f"vector at position {offset} has dimension {width}, expected {dimensions}")
    finite = np.isfinite(block).all(axis=1)
    if not finite.all():
        bad = int(np.argmin(finite))
        raise InvalidInputError(f"vector at position {offset + bad} contains NaN or infinity")
    return block


def float32_block(items: Any) -> np.ndarray:
    """``np.asarray(items, dtype=np.float32)``, about twice as fast for a list of equal-length lists of floats.

    Embedding APIs (LangChain, LlamaIndex) hand vectors over as lists of Python floats; numpy converts those one
    element at a time through its generic path. Packing each list with `struct` gives the same float32 values
    (the same C cast from double). Anything else, and anything `struct` refuses (a value beyond the float32 range,
    a string, rows of different lengths), goes to ``np.asarray``, so results and errors are numpy's own.
    """
    if type(items) is list and items and all(type(row) is list for row in items):
        width = len(items[0])
        if width:
            try:
                pack = _float32_packer(width)
                data = bytearray(b"".join([pack(*row) for row in items]))
            except Exception:  # numpy then converts (or raises) exactly as before
                pass
            else:
                return np.frombuffer(data, dtype=np.float32).reshape(len(items), width)
    return np.asarray(items, dtype=np.float32)


def as_vector_block(items: Sequence[Any], dimensions: int, offset: int) -> np.ndarray:
    """Stack a list of vectors into a float32 (n, d) block, naming the first one that does not fit."""
    try:
        block = float32_block(items)
    except (ValueError, TypeError):
        block = None
    if block is None or block.ndim != 2:
        for i, item in enumerate(items):
            try:
                row = np.asarray(item, dtype=np.float32)
            except (ValueError, TypeError):
                raise InvalidInputError(f"vector at position {offset + i} is not a sequence of numbers") from None
            if row.ndim != 1 or row.shape[0] != dimensions:
                raise InvalidInputError(
                    f"vector at position {offset + i} has dimension {row.shape[0] if row.ndim == 1 else row.shape}, "
                    f"expected {dimensions}"
                )
        raise InvalidInputError(f"vectors starting at position {offset} could not be read as numbers")
    return check_vectors(block, dimensions, offset)


def wire_block(block: np.ndarray) -> list[bytes]:
    """Each row of a checked float32 (n, d) block in pgvector's binary format."""
    n, width = block.shape
    wire = np.empty((n, width + 1), dtype=">f4")
    wire[:, 1:] = block
    wire.view(np.uint8)[:, :4] = np.frombuffer(_HEADER.pack(width, 0), dtype=np.uint8)
    data = wire.tobytes()
    size = 4 * (width + 1)
    return [data[i : i + size] for i in range(0, len(data), size)]


def wire_vectors(items: Sequence[Any], dimensions: int, offset: int) -> list[bytes]:
    """Vectors given as a list (of lists of floats, arrays, ...) in pgvector's binary format, checked like
    `as_vector_block`: an error names the position of the first one of the wrong dimension, not numbers, or not
    finite. Lists of floats are packed straight into the wire format (`struct`, the same C cast to float32 as
    numpy); anything else, or anything `struct` refuses, goes through numpy."""
    if type(items) is list and items and all(type(row) is list for row in items):
        pack = _wire_packer(dimensions)
        try:
            packed = [pack(dimensions, 0, *row) for row in items]
        except Exception:  # wrong length, a value beyond float32, not a number: numpy names the row
            pass
        else:
            values = np.frombuffer(b"".join(packed), dtype=">f4").reshape(len(items), dimensions + 1)
            if np.isfinite(values[:, 1:]).all():
                return packed
    return wire_block(as_vector_block(items, dimensions, offset))


def query_wire(query: Any, dimensions: int) -> bytes:
    """A query vector checked (one vector, `dimensions` long, finite) and in pgvector's binary format."""
    if type(query) is np.ndarray and query.dtype is _FLOAT32 and query.shape == (dimensions,):
        if np.isfinite(query).all():  # the common case: an embedding model's float32 vector
            return _HEADER.pack(dimensions, 0) + query.astype(">f4").tobytes()
    elif type(query) is list and len(query) == dimensions:
        try:
            packed = _wire_packer(dimensions)(dimensions, 0, *query)
        except Exception:  # not numbers, or beyond float32: the checks below say which
            pass
        else:
            if np.isfinite(np.frombuffer(packed, dtype=">f4", offset=4)).all():
                return packed
    try:
        with np.errstate(over="ignore"):  # a value beyond float32 becomes infinity, refused below
            vector = np.asarray(query, dtype=np.float32)
    except (TypeError, ValueError):
        raise InvalidInputError("query must be a vector: a numpy array or a list of numbers") from None
    if vector.ndim == 2 and vector.shape[0] == 1:
        vector = vector[0]
    if vector.ndim == 2:
        raise InvalidInputError(f"query must be one vector, got {vector.shape[0]} vectors (shape {vector.shape})")
    if vector.ndim != 1 or vector.shape[0] != dimensions:
        raise InvalidInputError(
            f"query vector has dimension {vector.shape[-1] if vector.ndim else 0}, expected {dimensions}"
        )
    if not np.isfinite(vector).all():
        raise InvalidInputError("query vector contains NaN or infinity")
    return _HEADER.pack(dimensions, 0) + vector.astype(">f4").tobytes()


def encode(value: Any) -> bytes:
    """asyncpg's encoder of the ``vector`` type: `bytes` are taken to be in the wire format already (the server
    checks them as it checks every vector); a `pgvector.Vector`, a numpy array or a list of numbers is converted."""
    if type(value) is bytes:
        return value
    if isinstance(value, Vector):
        return value.to_binary()
    array = np.asarray(value, dtype=">f4")
    if array.ndim != 1:
        raise InvalidInputError("a vector must be one-dimensional")
    return _HEADER.pack(len(array), 0) + array.tobytes()


def decode(data: bytes) -> np.ndarray:
    """asyncpg's decoder of the ``vector`` type: a float32 numpy array."""
    dimensions = int.from_bytes(data[:2], "big")
    return np.frombuffer(data, dtype=">f4", count=dimensions, offset=4).astype(np.float32)


# -- halfvec ------------------------------------------------------------------------------------------------------
HALF_MAX = 65504.0  # the largest finite float16


def half_wire_block(block: np.ndarray, offset: int = 0) -> list[bytes]:
    """Each row of a checked float32 (n, d) block in pgvector's ``halfvec`` binary format; a value beyond half
    precision's range is an error naming its vector's position."""
    n, width = block.shape
    wire = np.empty((n, width + 2), dtype=">f2")
    with np.errstate(over="ignore"):
        wire[:, 2:] = block
    finite = np.isfinite(wire[:, 2:]).all(axis=1)
    if not finite.all():
        bad = int(np.argmin(finite))
        raise InvalidInputError(
            f"vector at position {offset + bad} has a value beyond half precision's range (+-{HALF_MAX:,.0f}), "
            "which a halfvec column cannot hold"
        )
    wire.view(np.uint8)[:, :4] = np.frombuffer(_HEADER.pack(width, 0), dtype=np.uint8)
    data = wire.tobytes()
    size = 2 * (width + 2)
    return [data[i : i + size] for i in range(0, len(data), size)]


def half_wire_vectors(items: Sequence[Any], dimensions: int, offset: int) -> list[bytes]:
    """Vectors given as a list in the ``halfvec`` format, checked like `wire_vectors` (values go through
    float32, then half precision)."""
    return half_wire_block(as_vector_block(items, dimensions, offset), offset)


def half_query_wire(query: Any, dimensions: int) -> bytes:
    """A query vector checked like `query_wire`, in the ``halfvec`` format."""
    values = np.frombuffer(query_wire(query, dimensions), dtype=">f4", offset=4)
    try:
        return half_wire_block(values.reshape(1, -1))[0]
    except InvalidInputError:
        raise InvalidInputError(
            f"query vector has a value beyond half precision's range (+-{HALF_MAX:,.0f}) of this halfvec store"
        ) from None


def encode_half(value: Any) -> bytes:
    """asyncpg's encoder of the ``halfvec`` type: `bytes` are taken to be in its wire format already; a
    `pgvector.HalfVector`, a numpy array or a list of numbers is converted."""
    if type(value) is bytes:
        return value
    if isinstance(value, HalfVector):
        return value.to_binary()
    array = np.asarray(value, dtype=np.float32)
    if array.ndim != 1:
        raise InvalidInputError("a vector must be one-dimensional")
    return half_wire_block(array.reshape(1, -1))[0]


def decode_half(data: bytes) -> np.ndarray:
    """asyncpg's decoder of the ``halfvec`` type: a float32 numpy array (of half-precision values)."""
    dimensions = int.from_bytes(data[:2], "big")
    return np.frombuffer(data, dtype=">f2", count=dimensions, offset=4).astype(np.float32)


class Codec(NamedTuple):
    """The conversions of one column type: blocks and lists of vectors (with the position of the first, for
    errors), a query vector, and asyncpg's encoder and decoder."""

    wire_block: Callable[[np.ndarray, int], list[bytes]]
    wire_vectors: Callable[[Sequence[Any], int, int], list[bytes]]
    query_wire: Callable[[Any, int], bytes]
    encode: Callable[[Any], bytes]
    decode: Callable[[bytes], np.ndarray]


def _wire_block_at(block: np.ndarray, offset: int = 0) -> list[bytes]:
    return wire_block(block)


CODECS = {
    "vector": Codec(_wire_block_at, wire_vectors, query_wire, encode, decode),
    "halfvec": Codec(half_wire_block, half_wire_vectors, half_query_wire, encode_half, decode_half),
}


def codec(vector_type: str) -> Codec:
    """The codec of a column type (``vector`` or ``halfvec``)."""
    return CODECS[vector_type]
