"""`PoolRegistry`: every connection a store uses, from one asyncpg pool per event loop, behind one error boundary.

- Pools per loop: an asyncpg pool belongs to the event loop that created it, and a store may be used from several
  loops (the sync API's background loop, the caller's own loop, a notebook's), so each loop gets its own pool.
- Set-up: `start` runs the store's one-time set-up on a connection outside the pool, then opens the running
  loop's pool.
- Scoping: `connection` lends a pooled connection for one operation: plain, or in a transaction that first sets
  the operation's settings and, under row-level security, the tenant, in one ``set_config`` statement.
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
)
from pgvecstore.driver import connect_failed, connection_lost, is_connection_lost, store_error
from pgvecstore.errors import ConnectionLostError, StoreClosedError
from pgvecstore.identifiers import TENANT_SETTING
from pgvecstore.replicas import ReplicaSet
from pgvecstore.server import before_stop

logger = logging.getLogger("pgvecstore")
T = TypeVar("T")
# How long a connection an operation gave back stays with the store when no operation takes it (`LoopPool`).
KEEP_SECONDS = 0.1


class SetUp(Protocol):
    """What a store's set-up found, as far as its pools need it."""

    @property
    def session_tenant(self) -> str | None:
        """The tenant every connection and transaction carries (row-level security in force), or None."""


S = TypeVar("S", bound=SetUp)


# Registries with pools open, for `close_all_at_exit`.
_open_registries: weakref.WeakSet[PoolRegistry] = weakref.WeakSet()
# How long closing at exit waits for one pool before terminating its connections.
EXIT_CLOSE_SECONDS = 2.0


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

    def __init__(self, config: StoreConfig) -> None:
        self.config = config
        self._pools: dict[asyncio.AbstractEventLoop, LoopPool] = {}
        self._lock = _LoopAgnosticLock()
        self._dsn = ""
        self._vector_schema = ""
        self._set_up: Any = None
        self._tenant: dict[str, str] = {}
        self._closed = False
        # The read replicas (docs/replicas.md): `replica_read` and `replica_transaction` route to them.
        self.replicas = ReplicaSet(config, LoopPool) if config.read_replicas else None

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
            await conn.close()

    async def close(self) -> None:
        """Close every pool; later operations raise `StoreClosedError`. Closing twice is harmless."""
        self._closed = True
        if self.replicas is not None:
            await self.replicas.close()
        pools, self._pools = self._pools, {}
        current = asyncio.get_running_loop()
        for loop, pool in pools.items():
            if loop is current:
                await pool.close()
            elif loop.is_closed() or not loop.is_running():
                _terminate(pool.pool)
            else:
                # That loop may be blocked waiting for this very call (a sync close() made inside a running loop,
                # as in Jupyter): hand it the close without waiting, or the two would wait on each other forever.
                asyncio.run_coroutine_threadsafe(pool.close(), loop)

    def close_at_exit(self) -> None:
        """Close every pool from outside its event loop (interpreter exit, no loop running here): gracefully on
        a loop that still runs (the sync API's background loop), else by terminating the connections."""
        self._closed = True
        if self.replicas is not None:
            self.replicas.close_at_exit()
        pools, self._pools = self._pools, {}
        for loop, pool in pools.items():
            if loop.is_running():
                future = asyncio.run_coroutine_threadsafe(pool.close(), loop)
                try:
                    future.result(EXIT_CLOSE_SECONDS)
                    continue
                except Exception:  # a timeout or a dead connection: terminate below
                    future.cancel()
                    loop.call_soon_threadsafe(_terminate, pool.pool)
            else:
                _terminate(pool.pool)

    def _sweep_dead_pools(self) -> None:
        """Drop pools whose event loop has been closed (their connections are closed without a loop)."""
        for loop in [loop for loop in self._pools if loop.is_closed()]:
            _terminate(self._pools.pop(loop).pool)

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
        An exception leaving the block is the store's error (see the module docstring). A `write` notes its WAL
        position once committed, when the store has read replicas (read-your-writes).
        """
        pool = self._loop_pool()
        configs = {**settings, **self._tenant} if settings else self._tenant
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
            settings={**settings, **self._tenant} if settings else self._tenant,
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
            op, transaction=True, settings=self._tenant, fallback=lambda: retry_once(on_primary)
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



class LoopPool:
    """One event loop's asyncpg pool, and how the store's operations on that loop borrow its connections.

    An operation that ended cleanly gives its connection back here (`keep`) and it is kept, not released:
    when the same task goes straight on to its next operation (a loop of searches, a read after a write), that
    operation takes it at once. That skips asyncpg's acquire and release, whose release runs as a task of its
    own: a whole event-loop turn per operation, a tenth of a fast HNSW search. Kept connections go back to the
    pool as soon as a store operation on this loop waits for one, when the pool is handed out for SQL of the
    user's own (`for_user`), after `KEEP_SECONDS` without use, and at close. A connection of a failed or
    cancelled operation goes straight back through the pool, which checks and resets it.
    """

    __slots__ = ("_kept", "_loop", "_returning", "_timer", "_waiting", "pool")

    def __init__(self, pool: asyncpg.Pool, loop: asyncio.AbstractEventLoop) -> None:
        self.pool = pool
        self._loop = loop
        self._kept: list[StoreConnection] = []
        self._waiting = 0  # operations of this loop waiting for the pool
        self._timer: asyncio.TimerHandle | None = None
        self._returning: set[asyncio.Task[None]] = set()  # the tasks giving kept connections back, held here

    def take(self) -> StoreConnection | None:
        """A kept connection, if there is one."""
        return self._kept.pop() if self._kept else None

    async def acquire(self) -> StoreConnection:
        """A connection from the pool (waiting for one when all are out)."""
        self._waiting += 1
        try:
            conn = cast(StoreConnection, await self.pool.acquire())
        finally:
            self._waiting -= 1
        conn.mark_store_only()
        return conn

    def keep(self, conn: StoreConnection) -> None:
        """Keep `conn`, whose operation ended cleanly, for the store's next operation on this loop."""
        self._kept.append(conn)
        if self._waiting:  # another operation of this loop waits for the pool: let it have one next turn
            self._loop.call_soon(self.return_kept)
        elif self._timer is None:
            self._timer = self._loop.call_later(KEEP_SECONDS, self.return_kept)

    def _take_kept(self) -> list[StoreConnection]:
        """Every kept connection, no longer kept (and no timer left to return them)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        kept, self._kept = self._kept, []
        return kept

    def return_kept(self) -> None:
        """Give every kept connection back to the pool (in tasks of their own)."""
        for conn in self._take_kept():
            task = self._loop.create_task(self.release(conn))
            self._returning.add(task)
            task.add_done_callback(self._returning.discard)

    def for_user(self) -> asyncpg.Pool:
        """The asyncpg pool, for SQL of the user's own: kept connections go back to it first."""
        self.return_kept()
        return self.pool

    async def release(self, conn: StoreConnection) -> None:
        """Give `conn` back to the pool."""
        try:
            await self.pool.release(cast(Any, conn))
        except Exception:
            # asyncpg resets a connection as it goes back to the pool; when the server ended the session just
            # after the operation finished (a shutdown), the reset fails and asyncpg discards the connection.
            # The operation itself completed, so its result stands; the pool renews its other connections.
            logger.debug("pgvecstore: a connection could not be reset on release; discarded", exc_info=True)
            await self.pool.expire_connections()

    async def close(self) -> None:
        """Give every kept connection back, then close the pool (which waits for the borrowed ones)."""
        for conn in self._take_kept():
            await self.release(conn)
        await self.pool.close()


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
