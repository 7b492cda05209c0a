"""pgvecstore: PostgreSQL + pgvector as the retrieval layer of RAG applications."""

from pgvecstore.config import StoreConfig
from pgvecstore.errors import (
    ConflictError,
    ConnectionFailedError,
    ConnectionLostError,
    DatabaseError,
    EmbeddedServerError,
    EmbeddingModelError,
    ExtensionMissingError,
    InvalidInputError,
    InvalidOptionError,
    PermissionDeniedError,
    PgVecStoreError,
    QueryTimeoutError,
    ReadOnlyError,
    SchemaMismatchError,
    StoreClosedError,
    TableNotFoundError,
    WrongEventLoopError,
)
from pgvecstore.factory import VectorStoreFactory
from pgvecstore.metric import Metric
from pgvecstore.results import Row, SearchResult
from pgvecstore.store import PgVectorStore
from pgvecstore.sync import SyncPgVectorStore, run_sync
from pgvecstore.upgrade import UpgradeResult

__all__ = [
    "ConflictError",
    "ConnectionFailedError",
    "ConnectionLostError",
    "DatabaseError",
    "EmbeddedServerError",
    "EmbeddingModelError",
    "ExtensionMissingError",
    "InvalidInputError",
    "InvalidOptionError",
    "Metric",
    "PermissionDeniedError",
    "PgVecStoreError",
    "PgVectorStore",
    "QueryTimeoutError",
    "ReadOnlyError",
    "Row",
    "SchemaMismatchError",
    "SearchResult",
    "StoreClosedError",
    "StoreConfig",
    "SyncPgVectorStore",
    "TableNotFoundError",
    "UpgradeResult",
    "VectorStoreFactory",
    "WrongEventLoopError",
    "run_sync",
]
__version__ = "0.3.0"
