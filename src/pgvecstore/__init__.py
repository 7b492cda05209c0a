"""pgvecstore: PostgreSQL + pgvector as the retrieval layer of RAG applications."""

from pgvecstore.config import StoreConfig
from pgvecstore.errors import (
    ConnectionFailedError,
    ExtensionMissingError,
    PgVecStoreError,
    SchemaMismatchError,
    StoreClosedError,
    WrongEventLoopError,
)
from pgvecstore.factory import VectorStoreFactory
from pgvecstore.store import PgVectorStore
from pgvecstore.sync import SyncPgVectorStore, run_sync

__all__ = [
    "ConnectionFailedError",
    "ExtensionMissingError",
    "PgVecStoreError",
    "PgVectorStore",
    "SchemaMismatchError",
    "StoreClosedError",
    "StoreConfig",
    "SyncPgVectorStore",
    "VectorStoreFactory",
    "WrongEventLoopError",
    "run_sync",
]
__version__ = "0.1.0"
