"""Mapping between LlamaIndex nodes and the core store's rows (id, vector, content, metadata, document_id, chunk).

A row's metadata JSON holds the node's user metadata at top level (so filters reach it) plus the node,
serialised without what the row's columns hold (its id, text and vector), under ``_node_content`` (and its class
under ``_node_type``), so a node read back from its row equals the node written: metadata types and key order,
relationships, character offsets, excluded keys, templates, IndexNode.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from llama_index.core.schema import (
    BaseNode,
    ImageNode,
    IndexNode,
    MetadataMode,
    Node,
    NodeRelationship,
    RelatedNodeInfo,
    TextNode,
)
from pydantic_core import PydanticSerializationError

from llama_index.vector_stores.pgvecstore.node_json import node_json
from pgvecstore import InvalidInputError
from pgvecstore.identifiers import DOCUMENT_COLUMNS
from pgvecstore.row_metadata import DeferredMetadata

NODE_CONTENT_KEY = "_node_content"
NODE_TYPE_KEY = "_node_type"
RESERVED_KEYS = frozenset({NODE_CONTENT_KEY, NODE_TYPE_KEY})
# Keys the core keeps in their own columns (filters on them address the columns).
COLUMN_KEYS = frozenset(DOCUMENT_COLUMNS)
# The relationships that order a document's chunks (looked up once: an enum member's attribute access costs).
_NEXT, _PREVIOUS = NodeRelationship.NEXT, NodeRelationship.PREVIOUS
# Node classes whose text lives in the `text` field: it is stored once, in the content column.
_TEXT_FIELD_TYPES = frozenset({TextNode.class_name(), IndexNode.class_name(), ImageNode.class_name()})


@dataclass
class NodeRows:
    """Column lists for `PgVectorStore.add_vectors`, one entry per distinct node id (the last one wins)."""

    ids: list[str] = field(default_factory=list)
    vectors: list[list[float]] = field(default_factory=list)
    contents: list[str | None] = field(default_factory=list)
    metadata: DeferredMetadata = field(default_factory=lambda: DeferredMetadata([], node_metadata))
    document_ids: list[str | None] = field(default_factory=list)
    chunk_indexes: list[int | None] = field(default_factory=list)


def nodes_to_rows(nodes: Sequence[BaseNode]) -> NodeRows:
    """Validate and convert nodes to rows. A node id given twice keeps its last occurrence (re-adding replaces)."""
    last: dict[str, int] = {}
    for position, node in enumerate(nodes):
        if not isinstance(node, BaseNode):
            raise InvalidInputError(
                f"node at position {position} must be a llama_index BaseNode, got {type(node).__name__}"
            )
        last[node.node_id] = position
    kept = list(nodes) if len(last) == len(nodes) else [nodes[i] for i in sorted(last.values())]
    document_ids = [node.ref_doc_id for node in kept]
    chunks = chunk_indexes(kept, document_ids)
    # Each node's metadata JSON (`node_metadata`, most of a node's cost) is made while the rows are sent.
    rows = NodeRows(document_ids=document_ids, chunk_indexes=chunks, metadata=DeferredMetadata(kept, node_metadata))
    none = MetadataMode.NONE
    for node in kept:
        embedding = node.embedding
        if embedding is None:
            raise InvalidInputError(
                f"node {node.node_id!r} has no embedding; embed nodes before adding them "
                "(VectorStoreIndex and IngestionPipeline do this with an embed_model)"
            )
        check_reserved_keys(node, node.metadata)  # here, before anything is sent
        rows.ids.append(node.node_id)
        rows.vectors.append(embedding)
        rows.contents.append(node.get_content(metadata_mode=none))
    return rows


# What the serialised node leaves out, since the row holds it once already: the id (the id column), the vector
# (the vector column) and, for node classes whose text lives in `text`, the text (the content column); reading
# back restores them from the row.
_ROW_FIELDS = {"id_", "embedding"}
_ROW_FIELDS_AND_TEXT = {"id_", "embedding", "text"}
# LlamaIndex's node classes by their `_node_type`, as `metadata_dict_to_node` chooses them (anything else: TextNode).
_NODE_CLASSES: dict[str, type[BaseNode]] = {cls.class_name(): cls for cls in (Node, IndexNode, ImageNode, TextNode)}
# Metadata values that pydantic's JSON mode passes through unchanged (floats only when finite: it turns NaN and
# infinity into null).
_PLAIN_VALUES = frozenset({str, int, bool, type(None), float})
_STR_ONLY = frozenset({str})


def _plain_json(metadata: Any) -> bool:
    """Whether `metadata` is a dict of str keys and scalar values that JSON mode would leave exactly as they are."""
    if type(metadata) is not dict:
        return False
    types = set(map(type, metadata.values()))
    if not types <= _PLAIN_VALUES or not set(map(type, metadata)) <= _STR_ONLY:
        return False
    return float not in types or all(math.isfinite(v) for v in metadata.values() if type(v) is float)


def check_reserved_keys(node: BaseNode, keys: Iterable[str]) -> None:
    """`InvalidInputError` naming the node when its metadata uses a key the store keeps for the node itself."""
    clash = RESERVED_KEYS.intersection(keys)
    if clash:
        raise InvalidInputError(f"node {node.node_id!r}: metadata key {sorted(clash)[0]!r} is reserved by the store")


def node_metadata(node: BaseNode) -> dict[str, Any]:
    """The metadata JSON stored for `node`: its user metadata at top level plus the serialised node.

    The node is serialised straight to JSON text (`node_json`: its fields that differ from their defaults),
    leaving out what the row's columns hold (the id, the embedding, the text) rather than dumping them and
    blanking them afterwards: most of a node's serialisation cost is its embedding. The top-level metadata is
    the node's own dict when it holds plain JSON values (what pydantic's JSON mode would return for it anyway),
    else its JSON-mode dump. The reserved keys of the node's own dict are its caller's to check (`nodes_to_rows`
    does, before anything is sent); those of a dump are checked here.
    """
    node_type = node.class_name()
    exclude = _ROW_FIELDS_AND_TEXT if node_type in _TEXT_FIELD_TYPES else _ROW_FIELDS
    user_metadata = node.metadata
    plain = _plain_json(user_metadata)
    try:
        serialised = node_json(node, exclude, plain)
        if not plain:
            user_metadata = node.model_dump(mode="json", include={"metadata"}).get("metadata") or {}
    except (PydanticSerializationError, TypeError, ValueError) as error:
        raise InvalidInputError(f"node {node.node_id!r} cannot be stored as JSON: {error}") from error
    if not plain:  # the node's own dict's keys were checked by `nodes_to_rows`; a dump's keys may differ
        check_reserved_keys(node, user_metadata)
    if COLUMN_KEYS.isdisjoint(user_metadata):
        return {**user_metadata, NODE_CONTENT_KEY: serialised, NODE_TYPE_KEY: node_type}
    stored = {key: value for key, value in user_metadata.items() if key not in COLUMN_KEYS}
    stored[NODE_CONTENT_KEY] = serialised
    stored[NODE_TYPE_KEY] = node_type
    return stored


def row_to_node(
    row_id: str,
    metadata: Mapping[str, Any] | None,
    content: str | None,
    document_id: str | None,
    embedding: Sequence[float] | np.ndarray | None = None,
) -> BaseNode:
    """Rebuild a node from a row: its stored metadata, its content and document columns, its vector if read.

    Rows written by other tools (no ``_node_content``) become a `TextNode` with the row's text and metadata and a
    SOURCE relationship to its document.
    """
    meta = dict(metadata or {})
    if NODE_CONTENT_KEY in meta:
        node = stored_node(row_id, meta, content)
    else:
        relationships = {}
        if document_id is not None:
            relationships[NodeRelationship.SOURCE] = RelatedNodeInfo(node_id=str(document_id))
        node = TextNode(id_=row_id, text=content or "", metadata=meta, relationships=relationships)
    if embedding is not None:
        node.embedding = [float(x) for x in embedding]
    return node


def stored_node(row_id: Any, meta: Mapping[str, Any], content: str | None) -> BaseNode:
    """The node serialised under ``_node_content``, of the class `_node_type` names (as LlamaIndex's
    `metadata_dict_to_node` reads it), with its text from the content column and, when the stored form leaves
    the id out (the current one does; earlier ones kept it), its id from the row's."""
    node_type = meta.get(NODE_TYPE_KEY)
    try:
        data = json.loads(meta[NODE_CONTENT_KEY])
    except (TypeError, ValueError) as error:
        raise ValueError(f"row {row_id!r}: its {NODE_CONTENT_KEY} is not a serialised node: {error}") from error
    if not isinstance(data, dict):
        raise ValueError(f"row {row_id!r}: its {NODE_CONTENT_KEY} is not a serialised node")
    if "id_" not in data:
        data["id_"] = str(row_id)
    node_class = _NODE_CLASSES.get(node_type, TextNode) if isinstance(node_type, str) else TextNode
    node = node_class.from_dict(data)
    if node_type in _TEXT_FIELD_TYPES:
        node.set_content(content or "")
    return node


def chunk_indexes(nodes: Sequence[BaseNode], ref_doc_ids: Sequence[str | None] | None = None) -> list[int | None]:
    """Each node's position in its document among the nodes given: by ``start_char_idx`` when every node of the
    document has one, else along PREVIOUS/NEXT relationships, else in call order. None for nodes without a source.
    `ref_doc_ids` are the nodes' ``ref_doc_id`` when the caller has them already.
    """
    if ref_doc_ids is None:
        ref_doc_ids = [node.ref_doc_id for node in nodes]
    groups: dict[str, list[int]] = {}
    for position, ref_doc_id in enumerate(ref_doc_ids):
        if ref_doc_id is not None:
            groups.setdefault(ref_doc_id, []).append(position)
    result: list[int | None] = [None] * len(nodes)
    for positions in groups.values():
        members = [nodes[p] for p in positions]
        starts = [getattr(n, "start_char_idx", None) for n in members]
        if all(start is not None for start in starts):
            order = sorted(range(len(members)), key=lambda i: (starts[i], i))
        else:
            order = _chain_order(members)
        for rank, member in enumerate(order):
            result[positions[member]] = rank
    return result


def _chain_order(members: Sequence[BaseNode]) -> list[int]:
    """Indexes of `members` in PREVIOUS/NEXT chain order; chains start in call order, unlinked nodes stay put."""
    index: dict[str, int] | None = None
    following: dict[int, int] = {}
    has_previous: set[int] = set()

    def link(before: int, after: int) -> None:
        if before != after and before not in following and after not in has_previous:
            following[before] = after
            has_previous.add(after)

    for i, node in enumerate(members):
        relationships = node.relationships
        nxt, prev = relationships.get(_NEXT), relationships.get(_PREVIOUS)
        if nxt is None and prev is None:
            continue
        if index is None:
            index = {member.node_id: j for j, member in enumerate(members)}
        if isinstance(nxt, RelatedNodeInfo) and nxt.node_id in index:
            link(i, index[nxt.node_id])
        if isinstance(prev, RelatedNodeInfo) and prev.node_id in index:
            link(index[prev.node_id], i)
    if not following:  # no links among them: call order
        return list(range(len(members)))
    order: list[int] = []
    seen: set[int] = set()
    for start in range(len(members)):
        if start in seen or start in has_previous:
            continue
        current: int | None = start
        while current is not None and current not in seen:
            order.append(current)
            seen.add(current)
            current = following.get(current)
    order.extend(i for i in range(len(members)) if i not in seen)  # cycles
    return order
