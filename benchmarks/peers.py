"""Peer libraries on the same server and data: langchain-postgres and llama-index-vector-stores-postgres.

Run by `run_all.py` as a subprocess, usually under another Python: the peers pin ``pgvector<0.4`` and
``sqlalchemy<2.1``, which pgvecstore's environment does not allow, so they live in a virtualenv of their own
(`requirements-peers.txt`; `run_all.py --peer-python` or its automatic ``peers-venv``). This script imports
nothing from pgvecstore: only the shared data helpers of `common.py`, so both sides load the same vectors.

One call measures one library on one table: load ``--rows`` vectors with their metadata (timed), then, with
``--queries``, search them exactly and after building an HNSW index (m=16, ef_construction=64), by one client
and by ``--clients`` concurrent clients. Prints one JSON object per measurement on stdout.

    python benchmarks/peers.py --lib langchain --dsn postgresql://... --rows 20000 --queries 200
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    driver_dsn,
    group_labels,
    make_clustered,
    make_clustered_queries,
    make_group_metadata,
    measure_queries,
)


def emit(**record: Any) -> None:
    print(json.dumps(record), flush=True)


def texts_for(rows: int) -> list[str]:
    return [f"passage {i}" for i in range(rows)]


class _Peer:
    """What every peer offers the benchmark: load, search, build an index, clean up."""

    schema: str
    table: str

    async def load(self, vectors: np.ndarray, metadata: list[dict[str, Any]], batch: int) -> None: ...
    async def search(self, query: np.ndarray, k: int) -> int: ...
    async def close(self) -> None: ...

    def sql_engine(self) -> Any:
        """The SQLAlchemy async engine the library itself uses."""
        raise NotImplementedError

    async def build_hnsw(self) -> None:
        """The HNSW index every line builds (m=16, ef_construction=64), through the library's own engine."""
        from sqlalchemy import text

        async with self.sql_engine().begin() as conn:
            await conn.execute(
                text(
                    f'CREATE INDEX ON "{self.schema}".{self.table} USING hnsw (embedding vector_cosine_ops) '
                    "WITH (m = 16, ef_construction = 64)"
                )
            )
            await conn.execute(text(f'ANALYZE "{self.schema}".{self.table}'))


class LangChainPeer(_Peer):
    """langchain-postgres `PGVector` (async, psycopg 3)."""

    def __init__(self, dsn: str, schema: str, dims: int, vectors: np.ndarray) -> None:
        from langchain_core.embeddings import Embeddings
        from langchain_postgres import PGVector
        from sqlalchemy.ext.asyncio import create_async_engine

        lookup = {text: i for i, text in enumerate(texts_for(len(vectors)))}

        class Precomputed(Embeddings):
            """Returns the data set's vectors for its texts: no model, the same numbers every library gets."""

            def embed_documents(self, texts: list[str]) -> list[list[float]]:
                return [vectors[lookup[t]].tolist() for t in texts]

            def embed_query(self, text: str) -> list[float]:
                return self.embed_documents([text])[0]

        # langchain-postgres keeps its tables in the search_path's first schema; point it at ours.
        self.engine = create_async_engine(
            driver_dsn(dsn, "psycopg"),
            connect_args={"options": f"-c search_path={schema},public"},
            pool_size=16,
            max_overflow=0,
        )
        self.schema = schema
        self.table = "langchain_pg_embedding"
        self.store = PGVector(
            Precomputed(),
            connection=self.engine,
            embedding_length=dims,
            collection_name="bench",
            use_jsonb=True,
            async_mode=True,
            create_extension=False,
        )

    async def load(self, vectors: np.ndarray, metadata: list[dict[str, Any]], batch: int) -> None:
        from langchain_core.documents import Document

        texts = texts_for(len(vectors))
        docs = [Document(page_content=t, metadata=m) for t, m in zip(texts, metadata, strict=True)]
        for start in range(0, len(docs), batch):
            await self.store.aadd_documents(docs[start : start + batch])

    async def search(self, query: np.ndarray, k: int) -> int:
        return len(await self.store.asimilarity_search_by_vector(query.tolist(), k=k))

    def sql_engine(self) -> Any:
        return self.engine

    async def close(self) -> None:
        await self.engine.dispose()


class LlamaIndexPeer(_Peer):
    """llama-index-vector-stores-postgres `PGVectorStore` (asyncpg)."""

    def __init__(self, dsn: str, schema: str, dims: int, vectors: np.ndarray) -> None:
        from llama_index.vector_stores.postgres import PGVectorStore

        self.schema = schema
        self.table = "data_bench"
        self.store = PGVectorStore(
            connection_string=driver_dsn(dsn, "psycopg2"),
            async_connection_string=driver_dsn(dsn, "asyncpg"),
            table_name="bench",
            schema_name=schema,
            embed_dim=dims,
            use_jsonb=True,
            create_engine_kwargs={"pool_size": 16, "max_overflow": 0},
        )

    async def load(self, vectors: np.ndarray, metadata: list[dict[str, Any]], batch: int) -> None:
        from llama_index.core.schema import TextNode

        texts = texts_for(len(vectors))
        nodes = [
            TextNode(id_=str(uuid.uuid4()), text=t, metadata=m, embedding=v)
            for t, m, v in zip(texts, metadata, vectors.tolist(), strict=True)
        ]
        for start in range(0, len(nodes), batch):
            await self.store.async_add(nodes[start : start + batch])

    async def search(self, query: np.ndarray, k: int) -> int:
        from llama_index.core.vector_stores.types import VectorStoreQuery

        result = await self.store.aquery(VectorStoreQuery(query_embedding=query.tolist(), similarity_top_k=k))
        return len(result.ids or [])

    def sql_engine(self) -> Any:
        return self.store._async_engine  # the store's own engine: no other way in

    async def close(self) -> None:
        await self.store.close()


# Each peer by its --lib name: made from (dsn, schema, dims, vectors).
PEERS: dict[str, Callable[[str, str, int, np.ndarray], _Peer]] = {
    "langchain": LangChainPeer,
    "llamaindex": LlamaIndexPeer,
}


async def run(args: argparse.Namespace) -> None:
    import asyncpg

    vectors = make_clustered(args.rows, args.dims, seed=args.seed)
    metadata = make_group_metadata(group_labels(args.rows, seed=args.seed))
    schema = args.schema or f"bench_peer_{args.lib}_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(args.dsn)
    await admin.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
    peer = PEERS[args.lib](args.dsn, schema, args.dims, vectors)
    try:
        # Warm-up: set-up of tables, connections and code paths (a few rows, then removed).
        await peer.load(vectors[:50], metadata[:50], args.batch)
        await admin.execute(f'TRUNCATE "{schema}".{peer.table}')
        await admin.execute("CHECKPOINT")
        start = time.perf_counter()
        await peer.load(vectors, metadata, args.batch)
        seconds = time.perf_counter() - start
        landed = await admin.fetchval(f'SELECT count(*) FROM "{schema}".{peer.table}')
        emit(kind="ingest", lib=args.lib, rows=args.rows, seconds=seconds, landed=landed, batch=args.batch)
        if args.queries:
            queries = make_clustered_queries(args.queries, args.dims, seed=args.seed)
            await admin.execute(f'ANALYZE "{schema}".{peer.table}')
            for index in ("exact", "hnsw"):
                if index == "hnsw":
                    start = time.perf_counter()
                    await peer.build_hnsw()
                    emit(kind="build", lib=args.lib, seconds=time.perf_counter() - start)
                for i in range(min(10, len(queries))):  # warm-up
                    await peer.search(queries[i], args.k)
                for clients in (1, args.clients):
                    returned: list[int] = [0] * len(queries)

                    async def one(i: int, returned: list[int] = returned) -> None:
                        returned[i] = await peer.search(queries[i], args.k)

                    result = await measure_queries(args.lib, one, len(queries), clients)
                    emit(
                        kind="search", lib=args.lib, index=index, clients=clients, seconds=result.seconds,
                        wall=result.wall, returned=float(np.mean(returned)),
                    )
    finally:
        await peer.close()
        if not args.keep:
            await admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await admin.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lib", choices=sorted(PEERS), required=True)
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--dims", type=int, default=384)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch", type=int, default=1000, help="rows per add call (a loader's batch)")
    parser.add_argument("--queries", type=int, default=0, help="search queries per measurement (0: load only)")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("-k", type=int, default=10)
    parser.add_argument("--schema")
    parser.add_argument("--keep", action="store_true", help="keep the schema afterwards")
    args = parser.parse_args(argv)
    asyncio.run(run(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
