"""The adapters' fast row mapping gives exactly what the straightforward per-row mapping gives.

Each fast path (LangChain texts and metadata to rows, LlamaIndex nodes to rows) is compared with a reference
written the plain way: same values, same types, same key order, same errors. Rows stored
by the earlier LlamaIndex format (embedding null and text "" inside ``_node_content``) still read back.
"""

from __future__ import annotations

import datetime
import json
import math
import uuid
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from llama_index.core.schema import (
    BaseNode,
    ImageNode,
    IndexNode,
    MediaResource,
    Node,
    NodeRelationship,
    RelatedNodeInfo,
    TextNode,
)

from langchain_pgvecstore.mapping import chunk_indexes, document_id_of
from langchain_pgvecstore.mapping import rows as lc_rows
from llama_index.vector_stores.pgvecstore.nodes import (
    COLUMN_KEYS,
    NODE_CONTENT_KEY,
    NODE_TYPE_KEY,
    RESERVED_KEYS,
    node_metadata,
    nodes_to_rows,
    row_to_node,
)


# -- LangChain texts and metadata to rows ------------------------------------------------------------------------
def reference_lc_rows(
    texts: Sequence[Any], metadatas: Sequence[Any] | None
) -> tuple[list[str], list[Mapping[str, Any]], list[str | None], list[int | None]]:
    """The adapter's mapping written row by row: metadata as given, the document columns derived from it."""
    metas = [{} for _ in texts] if metadatas is None else [m if m is not None else {} for m in metadatas]
    if len(metas) != len(texts):
        raise ValueError(f"metadatas has {len(metas)} entries but there are {len(texts)} texts")
    for position, (text, meta) in enumerate(zip(texts, metas, strict=True)):
        if not isinstance(text, str):
            raise ValueError(f"text at position {position} must be a string, got {type(text).__name__}")
        if not isinstance(meta, Mapping):
            raise ValueError(f"metadata at position {position} must be a dict, got {type(meta).__name__}")
    document_ids = [document_id_of(meta) for meta in metas]
    result: list[int | None] = [None] * len(metas)
    pending: dict[str, list[int]] = {}
    for position, (meta, doc) in enumerate(zip(metas, document_ids, strict=True)):
        explicit = meta.get("chunk_index")
        if not isinstance(explicit, bool) and isinstance(explicit, int | np.integer):
            result[position] = int(explicit)
        elif isinstance(doc, str):
            pending.setdefault(doc, []).append(position)
    for positions in pending.values():

        def order(position: int) -> tuple[int, float, int]:
            start = metas[position].get("start_index")
            ok = not isinstance(start, bool) and isinstance(start, int | float) and math.isfinite(float(start))
            return (0, float(start), position) if ok else (1, 0.0, position)  # type: ignore[arg-type]

        for rank, position in enumerate(sorted(positions, key=order)):
            result[position] = rank
    return list(texts), metas, document_ids, result


meta_value = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 5), st.floats(allow_nan=True), st.sampled_from(["a.txt", "b.txt", ""]),
    st.lists(st.integers(0, 3), max_size=2), st.just({"nested": [1, None]}),
)
meta_key = st.sampled_from(["source", "start_index", "page", "content", "document_id", "chunk_index", "n"])
plain_meta = st.dictionaries(st.sampled_from(["source", "start_index", "page", "n"]), meta_value, max_size=4)
any_meta = st.one_of(
    st.none(),
    plain_meta,
    st.dictionaries(meta_key, meta_value, max_size=4),
    plain_meta.map(OrderedDict),  # a Mapping that is not a plain dict
    st.just(["not", "a", "dict"]),
)


@settings(max_examples=300, deadline=None)
@given(
    metas=st.one_of(st.lists(plain_meta, max_size=8), st.lists(any_meta, max_size=8)),
    bad_text=st.one_of(st.none(), st.integers(0, 7)),
    none_metadatas=st.booleans(),
)
def test_langchain_rows_match_the_per_row_mapping(metas: list[Any], bad_text: int | None,
                                                  none_metadatas: bool) -> None:
    texts: list[Any] = [f"text {i}" for i in range(len(metas))]
    if bad_text is not None and bad_text < len(texts):
        texts[bad_text] = b"bytes"
    metadatas = None if none_metadatas else metas
    try:
        want = reference_lc_rows(texts, metadatas)
    except ValueError as exc:
        with pytest.raises(ValueError) as caught:
            lc_rows(texts, metadatas)
        assert str(caught.value) == str(exc)
        return
    assert lc_rows(texts, metadatas) == want


def test_langchain_rows_keep_the_metadata_as_given() -> None:
    metas = [
        {"source": "a.txt", "n": 1, "f": 0.5, "b": True, "none": None, "list": [1, "x"], "nested": {"k": [None]}},
        {"source": "a.txt", "n": 2},
        {"source": "b.txt", "start_index": 10},
        {"source": "b.txt", "start_index": 0},
    ]
    before = json.dumps(metas)
    texts, stored, document_ids, chunks = lc_rows(["w", "x", "y", "z"], metas)
    assert texts == ["w", "x", "y", "z"]
    assert json.dumps(metas) == before  # the caller's dicts are not modified
    assert stored == metas  # stored exactly as given: no reserved key, nothing moved out
    assert document_ids == ["a.txt", "a.txt", "b.txt", "b.txt"]
    assert chunks == [0, 1, 1, 0]  # call order in a.txt, start_index order in b.txt
    assert chunk_indexes([{"chunk_index": np.int64(4)}, {}], ["d", "d"]) == [4, 0]


# -- LlamaIndex nodes to rows ------------------------------------------------------------------------------------
_TEXT_TYPES = {TextNode.class_name(), IndexNode.class_name(), ImageNode.class_name()}


def reference_node_metadata(node: BaseNode) -> dict[str, Any]:
    """The metadata stored for a node by the earlier format: a JSON-mode dump with embedding null, text ""."""
    node_dict = node.model_dump(mode="json")
    user_metadata: dict[str, Any] = dict(node_dict.get("metadata") or {})
    clash = RESERVED_KEYS.intersection(user_metadata)
    if clash:
        raise ValueError(f"node {node.node_id!r}: metadata key {sorted(clash)[0]!r} is reserved by the store")
    node_type = node.class_name()
    if node_type in _TEXT_TYPES and "text" in node_dict:
        node_dict["text"] = ""
    node_dict["embedding"] = None
    stored = {key: value for key, value in user_metadata.items() if key not in COLUMN_KEYS}
    stored[NODE_CONTENT_KEY] = json.dumps(node_dict, ensure_ascii=False)
    stored[NODE_TYPE_KEY] = node_type
    return stored


def sample_nodes() -> list[BaseNode]:
    source = {NodeRelationship.SOURCE: RelatedNodeInfo(node_id="doc")}
    return [
        TextNode(id_="plain", text="plain text", metadata={"a": 1, "b": "x", "c": 0.25, "d": None, "e": True},
                 embedding=[0.1, 0.2], relationships=source, start_char_idx=3, end_char_idx=13),
        TextNode(id_="odd", text="odd values", embedding=[0.1, 0.2],
                 metadata={"nan": float("nan"), "inf": float("inf"), "when": datetime.date(2024, 5, 1),
                           "tuple": (1, 2), "nested": {"k": [1, {"z": None}]}, "é": "ü"}),
        TextNode(id_="columns", text="t", embedding=[0.1, 0.2],
                 metadata={"content": "user content", "document_id": 7, "chunk_index": "x", "keep": 1}),
        TextNode(id_="templates", text="t", embedding=[0.1, 0.2], metadata={"k": "v"},
                 excluded_llm_metadata_keys=["k"], metadata_template="{key}=>{value}", text_template="{content}"),
        IndexNode(id_="index", text="points elsewhere", index_id="other", embedding=[0.1, 0.2],
                  obj=TextNode(id_="inner", text="inner text")),
        ImageNode(id_="image", text="caption", image="aGVsbG8=", embedding=[0.1, 0.2]),
        Node(id_="multi", text_resource=MediaResource(text="resource text"), metadata={"m": 1},
             embedding=[0.1, 0.2]),
    ]


@pytest.mark.parametrize("node", sample_nodes(), ids=lambda node: node.node_id)
def test_llamaindex_node_metadata_matches_the_earlier_format(node: BaseNode) -> None:
    got, want = node_metadata(node), reference_node_metadata(node)
    assert list(got) == list(want)
    assert {k: v for k, v in got.items() if k != NODE_CONTENT_KEY} == {
        k: v for k, v in want.items() if k != NODE_CONTENT_KEY
    }
    # The serialised node leaves out what the earlier format blanked (the embedding, and the text kept in content),
    # the id (kept in the id column) and every field equal to its default: given the row's id, LlamaIndex reads both
    # back as the same node.
    earlier = json.loads(want[NODE_CONTENT_KEY])
    assert earlier.pop("embedding") is None
    if node.class_name() in _TEXT_TYPES:
        assert earlier.pop("text") == ""
    stored = json.loads(got[NODE_CONTENT_KEY])
    assert "id_" not in stored and "embedding" not in stored and "text" not in stored  # the row's columns hold them
    assert type(node).from_dict({**stored, "id_": node.node_id}) == type(node).from_dict(earlier)
    assert len(got[NODE_CONTENT_KEY]) < len(want[NODE_CONTENT_KEY])
    for key, value in stored.items():  # only fields the node sets
        default = type(node).model_fields[key].get_default(call_default_factory=True) if key != "class_name" else 0
        assert key == "class_name" or value != default, key


@pytest.mark.parametrize("node", [n for n in sample_nodes() if n.node_id != "odd"], ids=lambda node: node.node_id)
def test_llamaindex_rows_of_both_formats_read_back_as_the_node(node: BaseNode) -> None:
    rows = nodes_to_rows([node])
    expected = node.model_copy(update={"embedding": None})
    for stored in (rows.metadata[0], reference_node_metadata(node)):
        back = row_to_node(node.node_id, json.loads(json.dumps(stored)), rows.contents[0], rows.document_ids[0])
        assert type(back) is type(node)
        assert back == expected
        assert back.get_content(metadata_mode="llm") == node.get_content(metadata_mode="llm")


def test_llamaindex_rows_keep_the_last_of_a_repeated_id_and_map_documents() -> None:
    def node(node_id: str, doc: str | None, start: int | None, text: str) -> TextNode:
        rel = {NodeRelationship.SOURCE: RelatedNodeInfo(node_id=doc)} if doc else {}
        return TextNode(id_=node_id, text=text, start_char_idx=start, relationships=rel, embedding=[1.0])

    rows = nodes_to_rows([node("a", "d", 10, "old a"), node("b", "d", 0, "b"), node("c", None, None, "c"),
                          node("a", "d", 20, "new a")])
    assert rows.ids == ["b", "c", "a"]
    assert rows.contents == ["b", "c", "new a"]
    assert rows.document_ids == ["d", None, "d"]
    assert rows.chunk_indexes == [0, None, 1]
    with pytest.raises(ValueError, match="node 'e' has no embedding"):
        nodes_to_rows([node("ok", None, None, "x"), TextNode(id_="e", text="no vector")])
    with pytest.raises(ValueError, match="reserved by the store"):
        nodes_to_rows([TextNode(id_="r", text="x", metadata={NODE_TYPE_KEY: 1}, embedding=[1.0])])


def test_llamaindex_stored_node_takes_its_id_from_the_row() -> None:
    node = TextNode(id_="3b5d5c1e-0f43-4a53-9d4e-0c5e1b7c9a11", text="t", metadata={"k": "v"}, embedding=[1.0])
    stored = json.loads(json.dumps(nodes_to_rows([node]).metadata[0]))
    assert node.node_id not in stored[NODE_CONTENT_KEY]  # kept once, in the id column
    back = row_to_node(uuid.UUID(node.node_id), stored, "t", None)  # a uuid table hands back UUIDs
    assert back.node_id == node.node_id
    assert back == node.model_copy(update={"embedding": None})
    # A row written by earlier versions keeps the id inside its node, which wins.
    earlier = {**stored, NODE_CONTENT_KEY: json.dumps({"id_": "from-json", "metadata": {"k": "v"}})}
    assert row_to_node("from-row", earlier, "t", None).node_id == "from-json"
    for broken in ("not json", "[1, 2]", 7):
        with pytest.raises(ValueError, match="row 'r9': its _node_content is not a serialised node"):
            row_to_node("r9", {NODE_CONTENT_KEY: broken, NODE_TYPE_KEY: "TextNode"}, "t", None)
