"""`PoolRegistry`: every connection a store uses, from one asyncpg pool per event loop, behind one error boundary.

- Pools per loop: an asyncpg pool belongs to the event loop that created it, and a store may be used from several
  loops (the sync API's background loop, the caller's own loop, a notebook's), so each loop gets its own pool.
- Set-up: `start` runs the store's one-time set-up on a connection outside the pool, then opens the running
  loop's pool.
- Scoping: `connection` lends a pooled connection for one operation: plain, or in a transaction that first sets
  the operation's settings and, under row-level security, the tenant, in one ``set_config`` statement.
- One boundary: an exception leaving an operation becomes the store's error (`pgvecstore.driver`); a connection
  lost mid-operation renews the pool, and `read` retries a read once on a fresh connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
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
)
from pgvecstore.driver import connect_failed, connection_lost, is_connection_lost, store_error
from pgvecstore.errors import ConnectionLostError, StoreClosedError
from pgvecstore.identifiers import TENANT_SETTING

logger = logging.getLogger("pgvecstore")
T = TypeVar("T")


class SetUp(Protocol):
    """What a store's set-up found, as far as its pools need it."""

    @property
    def session_tenant(self) -> str | None:
        """The tenant every connection and transaction carries (row-level security in force), or None."""


S = TypeVar("S", bound=SetUp)


class PoolRegistry:
    """The pools of one store, one per event loop, and the scoping and error boundary of every operation."""

    def __init__(self, config: StoreConfig) -> None:
        self.config = config
        self._pools: dict[asyncio.AbstractEventLoop, asyncpg.Pool] = {}
        self._lock = _LoopAgnosticLock()
        self._dsn = ""
        self._vector_schema = ""
        self._set_up: Any = None
        self._tenant: dict[str, str] = {}
        self._closed = False

    # -- life cycle ----------------------------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self._closed

    def ready(self) -> bool:
        """Whether set-up has run and the running loop has its pool."""
        return self._set_up is not None and asyncio.get_running_loop() in self._pools

    async def start(self, set_up: Callable[[asyncpg.Connection, str], Awaitable[S]]) -> S:
        """Run `set_up(connection, vector_schema)` once per store (on a connection of its own), then make sure the
        running loop has a pool; returns what set-up returned."""
        self._check_open()
        loop = asyncio.get_running_loop()
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
                self._sweep_dead_pools()
                pool = await create_pool(
                    self._dsn, self.config, self._vector_schema, self._tenant.get(TENANT_SETTING)
                )
                if self._closed:  # close() ran while the pool was opening: it must not outlive the store
                    await pool.close()
                self._check_open()
                self._pools[loop] = pool
        done: S = self._set_up
        return done

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError()

    async def _run_set_up(self, set_up: Callable[[asyncpg.Connection, str], Awaitable[S]]) -> S:
        self._dsn = await asyncio.to_thread(resolve_dsn, self.config)
        conn = await connect_once(self._dsn, self.config)
        try:
            self._vector_schema = await ensure_extension(conn)
            return await set_up(conn, self._vector_schema)
        except Exception as exc:
            raise await self._failure(exc, conn, None, transaction=True)  # noqa: B904 - the cause is set there
        finally:
            await conn.close()

    async def close(self) -> None:
        """Close every pool; later operations raise `StoreClosedError`. Closing twice is harmless."""
        self._closed = True
        pools, self._pools = self._pools, {}
        current = asyncio.get_running_loop()
        for loop, pool in pools.items():
            if loop is current:
                await pool.close()
            elif loop.is_closed() or not loop.is_running():
                _terminate(pool)
            else:
                # That loop may be blocked waiting for this very call (a sync close() made inside a running loop,
                # as in Jupyter): hand it the close without waiting, or the two would wait on each other forever.
                asyncio.run_coroutine_threadsafe(pool.close(), loop)

    def _sweep_dead_pools(self) -> None:
        """Drop pools whose event loop has been closed (their connections are closed without a loop)."""
        for loop in [loop for loop in self._pools if loop.is_closed()]:
            _terminate(self._pools.pop(loop))

    def pool(self) -> asyncpg.Pool:
        """The running loop's pool (after `start`)."""
        if self._closed:
            raise StoreClosedError()
        pool = self._pools.get(asyncio.get_running_loop())
        if pool is None:  # close() ran while the caller was starting, or the caller skipped start()
            raise StoreClosedError() if self._closed else RuntimeError("the store is not initialised on this loop")
        return pool

    # -- operations ----------------------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def connection(
        self, *, transaction: bool = False, settings: Mapping[str, str] | None = None
    ) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection for one operation.

        Plain (no transaction, no extra round trip) unless the operation needs a transaction or settings; with
        row-level security in force, always inside a transaction that first sets the tenant, together with any
        other `settings`, in one ``set_config`` statement (transaction-local, so nothing outlives the operation).
        An exception leaving the block is the store's error (see the module docstring).
        """
        pool = self.pool()
        configs = {**settings, **self._tenant} if settings else self._tenant
        conn = await self._acquire(pool)
        try:
            if self._closed:  # close() ran while this call waited in the pool's queue: the pool is closing it
                raise StoreClosedError()
            conn.mark_store_only()
            if not configs and not transaction:
                yield conn
            else:
                async with conn.transaction():
                    await set_local(conn, configs)
                    yield conn
        except Exception as exc:
            raise await self._failure(exc, conn, pool, transaction=transaction or bool(configs))  # noqa: B904
        finally:
            await self._release(pool, conn)

    async def read(
        self, method: str, sql: str, args: Sequence[Any], settings: Mapping[str, str] | None = None
    ) -> Any:
        """Run one read statement with `method` (``fetch``, ``fetchval``, ``fetchrow``), once more on a fresh
        connection when the pooled one turned out to be dead (see `retry_once`)."""
        if settings or self._tenant:

            async def once() -> Any:
                async with self.connection(settings=settings) as conn:
                    return await getattr(conn, method)(sql, *args)

            return await retry_once(once)
        try:
            return await self._plain(method, sql, args)
        except ConnectionLostError:
            return await self._plain(method, sql, args)

    async def _plain(self, method: str, sql: str, args: Sequence[Any]) -> Any:
        """`connection()` without a transaction, written out: the one-statement path of every plain search."""
        pool = self.pool()
        conn = await self._acquire(pool)
        try:
            if self._closed:
                raise StoreClosedError()
            conn.mark_store_only()
            return await getattr(conn, method)(sql, *args)
        except Exception as exc:
            raise await self._failure(exc, conn, pool, transaction=False)  # noqa: B904
        finally:
            await self._release(pool, conn)

    async def _acquire(self, pool: asyncpg.Pool) -> StoreConnection:
        """A connection of the pool (an asyncpg proxy of a `StoreConnection`), or the store's error."""
        try:
            return cast(StoreConnection, await pool.acquire())
        except asyncpg.InterfaceError:
            if self._closed:  # close() ran while this call was on its way to the pool
                raise StoreClosedError() from None
            raise
        except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
            raise connect_failed(self._dsn, self.config, exc) from None

    async def _failure(
        self, exc: Exception, conn: asyncpg.Connection, pool: asyncpg.Pool | None, *, transaction: bool
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
                await pool.expire_connections()
            error = connection_lost(self._dsn, exc, transaction=transaction)  # its message quotes the cause
            error.__suppress_context__ = True
            return error
        return store_error(exc)  # sets __cause__ when it maps

    @staticmethod
    async def _release(pool: asyncpg.Pool, conn: StoreConnection) -> None:
        try:
            await pool.release(cast(Any, conn))
        except Exception:
            # asyncpg resets a connection as it goes back to the pool; when the server ended the session just
            # after the operation finished (a shutdown), the reset fails and asyncpg discards the connection.
            # The operation itself completed, so its result stands; the pool renews its other connections.
            logger.debug("pgvecstore: a connection could not be reset on release; discarded", exc_info=True)
            await pool.expire_connections()


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


def _terminate(pool: asyncpg.Pool) -> None:
    """Close a pool's connections without its (closed or stopped) event loop."""
    try:
        pool.terminate()
    except Exception:
        logger.debug("pgvecstore: could not terminate a pool of a closed event loop", exc_info=True)
