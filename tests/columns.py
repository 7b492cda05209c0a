"""Reading a row's document columns as a user of the core would: `get` by id, in the order asked."""

from __future__ import annotations

from collections.abc import Sequence

from pgvecstore import PgVectorStore


async def document_columns(store: PgVectorStore, ids: Sequence[str]) -> list[tuple[str | None, str | None, int | None]]:
    """``(content, document_id, chunk_index)`` of each id that exists, in the order of `ids`."""
    found = {row.id: row for row in await store.get(ids)}
    return [(found[i].content, found[i].document_id, found[i].chunk_index) for i in ids if i in found]
