"""The serialised node stored under ``_node_content``: the node's fields that differ from their defaults, without
what the row's own columns hold (the id, the embedding and, for text nodes, the text).

LlamaIndex reads a node back with ``TextNode.from_json`` (via ``metadata_dict_to_node``), which fills every field
left out with its default, so leaving defaults out changes nothing a reader gets back; the adapter's reader
(`nodes.stored_node`) puts the row's id and text back (LlamaIndex's own ``metadata_dict_to_node`` given the
metadata alone would make a fresh id, as it leaves the text empty). Rows written in the earlier, fuller forms
read back as before. The stored text is about a third as long as pydantic's full dump, so a short row stays under
PostgreSQL's 2 kB TOAST threshold (above it the metadata is moved out of the row, which costs each write a TOAST
insert: docs/vector-storage.md), and is made without pydantic's serializer for a plain `TextNode`
(`fast_fields`), which is most of what a node costs to store; anything else (another node class, metadata or
relationships holding more than plain JSON values) goes through ``model_dump_json(exclude_defaults=True)``, as
does a node the fast path does not know how to write exactly.
"""

from __future__ import annotations

import math
from enum import Enum
from typing import Any

from llama_index.core.schema import BaseNode, RelatedNodeInfo, TextNode

from pgvecstore.row_metadata import json_encoder

# Scalars JSON keeps exactly as they are (floats only when finite: pydantic writes NaN and infinity as null).
_SCALARS = (str, int, bool, type(None), float)
# A plain TextNode's fields besides the id, the embedding and the text, each with its default, in field order.
_KEY_LISTS = ("excluded_embed_metadata_keys", "excluded_llm_metadata_keys")
_STR_FIELDS = {"metadata_template": "{key}: {value}", "metadata_separator": "\n", "mimetype": "text/plain",
               "text_template": "{metadata_str}\n\n{content}"}
_OFFSETS = ("start_char_idx", "end_char_idx")
_KNOWN_FIELDS = {"id_", "embedding", "text", "metadata", "relationships", *_KEY_LISTS, *_STR_FIELDS, *_OFFSETS}
# The fast path writes TextNode's fields by name: only for the field set (and defaults) it was written against.
_FAST = set(TextNode.model_fields) == _KNOWN_FIELDS and all(
    TextNode.model_fields[name].default == default for name, default in _STR_FIELDS.items()
) and set(RelatedNodeInfo.model_fields) == {"node_id", "node_type", "metadata", "hash"}


# What the fast path leaves out (it writes every other field that differs from its default).
_FAST_EXCLUDES = frozenset({"id_", "embedding", "text"})


# The C encoder made once (``JSONEncoder.encode`` makes a new one per call, half the cost of a small node); without
# circular-reference markers, so it keeps no state between calls: `fast_fields` hands it fresh, plain values.
_encode = json_encoder(",", ":", check_circular=False)


def node_json(node: BaseNode, exclude: set[str], plain_metadata: bool = False) -> str:
    """JSON text of `node` without the fields in `exclude` and without fields equal to their defaults.
    `plain_metadata`: the caller checked that the node's metadata holds only plain JSON scalars."""
    if _FAST and type(node) is TextNode and exclude >= _FAST_EXCLUDES:
        fields = fast_fields(node, plain_metadata)
        if fields is not None:
            try:
                return _encode(fields)
            except (TypeError, ValueError):  # a value only pydantic knows how to write
                pass
    return node.model_dump_json(exclude=exclude, exclude_defaults=True)


def fast_fields(node: TextNode, plain_metadata: bool) -> dict[str, Any] | None:
    """A plain `TextNode`'s non-default fields but the id, the embedding and the text, as JSON values; None when
    one holds a value this function does not write exactly as pydantic's JSON mode would."""
    values = node.__dict__
    out: dict[str, Any] = {}
    metadata = values["metadata"]
    if metadata:
        if not plain_metadata:
            return None
        out["metadata"] = metadata
    for name in _KEY_LISTS:
        keys = values[name]
        if keys:
            if type(keys) is not list or not all(type(key) is str for key in keys):
                return None
            out[name] = keys
    relationships = values["relationships"]
    if relationships:
        plain = _relationships(relationships)
        if plain is None:
            return None
        out["relationships"] = plain
    for name, default in _STR_FIELDS.items():
        text = values[name]
        if text != default:
            if type(text) is not str:
                return None
            out[name] = text
    for name in _OFFSETS:
        offset = values[name]
        if offset is not None:
            if type(offset) is not int:
                return None
            out[name] = offset
    return out


def _plain_dict(value: Any) -> bool:
    """A str-keyed dict of scalars that JSON writes as pydantic's JSON mode does."""
    return (
        type(value) is dict
        and all(type(key) is str for key in value)
        and all(
            type(v) in _SCALARS and (type(v) is not float or math.isfinite(v)) for v in value.values()
        )
    )


def _relationships(value: Any) -> dict[str, Any] | None:
    """Relationships as JSON: {relationship value: related node (or list of them)}; None when one is not plain."""
    if type(value) is not dict:
        return None
    out: dict[str, Any] = {}
    for key, related in value.items():
        if not isinstance(key, Enum) or type(key.value) is not str:
            return None
        if type(related) is list:
            items = [_related(r) for r in related]
            if any(item is None for item in items):
                return None
            out[key.value] = items
        else:
            item = _related(related)
            if item is None:
                return None
            out[key.value] = item
    return out


def _related(related: Any) -> dict[str, Any] | None:
    """One related node's non-default fields as JSON, or None when it is not a plain `RelatedNodeInfo`."""
    if type(related) is not RelatedNodeInfo:
        return None
    values = related.__dict__
    node_id = values["node_id"]
    if type(node_id) is not str:
        return None
    out: dict[str, Any] = {"node_id": node_id}
    node_type = values["node_type"]
    if node_type is not None:
        if isinstance(node_type, Enum):
            node_type = node_type.value
        if type(node_type) is not str:
            return None
        out["node_type"] = node_type
    metadata = values["metadata"]
    if metadata:
        if not _plain_dict(metadata):
            return None
        out["metadata"] = metadata
    hash_ = values["hash"]
    if hash_ is not None:
        if type(hash_) is not str:
            return None
        out["hash"] = hash_
    return out
