"""The online upgrade of the store's table to the current layout (`PgVectorStore.upgrade`; docs/upgrading.md).

Layout 1 or 2 -> 3, as the table's owner, one upgrade of a table at a time (a session advisory lock), on two
connections of its own:

1. One short transaction under the table's advisory lock and a `LOCK_TIMEOUT` (retried with backoff), holding the
   table's ACCESS EXCLUSIVE lock (readers and writers wait the few milliseconds it runs): record "upgrading" in
   the table's comment, make a generated tsvector column a plain one and drop layout 2's term-frequency column
   (catalog only, both), set the tsvector's storage MAIN (rows written from here keep it in the heap), empty the
   statistics tables (created if missing), create the functions and triggers.
   Before it commits, the second connection opens a REPEATABLE READ transaction on its snapshot
   (`pg_export_snapshot`): exactly the rows no trigger will have counted.
2. The count: that transaction reads the rows in id order, `batch_size` at a time, and adds their statistics into
   temporary tables. Writers go on meanwhile, and their triggers add, subtract and move their own changes in
   the statistics (which may go below zero for a while: a deleted row's count comes with step 4). No row is
   rewritten. Progress goes to the optional callback ``(done, total)`` and to INFO logs.
3. The text-search GIN index, if missing, by CREATE INDEX CONCURRENTLY (an INVALID leftover of an interrupted
   build is dropped first); the vector and metadata columns' storage MAIN (skipped, with a warning, when the
   table is busy).
4. One transaction under the table's advisory lock: add the count to the statistics (the writers' changes plus the
   snapshot's rows: exact), waiting for writers that hold a statistics row, and record the current layout.

Re-running resumes by starting over (step 1 empties the statistics and takes a new snapshot); on a table at the
current layout it does nothing. ``recompute_terms`` counts the statistics of a current table again the same way.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
from asyncpg.transaction import Transaction

from pgvecstore import column_storage
from pgvecstore.connection import set_session
from pgvecstore.errors import InvalidInputError, PermissionDeniedError, QueryTimeoutError
from pgvecstore.layout import CURRENT_LAYOUT
from pgvecstore.pool import PoolRegistry
from pgvecstore.sql import catalog, ddl, text_ddl, upgrade_ddl
from pgvecstore.sql.table import TableRef
from pgvecstore.text_search import Layout, TextSearch, read_layout

logger = logging.getLogger("pgvecstore")

# Rows read per step of the count (a unit of progress: the count is one transaction).
DEFAULT_BATCH_SIZE = 10_000
MAX_BATCH_SIZE = 1_000_000
# How long step 1 waits for the table's lock, and how often it tries.
LOCK_TIMEOUT = "2s"
LOCK_ATTEMPTS = 5
Progress = Callable[[int, int], Any]


@dataclass(frozen=True)
class UpgradeResult:
    """What `PgVectorStore.upgrade` did: the layout before and after, the rows whose text statistics it counted,
    and its steps in words (empty: the table was at the current layout already)."""

    from_layout: int
    to_layout: int
    rows_counted: int
    steps: tuple[str, ...]

    @property
    def changed(self) -> bool:
        return bool(self.steps)

    @property
    def rows_filled(self) -> int:
        """`rows_counted` under its pgvecstore 0.2 name."""
        return self.rows_counted


def check_batch_size(batch_size: object) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or not 1 <= batch_size <= MAX_BATCH_SIZE:
        raise InvalidInputError(f"batch_size must be an integer from 1 to {MAX_BATCH_SIZE}, got {batch_size!r}")
    return batch_size


class LayoutUpgrade:
    """Brings the store's table to the current layout, online (see the module docstring)."""

    def __init__(self, table: TableRef, pools: PoolRegistry, text: TextSearch) -> None:
        self._table = table
        self._pools = pools
        self._text = text

    async def run(self, *, batch_size: int = DEFAULT_BATCH_SIZE, progress: Progress | None = None,
                  recompute_terms: bool = False) -> UpgradeResult:
        """Upgrade the table (see the module docstring); the result says what was done."""
        size = check_batch_size(batch_size)
        t = self._table
        async with self._pools.own_connection() as conn, self._pools.own_connection() as counter:
            for session in (conn, counter):
                await set_session(session, {"statement_timeout": "0", "lock_timeout": "0", "row_security": "off"})
            lock = upgrade_ddl.session_lock(t)
            await conn.execute(lock.sql, *lock.args)  # another upgrade of this table runs: wait for it
            layout = await read_layout(conn, t)
            before = layout.version
            if before.current and before.recorded and not recompute_terms:
                return UpgradeResult(before.version, before.version, 0, ())
            await self._check_owner(conn)
            logger.info("pgvecstore: upgrading %s from layout %d to %d", t.display, before.version, CURRENT_LAYOUT)
            steps: list[str] = []
            rows = 0
            counting = not before.current or (recompute_terms and layout.complete)
            if counting:
                for ddl_text in upgrade_ddl.create_count_tables():  # outside the snapshot's transaction
                    await counter.execute(ddl_text)
                snapshot = counter.transaction(isolation="repeatable_read")
                steps += await self._locked(conn, lambda: self._prepare(conn, counter, snapshot))
                try:
                    rows = await self._count(counter, size, progress)
                except BaseException:
                    if not counter.is_closed():
                        await snapshot.rollback()
                    raise
                await snapshot.commit()
                steps.append(f"counted the text statistics of {rows} rows")
            steps += await self._text_index(conn)
            steps += await self._searched_columns_storage(conn)
            async with counter.transaction():  # no lock timeout: it waits for writers of the statistics rows
                lock = catalog.table_lock(t)
                await counter.execute(lock.sql, *lock.args)
                await self._finish(counter, counted=counting)
            steps.append(f"recorded layout {CURRENT_LAYOUT}")
        self._text.forget()
        logger.info("pgvecstore: %s is at layout %d (%s)", t.display, CURRENT_LAYOUT, "; ".join(steps))
        return UpgradeResult(before.version, CURRENT_LAYOUT, rows, tuple(steps))

    async def _check_owner(self, conn: asyncpg.Connection) -> bool:
        """Refuse a role that does not own the table; return whether the table has row-level security."""
        statement = catalog.table_owner(self._table)
        row = await conn.fetchrow(statement.sql, *statement.args)
        if row is not None and not row[0]:
            raise PermissionDeniedError(
                f"upgrade: only the owner of table {self._table.display} ({row[1]!r}, or a member of that role) may "
                "upgrade it; run 'await store.upgrade()' or 'pgvecstore upgrade' connected as the owner"
            )
        return row is not None and bool(row[2])

    async def _locked(self, conn: asyncpg.Connection, work: Callable[[], Any]) -> Any:
        """Run `work` in one transaction under the table's advisory lock with `LOCK_TIMEOUT`, trying again with
        backoff while the table is busy; a clear error after `LOCK_ATTEMPTS`."""
        for attempt in range(1, LOCK_ATTEMPTS + 1):
            try:
                async with conn.transaction():
                    settings = catalog.set_config({"lock_timeout": LOCK_TIMEOUT})
                    await conn.execute(settings.sql, *settings.args)
                    lock = catalog.table_lock(self._table)
                    await conn.execute(lock.sql, *lock.args)
                    return await work()
            except asyncpg.LockNotAvailableError:
                if attempt == LOCK_ATTEMPTS:
                    break
                logger.info("pgvecstore: %s is busy (attempt %d of %d); trying again", self._table.display, attempt,
                            LOCK_ATTEMPTS)
                await asyncio.sleep(0.5 * 2 ** (attempt - 1))
        raise QueryTimeoutError(
            f"upgrade: could not lock table {self._table.display} for a short catalog change within {LOCK_TIMEOUT} "
            f"in {LOCK_ATTEMPTS} attempts (long transactions hold it); run the upgrade again when it is quieter "
            "(nothing was changed)"
        )

    async def _prepare(self, conn: asyncpg.Connection, counter: asyncpg.Connection,
                       snapshot: Transaction) -> list[str]:
        """Step 1, inside the caller's transaction: the columns, statistics tables, functions and triggers; then
        `snapshot` starts on `counter`, seeing the rows as they are before any trigger counts a change."""
        t = self._table
        # The strongest lock first (the DDL below needs it): taken in steps, a writer holding a weaker lock while
        # waiting for ours would deadlock with us. From here no writer is half-way through a transaction.
        await conn.execute(text_ddl.lock_exclusively(t))
        layout = await read_layout(conn, t)
        version = layout.version
        config = await self._text.config_for(conn, layout)
        steps = []
        await conn.execute(upgrade_ddl.set_comment(t, version.version, CURRENT_LAYOUT))
        statements = text_ddl.add_columns(t)
        if layout.generated:
            statements.append(text_ddl.drop_generation(t))
            steps.append("made the generated text-search column a plain one")
        if layout.has_terms_column:
            statements.append(text_ddl.drop_terms_column(t))
            steps.append("dropped the term-frequency column")
        statements += [text_ddl.keep_terms_in_heap(t), *text_ddl.create_statistics_tables(t),
                       *upgrade_ddl.clear_statistics(t),
                       text_ddl.create_row_function(t), text_ddl.create_statistics_function(t),
                       *text_ddl.create_triggers(t, config)]
        if await self._check_owner(conn):
            statements += text_ddl.statistics_row_security(t)
        grantees = catalog.select_grantees(t)
        for (role,) in await conn.fetch(grantees.sql, *grantees.args):
            statements += [upgrade_ddl.grant_select(t, table, role) for table in (t.text_terms_table,
                                                                                    t.text_docs_table)]
        for statement in statements:
            await conn.execute(statement)
        name = await conn.fetchval(upgrade_ddl.EXPORT_SNAPSHOT.sql)
        await snapshot.start()
        await counter.execute(upgrade_ddl.import_snapshot(str(name)).sql)
        return [*steps, "created the text-search triggers"]

    async def _count(self, counter: asyncpg.Connection, size: int, progress: Progress | None) -> int:
        """Step 2, in the snapshot's transaction: count the rows' statistics into temporary tables, `size` rows at
        a time in id order; the number of rows read."""
        t = self._table
        total = int(await counter.fetchval(upgrade_ddl.count_rows(t).sql))
        logger.info("pgvecstore: counting the text statistics of %d rows of %s, %d per step", total, t.display, size)
        done, after, logged = 0, None, 0
        while True:
            step = upgrade_ddl.next_step(t, size, after)
            row = await counter.fetchrow(step.sql, *step.args)
            assert row is not None  # aggregates over the step
            count, last = int(row[0]), row[1]
            if not count:
                return done
            for counting in upgrade_ddl.count_step(t, after, last):
                await counter.execute(counting.sql, *counting.args)
            done, after = done + count, last
            if progress is not None:
                progress(done, max(total, done))
            if done - logged >= max(size, total // 10):
                logger.info("pgvecstore: %s: %d of %d rows counted", t.display, done, total)
                logged = done

    async def _text_index(self, conn: asyncpg.Connection) -> list[str]:
        """Step 3: the text-search GIN index, built concurrently when missing or left invalid."""
        t = self._table
        layout: Layout = await read_layout(conn, t)
        if layout.column_type is None:
            return []
        validity = catalog.index_validity(t.schema, t.text_search_index_name)
        valid = await conn.fetchval(validity.sql, *validity.args)
        if valid:
            return []
        steps = []
        if valid is False:
            logger.info("pgvecstore: dropping the invalid text-search index of %s (an interrupted build)", t.display)
            await conn.execute(ddl.drop_index_concurrently(t, t.text_search_index_name))
            steps.append("dropped an invalid text-search index")
        logger.info("pgvecstore: building the text-search index of %s concurrently", t.display)
        await conn.execute(text_ddl.create_index(t, concurrently=True))
        return [*steps, "built the text-search index concurrently"]

    async def _searched_columns_storage(self, conn: asyncpg.Connection) -> list[str]:
        """Step 3: the vector and metadata columns' storage MAIN (`column_storage`; catalog only); skipped with a
        warning when the table stays busy for `column_storage.STORAGE_LOCK_TIMEOUT`."""
        try:
            changed = await column_storage.keep_searched_columns_in_heap(conn, self._table)
        except asyncpg.LockNotAvailableError:
            logger.warning("pgvecstore: %s was busy: its vector and metadata columns keep their storage for now "
                           "(an optimisation; the owner's next initialize() sets it)", self._table.display)
            return []
        return ["set the vector and metadata columns' storage to MAIN"] if changed else []

    async def _finish(self, counter: asyncpg.Connection, *, counted: bool) -> None:
        """Step 4: add the count to the statistics (unless something else, such as `enable_text_search`, finished
        the upgrade meanwhile: it counted every row itself) and record the current layout in the table's comment."""
        t = self._table
        if counted:
            layout = await read_layout(counter, t)
            if layout.version.upgrading_to == CURRENT_LAYOUT:
                for statement in upgrade_ddl.add_count(t):
                    await counter.execute(statement)
            await counter.execute(upgrade_ddl.drop_count_tables())
        await counter.execute(upgrade_ddl.set_comment(t, CURRENT_LAYOUT))
