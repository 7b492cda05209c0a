"""`ReplicaSet`: a store's read replicas, their health, and where each read runs (docs/replicas.md).

- Pools: one asyncpg pool per replica per event loop, made like the primary's (`connection.create_pool`) plus
  ``default_transaction_read_only=on``, so a write that reaches a replica connection is refused by the server.
  Nothing is ever created on a replica: set-up and DDL run on the primary only.
- Health: a probe (`sql.replication.REPLICA_HEALTH`) runs in a task of its own, at most every `PROBE_INTERVAL`
  seconds per loop, started by the reads themselves (no timer runs while the store is idle). A replica is used
  when it answered, is still in recovery and is at most ``max_replica_lag`` seconds behind; otherwise it is down,
  promoted or lagging, and skipped until a later probe finds it well. Each change is logged once.
- Spread: round-robin over the usable replicas.
- Read-your-writes: after each write the primary's WAL position is noted (`note_write`); a read goes to a replica
  known to have replayed it, else waits on one (``read_your_writes_timeout``), else runs on the primary.
- No read fails because a replica went away: a connection that fails (refused, lost, shutting down, a recovery
  conflict) marks the replica down and the read runs again on the primary.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Protocol, TypeVar

import asyncpg
import asyncpg.exceptions._base as asyncpg_base

from pgvecstore.config import StoreConfig, redact_dsn
from pgvecstore.connection import StoreConnection, create_pool, set_local
from pgvecstore.driver import is_connection_lost, store_error
from pgvecstore.errors import ReadOnlyError
from pgvecstore.sql import replication

logger = logging.getLogger("pgvecstore")
T = TypeVar("T")

# Seconds between two health probes of a loop's replicas (while reads come).
PROBE_INTERVAL = 1.0
# How long opening a loop's replica pools waits for the first probe (it goes on in the background after that).
FIRST_PROBE_WAIT = 1.0
# The startup settings a replica's connections add to the primary's: any write is refused by the server.
READ_ONLY = {"default_transaction_read_only": "on"}
# Polling a replica for a write's WAL position (read-your-writes): first and longest pause, in seconds.
WAIT_FIRST_PAUSE = 0.002
WAIT_LONGEST_PAUSE = 0.05
# Errors of a replica that send the read to the primary: the connection failed, or a recovery conflict cancelled
# the statement (SQLSTATE 40001, or 40P01 for a buffer-pin deadlock with the replay).
_REPLICA_TROUBLE = (
    # A connection caught by the replica's shutdown in the middle of a protocol exchange: asyncpg may report it as
    # its own state error ("cannot switch to state ...; another operation is in progress") rather than as a lost
    # connection (seen once in 200 concurrent searches while the standby stopped).
    asyncpg_base.InternalClientError,
    asyncpg.CannotConnectNowError,
    asyncpg.SerializationError,
    asyncpg.DeadlockDetectedError,
    asyncpg.InterfaceError,
    ConnectionError,
)

UNKNOWN, UP, DOWN, LAGGING, PROMOTED = "unknown", "up", "down", "lagging", "promoted"


@dataclass
class Replica:
    """One replica's connection string and what the last probe (or read) found."""

    dsn: str
    health: str = UNKNOWN
    lag: float = 0.0
    replayed: int = 0  # the WAL position it had replayed when last asked (`replication.lsn_value`)

    @property
    def label(self) -> str:
        return str(redact_dsn(self.dsn))

    def set_health(self, health: str, detail: str = "") -> None:
        """Record the replica's state; log it when it changed."""
        before, self.health = self.health, health
        if health == before:
            return
        if health == UP:
            level = logging.DEBUG if before == UNKNOWN else logging.INFO
            logger.log(level, "pgvecstore: read replica %s is usable again: reads go to it", self.label)
        elif health == DOWN:
            logger.warning("pgvecstore: read replica %s is down (%s); its reads go to the other replicas or the "
                           "primary until it is back", self.label, detail)
        elif health == LAGGING:
            logger.warning("pgvecstore: read replica %s is %s; skipped until it catches up", self.label, detail)
        elif health == PROMOTED:
            logger.warning("pgvecstore: read replica %s is not in recovery (promoted, or not a replica): it no "
                           "longer follows the primary, so reads skip it", self.label)


class Lender(Protocol):
    """How the store borrows connections of one loop's pool (`lending.LoopPool`: it keeps a connection an operation
    gave back cleanly for the next one, which saves asyncpg's acquire and release)."""

    pool: asyncpg.Pool

    def take(self) -> StoreConnection | None: ...

    async def acquire(self) -> StoreConnection: ...

    def keep(self, conn: StoreConnection) -> None: ...

    async def release(self, conn: StoreConnection) -> None: ...

    def return_kept(self) -> None: ...

    async def close(self) -> None: ...


@dataclass
class _LoopReplicas:
    """One event loop's replica pools (None where none could be opened yet) and its probe task."""

    loop: asyncio.AbstractEventLoop
    pools: list[Lender | None]
    last_probe: float = 0.0
    probing: asyncio.Task[None] | None = None
    tasks: set[asyncio.Task[None]] = field(default_factory=set)


class ReplicaSet:
    """The read replicas of one store: pools per loop, health, the choice of a replica, and read-your-writes."""

    def __init__(
        self, config: StoreConfig, lender: Callable[[asyncpg.Pool, asyncio.AbstractEventLoop], Lender]
    ) -> None:
        self.config = config
        self._lender = lender
        # A replica's pool opens connections on demand (no floor): asyncpg would otherwise keep reconnecting to a
        # replica that is down in the background, logging each failure.
        self._pool_config = replace(config, pool_min_size=0)
        self.replicas = [Replica(dsn) for dsn in config.read_replicas]
        self._loops: dict[asyncio.AbstractEventLoop, _LoopReplicas] = {}
        self._turn = itertools.count()
        self._written = 0  # the highest WAL position of this store's writes on the primary
        self._primary_until = 0.0  # reads go to the primary until then (a write whose position is unknown)
        self._vector_schema = ""
        self._tenant: str | None = None
        self._closed = False

    # -- life cycle ----------------------------------------------------------------------------------------
    async def open(self, vector_schema: str, tenant: str | None) -> None:
        """Give the running loop its replica pools and probe them; wait for the answers at most
        `FIRST_PROBE_WAIT` (reads go to the primary until a replica has answered)."""
        self._vector_schema, self._tenant = vector_schema, tenant
        loop = asyncio.get_running_loop()
        if loop in self._loops:
            return
        for dead in [other for other in self._loops if other.is_closed()]:
            for lender in self._loops.pop(dead).pools:
                _terminate(lender)
        state = _LoopReplicas(loop, [None] * len(self.replicas))
        self._loops[loop] = state
        probe = self._maybe_probe(state, force=True)
        if probe is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(probe), FIRST_PROBE_WAIT)

    async def close(self) -> None:
        """Close every replica pool (this loop's gracefully, other loops' as `PoolRegistry.close` does)."""
        self._closed = True
        loops, self._loops = self._loops, {}
        current = asyncio.get_running_loop()
        for loop, state in loops.items():
            if loop is current:
                await self._close_state(state)
            elif loop.is_closed() or not loop.is_running():
                for lender in state.pools:
                    _terminate(lender)
            else:
                asyncio.run_coroutine_threadsafe(self._close_state(state), loop)

    def close_at_exit(self) -> None:
        """Close every replica pool from outside its loop (interpreter exit): terminate the connections."""
        self._closed = True
        loops, self._loops = self._loops, {}
        for loop, state in loops.items():
            for lender in state.pools:
                if loop.is_running():
                    loop.call_soon_threadsafe(_terminate, lender)
                else:
                    _terminate(lender)

    async def _close_state(self, state: _LoopReplicas) -> None:
        for task in list(state.tasks):
            task.cancel()
        for lender in state.pools:
            if lender is not None:
                await lender.close()

    # -- writes --------------------------------------------------------------------------------------------
    async def note_write(self, conn: asyncpg.Connection) -> None:
        """After a write committed on `conn` (the primary): remember its WAL position for read-your-writes."""
        if not self.config.read_your_writes:
            return
        try:
            position = replication.lsn_value(await conn.fetchval(replication.WRITE_POSITION.sql))
        except Exception:  # the write stands; without its position, reads go to the primary for max_replica_lag
            logger.debug("pgvecstore: could not read the primary's WAL position after a write", exc_info=True)
            self._primary_until = time.monotonic() + self.config.max_replica_lag
            return
        self._written = max(self._written, position)

    # -- reads ---------------------------------------------------------------------------------------------
    async def run(
        self,
        op: Callable[[asyncpg.Connection], Awaitable[T]],
        *,
        transaction: bool,
        settings: Mapping[str, str],
        fallback: Callable[[], Awaitable[T]],
    ) -> T:
        """`op(connection)` on a usable replica (in a transaction that first sets `settings` when there are any
        or `transaction` is asked), else `fallback()` (the primary): also when the replica fails under it."""
        state = self._loops.get(asyncio.get_running_loop())
        if state is None or self._closed or (self._primary_until and time.monotonic() < self._primary_until):
            return await fallback()
        self._maybe_probe(state)
        written = self._written if self.config.read_your_writes else 0
        chosen = self._choose(state, written)
        if chosen is None:
            return await fallback()
        replica, lender = chosen
        conn: StoreConnection | None = None
        done = False
        try:
            conn = lender.take() or await lender.acquire()
            if replica.replayed >= written or await self._wait_for(replica, conn, written):
                if transaction or settings:
                    async with conn.transaction():
                        await set_local(conn, settings)
                        result = await op(conn)
                else:
                    result = await op(conn)
                done = True
                return result
            failed = False  # the replica is behind this store's last write: read on the primary
        except Exception as exc:
            # A table or column the replica lacks may be one it has not replayed yet: the primary answers (or
            # gives the error, if the primary lacks it too).
            failed = self._failed(replica, exc, conn)
            if not failed and not isinstance(exc, asyncpg.UndefinedTableError | asyncpg.UndefinedColumnError):
                raise self._error(replica, exc)  # noqa: B904 - the cause is set there
        finally:
            if conn is not None:
                if done:
                    lender.keep(conn)
                else:
                    await lender.release(conn)
        if failed:  # its other idle connections are most likely dead too
            lender.return_kept()
            await lender.pool.expire_connections()
        return await fallback()

    def _choose(self, state: _LoopReplicas, written: int) -> tuple[Replica, Lender] | None:
        """Round-robin over the usable replicas, preferring those known to have replayed `written`."""
        usable = [(r, p) for r, p in zip(self.replicas, state.pools, strict=True) if r.health == UP and p is not None]
        if not usable:
            return None
        caught_up = [(r, p) for r, p in usable if r.replayed >= written]
        candidates = caught_up or usable
        return candidates[next(self._turn) % len(candidates)]

    async def _wait_for(self, replica: Replica, conn: asyncpg.Connection, written: int) -> bool:
        """Whether `replica` replays WAL position `written` within read_your_writes_timeout (polling `conn`)."""
        deadline = time.monotonic() + self.config.read_your_writes_timeout
        pause = WAIT_FIRST_PAUSE
        while True:
            replayed = replication.lsn_value(await conn.fetchval(replication.REPLAY_POSITION.sql))
            replica.replayed = max(replica.replayed, replayed)
            if replayed >= written:
                return True
            if time.monotonic() + pause > deadline:
                logger.debug("pgvecstore: read replica %s had not replayed this store's last write within "
                             "read_your_writes_timeout; reading on the primary", replica.label)
                return False
            await asyncio.sleep(pause)
            pause = min(pause * 2, WAIT_LONGEST_PAUSE)

    def _failed(self, replica: Replica, exc: Exception, conn: asyncpg.Connection | None) -> bool:
        """Whether `exc` means the replica (not the statement) failed; if so, mark it down."""
        if not (is_connection_lost(exc, conn) or isinstance(exc, _REPLICA_TROUBLE)):
            return False
        replica.set_health(DOWN, f"{type(exc).__name__}: {redact_dsn(str(exc))}")
        return True

    @staticmethod
    def _error(replica: Replica, exc: Exception) -> BaseException:
        """The store's error for a statement a replica refused; a write names the replica connection."""
        if isinstance(exc, asyncpg.ReadOnlySQLTransactionError):
            error = ReadOnlyError(
                f"{exc}: the statement ran on a connection to read replica {replica.label}, which accepts reads "
                "only. The store sends reads to its replicas and writes (add_vectors, delete, create_index, ...) "
                "to the primary"
            )
            error.__cause__ = exc
            return error
        return store_error(exc)

    # -- health --------------------------------------------------------------------------------------------
    def _maybe_probe(self, state: _LoopReplicas, *, force: bool = False) -> asyncio.Task[None] | None:
        """Start a probe of this loop's replicas in a task of its own, when the last one is old enough."""
        now = time.monotonic()
        if state.probing is not None or (now - state.last_probe < PROBE_INTERVAL and not force):
            return None
        state.last_probe = now
        task = state.loop.create_task(self._probe_all(state))
        state.probing = task
        state.tasks.add(task)
        task.add_done_callback(lambda done: self._probed(state, done))
        return task

    @staticmethod
    def _probed(state: _LoopReplicas, task: asyncio.Task[None]) -> None:
        state.tasks.discard(task)
        state.probing = None
        if not task.cancelled() and task.exception() is not None:  # a bug: the probe catches what a server does
            logger.error("pgvecstore: the read replica probe failed", exc_info=task.exception())

    async def _probe_all(self, state: _LoopReplicas) -> None:
        await asyncio.gather(*(self._probe(state, index) for index in range(len(self.replicas))))

    async def _probe(self, state: _LoopReplicas, index: int) -> None:
        """Ask replica `index` how it is (opening its pool on this loop first if need be); record the answer."""
        replica, lender = self.replicas[index], state.pools[index]
        timeout = self.config.connect_timeout
        try:
            if lender is None:
                pool = await create_pool(replica.dsn, self._pool_config, self._vector_schema, self._tenant, READ_ONLY)
                if self._closed:
                    await pool.close()
                    return
                lender = state.pools[index] = self._lender(pool, state.loop)
            async with lender.pool.acquire(timeout=timeout) as conn:
                row = await conn.fetchrow(replication.REPLICA_HEALTH.sql, timeout=timeout)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            replica.set_health(DOWN, f"{type(exc).__name__}: {redact_dsn(str(exc))}")
            if lender is not None:
                lender.return_kept()
                with contextlib.suppress(Exception):
                    await lender.pool.expire_connections()
            return
        in_recovery, lag, replayed = row if row is not None else (False, 0.0, None)
        replica.lag = float(lag)
        replica.replayed = replication.lsn_value(replayed)
        max_lag = self.config.max_replica_lag
        if not in_recovery:
            replica.set_health(PROMOTED)
        elif replica.lag > max_lag:
            replica.set_health(LAGGING, f"{replica.lag:.1f} s behind the primary (max_replica_lag={max_lag:g})")
        else:
            replica.set_health(UP)

    def health(self) -> dict[str, str]:
        """Each replica's state by its (redacted) connection string: up, down, lagging, promoted or unknown."""
        return {replica.label: replica.health for replica in self.replicas}


def _terminate(lender: Lender | None) -> None:
    if lender is not None:
        with contextlib.suppress(Exception):
            lender.pool.terminate()

