"""Connections: where the store connects, the pgvector extension check, and the asyncpg pool with vector codecs."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg
import numpy as np
from pgvector import Vector

from pgvecstore.config import StoreConfig, redact_dsn
from pgvecstore.errors import ConnectionFailedError, ConnectionLostError, ExtensionMissingError
from pgvecstore.server import embedded_dsn
from pgvecstore.sql import CURRENT_DATABASE_AND_ROLE, TENANT_SETTING, set_config_sql

logger = logging.getLogger("pgvecstore")

_EXTENSION_LOCK_KEY = "pgvecstore:create-extension"
# Every connection of a store names itself, so its sessions can be told apart in pg_stat_activity (pool sizing,
# leaks, pg_terminate_backend). A connection string's own ``?application_name=...`` takes precedence.
APPLICATION_NAME = "pgvecstore"
# Errors that mean the connection itself is gone (server restart or failover, a terminated backend, a cut network)
# rather than that a statement failed: class 08, admin/crash shutdown, "the database system is starting up", and
# socket errors. TimeoutError (also an OSError) is told apart by the caller: in a statement it is command_timeout.
CONNECTION_LOST_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.CannotConnectNowError,
    OSError,
)
# pgvector 0.8 iterative index scans: a filtered search keeps scanning the index until it has k matches instead of
# returning fewer rows than asked for. HNSW keeps exact order; IVFFlat only offers relaxed order, so the store
# re-sorts its results by distance.
ITERATIVE_SCAN_SETTINGS = {"hnsw.iterative_scan": "strict_order", "ivfflat.iterative_scan": "relaxed_order"}


def resolve_dsn(config: StoreConfig) -> str:
    """connection_string, else DATABASE_URL, else the embedded server (started on demand)."""
    return config.resolved_dsn() or embedded_dsn()


def _encode_vector(value: Any) -> bytes:
    """Binary wire format of a vector (big-endian float32 after a dimension header), fast for numpy input.

    `bytes` are taken to be in that format already (the store's writes convert vectors so while they send);
    the server checks them (length, dimension, finite values) as it checks every vector it receives.
    """
    if type(value) is bytes:
        return value
    if isinstance(value, Vector):
        return value.to_binary()
    array = np.asarray(value, dtype=">f4")
    if array.ndim != 1:
        raise ValueError("a vector must be one-dimensional")
    return len(array).to_bytes(2, "big") + b"\x00\x00" + array.tobytes()


def _decode_vector(data: bytes) -> np.ndarray:
    dim = int.from_bytes(data[:2], "big")
    return np.frombuffer(data, dtype=">f4", count=dim, offset=4).astype(np.float32)


def session_settings(dsn: str) -> dict[str, str]:
    """Startup settings of every connection of a store: its application_name, unless the DSN names one."""
    try:
        query = parse_qs(urlsplit(dsn).query)
    except ValueError:
        query = {}
    return {} if "application_name" in query else {"application_name": APPLICATION_NAME}


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
    if isinstance(exc, TimeoutError | OSError | asyncpg.CannotConnectNowError | asyncpg.PostgresConnectionError):
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


async def connect_once(dsn: str, config: StoreConfig) -> asyncpg.Connection:
    """One connection outside the pool (used for set-up), with a clear error when the server is unreachable."""
    try:
        return await asyncpg.connect(
            dsn,
            timeout=config.connect_timeout,
            statement_cache_size=config.statement_cache_size,
            server_settings=session_settings(dsn),
        )
    except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise connect_failed(dsn, config, exc) from None


async def ensure_extension(conn: asyncpg.Connection) -> str:
    """Make sure pgvector is installed in the database; return the schema that holds its types."""
    found = await conn.fetchval(
        "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace "
        "WHERE e.extname = 'vector'"
    )
    if found:
        return str(found)
    try:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", _EXTENSION_LOCK_KEY)
            await conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    except asyncpg.InsufficientPrivilegeError:
        database, role = await conn.fetchrow(CURRENT_DATABASE_AND_ROLE)
        raise ExtensionMissingError(
            f"pgvector extension not installed in database {database!r}, and role {role!r} may not create it "
            "(CREATE EXTENSION vector needs a superuser or, on managed services, the provider's admin role). "
            f"Ask an administrator to run in database {database!r}: CREATE EXTENSION IF NOT EXISTS vector;"
        ) from None
    except (asyncpg.UndefinedFileError, asyncpg.FeatureNotSupportedError, asyncpg.UndefinedObjectError) as exc:
        raise ExtensionMissingError(
            "pgvector extension not installed: the server has no 'vector' extension available "
            f"({exc}). Install pgvector on the server (https://github.com/pgvector/pgvector#installation), "
            "then run: CREATE EXTENSION IF NOT EXISTS vector;"
        ) from None
    found = await conn.fetchval(
        "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace "
        "WHERE e.extname = 'vector'"
    )
    return str(found)


class StoreConnection(asyncpg.Connection):
    """A pooled connection that remembers whether only the store used it since it left the pool.

    The store's operations keep no session state (their settings are transaction-local), so such a connection
    goes back without asyncpg's reset round trip (``RESET ALL`` and friends, about 0.15 ms: a fifth of an HNSW
    search). A connection that SQL of the user's own borrowed (`PgVectorStore.get_pool`) gets the full reset.
    """

    _store_only = False

    def mark_store_only(self) -> None:
        """Called by the store right after it acquires this connection for one of its own operations."""
        self._store_only = True


async def reset_connection(conn: asyncpg.Connection) -> None:
    """Pool reset: nothing after the store's own operations (asyncpg has rolled back any open transaction
    already), asyncpg's default reset query after anyone else's."""
    if getattr(conn, "_store_only", False):
        conn._store_only = False  # type: ignore[attr-defined]
        return
    query = conn.get_reset_query()
    if query:
        await conn.execute(query)


async def create_pool(
    dsn: str, config: StoreConfig, vector_schema: str, tenant: str | None = None
) -> asyncpg.Pool:
    """An asyncpg pool whose connections encode numpy arrays as vectors and decode vectors to numpy.

    With `tenant`, every connection starts with the tenant setting (``pgvecstore.domain_id``) at session level.
    It travels in the startup packet, not as SQL, costs no round trip, and is the value ``RESET ALL`` returns to,
    so it survives asyncpg's reset when a connection goes back to the pool: raw SQL through the pool is limited
    to that tenant by the row-level security policy even outside the store's own transactions.
    """
    # created_at is a TIMESTAMP filled by NOW(): UTC on every connection keeps it (and date filters) unambiguous.
    server_settings = {**session_settings(dsn), **ITERATIVE_SCAN_SETTINGS, "timezone": "UTC"}
    if tenant is not None:
        server_settings[TENANT_SETTING] = tenant
    if config.statement_timeout is not None:
        # Every statement of the store's pool; index builds lift it inside their own transaction.
        server_settings["statement_timeout"] = str(max(1, round(config.statement_timeout * 1000)))

    async def init(conn: asyncpg.Connection) -> None:
        await conn.set_type_codec(
            "vector", schema=vector_schema, encoder=_encode_vector, decoder=_decode_vector, format="binary"
        )

    try:
        return await asyncpg.create_pool(
            dsn,
            min_size=config.pool_min_size,
            max_size=config.pool_max_size,
            init=init,
            timeout=config.connect_timeout,
            command_timeout=config.command_timeout,
            # 0 turns off asyncpg's prepared-statement cache, as PgBouncer's transaction mode requires.
            statement_cache_size=config.statement_cache_size,
            server_settings=server_settings,
            connection_class=StoreConnection,
            reset=reset_connection,
        )
    except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise connect_failed(dsn, config, exc) from None


async def set_local(conn: asyncpg.Connection, settings: Mapping[str, str]) -> None:
    """Set `settings` until the current transaction ends, in one statement of bound names and values."""
    if settings:
        values = [item for pair in settings.items() for item in pair]
        await conn.execute(set_config_sql(len(settings)), *values)
