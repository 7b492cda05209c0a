"""The store's one vector codec: pgvector's binary format, checked against pgvector's own `Vector`, and the fast
paths for lists of floats checked against numpy (same values, same errors naming the same position)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pgvector import Vector

from pgvecstore.vectors import as_vector_block, decode, encode, float32_block, query_wire, wire_block, wire_vectors

# -- lists of floats to float32 ----------------------------------------------------------------------------------
number = st.one_of(
    st.floats(width=64),  # NaN, infinities, subnormals, values beyond the float32 range
    st.integers(-(2**70), 2**70),
    st.booleans(),
    st.sampled_from([1e39, -1e39, 3.4028235e38, 1e-46, -0.0, 2**200, "1.5", "x", None, [1.0]]),
)


def outcome(convert: Any, items: Any) -> tuple[str, Any]:
    try:
        array = convert(items)
    except Exception as exc:  # compared by type and message
        return ("error", (type(exc), str(exc)))
    return ("array", (array.dtype, array.shape, array.tobytes(), array.flags.writeable))


@settings(max_examples=300, deadline=None)
@given(
    rows=st.lists(st.lists(number, min_size=0, max_size=4), min_size=0, max_size=4),
    ragged=st.booleans(),
)
def test_float32_block_is_numpy_asarray(rows: list[list[Any]], ragged: bool) -> None:
    if not ragged and rows:
        width = len(rows[0])
        rows = [(row + [0.5] * width)[:width] for row in rows]
    with np.errstate(all="ignore"):
        assert outcome(float32_block, rows) == outcome(lambda x: np.asarray(x, dtype=np.float32), rows)


def test_float32_block_takes_other_sequences_the_numpy_way() -> None:
    for items in ([(1.0, 2.0)], [np.array([1.0, 2.0])], np.ones((2, 2)), [[np.float32(0.1), 2]], [[]]):
        assert outcome(float32_block, items) == outcome(lambda x: np.asarray(x, dtype=np.float32), items)


def test_vector_lists_name_the_bad_vector() -> None:
    with pytest.raises(ValueError, match="vector at position 11 has dimension 2, expected 3"):
        as_vector_block([[1.0, 2.0, 3.0], [1.0, 2.0]], 3, 10)
    with pytest.raises(ValueError, match="vector at position 5 contains NaN or infinity"), np.errstate(over="ignore"):
        as_vector_block([[1.0, 2.0], [1e39, 0.0]], 2, 4)
    assert as_vector_block([[1, 2], [3.5, True]], 2, 0).tolist() == [[1.0, 2.0], [3.5, 1.0]]


@settings(max_examples=300, deadline=None)
@given(
    rows=st.lists(st.lists(number, min_size=0, max_size=4), min_size=1, max_size=4),
    width=st.integers(1, 3),
    offset=st.integers(0, 5000),
)
def test_wire_vectors_send_what_numpy_would_and_refuse_what_it_refuses(rows: list[list[Any]], width: int,
                                                                       offset: int) -> None:
    """Lists packed straight into the wire format hold numpy's float32 values, and every list the numpy path
    refuses is refused with the same message (naming the same position)."""

    def result(convert: Any) -> Any:
        try:
            return convert(rows)
        except Exception as exc:
            return (type(exc), str(exc))

    with np.errstate(all="ignore"):
        expected = result(lambda items: wire_block(as_vector_block(items, width, offset)))
        assert result(lambda items: wire_vectors(items, width, offset)) == expected


def test_wire_format_is_what_pgvector_reads() -> None:
    block = np.array([[0.1, -2.5, 3e-40], [1e38, 0.0, -0.0]], dtype=np.float32)
    wire = wire_block(block)
    assert wire == wire_vectors(block.tolist(), 3, 0)
    for row, data in zip(block, wire, strict=True):
        assert data[:4] == b"\x00\x03\x00\x00"
        np.testing.assert_array_equal(Vector.from_binary(data).to_numpy(), row)
    with pytest.raises(ValueError, match="vector at position 8 contains NaN or infinity"):
        wire_vectors([[1.0, 2.0], [float("inf"), 0.0]], 2, 7)


# -- one value at a time: the pool's codec and query vectors -----------------------------------------------------
finite32 = st.floats(width=32, allow_nan=False, allow_infinity=False)


@settings(max_examples=200, deadline=None)
@given(values=st.lists(finite32, min_size=1, max_size=16))
def test_encode_and_decode_are_pgvectors_binary_format(values: list[float]) -> None:
    reference = Vector(values).to_binary()
    array = np.asarray(values, dtype=np.float32)
    for given_as in (array, values, Vector(values), reference):
        assert encode(given_as) == reference
    np.testing.assert_array_equal(decode(reference), Vector.from_binary(reference).to_numpy())
    assert decode(reference).dtype == np.float32
    assert query_wire(values, len(values)) == reference == query_wire(array, len(values))
    assert query_wire(array[None, :], len(values)) == reference  # a (1, d) array is one vector


def test_query_vectors_are_checked_and_named() -> None:
    with pytest.raises(ValueError, match="query vector has dimension 2, expected 3"):
        query_wire([1.0, 2.0], 3)
    with pytest.raises(ValueError, match="query must be one vector, got 2 vectors"):
        query_wire([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], 3)
    with pytest.raises(ValueError, match="NaN or infinity"):
        query_wire([1.0, float("nan"), 3.0], 3)
    with pytest.raises(ValueError, match="NaN or infinity"):
        query_wire([1.0, 1e39, 3.0], 3)  # beyond float32
    with pytest.raises(ValueError, match="a numpy array or a list of numbers"):
        query_wire(["a", "b", "c"], 3)
    with pytest.raises(ValueError, match="one-dimensional"):
        encode(np.zeros((2, 2)))
