"""The one boundary between asyncpg's errors and the store's: each driver error becomes the store's error, which
is also the built-in exception a caller would catch, and keeps the driver's error as its cause."""

from __future__ import annotations

import asyncpg
import asyncpg.exceptions._base as asyncpg_base
import pytest

import pgvecstore
from pgvecstore import (
    ConflictError,
    DatabaseError,
    InvalidInputError,
    PermissionDeniedError,
    PgVecStoreError,
    QueryTimeoutError,
    ReadOnlyError,
    SchemaMismatchError,
    StoreClosedError,
)
from pgvecstore.driver import DRIVER_ERRORS, is_connection_lost, store_error

CASES = [
    (asyncpg.QueryCanceledError("canceling statement due to statement timeout"), QueryTimeoutError, TimeoutError),
    (TimeoutError(), QueryTimeoutError, TimeoutError),
    (asyncpg.InsufficientPrivilegeError("new row violates row-level security policy"), PermissionDeniedError,
     PermissionError),
    (asyncpg.ReadOnlySQLTransactionError("cannot execute COPY during recovery"), ReadOnlyError, PgVecStoreError),
    (asyncpg.DeadlockDetectedError("deadlock detected"), ConflictError, PgVecStoreError),
    (asyncpg.SerializationError("could not serialize access"), ConflictError, PgVecStoreError),
    (asyncpg.UndefinedTableError('relation "t" does not exist'), SchemaMismatchError, ValueError),
    (asyncpg.UndefinedColumnError('column "x" does not exist'), SchemaMismatchError, ValueError),
    (asyncpg.StringDataRightTruncationError("value too long for type character varying(255)"), InvalidInputError,
     ValueError),
    (asyncpg_base.DataError("invalid input for query argument $1"), InvalidInputError, ValueError),
    (asyncpg.UniqueViolationError("duplicate key value"), DatabaseError, PgVecStoreError),
    (asyncpg.InterfaceError("cannot perform operation: another operation is in progress"), DatabaseError,
     PgVecStoreError),
]


@pytest.mark.parametrize(("driver", "store", "builtin"), CASES, ids=lambda c: type(c).__name__)
def test_each_driver_error_becomes_the_stores(driver: Exception, store: type, builtin: type) -> None:
    error = store_error(driver)
    assert type(error) is store
    assert isinstance(error, PgVecStoreError) and isinstance(error, builtin)
    assert error.__cause__ is driver  # the driver's error stays at hand
    assert str(driver) in str(error)


def test_the_table_is_ordered_most_specific_first() -> None:
    """No entry is shadowed by an earlier, broader one (the table is read top down, first match wins)."""
    for i, (later, _) in enumerate(DRIVER_ERRORS):
        for earlier, _ in DRIVER_ERRORS[:i]:
            assert not issubclass(later, earlier), f"{later.__name__} is shadowed by {earlier.__name__}"


def test_the_stores_own_errors_and_other_exceptions_pass_through() -> None:
    own = InvalidInputError("vector at position 3 contains NaN or infinity")
    assert store_error(own) is own
    closed = StoreClosedError()
    assert store_error(closed) is closed
    other = KeyError("not a driver error")
    assert store_error(other) is other


def test_database_errors_carry_the_sqlstate() -> None:
    error = store_error(asyncpg.UniqueViolationError("duplicate key value"))
    assert isinstance(error, DatabaseError) and error.sqlstate == "23505"


def test_a_dead_connection_is_told_apart_from_a_failed_statement() -> None:
    assert is_connection_lost(asyncpg.ConnectionDoesNotExistError("connection was closed"))
    assert is_connection_lost(asyncpg.AdminShutdownError("terminating connection due to administrator command"))
    assert is_connection_lost(ConnectionResetError())
    assert not is_connection_lost(TimeoutError())  # command_timeout: the statement, not the connection
    assert not is_connection_lost(asyncpg.QueryCanceledError("canceling statement"))


def test_every_exception_class_of_the_package_is_a_pgvecstore_error() -> None:
    classes = [obj for obj in vars(pgvecstore).values() if isinstance(obj, type) and issubclass(obj, Exception)]
    assert len(classes) >= 15
    assert all(issubclass(cls, PgVecStoreError) for cls in classes)
    from pgvecstore.embeddings import EmbeddingModelError
    from pgvecstore.server import EmbeddedServerError

    assert issubclass(EmbeddingModelError, PgVecStoreError) and issubclass(EmbeddedServerError, PgVecStoreError)
