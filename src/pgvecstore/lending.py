"""`LoopPool`: how one event loop's asyncpg pool lends its connections to a store's operations, and how a store's
pools are closed (from their own loop, from another, or at interpreter exit without one).

`pgvecstore.pool.PoolRegistry` keeps one `LoopPool` per event loop (and `pgvecstore.replicas.ReplicaSet` one per
replica and loop); this module knows nothing of stores, tenants or errors.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from typing import Any, cast

import asyncpg

from pgvecstore.connection import StoreConnection, register_codecs
from pgvecstore.errors import InvalidOptionError

logger = logging.getLogger("pgvecstore")
# How long a connection an operation gave back stays with the store when no operation takes it (`LoopPool`).
KEEP_SECONDS = 0.1
# How long closing at exit waits for one pool before terminating its connections.
EXIT_CLOSE_SECONDS = 2.0


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

    __slots__ = ("_kept", "_loop", "_registered", "_returning", "_schema", "_timer", "_waiting", "pool")

    def __init__(self, pool: asyncpg.Pool, loop: asyncio.AbstractEventLoop) -> None:
        self.pool = pool
        self._loop = loop
        self._kept: list[StoreConnection] = []
        self._waiting = 0  # operations of this loop waiting for the pool
        self._timer: asyncio.TimerHandle | None = None
        self._returning: set[asyncio.Task[None]] = set()  # the tasks giving kept connections back, held here
        # A pool the application gave the store: its connections got the vector codecs (None: the store's own pool,
        # whose connections get them when they open).
        self._registered: weakref.WeakSet[asyncpg.Connection] | None = None
        self._schema = ""

    @classmethod
    def given(cls, pool: asyncpg.Pool, loop: asyncio.AbstractEventLoop, vector_schema: str) -> LoopPool:
        """The lending of a pool the application opened (``PgVectorStore(pool=...)``) on `loop`, which must be
        the pool's own event loop (`check_given_loop`); the store registers its vector codecs on each of the
        pool's connections the first time it uses one, and never closes the pool."""
        lending = cls(pool, loop)
        lending._registered = weakref.WeakSet()
        lending._schema = vector_schema
        return lending

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
        if self._registered is None:
            conn.mark_store_only()
            return conn
        raw = getattr(conn, "_con", conn)  # the connection behind asyncpg's proxy: the same for its whole life
        if raw not in self._registered:
            try:
                await register_codecs(conn, self._schema)
            except BaseException:
                await self.pool.release(cast(Any, conn))
                raise
            self._registered.add(raw)
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

    def terminate(self) -> None:
        """Close the pool's connections without its (closed or stopped) event loop; a pool the application gave
        the store is left to the application."""
        if self._registered is None:
            _terminate(self.pool)

    async def close(self) -> None:
        """Give every kept connection back, then close the pool (which waits for the borrowed ones)."""
        for conn in self._take_kept():
            await self.release(conn)
        if self._registered is None:  # never a pool the application gave the store
            await self.pool.close()


def check_given_loop(pool: asyncpg.Pool, loop: asyncio.AbstractEventLoop) -> None:
    """An application's pool serves the store only on the event loop that created it."""
    if getattr(pool, "_loop", loop) is not loop:
        raise InvalidOptionError(
            "the asyncpg pool given to the store (pool=...) belongs to another event loop: use the store from "
            "the loop that created the pool (the synchronous API runs on a loop of its own)"
        )


async def close_pools(pools: dict[asyncio.AbstractEventLoop, LoopPool]) -> None:
    """Close `pools` from the running loop: its own pool at once, those of stopped loops by terminating their
    connections, and those of other running loops by handing them the close."""
    current = asyncio.get_running_loop()
    for loop, pool in pools.items():
        if loop is current:
            await pool.close()
        elif loop.is_closed() or not loop.is_running():
            pool.terminate()
        else:
            # That loop may be blocked waiting for this very call (a sync close() made inside a running loop, as
            # in Jupyter): hand it the close without waiting, or the two would wait on each other forever.
            asyncio.run_coroutine_threadsafe(pool.close(), loop)


def close_pools_at_exit(pools: dict[asyncio.AbstractEventLoop, LoopPool]) -> None:
    """Close `pools` from outside their event loops (interpreter exit, no loop running here): gracefully on a
    loop that still runs (the sync API's background loop), else by terminating the connections."""
    for loop, pool in pools.items():
        if loop.is_running():
            future = asyncio.run_coroutine_threadsafe(pool.close(), loop)
            try:
                future.result(EXIT_CLOSE_SECONDS)
                continue
            except Exception:  # a timeout or a dead connection: terminate below
                future.cancel()
                loop.call_soon_threadsafe(pool.terminate)
        else:
            pool.terminate()


def _terminate(pool: asyncpg.Pool) -> None:
    """Close a pool's connections without its (closed or stopped) event loop."""
    try:
        pool.terminate()
    except Exception:
        logger.debug("pgvecstore: could not terminate a pool of a closed event loop", exc_info=True)
