"""The store's exceptions: each says what went wrong in the user's terms and what to do about it."""

from __future__ import annotations


class PgVecStoreError(Exception):
    """Base class of pgvecstore's own errors."""


class StoreClosedError(PgVecStoreError, RuntimeError):
    """The store was closed; create a new one to go on."""

    def __init__(self, message: str = "this store has been closed; create a new PgVectorStore to reconnect") -> None:
        super().__init__(message)


class ConnectionFailedError(PgVecStoreError, ConnectionError):
    """PostgreSQL could not be reached (the message names the server, never the password)."""


class ConnectionLostError(ConnectionFailedError):
    """The connection broke in the middle of an operation (server restart, failover, terminated backend)."""


class ExtensionMissingError(PgVecStoreError, RuntimeError):
    """The pgvector extension is not installed and could not be created."""


class SchemaMismatchError(PgVecStoreError, ValueError):
    """An existing table does not match the store's configuration (dimensions, columns, id type)."""


class WrongEventLoopError(PgVecStoreError, RuntimeError):
    """The store was used from an event loop other than the one it was initialised on."""
