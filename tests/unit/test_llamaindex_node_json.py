"""The stored node JSON (`node_json`): its fast path for plain TextNodes writes what pydantic writes, defaults
left out, and anything it cannot write exactly goes to pydantic; every form reads back as the node (its id, vector
and text come from the row's columns)."""

from __future__ import annotations

import datetime
import json
from typing import Any

import pytest
from llama_index.core.schema import NodeRelationship, ObjectType, RelatedNodeInfo, TextNode

from llama_index.vector_stores.pgvecstore.node_json import fast_fields, node_json

EXCLUDE = {"id_", "embedding", "text"}
SOURCE = RelatedNodeInfo(node_id="doc", node_type=ObjectType.DOCUMENT, metadata={"f": "a", "n": 1.5}, hash="abc")

PLAIN: dict[str, dict[str, Any]] = {
    "bare": {},
    "metadata": {"metadata": {"a": 1, "b": "x", "c": 0.25, "d": None, "e": True, "é": "ü"}},
    "relationships": {"relationships": {NodeRelationship.SOURCE: SOURCE,
                                        NodeRelationship.CHILD: [RelatedNodeInfo(node_id="c1"), SOURCE]}},
    "offsets": {"start_char_idx": 0, "end_char_idx": 12},
    "templates": {"metadata_template": "{key}=>{value}", "metadata_separator": " | ", "text_template": "{content}",
                  "mimetype": "text/markdown", "excluded_embed_metadata_keys": ["a"],
                  "excluded_llm_metadata_keys": ["a", "b"], "metadata": {"a": 1, "b": 2}},
}
# Values the fast path leaves to pydantic: nested metadata, non-finite floats, dates, tuples, related metadata
# that is not flat.
OTHER: dict[str, dict[str, Any]] = {
    "nested": {"metadata": {"tags": ["x", "y"], "m": {"k": 1}}},
    "nan": {"metadata": {"x": float("nan"), "y": float("inf")}},
    "date": {"metadata": {"when": datetime.date(2024, 5, 1)}},
    "related nested": {"relationships": {NodeRelationship.SOURCE: RelatedNodeInfo(node_id="d", metadata={"l": [1]})}},
}


def make(fields: dict[str, Any]) -> TextNode:
    return TextNode(id_="node-1", text="the text", embedding=[0.5, 0.25], **fields)


def plain_metadata(node: TextNode) -> bool:
    return all(type(v) in (str, int, float, bool, type(None)) for v in node.metadata.values())


@pytest.mark.parametrize("fields", PLAIN.values(), ids=list(PLAIN))
def test_the_fast_path_writes_what_pydantic_writes_without_defaults(fields: dict[str, Any]) -> None:
    node = make(fields)
    assert fast_fields(node, True) is not None
    fast = json.loads(node_json(node, EXCLUDE, True))
    slow = json.loads(node.model_dump_json(exclude=EXCLUDE, exclude_defaults=True))
    slow.pop("class_name")
    for related in slow.get("relationships", {}).values():
        for item in related if isinstance(related, list) else [related]:
            item.pop("class_name")
    assert fast == slow
    assert "id_" not in fast
    back = TextNode.from_dict({**json.loads(json.dumps(fast)), "id_": node.node_id})
    assert back == node.model_copy(update={"embedding": None, "text": ""})


@pytest.mark.parametrize("fields", OTHER.values(), ids=list(OTHER))
def test_values_the_fast_path_cannot_write_exactly_go_to_pydantic(fields: dict[str, Any]) -> None:
    node = make(fields)
    assert node_json(node, EXCLUDE, plain_metadata(node)) == node.model_dump_json(exclude=EXCLUDE,
                                                                                   exclude_defaults=True)
    stored = json.loads(node_json(node, EXCLUDE, plain_metadata(node)))
    assert "id_" not in stored
    back = TextNode.from_dict({**stored, "id_": node.node_id})
    assert back == TextNode.from_dict({**json.loads(node.model_dump_json(exclude=EXCLUDE)), "id_": node.node_id})


def test_a_subclass_of_textnode_goes_to_pydantic() -> None:
    class Tagged(TextNode):
        tag: str = "t"

    node = Tagged(id_="n", text="x", tag="u")
    assert json.loads(node_json(node, EXCLUDE, True))["tag"] == "u"
