"""The one boundary between asyncpg's errors and the store's: a mapping table and the connection-loss rules.

Every operation of the store runs through `pgvecstore.pool.PoolRegistry`, which hands any exception leaving
it to `translate`. A connection that is gone (a restart, a failover, a terminated backend, a cut network) becomes
`ConnectionLostError`; every other driver error is looked up in `DRIVER_ERRORS` (first match wins) and raised as
the store's error, with the driver's error as its ``__cause__``. The store's own errors pass through unchanged.
"""

from __future__ import annotations

from collections.abc import Callable

import asyncpg
import asyncpg.exceptions._base as asyncpg_base

from pgvecstore.config import StoreConfig, redact_dsn
from pgvecstore.errors import (
    ConflictError,
    ConnectionFailedError,
    ConnectionLostError,
    DatabaseError,
    InvalidInputError,
    PermissionDeniedError,
    PgVecStoreError,
    QueryTimeoutError,
    ReadOnlyError,
    SchemaMismatchError,
)

# Errors that mean the connection itself is gone rather than that a statement failed: class 08, admin/crash
# shutdown, "the database system is starting up", and socket errors. TimeoutError (also an OSError) is not one:
# raised by a statement it is command_timeout.
CONNECTION_LOST_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.CannotConnectNowError,
    OSError,
)


def _timeout(exc: BaseException) -> PgVecStoreError:
    if isinstance(exc, asyncpg.QueryCanceledError):
        return QueryTimeoutError(
            f"{exc} (the store's statement_timeout, or the server's): the statement was stopped and rolled back"
        )
    return QueryTimeoutError("no answer from PostgreSQL within command_timeout; the operation was abandoned")


def _message(kind: type[PgVecStoreError], hint: str = "") -> Callable[[BaseException], PgVecStoreError]:
    def make(exc: BaseException) -> PgVecStoreError:
        return kind(f"{exc}{hint}")

    return make


def _database(exc: BaseException) -> PgVecStoreError:
    state = getattr(exc, "sqlstate", None)
    return DatabaseError(f"PostgreSQL refused the operation ({type(exc).__name__}, SQLSTATE {state}): {exc}", state)


# The driver's errors and the store's, most specific first: (driver error class, how to make the store's error).
DRIVER_ERRORS: tuple[tuple[type[BaseException], Callable[[BaseException], PgVecStoreError]], ...] = (
    (asyncpg.QueryCanceledError, _timeout),
    (TimeoutError, _timeout),
    (asyncpg.InsufficientPrivilegeError, _message(PermissionDeniedError)),
    (asyncpg.ReadOnlySQLTransactionError, _message(ReadOnlyError, "; this server only accepts reads (a hot "
                                                   "standby?): write through a store on the primary")),
    (asyncpg.DeadlockDetectedError, _message(ConflictError, "; the operation wrote nothing and may be retried")),
    (asyncpg.SerializationError, _message(ConflictError, "; the operation wrote nothing and may be retried")),
    (asyncpg.UndefinedTableError, _message(SchemaMismatchError, "; was the table dropped or renamed?")),
    (asyncpg.UndefinedColumnError, _message(SchemaMismatchError, "; was the table altered?")),
    (asyncpg.DataError, _message(InvalidInputError)),
    (asyncpg_base.DataError, _message(InvalidInputError)),
    (asyncpg.PostgresError, _database),
    (asyncpg.InterfaceError, _database),
    (asyncpg_base.InternalClientError, _database),
)


def store_error(exc: BaseException) -> BaseException:
    """The store's error for driver error `exc` (by `DRIVER_ERRORS`), or `exc` itself when it is none."""
    if isinstance(exc, PgVecStoreError):
        return exc
    for driver_error, make in DRIVER_ERRORS:
        if isinstance(exc, driver_error):
            error = make(exc)
            error.__cause__ = exc
            return error
    return exc


def is_connection_lost(exc: BaseException, conn: asyncpg.Connection | None = None) -> bool:
    """Whether `exc`, raised by a statement on `conn`, means the connection is gone rather than the statement
    failed. A closed connection settles it (asyncpg raises several kinds of error on a dead socket)."""
    if conn is not None:
        try:
            if conn.is_closed():
                return True
        except asyncpg.InterfaceError:  # the pool already took back and discarded the dead connection
            return True
    return isinstance(exc, CONNECTION_LOST_ERRORS) and not isinstance(exc, TimeoutError)


def connect_failed(dsn: str, config: StoreConfig, exc: BaseException) -> ConnectionFailedError:
    """The error for a connection that could not be opened: names the server (no password) and the cause."""
    if isinstance(exc, TimeoutError):
        cause = f"no answer within connect_timeout={config.connect_timeout:g}s"
    else:
        cause = f"{type(exc).__name__}: {redact_dsn(str(exc))}"
    hint = ""
    if "unsupported startup parameter" in str(exc):  # PgBouncer's refusal (a protocol violation, class 08)
        hint = (". A connection pooler refused a setting the store sends when it connects straight to PostgreSQL: "
                "behind a transaction pooler (PgBouncer, RDS Proxy, Supavisor) pass transaction_pooler=True "
                "(statement_cache_size=0 implies it), and the store sends its settings inside each transaction")
    elif isinstance(exc, TimeoutError | OSError | asyncpg.CannotConnectNowError | asyncpg.PostgresConnectionError):
        hint = (". The server is down, restarting or unreachable; the same store reconnects on a later call once "
                "it is back")
    return ConnectionFailedError(f"could not connect to PostgreSQL at {redact_dsn(dsn)}: {cause}{hint}")


def connection_lost(dsn: str, exc: BaseException, *, transaction: bool) -> ConnectionLostError:
    """The error for a connection lost in the middle of an operation (server restart, terminated backend)."""
    outcome = (
        "The operation's transaction was rolled back by the server (unless the connection broke during COMMIT "
        "itself; writes by id are safe to repeat)"
        if transaction
        else "The operation did not complete"
    )
    return ConnectionLostError(
        f"lost the connection to PostgreSQL at {redact_dsn(dsn)} during the operation: "
        f"{type(exc).__name__}: {redact_dsn(str(exc))}. {outcome}; the store replaces its pooled connections, "
        "so a retry succeeds once the server is reachable"
    )
