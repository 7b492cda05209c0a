"""Covering indexes of indexed metadata keys (the ``covering_metadata`` option): what fits in one.

A covered key's b-tree holds, besides the key's value, each row's ``domain_id``, ``id`` and vector
(``(column) INCLUDE (domain_id, id, embedding)``, only rows that have the key). A selective filter on the key then
reads the matching rows' vectors by an index-only scan of consecutive index pages instead of one heap page per
row: at 1,000,000 rows a 1% filter took about half the time (docs/selective-filters.md). The price is a second
copy of the vectors of the rows that have the key, on disk and, to be fast, in memory.

A b-tree entry holds at most `BTREE_MAX_ENTRY` bytes (PostgreSQL's limit for 8 kB pages), so the vector's
dimensions are checked when they are known, and each row's entry when it is written (`sql.metadata_ddl`).
"""

from __future__ import annotations

from collections.abc import Mapping

from pgvecstore.errors import InvalidOptionError

# PostgreSQL's largest b-tree entry on 8 kB pages (BTMaxItemSize; "index row size ... exceeds btree maximum").
BTREE_MAX_ENTRY = 2704
# The entry's header and null bitmap (16 bytes) and each of its four columns' alignment (at most 8 bytes each),
# added to the columns' sizes (`pg_column_size`) to bound the entry's size from above.
ENTRY_OVERHEAD = 48
# What the columns of an entry may take together (their sizes as `sql.metadata_ddl.entry_bytes` counts them).
ENTRY_ROOM = BTREE_MAX_ENTRY - ENTRY_OVERHEAD
# Bytes a covered entry must leave for the key's value, the id and domain_id; fewer dimensions than that allows.
MIN_ROOM = 256
# Bytes of a stored vector of d dimensions: a 4-byte length, two 2-byte fields, then the values.
_VECTOR_HEADER = 8
_VALUE_BYTES = {"vector": 4, "halfvec": 2}


def validated_keys(covered: object, indexed_metadata: Mapping[str, str]) -> tuple[str, ...]:
    """The ``covering_metadata`` option as a tuple: keys of `indexed_metadata`, each once; an `InvalidOptionError`
    naming the problem otherwise."""
    if isinstance(covered, str) or not isinstance(covered, list | tuple):
        raise InvalidOptionError(
            f"covering_metadata must be a list of indexed_metadata keys such as ['year'], got {type(covered).__name__}"
        )
    for key in covered:
        if key not in indexed_metadata:
            declared = ", ".join(map(repr, indexed_metadata)) or "none"
            raise InvalidOptionError(
                f"covering_metadata: {key!r} is not a key of indexed_metadata (declared: {declared}); a covering "
                "index extends the b-tree of an indexed key"
            )
        if covered.count(key) > 1:
            raise InvalidOptionError(f"covering_metadata names {key!r} more than once")
    return tuple(covered)


def vector_bytes(vector_type: str, dimensions: int) -> int:
    """The stored size of one vector of the column's type and dimensions."""
    return _VECTOR_HEADER + _VALUE_BYTES[vector_type] * dimensions


def max_dimensions(vector_type: str) -> int:
    """The most dimensions a covered entry takes for the column's type."""
    return (ENTRY_ROOM - MIN_ROOM - _VECTOR_HEADER) // _VALUE_BYTES[vector_type]


def check_dimensions(keys: tuple[str, ...], vector_type: str, dimensions: int | None) -> None:
    """Refuse covering indexes whose vectors leave no room in a b-tree entry, naming the option and the limit."""
    if not keys or dimensions is None or dimensions <= max_dimensions(vector_type):
        return
    other = "halfvec" if vector_type == "vector" else None
    hint = (f"; vector_type={other!r} halves the vectors (up to {max_dimensions(other):,} dimensions)"
            if other is not None and dimensions <= max_dimensions(other) else "")
    raise InvalidOptionError(
        f"covering_metadata={list(keys)!r}: a covering index keeps each row's vector in a b-tree entry of at most "
        f"{BTREE_MAX_ENTRY:,} bytes, which holds {vector_type} vectors of up to {max_dimensions(vector_type):,} "
        f"dimensions; these have {dimensions:,} ({vector_bytes(vector_type, dimensions):,} bytes){hint}"
    )
