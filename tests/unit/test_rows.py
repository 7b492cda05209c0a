"""Row preparation: the vectorised fast path gives exactly the rows of the per-row reference path."""

from __future__ import annotations

import uuid
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from pgvecstore.rows import _checked_batch, _fast_batch, encode_metadata, generated_ids, iter_row_batches

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
    slow = _checked_batch(block, 0, domain, id_type, set(), columns)  # must accept what the fast path accepted
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
