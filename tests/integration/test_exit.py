"""A program that never closes its stores exits quietly: no traceback, no "Task was destroyed", whether the
stores ran on the embedded server (which stops at exit) or on a server of the user's own."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PROGRAM = textwrap.dedent(
    """
    import asyncio
    import os

    import numpy as np
    from langchain_core.embeddings import DeterministicFakeEmbedding
    from llama_index.core import Document, Settings, StorageContext, VectorStoreIndex
    from llama_index.core.embeddings import MockEmbedding
    from llama_index.core.llms import MockLLM

    from langchain_pgvecstore import PgVecStore as LangChainStore
    from llama_index.vector_stores.pgvecstore import PgVecStore as LlamaIndexStore
    from pgvecstore import PgVectorStore, SyncPgVectorStore

    SCHEMA = os.environ.get("EXIT_TEST_SCHEMA", "pgvecstore")

    # LangChain, as in the README, never closed
    chain_store = LangChainStore.from_texts(["red apples", "green pears"], DeterministicFakeEmbedding(size=8),
                                            schema=SCHEMA, table_name="exit_langchain")
    print("langchain", chain_store.similarity_search("red apples", k=1)[0].page_content)

    # LlamaIndex, never closed
    Settings.embed_model, Settings.llm = MockEmbedding(embed_dim=8), MockLLM()
    vector_store = LlamaIndexStore(dimensions=8, schema=SCHEMA, table_name="exit_llamaindex")
    index = VectorStoreIndex.from_documents([Document(text="hello world")],
                                            storage_context=StorageContext.from_defaults(vector_store=vector_store))
    print("llamaindex", len(index.as_retriever(similarity_top_k=1).retrieve("hello")))

    # the sync core, and the async core on a loop of the user's own, never closed
    sync_store = SyncPgVectorStore(dimensions=4, schema=SCHEMA, table_name="exit_sync")
    sync_store.add_vectors(np.eye(4, dtype=np.float32))
    print("sync", len(sync_store.search(np.eye(4, dtype=np.float32)[0], k=2)))

    async def main() -> None:
        store = PgVectorStore(dimensions=4, schema=SCHEMA, table_name="exit_async")
        await store.add_vectors(np.eye(4, dtype=np.float32))
        print("async", len(await store.search(np.eye(4, dtype=np.float32)[1], k=3)))

    asyncio.run(main())
    """
)
ALARMING = ("Traceback", "Task was destroyed", "Exception ignored", "Error", "shutting down", "Failed")


def run_program(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "never_closes.py"
    script.write_text(PROGRAM)
    return subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=240)


def check_quiet(done: subprocess.CompletedProcess[str]) -> None:
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:4] == ["langchain red apples", "llamaindex 1", "sync 2", "async 3"], done.stdout
    for word in ALARMING:
        assert word not in done.stderr, done.stderr


def test_exit_without_close_on_the_embedded_server_is_quiet(tmp_path: Path) -> None:
    # A server of its own (a fresh data directory), so it is the program's exit that stops it.
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "PGVECSTORE_TEST_DSN")}
    env["PGVECSTORE_DATA_DIR"] = str(tmp_path / "data")
    check_quiet(run_program(tmp_path, env))


def test_exit_without_close_on_another_server_is_quiet(tmp_path: Path, pg_dsn: str, schema: str) -> None:
    if not pg_dsn.startswith("postgres"):
        pytest.fail(f"the test server's DSN is not a URL: {pg_dsn}")
    env = {k: v for k, v in os.environ.items() if k != "PGVECSTORE_TEST_DSN"}
    env["DATABASE_URL"] = pg_dsn
    env["EXIT_TEST_SCHEMA"] = schema  # dropped after the test
    check_quiet(run_program(tmp_path, env))


TWO_SERVERS = textwrap.dedent(
    """
    import sys

    import numpy as np

    from pgvecstore import SyncPgVectorStore
    from pgvecstore.server import embedded_dsn

    # Two embedded servers, the second started after the first store runs; neither store is closed.
    first = SyncPgVectorStore(connection_string=embedded_dsn(sys.argv[1]), dimensions=4, table_name="first")
    first.add_vectors(np.eye(4, dtype=np.float32))
    second = SyncPgVectorStore(connection_string=embedded_dsn(sys.argv[2]), dimensions=4, table_name="second")
    second.add_vectors(np.eye(4, dtype=np.float32))
    print(first.count(), second.count())
    """
)


def test_exit_without_close_is_quiet_with_two_embedded_servers(tmp_path: Path) -> None:
    script = tmp_path / "two_servers.py"
    script.write_text(TWO_SERVERS)
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "PGVECSTORE_TEST_DSN")}
    done = subprocess.run([sys.executable, str(script), str(tmp_path / "one"), str(tmp_path / "two")], env=env,
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "4 4\n"
    for word in ALARMING:
        assert word not in done.stderr, done.stderr
