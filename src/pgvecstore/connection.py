"""Connections: where the store connects, the pgvector extension check, and the asyncpg pool with vector codecs."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg

from pgvecstore import vectors
from pgvecstore.config import StoreConfig, check_dsn, redact_dsn
from pgvecstore.driver import connect_failed
from pgvecstore.errors import ExtensionMissingError, InvalidOptionError
from pgvecstore.identifiers import TENANT_SETTING
from pgvecstore.search_tuning import CUSTOM_PLAN, ITERATIVE_SCAN
from pgvecstore.server import embedded_dsn
from pgvecstore.sql import catalog

logger = logging.getLogger("pgvecstore")

# Every connection of a store names itself, so its sessions can be told apart in pg_stat_activity (pool sizing,
# leaks, pg_terminate_backend). A connection string's own ``?application_name=...`` takes precedence.
APPLICATION_NAME = "pgvecstore"
_CONNECT_ERRORS = (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError)
# Arguments of `connect_kwargs` that only a pool takes (not asyncpg.connect).
POOL_ONLY_ARGUMENTS = ("max_queries", "max_inactive_connection_lifetime")


def resolve_dsn(config: StoreConfig) -> str:
    """connection_string, else DATABASE_URL, else the embedded server (started on demand)."""
    return config.resolved_dsn() or embedded_dsn()


def session_settings(dsn: str) -> dict[str, str]:
    """Startup settings of every connection of a store: its application_name, unless the DSN names one."""
    try:
        query = parse_qs(urlsplit(dsn).query)
    except ValueError:
        query = {}
    return {} if "application_name" in query else {"application_name": APPLICATION_NAME}


async def connect_once(dsn: str, config: StoreConfig) -> asyncpg.Connection:
    """One connection outside the pool (used for set-up), with a clear error when the server is unreachable."""
    check_dsn(dsn)
    try:
        return await asyncpg.connect(
            dsn,
            timeout=config.connect_timeout,
            statement_cache_size=config.statement_cache_size,
            **user_arguments(config),
            server_settings={**session_settings(dsn), **user_settings(config)},
        )
    except _CONNECT_ERRORS as exc:
        raise connect_failed(dsn, config, exc) from None
    except ValueError:
        raise unparsable_dsn(dsn) from None


def unparsable_dsn(dsn: str) -> InvalidOptionError:
    """The error for a connection string the driver could not parse; the driver's own message may quote part of
    the password, so it is left out."""
    return InvalidOptionError(
        f"the connection string {redact_dsn(dsn)} is not a valid PostgreSQL URL or key=value string "
        "(check the port, and percent-encode special characters in the user name and password)"
    )


async def ensure_extension(conn: asyncpg.Connection) -> str:
    """Make sure pgvector is installed in the database; return the schema that holds its types."""
    found = await conn.fetchval(catalog.VECTOR_EXTENSION_SCHEMA.sql)
    if found:
        return str(found)
    try:
        async with conn.transaction():
            lock = catalog.extension_lock()
            await conn.execute(lock.sql, *lock.args)
            await conn.execute(catalog.CREATE_VECTOR_EXTENSION)
    except asyncpg.InsufficientPrivilegeError:
        row = await conn.fetchrow(catalog.CURRENT_DATABASE_AND_ROLE.sql)
        database, role = row if row is not None else ("?", "?")
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
    return str(await conn.fetchval(catalog.VECTOR_EXTENSION_SCHEMA.sql))


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


def startup_settings(dsn: str, config: StoreConfig, tenant: str | None = None) -> dict[str, str]:
    """What every pooled connection of a store sends when it connects (its startup packet: no round trip), with the
    ``server_settings`` of ``connect_kwargs`` (which cannot name the store's own: `config.validate_connect_kwargs`).

    Always the application name and UTC (``created_at`` is a TIMESTAMP filled by NOW(); UTC keeps it and date
    filters unambiguous), which transaction poolers forward too. On a direct connection also: iterative index scans
    (`pgvecstore.search_tuning.ITERATIVE_SCAN`, for SQL of the user's own too; the store's filtered searches set
    them again in their transaction), a plan of its own for every statement (`search_tuning.CUSTOM_PLAN`, so that
    an exact scan needs no transaction to set it: `PoolRegistry.plans_each_statement`), the tenant under row-level
    security, and ``statement_timeout``. A transaction
    pooler would refuse those at connect time and could not keep them anyway (each transaction may run on another
    server session): there they travel in each transaction instead (`transaction_settings`).
    """
    settings = session_settings(dsn)
    if not config.pooled_transactions:
        settings.update(ITERATIVE_SCAN)
    settings.update(user_settings(config))  # connect_kwargs' server_settings, which may rename the sessions
    settings["timezone"] = "UTC"
    if config.pooled_transactions:
        return settings
    settings.update(CUSTOM_PLAN)
    if tenant is not None:
        settings[TENANT_SETTING] = tenant
    if config.statement_timeout is not None:
        # Every statement of the store's pool; index builds lift it inside their own transaction.
        settings["statement_timeout"] = statement_timeout_ms(config.statement_timeout)
    return settings


def transaction_settings(config: StoreConfig, *, given_pool: bool = False) -> dict[str, str]:
    """Settings every operation of a store sets at the start of its transaction, besides the tenant (which every
    transaction under row-level security carries, pooled or not): behind a transaction pooler or on a pool the
    application gave the store, the ``statement_timeout`` that the store's own connections get at connect time,
    and on a given pool UTC too (``created_at``). An operation that sets a setting of its own overrides these
    (index builds lift the timeout)."""
    settings: dict[str, str] = {}
    if (config.pooled_transactions or given_pool) and config.statement_timeout is not None:
        settings["statement_timeout"] = statement_timeout_ms(config.statement_timeout)
    if given_pool:
        settings["TimeZone"] = "UTC"
    return settings


async def register_codecs(conn: asyncpg.Connection, vector_schema: str) -> None:
    """Encode and decode pgvector's types on `conn` in their binary format (numpy out)."""
    for name, codec in vectors.CODECS.items():
        try:
            await conn.set_type_codec(
                name, schema=vector_schema, encoder=codec.encode, decoder=codec.decode, format="binary"
            )
        except ValueError:  # no such type: halfvec came with pgvector 0.7
            if name == "vector":
                raise


def user_settings(config: StoreConfig) -> dict[str, str]:
    """The ``server_settings`` of the ``connect_kwargs`` option."""
    return dict(config.connect_kwargs.get("server_settings") or {})


def user_arguments(config: StoreConfig) -> dict[str, Any]:
    """The other asyncpg arguments of the ``connect_kwargs`` option (ssl, host, ...), but those only a pool takes."""
    return {name: value for name, value in config.connect_kwargs.items()
            if name != "server_settings" and name not in POOL_ONLY_ARGUMENTS}


def statement_timeout_ms(seconds: float) -> str:
    """``statement_timeout`` in milliseconds, as the server takes it (at least 1)."""
    return str(max(1, round(seconds * 1000)))


async def create_pool(
    dsn: str,
    config: StoreConfig,
    vector_schema: str,
    tenant: str | None = None,
    extra_settings: Mapping[str, str] | None = None,
) -> asyncpg.Pool:
    """An asyncpg pool whose connections encode and decode vectors in pgvector's binary format (numpy out).

    Its connections start with `startup_settings`. With `tenant` (row-level security), on a direct connection the
    tenant setting (``pgvecstore.domain_id``) is set at session level: it travels in the startup packet, costs no
    round trip, and is the value ``RESET ALL`` returns to, so it survives asyncpg's reset when a connection goes
    back to the pool: raw SQL through the pool is limited to that tenant by the row-level security policy even
    outside the store's own transactions. Behind a transaction pooler raw SQL must set it itself. `extra_settings`
    are more startup settings (a read replica's pool adds ``default_transaction_read_only``).
    """
    server_settings = {**startup_settings(dsn, config, tenant), **(extra_settings or {})}

    async def init(conn: asyncpg.Connection) -> None:
        await register_codecs(conn, vector_schema)

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
            **user_arguments(config),
            **{name: config.connect_kwargs[name] for name in POOL_ONLY_ARGUMENTS if name in config.connect_kwargs},
            server_settings=server_settings,
            connection_class=StoreConnection,
            reset=reset_connection,
        )
    except _CONNECT_ERRORS as exc:
        raise connect_failed(dsn, config, exc) from None
    except ValueError:
        raise unparsable_dsn(dsn) from None


async def set_session(conn: asyncpg.Connection, settings: Mapping[str, str]) -> None:
    """Set `settings` for the rest of the session, in one statement (only on a connection that is closed or reset
    afterwards: `PoolRegistry.own_connection`)."""
    if settings:
        statement = catalog.set_config(settings, local=False)
        await conn.execute(statement.sql, *statement.args)


async def set_local(conn: asyncpg.Connection, settings: Mapping[str, str]) -> None:
    """Set `settings` until the current transaction ends, in one statement of bound names and values."""
    if settings:
        statement = catalog.set_config(settings)
        await conn.execute(statement.sql, *statement.args)

