"""The benchmark scripts still run: each is started as a user would start it, at a tiny size, on the test server.

No timing is asserted; only that the script exits 0 and prints its table with every method in it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def run_script(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    return subprocess.run(
        [sys.executable, str(BENCHMARKS / name), *args],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
        cwd=BENCHMARKS.parent,
    )


def test_ingest_benchmark_runs_and_prints_its_table(pg_dsn: str, tmp_path: Path) -> None:
    output = tmp_path / "results" / "ingest.md"
    result = run_script("ingest.py", "--rows", "300", "--dims", "8", "--repeats", "1", "--dsn", pg_dsn,
                        "--output", str(output))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "| method | rows | seconds | rows/s | ratio to raw COPY |" in lines
    table = [line for line in lines if line.startswith("| ") and "300" in line]
    methods = [line.split(" | ")[0].lstrip("| ") for line in table]
    assert methods == [
        "raw asyncpg binary COPY (`copy_records_to_table`)",
        "raw asyncpg `executemany` INSERT",
        "core `add_vectors`, generated ids",
        "core `add_vectors`, caller ids (new rows)",
        "core `add_vectors`, re-adding existing ids (upsert)",
        "reference: raw COPY of records built before the clock",
    ]
    assert table[0].rstrip(" |").endswith("1.00")  # raw COPY is the reference of every ratio
    assert output.read_text().strip() in result.stdout


def test_ingest_benchmark_rejects_a_bad_size() -> None:
    result = run_script("ingest.py", "--rows", "0")
    assert result.returncode == 2
    assert "--rows must be at least 1" in result.stderr


def test_ingest_benchmark_starts_its_own_embedded_server_without_a_dsn() -> None:
    result = run_script("ingest.py", "--rows", "50", "--dims", "4", "--repeats", "1")
    assert result.returncode == 0, result.stderr
    assert "embedded PostgreSQL" in result.stdout
    assert "| core `add_vectors`, generated ids | 50 |" in result.stdout
