"""`VectorStoreFactory`: builds a store from a backend name and options, as the seed backend's factory does."""

from __future__ import annotations

from typing import Any

from pgvecstore.errors import InvalidOptionError, did_you_mean
from pgvecstore.store import PgVectorStore

BACKENDS: dict[str, type[PgVectorStore]] = {"pgvector": PgVectorStore}


class VectorStoreFactory:
    """Create vector stores by backend name: ``VectorStoreFactory().create(backend="pgvector", dimensions=384)``."""

    def create(self, backend: str = "pgvector", **options: Any) -> PgVectorStore:
        """A new, not yet initialised store of `backend` with `options`."""
        store_class = BACKENDS.get(backend) if isinstance(backend, str) else None
        if store_class is None:
            hint = did_you_mean(str(backend), BACKENDS, list_known=False)
            raise InvalidOptionError(
                f"unknown backend {backend!r}{hint} (known backends: {', '.join(sorted(BACKENDS))})"
            )
        return store_class(options)

    @staticmethod
    def backends() -> list[str]:
        """Names of the known backends."""
        return sorted(BACKENDS)
