"""A table of the pgvecstore 0.1.0 layout (layout 1), made with that version's DDL and filled with plain SQL.

The statements are those of pgvecstore 0.1.0's src/pgvecstore/sql/ddl.py (``git show 53e135e^``) for the default
column names, copied here so that the tests keep building the old layout whatever the store's DDL becomes: the
generated tsvector column, the support indexes, the GIN index, an HNSW index (cosine, m 16, ef_construction 64)
and, when asked, row-level security with the tenant policy. No comment on the table (0.1.0 wrote none).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np

TABLE = "knowledge_embeddings"


@dataclass(frozen=True)
class OldRow:
    id: str
    domain_id: str | None
    document_id: str
    chunk_index: int
    content: str
    embedding: list[float]
    metadata: dict[str, Any] = field(default_factory=dict)


def v010_statements(schema: str, table: str, dimensions: int, *, config: str = "english",
                    row_security: bool = False) -> list[str]:
    """The DDL pgvecstore 0.1.0 ran for a new table with text search and an HNSW index (default columns)."""
    t = f'"{schema}"."{table}"'
    statements = [
        f'CREATE SCHEMA IF NOT EXISTS "{schema}"',
        f"CREATE TABLE IF NOT EXISTS {t} (\n"
        "    \"id\" TEXT PRIMARY KEY,\n"
        "    \"domain_id\" VARCHAR(100),\n"
        "    \"document_id\" VARCHAR(255),\n"
        "    \"chunk_index\" INTEGER,\n"
        "    \"content\" TEXT,\n"
        f"    \"embedding\" vector({int(dimensions)}),\n"
        "    \"metadata\" JSONB DEFAULT '{}',\n"
        "    \"created_at\" TIMESTAMP DEFAULT NOW(),\n"
        "    \"content_tsv\" tsvector GENERATED ALWAYS AS "
        f"(to_tsvector('{config}'::regconfig, coalesce(\"content\", ''))) STORED\n)",
        f'CREATE INDEX IF NOT EXISTS "{table}_domain_id_idx" ON {t} ("domain_id")',
        f'CREATE INDEX IF NOT EXISTS "{table}_document_id_idx" ON {t} ("document_id", "chunk_index")',
        f'CREATE INDEX IF NOT EXISTS "{table}_content_tsv_gin_idx" ON {t} USING gin ("content_tsv")',
        f'CREATE INDEX IF NOT EXISTS "{table}_embedding_hnsw_idx" ON {t} '
        "USING hnsw (\"embedding\" vector_cosine_ops) WITH (m = 16, ef_construction = 64)",
    ]
    if row_security:
        check = "\"domain_id\" = current_setting('pgvecstore.domain_id', true)"
        statements += [
            f'CREATE POLICY "{table}_tenant_isolation" ON {t} AS PERMISSIVE FOR ALL TO PUBLIC '
            f"USING ({check}) WITH CHECK ({check})",
            f"ALTER TABLE {t} ENABLE ROW LEVEL SECURITY",
        ]
    return statements


async def create_v010_table(conn: asyncpg.Connection, schema: str, rows: Sequence[OldRow], *, table: str = TABLE,
                            config: str = "english", row_security: bool = False) -> None:
    """Create the 0.1.0 table and insert `rows` with plain SQL (as 0.1.0's writes left them)."""
    dimensions = len(rows[0].embedding)
    for statement in v010_statements(schema, table, dimensions, config=config, row_security=row_security):
        await conn.execute(statement)
    await conn.executemany(
        f'INSERT INTO "{schema}"."{table}" (id, domain_id, document_id, chunk_index, content, embedding, metadata) '
        "VALUES ($1, $2, $3, $4, $5, $6::text::vector, $7::jsonb)",
        [(r.id, r.domain_id, r.document_id, r.chunk_index, r.content, str(r.embedding), json.dumps(r.metadata))
         for r in rows],
    )


def scifact_rows(scifact_dir: Path, n: int = 50, *, dimensions: int = 8, domains: Sequence[str | None] = (None,),
                 seed: int = 7) -> list[OldRow]:
    """`n` SciFact abstracts (title and text) as rows with made-up vectors, spread over `domains` in turn."""
    vectors = np.random.default_rng(seed).normal(size=(n, dimensions)).round(4)
    rows = []
    with (scifact_dir / "corpus.jsonl").open() as corpus:
        for i, line in zip(range(n), corpus, strict=False):
            doc = json.loads(line)
            rows.append(OldRow(
                id=f"doc-{i:03d}", domain_id=domains[i % len(domains)], document_id=doc["_id"], chunk_index=i % 3,
                content=f"{doc['title']} {doc['text']}", embedding=[float(x) for x in vectors[i]],
                metadata={"title": doc["title"], "n": i},
            ))
    return rows
