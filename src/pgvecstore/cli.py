"""The ``pgvecstore`` command. ``pgvecstore demo`` adds vectors and searches them on the embedded default."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time

import numpy as np

from pgvecstore.config import redact_dsn
from pgvecstore.store import PgVectorStore

TOPICS = ["astronomy", "biology", "chemistry", "economics", "history", "music", "physics", "sport"]


async def run_demo(dsn: str | None, rows: int, dimensions: int) -> None:
    """Store `rows` vectors in topic clusters, then show that a search returns neighbours from the right topic."""
    rng = np.random.default_rng(7)
    centres = rng.normal(size=(len(TOPICS), dimensions)).astype(np.float32)
    labels = rng.integers(0, len(TOPICS), size=rows)
    vectors = centres[labels] + 0.35 * rng.normal(size=(rows, dimensions)).astype(np.float32)
    metadata = [
        {"topic": TOPICS[label], "content": f"passage {i} about {TOPICS[label]}", "document_id": f"doc-{i // 4}",
         "chunk_index": i % 4}
        for i, label in enumerate(labels)
    ]
    options = {"dimensions": dimensions, "schema": "pgvecstore_demo", "table_name": "demo_vectors",
               "index_type": "hnsw", "auto_create_index": True}
    if dsn:
        options["connection_string"] = dsn
    async with PgVectorStore(options) as store:
        where = redact_dsn(store.config.resolved_dsn()) or "the embedded PostgreSQL server"
        print(f"pgvecstore demo on {where}")
        await store.clear()
        started = time.perf_counter()
        ids = await store.add_vectors(vectors, metadata=metadata)
        elapsed = time.perf_counter() - started
        print(f"added {len(ids)} vectors of {dimensions} dimensions in {elapsed:.2f} s "
              f"({len(ids) / elapsed:,.0f} rows/s), HNSW index: {await store.index_info()}")
        for topic_index in (0, 3, 6):
            query = centres[topic_index] + 0.1 * rng.normal(size=dimensions).astype(np.float32)
            results = await store.search(query, k=3)
            print(f"\nnearest to a '{TOPICS[topic_index]}' query:")
            for row_id, score, meta in results:
                assert meta is not None
                print(f"  {score:.3f}  {meta['content']:<32} {meta['document_id']}#{meta['chunk_index']}  {row_id}")
        filtered = await store.search(centres[0], k=3, filter={"topic": "music"})
        print("\nsame 'astronomy' query, filtered to topic=music:")
        for _row_id, score, meta in filtered:
            assert meta is not None
            print(f"  {score:.3f}  {meta['content']}")
        print(f"\nrows stored: {await store.count()}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pgvecstore", description="PostgreSQL + pgvector retrieval layer.")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="add vectors and search them (embedded server unless --dsn/DATABASE_URL)")
    demo.add_argument("--dsn", default=None, help="PostgreSQL connection string (default: DATABASE_URL or embedded)")
    demo.add_argument("--rows", type=int, default=2000)
    demo.add_argument("--dimensions", type=int, default=384)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("pgvecstore").setLevel(logging.INFO)
    if args.command == "demo":
        asyncio.run(run_demo(args.dsn, args.rows, args.dimensions))
    return 0


if __name__ == "__main__":
    sys.exit(main())
