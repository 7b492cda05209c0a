"""LangChain's standard vector-store suite (langchain-tests), sync and async, against the real embedded server.

No standard test is overridden; each test gets an empty store in its own schema (and, for async tests, its own
event loop, which the core serves with a pool of that loop).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from langchain_tests.integration_tests import VectorStoreIntegrationTests

from langchain_pgvecstore import PgVecStore


class TestPgVecStoreStandard(VectorStoreIntegrationTests):
    @pytest.fixture
    def vectorstore(self, pg_dsn: str, schema: str) -> Iterator[PgVecStore]:  # type: ignore[override]
        """An empty store in this test's schema, closed afterwards (the schema fixture drops the table)."""
        store = PgVecStore(
            self.get_embeddings(),
            connection_string=pg_dsn,
            schema=schema,
            dimensions=6,
            pool_min_size=1,
            pool_max_size=2,
        )
        try:
            yield store
        finally:
            store.close()
