"""``pgvecstore upgrade``: bring the table to the current layout online (`PgVectorStore.upgrade`), with a
progress bar of the rows counted on stderr. Run it as the table's owner; it resumes an interrupted upgrade and does
nothing on a table at the current layout. It loads no embedding model.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from pgvecstore.cli.app import (
    DEFAULT_SCHEMA,
    DEFAULT_TABLE,
    DsnOption,
    IgnoredModelOption,
    JsonOption,
    SchemaOption,
    TableOption,
    Target,
    err,
    friendly_errors,
    open_store,
    out,
    print_json,
)
from pgvecstore.sync import run_sync
from pgvecstore.upgrade import DEFAULT_BATCH_SIZE, MAX_BATCH_SIZE


@friendly_errors
def upgrade(
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, max=MAX_BATCH_SIZE, help="Rows counted per step (a unit of progress).")
    ] = DEFAULT_BATCH_SIZE,
    recompute_terms: Annotated[
        bool, typer.Option("--recompute-terms",
                           help="Count the term statistics of a current table again.")
    ] = False,
    no_progress: Annotated[bool, typer.Option("--no-progress", help="No progress bar.")] = False,
    json_output: JsonOption = False,
    dsn: DsnOption = None,
    schema: SchemaOption = DEFAULT_SCHEMA,
    table: TableOption = DEFAULT_TABLE,
    model: IgnoredModelOption = None,
) -> None:
    """Bring the table to the current layout, online and resumable (as the table's owner)."""
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with open_store(Target(dsn, schema, table)) as store, \
            Progress(*columns, console=err, disable=no_progress or json_output) as bar:
        task = bar.add_task("counting rows", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        result = run_sync(store.upgrade(batch_size=batch_size, progress=progress, recompute_terms=recompute_terms))
    if json_output:
        print_json({"table": f"{schema}.{table}", "from_layout": result.from_layout,
                    "to_layout": result.to_layout, "rows_counted": result.rows_counted, "steps": list(result.steps)})
        return
    if not result.changed:
        out.print(f"{schema}.{table} is at layout {result.to_layout} already: nothing to do")
        return
    out.print(f"{schema}.{table}: layout {result.from_layout} -> {result.to_layout}")
    for step in result.steps:
        out.print(f"  {step}")
