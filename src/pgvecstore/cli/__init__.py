"""The ``pgvecstore`` command: ingest files, query them, inspect and index the table, and run the demo.

Every command works on one table (``--schema``/``--table``, default ``pgvecstore.documents``; the demo uses
``pgvecstore.demo``) on the server of ``--dsn``, else ``$DATABASE_URL``, else the embedded PostgreSQL. Texts are
embedded offline by the packaged all-MiniLM-L6-v2 (or ``--model``), so ``pgvecstore demo`` runs from nothing.

The command needs typer and rich, the ``cli`` extra: this module imports them only when `main` runs, so
``import pgvecstore.cli`` works without them and `main` says what to install.

Modules, one job each: `app` (the typer application, shared options, `Target`, opening the store, error
reporting), `ingest`, `query`, `admin` (``stats``, ``index create|drop``), `remove` (``delete``, ``prune``),
`where` (``tables``, ``dsn``), `upgrade` and `demo`. `main` assembles them.
"""

from __future__ import annotations

import importlib
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import typer

EXTRA_HINT = 'the pgvecstore command needs its extra: pip install "pgvecstore[cli]"'
_REQUIRED = ("typer", "rich")

__all__ = ["build_app", "main"]


def _missing_requirement() -> str | None:
    """The name of the first package of the ``cli`` extra that cannot be imported, or None."""
    for name in _REQUIRED:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            return exc.name or name
    return None


def build_app() -> typer.Typer:
    """A new typer application with every command registered (needs the ``cli`` extra)."""
    from pgvecstore.cli import admin, demo, ingest, query, remove, upgrade, where
    from pgvecstore.cli.app import Command, new_app

    app, index_app = new_app()
    for command in (ingest.ingest, query.query, admin.stats, remove.delete, remove.prune, where.tables, where.dsn,
                    demo.demo, upgrade.upgrade):
        app.command(cls=Command)(command)
    index_app.command("create", cls=Command)(admin.index_create)
    index_app.command("drop", cls=Command)(admin.index_drop)
    index_app.command("rebuild", cls=Command)(admin.index_rebuild)
    return app


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``pgvecstore`` console script; returns the exit status."""
    missing = _missing_requirement()
    if missing is not None:
        sys.stderr.write(f"error: {EXTRA_HINT} ({missing} is not installed)\n")
        return 1
    app = build_app()
    try:
        app(args=argv, prog_name="pgvecstore")
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    return 0
