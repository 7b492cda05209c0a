"""The online upgrade of the store's table to the current layout (`PgVectorStore.upgrade`; docs/upgrading.md).

Layout 1 -> 2, on a connection of its own, as the table's owner, one upgrade of a table at a time:

1. One short transaction under the table's advisory lock and a `LOCK_TIMEOUT` (retried with backoff): record
   "upgrading" in the table's comment, add the term-frequency column (NULL: no rewrite), make the generated
   tsvector column a plain one (catalog only), create the statistics tables, functions and triggers. A row whose
   term frequencies are NULL is not counted in the statistics yet (`text_ddl.create_statistics_function`), so
   writers keep them exact from here on.
2. The back-fill, `batch_size` rows per short transaction in id order (rows other transactions hold are skipped
   and picked up by a later pass): the row trigger computes each row's tsvector and term frequencies and the
   statistics trigger counts it. Progress goes to the optional callback ``(done, total)`` and to INFO logs.
3. The text-search GIN index, if missing, by CREATE INDEX CONCURRENTLY (an INVALID leftover of an interrupted
   build is dropped first); the vector column's storage MAIN (skipped, with a warning, when the table is busy).
4. Record the current layout in the comment.

Re-running resumes (step 1 is idempotent; the back-fill takes the rows left); on a table at the current layout it
does nothing. ``recompute_terms`` computes every row's term frequencies again, batch by batch (after pg_upgrade
to another PostgreSQL major version, whose hashtext may differ); an interrupted recomputation starts over.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import asyncpg

from pgvecstore.connection import set_session
from pgvecstore.errors import InvalidInputError, PermissionDeniedError, QueryTimeoutError
from pgvecstore.layout import CURRENT_LAYOUT
from pgvecstore.pool import PoolRegistry
from pgvecstore.sql import catalog, ddl, queries, text_ddl, upgrade_ddl
from pgvecstore.sql.params import Statement
from pgvecstore.sql.table import TableRef
from pgvecstore.text_search import Layout, TextSearch, read_layout

logger = logging.getLogger("pgvecstore")

DEFAULT_BATCH_SIZE = 500
MAX_BATCH_SIZE = 100_000
# How long step 1 and the final record wait for the table's lock, and how often they try.
LOCK_TIMEOUT = "2s"
LOCK_ATTEMPTS = 5
# How long setting the vector column's storage waits for its lock (an optimisation: skipped when busy).
STORAGE_LOCK_TIMEOUT = "1s"
# A batch that deadlocked with a writer is tried again this many times.
BATCH_ATTEMPTS = 5
Progress = Callable[[int, int], Any]


@dataclass(frozen=True)
class UpgradeResult:
    """What `PgVectorStore.upgrade` did: the layout before and after, the rows whose term frequencies it filled
    or computed again, and its steps in words (empty: the table was at the current layout already)."""

    from_layout: int
    to_layout: int
    rows_filled: int
    steps: tuple[str, ...]

    @property
    def changed(self) -> bool:
        return bool(self.steps)


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
        async with self._pools.own_connection() as conn:
            await set_session(conn, {"statement_timeout": "0", "lock_timeout": "0", "row_security": "off"})
            lock = upgrade_ddl.session_lock(t)
            await conn.execute(lock.sql, *lock.args)  # another upgrade of this table runs: wait for it
            layout = await read_layout(conn, t)
            before = layout.version
            if before.current and before.recorded and not recompute_terms:
                return UpgradeResult(before.version, before.version, 0, ())
            await self._check_owner(conn)
            logger.info("pgvecstore: upgrading %s from layout %d to %d", t.display, before.version, CURRENT_LAYOUT)
            steps: list[str] = []
            if not before.current or (recompute_terms and layout.complete):
                steps += await self._locked(conn, lambda: self._prepare(conn))
            rows = 0
            if not before.current:
                rows = await self._fill(conn, size, progress, recompute=False)
                steps.append(f"filled the term frequencies of {rows} rows")
            elif recompute_terms and layout.complete:
                rows = await self._fill(conn, size, progress, recompute=True)
                steps.append(f"computed the term frequencies of {rows} rows again")
            steps += await self._text_index(conn)
            steps += await self._vector_storage(conn)
            await self._locked(conn, lambda: self._record(conn))
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
            "(it resumes where it stopped)"
        )

    async def _prepare(self, conn: asyncpg.Connection) -> list[str]:
        """Step 1, inside the caller's transaction: the columns, statistics tables, functions and triggers."""
        t = self._table
        layout = await read_layout(conn, t)
        version = layout.version
        config = await self._text.config_for(conn, layout)
        vector_schema = str(await conn.fetchval(catalog.VECTOR_EXTENSION_SCHEMA.sql))
        steps = []
        if not version.current:
            await conn.execute(upgrade_ddl.set_comment(t, version.version, CURRENT_LAYOUT))
        statements = text_ddl.add_columns(t, vector_schema)
        if layout.generated:
            statements.append(text_ddl.drop_generation(t))
            steps.append("made the generated text-search column a plain one")
        statements += text_ddl.create_statistics_tables(t)
        if not layout.has_terms_column:  # statistics left by a dropped table of the same name start over
            statements += upgrade_ddl.clear_statistics(t)
            steps.append("added the term-frequency column and the term statistics")
        statements += [text_ddl.create_row_function(t, vector_schema),
                       text_ddl.create_statistics_function(t, vector_schema),
                       *text_ddl.create_triggers(t, config)]
        if await self._check_owner(conn):
            statements += text_ddl.statistics_row_security(t)
        grantees = catalog.select_grantees(t)
        for (role,) in await conn.fetch(grantees.sql, *grantees.args):
            statements += [upgrade_ddl.grant_select(t, table, role) for table in (t.text_terms_table,
                                                                                    t.text_docs_table)]
        for statement in statements:
            await conn.execute(statement)
        return [*steps, "created the text-search triggers"]

    async def _fill(self, conn: asyncpg.Connection, size: int, progress: Progress | None, *, recompute: bool) -> int:
        """Step 2: fill (or compute again) the term frequencies batch by batch; the number of rows done."""
        t = self._table
        counting = queries.total_rows(t) if recompute else upgrade_ddl.rows_left(t)
        total = int(await conn.fetchval(counting.sql, *counting.args))
        logger.info("pgvecstore: %s term frequencies of %d rows of %s, %d per batch",
                    "computing again the" if recompute else "filling the", total, t.display, size)
        done, after, logged = 0, None, 0
        while True:
            batch = (upgrade_ddl.recompute_batch if recompute else upgrade_ddl.fill_batch)(t, size, after)
            count, last = await self._batch(conn, batch)
            if count:
                done, after = done + count, last
                if progress is not None:
                    progress(done, max(total, done))
                if done - logged >= max(size, total // 10):
                    logger.info("pgvecstore: %s: %d of %d rows done", t.display, done, total)
                    logged = done
                continue
            if recompute:
                return done
            left = upgrade_ddl.rows_left(t)
            if not await conn.fetchval(left.sql, *left.args):
                return done
            # Rows other transactions held when the batches passed them: another pass once they are free.
            after = None
            await asyncio.sleep(0.1)

    async def _batch(self, conn: asyncpg.Connection, statement: Statement) -> tuple[int, Any]:
        """One batch in its own transaction: (rows done, the last id), tried again after a deadlock with a
        writer (PostgreSQL cancelled this side)."""
        for attempt in range(1, BATCH_ATTEMPTS + 1):
            try:
                row = await conn.fetchrow(statement.sql, *statement.args)
                assert row is not None  # an aggregate over the batch
                return int(row[0]), row[1]
            except (asyncpg.DeadlockDetectedError, asyncpg.SerializationError):
                if attempt == BATCH_ATTEMPTS:
                    raise
                await asyncio.sleep(0.05 * attempt)
        raise AssertionError("unreachable")  # pragma: no cover

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

    async def _vector_storage(self, conn: asyncpg.Connection) -> list[str]:
        """Step 3: the vector column's storage MAIN (catalog only); skipped with a warning when the table is
        busy for more than `STORAGE_LOCK_TIMEOUT`."""
        t = self._table
        statement = catalog.vector_storage(t)
        row = await conn.fetchrow(statement.sql, *statement.args)
        if row is None or row[0] == "m":
            return []
        try:
            async with conn.transaction():
                settings = catalog.set_config({"lock_timeout": STORAGE_LOCK_TIMEOUT})
                await conn.execute(settings.sql, *settings.args)
                await conn.execute(ddl.keep_vectors_in_heap(t))
        except asyncpg.LockNotAvailableError:
            logger.warning("pgvecstore: %s was busy: its vector column keeps its storage for now (an "
                           "optimisation; the owner's next initialize() sets it)", t.display)
            return []
        return ["set the vector column's storage to MAIN"]

    async def _record(self, conn: asyncpg.Connection) -> None:
        """Step 4: record the current layout in the table's comment."""
        await conn.execute(upgrade_ddl.set_comment(self._table, CURRENT_LAYOUT))
