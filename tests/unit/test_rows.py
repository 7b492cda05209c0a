"""Row preparation: the vectorised fast path gives exactly the rows of the per-row reference path."""

from __future__ import annotations

import uuid
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pgvecstore.errors import InvalidInputError
from pgvecstore.row_metadata import DeferredMetadata, encode_metadata
from pgvecstore.rows import _checked_batch, _fast_batch, generated_ids, iter_row_batches

text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)
json_scalar = st.one_of(st.none(), st.booleans(), st.integers(-(2**40), 2**40), text,
                        st.floats(allow_nan=False, allow_infinity=False))
metadata = st.one_of(st.none(), st.dictionaries(text, json_scalar, max_size=3))


def test_generated_ids_are_distinct_version_4_uuids() -> None:
    ids = generated_ids(5000)
    assert len(set(ids)) == 5000
    for value in ids[:200]:
        parsed = uuid.UUID(value)
        assert str(parsed) == value
        assert parsed.version == 4


@settings(max_examples=150, deadline=None)
@given(
    n=st.integers(1, 6),
    id_kind=st.sampled_from(["none", "uuid", "text"]),
    metas=st.lists(metadata, min_size=6, max_size=6),
    contents=st.one_of(st.none(), st.lists(st.one_of(st.none(), text), min_size=6, max_size=6)),
    chunks=st.one_of(st.none(), st.lists(st.one_of(st.none(), st.integers(-(2**31), 2**31 - 1)), min_size=6,
                                         max_size=6)),
    domain=st.one_of(st.none(), st.just("tenant")),
)
def test_fast_path_matches_the_per_row_path(n: int, id_kind: str, metas: list[Any], contents: list[Any] | None,
                                            chunks: list[Any] | None, domain: str | None) -> None:
    block = np.arange(n * 3, dtype=np.float32).reshape(n, 3)
    given_ids: list[Any] | None = None
    if id_kind == "uuid":
        given_ids = [str(uuid.UUID(int=i + 1)) for i in range(n)]
    elif id_kind == "text":
        given_ids = [f"doc-{i}" for i in range(n)]
    columns = {
        "ids": given_ids,
        "metadata": metas[:n],
        "contents": None if contents is None else contents[:n],
        "document_ids": None,
        "chunk_indexes": None if chunks is None else chunks[:n],
    }
    id_type = "uuid" if id_kind == "uuid" else "text"
    fast = _fast_batch(block, domain, id_type, set(), columns)
    if fast is None:
        return  # the fast path declined; the per-row path is then the only one used
    try:
        slow = _checked_batch(block, 0, domain, id_type, set(), columns)
    except InvalidInputError as refused:
        # The fast path encodes metadata while the rows are sent: it must refuse the same value, by the same words.
        with pytest.raises(InvalidInputError) as raised:
            fast.records()
        assert str(raised.value) == str(refused)
        return
    assert fast.caller_ids == slow.caller_ids
    if given_ids is not None:
        assert fast.ids == slow.ids
    for got, want in zip(fast.records(), slow.records(), strict=True):  # ids were compared above
        assert got[1:] == want[1:]


def test_a_literal_backslash_u0000_is_not_taken_for_a_nul() -> None:
    text, _ = encode_metadata({"path": "C:\\u0000\\dir"}, 0)
    assert "u0000" in text
    batches = list(iter_row_batches([[1.0]], dimensions=1, id_type="text", domain_id=None, batch_size=10,
                                    metadata=[{"path": "C:\\u0000"}]))
    assert batches[0].records()[0][3] == '{"path": "C:\\\\u0000"}'


def batches_of(metadata: Any, n: int, **columns: Any) -> list[Any]:
    return list(iter_row_batches([[float(i)] for i in range(n)], dimensions=1, id_type="text", domain_id=None,
                                 batch_size=4, ids=[f"r{i}" for i in range(n)], metadata=metadata, **columns))


def test_deferred_metadata_is_made_while_the_rows_are_sent_and_gives_the_same_rows() -> None:
    made: list[int] = []

    def make(i: int) -> dict[str, Any] | None:
        made.append(i)
        return None if i == 3 else {"n": i, "text": f"é{i}"}

    items = list(range(10))
    columns = {"contents": [f"c{i}" for i in items], "document_ids": ["d"] * 10, "chunk_indexes": items}
    deferred = batches_of(DeferredMetadata(items, make), 10, **columns)
    assert made == []  # nothing made before the rows are sent
    plain = batches_of([make(i) for i in items], 10, **columns)
    made.clear()
    assert [r for b in deferred for r in b.records()] == [r for b in plain for r in b.records()]
    assert made == items  # each made once


def test_deferred_metadata_without_the_document_columns_is_made_at_once_and_fills_them() -> None:
    deferred = DeferredMetadata(["a", "b"], lambda item: {"document_id": item, "chunk_index": 1})
    batch = batches_of(deferred, 2)[0]
    assert batch.document_ids == ["a", "b"] and batch.chunk_indexes == [1, 1]


def test_deferred_metadata_errors_name_the_position_when_its_rows_are_sent() -> None:
    columns = {"contents": [None] * 6, "document_ids": [None] * 6, "chunk_indexes": [None] * 6}
    bad = batches_of(DeferredMetadata(list(range(6)), lambda i: {"x": float("nan") if i == 5 else i}), 6, **columns)
    assert len(bad[0].records()) == 4
    with pytest.raises(InvalidInputError, match="metadata at position 5 is not JSON-serialisable"):
        bad[1].records()
    failing = batches_of(DeferredMetadata([1, 0], lambda i: {"x": 1 / i}), 2,
                         **{name: values[:2] for name, values in columns.items()})
    with pytest.raises(ZeroDivisionError):
        failing[0].records()  # an error of `make` itself comes out as it is
    with pytest.raises(InvalidInputError, match="metadata has 3 entries but there are 2 vectors"):
        batches_of(DeferredMetadata([0, 1, 2], dict), 2)
