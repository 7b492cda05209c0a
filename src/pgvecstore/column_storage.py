"""Storage MAIN for the searched columns (the vector and the metadata) of a table made before they had it.

New tables get it when they are made (`sql.ddl.keep_searched_columns_in_heap`); an existing table gets it from
`TableBootstrap` (the owner's next store start) or `LayoutUpgrade` (``upgrade()``). Only rows written afterwards
change; docs/vector-storage.md says why the columns stay in the heap.
"""

from __future__ import annotations

import asyncpg

from pgvecstore import indexes
from pgvecstore.sql import catalog, ddl
from pgvecstore.sql.table import TableRef

# ALTER TABLE ... SET STORAGE takes the table's exclusive lock for a moment: a busy table is left as it is rather
# than queueing every reader behind the ALTER.
STORAGE_LOCK_TIMEOUT = "2s"


async def keep_searched_columns_in_heap(conn: asyncpg.Connection, table: TableRef) -> bool:
    """Give `table`'s vector and metadata columns storage MAIN when they have not both got it and this role owns
    the table (a catalog change only); True when it changed them. Raises asyncpg's `LockNotAvailableError` when
    the table stayed busy for `STORAGE_LOCK_TIMEOUT`, and its errors of a replica or of missing privileges."""
    statement = catalog.searched_columns_storage(table)
    row = await conn.fetchrow(statement.sql, *statement.args)
    if row is None or row[0] is not False or not row[1]:
        return False
    settings = catalog.set_config({"lock_timeout": STORAGE_LOCK_TIMEOUT})
    async with conn.transaction():
        await conn.execute(settings.sql, *settings.args)
        await indexes.lock_table(conn, table)  # one store at a time, as for the table's other DDL
        await conn.execute(ddl.keep_searched_columns_in_heap(table))
    return True
