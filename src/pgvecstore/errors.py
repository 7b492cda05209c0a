"""The store's exceptions: each says what went wrong in the user's terms and what to do about it.

Every error pgvecstore raises on purpose is a `PgVecStoreError`. Most also derive from the built-in exception a
caller would expect (`ValueError` for bad input, `TimeoutError` for a timeout, `ConnectionError` for a lost
server), so ``except ValueError`` keeps working. Driver errors are translated in one place
(`pgvecstore.driver.DRIVER_ERRORS`); the original stays available as the exception's ``__cause__``.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class PgVecStoreError(Exception):
    """Base class of pgvecstore's own errors."""


class InvalidInputError(PgVecStoreError, ValueError):
    """An argument or a value given to the store is not valid; the message names it (option, id, position)."""


class InvalidOptionError(InvalidInputError):
    """A store option is unknown or out of range; the message names the option."""


class SchemaMismatchError(PgVecStoreError, ValueError):
    """An existing table does not match the store's configuration (dimensions, columns, id type)."""


class TableNotFoundError(SchemaMismatchError):
    """The store's table does not exist and the store cannot create it (``auto_create_table=False``, or no
    ``dimensions`` to create it with)."""


class StoreClosedError(PgVecStoreError, RuntimeError):
    """The store was closed; create a new one to go on."""

    def __init__(self, message: str = "this store has been closed; create a new PgVectorStore to reconnect") -> None:
        super().__init__(message)


class WrongEventLoopError(PgVecStoreError, RuntimeError):
    """The store was used from an event loop other than the one it was initialised on."""


class ConnectionFailedError(PgVecStoreError, ConnectionError):
    """PostgreSQL could not be reached (the message names the server, never the password)."""


class ConnectionLostError(ConnectionFailedError):
    """The connection broke in the middle of an operation (server restart, failover, terminated backend)."""


class QueryTimeoutError(PgVecStoreError, TimeoutError):
    """A statement ran past ``statement_timeout`` (server side) or ``command_timeout`` (client side)."""


class PermissionDeniedError(PgVecStoreError, PermissionError):
    """The database role may not do this (a privilege, or a row-level security policy, refused it)."""


class ReadOnlyError(PgVecStoreError):
    """The server only accepts reads (a hot standby, or a read-only transaction); write to the primary."""


class ConflictError(PgVecStoreError):
    """Another session's concurrent work made this operation fail (a deadlock or serialization failure); it
    wrote nothing and may be retried."""


class DatabaseError(PgVecStoreError):
    """PostgreSQL refused an operation for a reason not covered by a more specific error; ``sqlstate`` is its
    error code."""

    def __init__(self, message: str, sqlstate: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


class ExtensionMissingError(PgVecStoreError, RuntimeError):
    """The pgvector extension is not installed and could not be created."""


class EmbeddedServerError(PgVecStoreError, RuntimeError):
    """The embedded PostgreSQL server could not be started."""


class EmbeddingModelError(PgVecStoreError, RuntimeError):
    """The embedding model could not be found or loaded (the message says which model and what to do)."""


def did_you_mean(name: str, known: Iterable[str], *, cutoff: float = 0.6, list_known: bool = True) -> str:
    """The hint ending an error about an unknown `name`: the closest of `known`, else (if `list_known`) all."""
    choices = sorted(known)
    close = difflib.get_close_matches(name, choices, n=1, cutoff=cutoff)
    if close:
        return f"; did you mean {close[0]!r}?"
    return f"; known: {', '.join(choices)}" if list_known else ""
