"""`PoolRegistry`: every connection a store uses, from one asyncpg pool per event loop, behind one error boundary.

- Pools per loop: an asyncpg pool belongs to the event loop that created it, and a store may be used from several
  loops (the sync API's background loop, the caller's own loop, a notebook's), so each loop gets its own pool.
- Set-up: `start` runs the store's one-time set-up on a connection outside the pool, then opens the running
  loop's pool.
- Scoping: `connection` lends a pooled connection for one operation: plain, or in a transaction that first sets
  the operation's settings and, under row-level security, the tenant (behind a transaction pooler also the
  settings a direct connection gets when it connects: `connection.transaction_settings`), in one ``set_config``
  statement.
- Lending: each loop's `LoopPool` keeps a connection that an operation gave back cleanly for the store's next
  operation on that loop, which then takes it without asyncpg's acquire and release (see `LoopPool`).
- One boundary: an exception leaving an operation becomes the store's error (`pgvecstore.driver`); a connection
  lost mid-operation renews the pool, and `read` retries a read once on a fresh connection.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import threading
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol, TypeVar, cast

import asyncpg
import asyncpg.exceptions._base as asyncpg_base

from pgvecstore.config import StoreConfig
from pgvecstore.connection import (
    StoreConnection,
    connect_once,
    create_pool,
    ensure_extension,
    resolve_dsn,
    set_local,
    transaction_settings,
)
from pgvecstore.driver import connect_failed, connection_lost, is_connection_lost, store_error
from pgvecstore.errors import ConnectionLostError, PgVecStoreError, StoreClosedError
from pgvecstore.identifiers import TENANT_SETTING
from pgvecstore.lending import LoopPool, check_given_loop, close_pools, close_pools_at_exit
from pgvecstore.replicas import ReplicaSet
from pgvecstore.server import before_stop

logger = logging.getLogger("pgvecstore")
T = TypeVar("T")


class SetUp(Protocol):
    """What a store's set-up found, as far as its pools need it."""

    @property
    def session_tenant(self) -> str | None:
        """The tenant every connection and transaction carries (row-level security in force), or None."""


S = TypeVar("S", bound=SetUp)


# Registries with pools open, for `close_all_at_exit`.
_open_registries: weakref.WeakSet[PoolRegistry] = weakref.WeakSet()


def close_all_at_exit() -> None:
    """At interpreter exit, close the pools of stores that were never closed: before the embedded server stops
    (`server.before_stop`), and at exit for any other server, so nothing is printed about connections that a
    stopping server or a dying event loop cut off."""
    for registry in list(_open_registries):
        registry.close_at_exit()


before_stop(close_all_at_exit)
atexit.register(close_all_at_exit)


class PoolRegistry:
    """The pools of one store, one per event loop, and the scoping and error boundary of every operation."""

    def __init__(self, config: StoreConfig, given: asyncpg.Pool | None = None) -> None:
        self.config = config
        self._given = given  # an application's own pool: used on its event loop only, never closed here
        self._pools: dict[asyncio.AbstractEventLoop, LoopPool] = {}
        self._lock = _LoopAgnosticLock()
        self._dsn = ""
        self._vector_schema = ""
        self._set_up: Any = None
        self._tenant: dict[str, str] = {}
        # Set in every operation's transaction (behind a transaction pooler: statement_timeout); an operation's
        # own settings override them, the tenant is set last.
        self._every = transaction_settings(config, given_pool=given is not None)
        self._closed = False
        # The read replicas (docs/replicas.md): `replica_read` and `replica_transaction` route to them.
        self.replicas = ReplicaSet(config, LoopPool) if config.read_replicas else None

    # -- life cycle ----------------------------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def plans_each_statement(self) -> bool:
        """Whether PostgreSQL plans every statement of the store's connections for its own values, so that no
        statement needs ``plan_cache_mode`` set in a transaction: direct connections start with it
        (`connection.startup_settings`), and without a statement cache every statement is unnamed, parsed and
        planned afresh (behind a transaction pooler). Not so for an application's pool or a pooler with a cache."""
        config = self.config
        return self._given is None and (config.statement_cache_size == 0 or not config.pooled_transactions)

    def ready(self) -> bool:
        """Whether set-up has run and the running loop has its pool."""
        return self._set_up is not None and asyncio.get_running_loop() in self._pools

    async def start(self, set_up: Callable[[asyncpg.Connection, str], Awaitable[S]]) -> S:
        """Run `set_up(connection, vector_schema)` once per store (on a connection of its own), then make sure the
        running loop has a pool; returns what set-up returned."""
        self._check_open()
        loop = asyncio.get_running_loop()
        if self._given is not None:
            check_given_loop(self._given, loop)
        if self._set_up is not None and loop in self._pools:
            result: S = self._set_up
            return result
        async with self._lock:
            self._check_open()
            if self._set_up is None:
                self._set_up = await self._run_set_up(set_up)
                tenant = self._set_up.session_tenant
                self._tenant = {TENANT_SETTING: tenant} if tenant is not None else {}
            if loop not in self._pools:
                if self._given is not None:
                    self._pools[loop] = LoopPool.given(self._given, loop, self._vector_schema)
                else:
                    self._sweep_dead_pools()
                    pool = await create_pool(
                        self._dsn, self.config, self._vector_schema, self._tenant.get(TENANT_SETTING)
                    )
                    if self._closed:  # close() ran while the pool was opening: it must not outlive the store
                        await pool.close()
                    self._check_open()
                    self._pools[loop] = LoopPool(pool, loop)
                _open_registries.add(self)
                if self.replicas is not None:  # pools only: nothing is ever created on a replica
                    await self.replicas.open(self._vector_schema, self._tenant.get(TENANT_SETTING))
        done: S = self._set_up
        return done

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError()

    async def _run_set_up(self, set_up: Callable[[asyncpg.Connection, str], Awaitable[S]]) -> S:
        if self._given is not None:
            self._dsn = "the asyncpg pool given to the store"
            conn = cast(asyncpg.Connection, await self._given.acquire())
        else:
            self._dsn = await asyncio.to_thread(resolve_dsn, self.config)
            conn = await connect_once(self._dsn, self.config)
        try:
            self._vector_schema = await ensure_extension(conn)
            done = await set_up(conn, self._vector_schema)
            if self.replicas is not None:  # what set-up created: reads wait for the replicas to have it
                await self.replicas.note_write(conn)
            return done
        except Exception as exc:
            raise await self._failure(exc, conn, None, transaction=True)  # noqa: B904 - the cause is set there
        finally:
            await (self._given.release(cast(Any, conn)) if self._given is not None else conn.close())

    async def close(self) -> None:
        """Close every pool; later operations raise `StoreClosedError`. Closing twice is harmless."""
        self._closed = True
        if self.replicas is not None:
            await self.replicas.close()
        pools, self._pools = self._pools, {}
        await close_pools(pools)

    def close_at_exit(self) -> None:
        """Close every pool from outside its event loop (interpreter exit, no loop running here): gracefully on
        a loop that still runs (the sync API's background loop), else by terminating the connections."""
        self._closed = True
        if self.replicas is not None:
            self.replicas.close_at_exit()
        pools, self._pools = self._pools, {}
        close_pools_at_exit(pools)

    def _sweep_dead_pools(self) -> None:
        """Drop pools whose event loop has been closed (their connections are closed without a loop)."""
        for loop in [loop for loop in self._pools if loop.is_closed()]:
            self._pools.pop(loop).terminate()

    def pool(self) -> asyncpg.Pool:
        """The running loop's asyncpg pool (after `start`), for SQL of the user's own."""
        return self._loop_pool().for_user()

    def _loop_pool(self) -> LoopPool:
        if self._closed:
            raise StoreClosedError()
        pool = self._pools.get(asyncio.get_running_loop())
        if pool is None:  # close() ran while the caller was starting, or the caller skipped start()
            raise StoreClosedError() if self._closed else RuntimeError("the store is not initialised on this loop")
        return pool

    # -- operations ----------------------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def connection(
        self, *, transaction: bool = False, settings: Mapping[str, str] | None = None, write: bool = False
    ) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection for one operation.

        Plain (no transaction, no extra round trip) unless the operation needs a transaction or settings; with
        row-level security in force, always inside a transaction that first sets the tenant, together with any
        other `settings`, in one ``set_config`` statement (transaction-local, so nothing outlives the operation).
        Behind a transaction pooler every operation with a ``statement_timeout`` runs so too, setting it.
        An exception leaving the block is the store's error (see the module docstring). A `write` notes its WAL
        position once committed, when the store has read replicas (read-your-writes).
        """
        pool = self._loop_pool()
        configs = {**self._every, **(settings or {}), **self._tenant}
        conn = pool.take() or await self._acquire(pool)
        done = False
        try:
            if self._closed:  # close() ran while this call waited in the pool's queue: the pool is closing it
                raise StoreClosedError()
            if not configs and not transaction:
                yield conn
            else:
                async with conn.transaction():
                    await set_local(conn, configs)
                    yield conn
            if write and self.replicas is not None:
                await self.replicas.note_write(conn)
            done = True
        except Exception as exc:
            raise await self._failure(exc, conn, pool, transaction=transaction or bool(configs))  # noqa: B904
        finally:
            if done:
                pool.keep(conn)
            else:
                await pool.release(conn)

    @contextlib.asynccontextmanager
    async def own_connection(self) -> AsyncIterator[asyncpg.Connection]:
        """A connection of its own outside the pools, closed afterwards (no tenant, no transaction), for long
        maintenance that holds session state or runs statements a transaction refuses (CREATE INDEX
        CONCURRENTLY, REINDEX CONCURRENTLY). Set-up must have run. An exception leaving the block is the store's
        error. On an application's pool (``pool=``) it is one of that pool's, given back through the pool's reset."""
        self._check_open()
        if self._given is not None:
            lent = cast(asyncpg.Connection, await self._given.acquire())
            try:
                yield lent
            except Exception as exc:
                raise await self._failure(exc, lent, None, transaction=False)  # noqa: B904
            finally:
                await self._given.release(cast(Any, lent))
            return
        conn = await connect_once(self._dsn, self.config)
        clean = False
        try:
            yield conn
            clean = True
        except PgVecStoreError:  # the store's own error (a PermissionDeniedError is an OSError, not a lost socket)
            clean = not conn.is_closed()
            raise
        except Exception as exc:
            raise await self._failure(exc, conn, None, transaction=False)  # noqa: B904 - the cause is set there
        finally:
            if clean:
                await conn.close()
            else:  # failed or cancelled, perhaps mid-statement: the server rolls back and frees its locks
                conn.terminate()

    async def read(
        self, method: str, sql: str, args: Sequence[Any], settings: Mapping[str, str] | None = None
    ) -> Any:
        """Run one read statement with `method` (``fetch``, ``fetchval``, ``fetchrow``), once more on a fresh
        connection when the pooled one turned out to be dead (see `retry_once`)."""
        if settings or self._tenant or self._every:

            async def once() -> Any:
                async with self.connection(settings=settings) as conn:
                    return await getattr(conn, method)(sql, *args)

            return await retry_once(once)
        # `connection()` without a transaction, written out (it is every plain search's path), with the retry.
        pool = self._loop_pool()
        for attempt in (1, 2):
            conn = pool.take() or await self._acquire(pool)
            try:
                if self._closed:
                    raise StoreClosedError()
                result = await getattr(conn, method)(sql, *args)
            except Exception as exc:
                error = await self._failure(exc, conn, pool, transaction=False)
                await pool.release(conn)
                if attempt == 1 and isinstance(error, ConnectionLostError):
                    continue
                raise error  # noqa: B904 - the cause is set by _failure
            except BaseException:  # a cancellation: the pool checks the connection
                await pool.release(conn)
                raise
            pool.keep(conn)
            return result
        raise AssertionError("unreachable")  # pragma: no cover

    async def replica_read(
        self, method: str, sql: str, args: Sequence[Any], settings: Mapping[str, str] | None = None
    ) -> Any:
        """`read`, on a read replica when the store has a usable one (else, or when it fails, on the primary)."""
        if self.replicas is None:
            return await self.read(method, sql, args, settings)
        return await self.replicas.run(
            lambda conn: getattr(conn, method)(sql, *args),
            transaction=False,
            settings={**self._every, **(settings or {}), **self._tenant},
            fallback=lambda: self.read(method, sql, args, settings),
        )

    async def replica_transaction(self, op: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """`op(connection)` in one read transaction (with the tenant set), on a read replica when the store has
        a usable one, else on the primary (retried once there on a lost connection)."""

        async def on_primary() -> T:
            async with self.connection(transaction=True) as conn:
                return await op(conn)

        if self.replicas is None:
            return await retry_once(on_primary)
        return await self.replicas.run(
            op, transaction=True, settings={**self._every, **self._tenant}, fallback=lambda: retry_once(on_primary)
        )

    async def _acquire(self, pool: LoopPool) -> StoreConnection:
        """A connection for one operation (an asyncpg proxy of a `StoreConnection`), or the store's error."""
        try:
            return await pool.acquire()
        except asyncpg.InterfaceError as exc:
            if self._closed:  # close() ran while this call was on its way to the pool
                raise StoreClosedError() from None
            raise store_error(exc) from exc
        except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
            raise connect_failed(self._dsn, self.config, exc) from None

    async def _failure(
        self, exc: Exception, conn: asyncpg.Connection, pool: LoopPool | None, *, transaction: bool
    ) -> BaseException:
        """The error to raise for `exc` leaving an operation on `conn` (the boundary of the module docstring): the
        store's error, whose ``__cause__`` is the driver's error where that adds anything."""
        lost = is_connection_lost(exc, conn)
        if self._closed and (lost or isinstance(exc, asyncpg.InterfaceError | asyncpg_base.InternalClientError)):
            closed = StoreClosedError("this store was closed while the call was running")
            closed.__suppress_context__ = True
            return closed
        if lost:
            if pool is not None:  # the other idle connections are most likely dead too: renew them all
                pool.return_kept()
                await pool.pool.expire_connections()
            error = connection_lost(self._dsn, exc, transaction=transaction)  # its message quotes the cause
            error.__suppress_context__ = True
            return error
        return store_error(exc)  # sets __cause__ when it maps



async def retry_once(read: Callable[[], Awaitable[T]]) -> T:
    """Run `read`, and once more on a fresh connection when its pooled connection turned out to be dead (a
    restart the pool had not noticed: the pool has been renewed). Only for reads, which a retry cannot change."""
    try:
        return await read()
    except ConnectionLostError:
        return await read()


class _LoopAgnosticLock:
    """An asyncio-style lock usable from several event loops (each in its own thread) one at a time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    async def __aenter__(self) -> None:
        while not self._lock.acquire(blocking=False):
            await asyncio.sleep(0.005)

    async def __aexit__(self, *exc: object) -> None:
        self._lock.release()
