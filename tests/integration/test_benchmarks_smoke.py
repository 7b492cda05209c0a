"""The benchmark scripts still run: each is started as a user would start it, at a tiny size, on the test server.

No timing is asserted; only that each script exits 0 and writes its tables and charts with every method in it.
`run_all.py --tiny` runs all five scenarios; the peers (langchain-postgres, llama-index-vector-stores-postgres)
need their own virtualenv and are tested when one is found.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

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


def run_ingest(tmp_path: Path, name: str, *options: str) -> tuple[list[str], list[str]]:
    """Run ingest.py on 300 rows with `options`; the lines it printed and the method names of its table. Checks
    that it succeeded and that the report it wrote is what it printed."""
    output = tmp_path / "results" / name
    result = run_script("ingest.py", "--rows", "300", "--repeats", "1", *options, "--output", str(output))
    assert result.returncode == 0, result.stderr
    assert output.read_text().strip() in result.stdout
    lines = result.stdout.splitlines()
    table = [line for line in lines if line.startswith("| ") and " | 300 | " in line]
    return lines, [line.split(" | ")[0].lstrip("| ") for line in table]


def test_ingest_benchmark_runs_and_prints_its_table(pg_dsn: str, tmp_path: Path) -> None:
    lines, methods = run_ingest(tmp_path, "ingest.md", "--dims", "8", "--dsn", pg_dsn)
    assert "| method | rows | seconds | rows/s | ratio to raw COPY |" in lines
    assert methods == [
        "raw asyncpg binary COPY (`copy_records_to_table`)",
        "raw asyncpg `executemany` INSERT",
        "core `add_vectors`, generated ids",
        "core `add_vectors`, caller ids (new rows)",
        "core `add_vectors`, re-adding existing ids (upsert)",
        "reference: raw COPY of records built before the clock",
    ]
    raw_copy = next(line for line in lines if line.startswith("| raw asyncpg binary COPY"))
    assert raw_copy.rstrip(" |").endswith("1.00")  # raw COPY is the reference of every ratio


def test_ingest_benchmark_of_document_rows_runs_and_prints_its_ratios(pg_dsn: str, tmp_path: Path) -> None:
    """Document rows (words from ../shared/data/scifact): text search off, the 0.1 layout, text search on."""
    lines, methods = run_ingest(tmp_path, "ingest_text.md", "--documents", "--dsn", pg_dsn)
    assert "| method | rows | seconds | rows/s |" in lines
    assert methods == [
        "raw asyncpg binary COPY, text search off (no text columns)",
        "core `add_vectors` with contents, text search off",
        "raw asyncpg binary COPY, generated tsvector column + GIN index (pgvecstore 0.1 layout)",
        "raw asyncpg binary COPY, text search on (the store's triggers fire)",
        "core `add_vectors` with contents, text search on",
    ]
    ratios = [line.split(" | ")[0].lstrip("| ") for line in lines if line.startswith("| core_")]
    assert ratios == ["core_on / raw_copy_tsv", "core_on / raw_copy_on", "core_off / raw_copy_off"]


def test_ingest_benchmark_of_metadata_indexes_runs(pg_dsn: str, tmp_path: Path) -> None:
    """Core ingest without metadata indexes, with the GIN, with indexed_metadata, with both, with a covered key."""
    lines, methods = run_ingest(tmp_path, "ingest_meta.md", "--metadata-indexes", "--dims", "8", "--dsn", pg_dsn)
    assert "| method | rows | seconds | rows/s | ratio to no index |" in lines
    assert methods == [
        "core `add_vectors`, no metadata index",
        'core `add_vectors`, metadata_index="gin"',
        "core `add_vectors`, indexed_metadata (2 keys)",
        "core `add_vectors`, both",
        "core `add_vectors`, indexed_metadata (2 keys), `n` covered",
        "core `add_vectors`, text search on, no metadata index",
        "core `add_vectors`, text search on, indexed_metadata (2 keys)",
    ]


def test_ingest_benchmark_rejects_a_bad_size() -> None:
    result = run_script("ingest.py", "--rows", "0")
    assert result.returncode == 2
    assert "--rows must be at least 1" in result.stderr


def test_ingest_benchmark_starts_its_own_embedded_server_without_a_dsn() -> None:
    result = run_script("ingest.py", "--rows", "50", "--dims", "4", "--repeats", "1")
    assert result.returncode == 0, result.stderr
    assert "embedded PostgreSQL" in result.stdout
    assert "| core `add_vectors`, generated ids | 50 |" in result.stdout


PEER_PYTHON_ENV = "PGVECSTORE_PEER_PYTHON"


def _peer_python() -> str | None:
    """A Python with langchain-postgres and llama-index-vector-stores-postgres: $PGVECSTORE_PEER_PYTHON (which
    scripts/test.sh sets up; one named there must work), else the virtualenv run_all.py creates, else none (the
    peers then go untested here)."""
    named = os.environ.get(PEER_PYTHON_ENV)
    if named:
        return named
    python = str(Path.home() / ".cache/pgvecstore-bench/peers-venv/bin/python")
    probe = "import langchain_postgres, llama_index.vector_stores.postgres"
    if Path(python).exists() and subprocess.run([python, "-c", probe], capture_output=True).returncode == 0:
        return python
    return None


def test_run_all_runs_every_scenario_at_a_tiny_size(pg_dsn: str, tmp_path: Path) -> None:
    results = tmp_path / "results"
    result = run_script("run_all.py", "--tiny", "--no-peers", "--dsn", pg_dsn, "--results-dir", str(results))
    assert result.returncode == 0, result.stderr[-3000:]
    report = (results / "README.md").read_text()
    assert report.strip() in result.stdout
    for section in ("## Targets", "## 1. Ingest", "## 2. Search", "## 3. Recall", "## 4. Filtered search",
                    "## 5. Index build"):
        assert section in report
    assert "Machine: " in report and "CPUs" in report and "RAM" in report
    for name in ("1_ingest", "2_search", "3_recall", "4_filtered", "5_index_build"):
        assert (results / f"{name}.md").read_text().startswith("## ")
        assert (results / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({name}.png)" in report
    for method in ("raw asyncpg binary COPY", "core `add_vectors`", "LangChain adapter", "LlamaIndex adapter",
                   "raw SQL (asyncpg)", "core `search`", "core tuned (`search_tuning` defaults)",
                   "pgvector defaults (plain `CREATE INDEX`)", "core `create_index('hnsw')`", "IVFFlat", "SciFact",
                   "LlamaIndex adapter ingest / raw COPY of the same rows", "raw COPY of the adapter's own rows"):
        assert method in report, method
    assert "Streamed ingest through the core" in report
    data = json.loads((results / "results.json").read_text())
    assert set(data["sections"]) == {"ingest", "search", "recall", "filtered", "index_build"}
    for row in data["sections"]["filtered"]["results"]:
        assert row["full"] == 1.0  # even at this size every filtered search gets its k rows (or all that match)


def test_run_all_rejects_a_bad_size() -> None:
    result = run_script("run_all.py", "--rows-small", "0", "--no-peers")
    assert result.returncode == 2
    assert "--rows-small must be at least 1" in result.stderr


def test_ingest_stream_runs_and_reports(pg_dsn: str) -> None:
    """The script still runs (the bounded-memory claim itself is checked in test_bounded_memory.py)."""
    result = run_script("ingest_stream.py", "--dsn", pg_dsn, "--rows", "2000", "--dims", "8")
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout.strip().splitlines()[-1])
    assert record["landed"] == record["ids_returned"] == 2000
    assert record["vectors_mib"] == pytest.approx(2000 * 8 * 4 / 2**20)


@pytest.mark.parametrize("lib", ["langchain", "llamaindex"])
def test_peer_benchmark_runs_in_the_peers_environment(pg_dsn: str, lib: str) -> None:
    python = _peer_python()
    if python is None:
        pytest.skip(f"no Python with the peers (set {PEER_PYTHON_ENV}, or run benchmarks/run_all.py once)")
    result = subprocess.run(
        [python, str(BENCHMARKS / "peers.py"), "--lib", lib, "--dsn", pg_dsn, "--rows", "60", "--dims", "8",
         "--queries", "4", "--clients", "2", "--batch", "25"],
        capture_output=True, text=True, timeout=240,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["kind"] for r in records] == ["ingest", "search", "search", "build", "search", "search"]
    assert records[0]["landed"] == 60
    assert all(r["returned"] == 10 for r in records if r["kind"] == "search")


def test_compact_scale_runs_at_a_tiny_size_and_merges_its_report(pg_dsn: str, tmp_path: Path) -> None:
    """The 1M-row benchmark of issue 17 at 6,000 rows: the vector variant, its filters, the report and chart;
    a second run at the same size is merged into the same report (the latest run of each variant)."""
    output = tmp_path / "7_compact_scale.md"
    args = ("compact_scale.py", "--rows", "6000", "--queries", "20", "--filter-queries", "12", "--batch", "2500",
            "--dsn", pg_dsn, "--output", str(output))
    result = run_script(*args)
    assert result.returncode == 0, result.stderr[-3000:]
    report = output.read_text()
    assert report.startswith("## 7. Compact vectors and selective filters")
    assert "| 6,000 | vector | core `search` | 40 |" in report
    assert "| 6,000 | vector | raw asyncpg | 100 |" in report
    data = json.loads(report.split("<!-- compact_scale data: ", 1)[1].rsplit(" -->", 1)[0])
    variant = data[0]["variants"]["vector"]
    assert variant["index_bytes"] > 0 and variant["table_bytes"] > 0
    assert {(f["key"], f["share"]) for f in variant["filtered"]} == {("bucket", 0.01), ("rare", 0.001)}
    for line in variant["filtered"]:
        assert line["full"] == 1.0  # every filtered search got k rows, or every row that matches (6 at 0.1%)
        assert line["recall"] >= 0.95
        assert sum(line["paths"].values()) == 12
    for line in variant["unfiltered"]:
        assert line["returned_min"] == 10 and line["recall"] > 0.8
    assert (tmp_path / "7_compact_scale.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    again = run_script(*args[:-2], "--no-raw-copy", "--sql-index", "gin", "--output", str(output))
    assert again.returncode == 0, again.stderr[-3000:]
    merged = output.read_text()
    assert "| 6,000 | vector | core `search` | 40 |" in merged  # kept
    assert "| 6,000 | vector + GIN by SQL | core `search` | 40 |" in merged  # added


def test_compact_scale_measures_covered_filter_keys(pg_dsn: str, tmp_path: Path) -> None:
    """``--filter-indexes covering``: the filters on the covered columns are measured and explained."""
    output = tmp_path / "covering.md"
    result = run_script("compact_scale.py", "--rows", "6000", "--queries", "5", "--filter-queries", "12",
                        "--batch", "3000", "--no-raw-copy", "--filter-indexes", "covering", "--explain",
                        "--dsn", pg_dsn, "--output", str(output))
    assert result.returncode == 0, result.stderr[-3000:]
    report = output.read_text()
    data = json.loads(report.split("<!-- compact_scale data: ", 1)[1].rsplit(" -->", 1)[0])
    (variant,) = data[0]["variants"].values()
    filtered = {f["key"]: f for f in variant["filtered"]}
    assert set(filtered) == {"bucket", "rare", "c_bucket", "c_rare"}
    assert all(f["recall"] >= 0.95 and f["full"] == 1.0 for f in filtered.values())
    assert '<code>{"c_bucket": 0}</code>, exact path' in report


def test_covering_benchmark_runs_and_reads_the_covering_index(pg_dsn: str, tmp_path: Path) -> None:
    """benchmarks/covering.py at a tiny size: every method measured, the covered filter an index-only scan."""
    output = tmp_path / "covering.md"
    result = run_script("covering.py", "--rows", "3000", "--dims", "16", "--queries", "4", "--dsn", pg_dsn,
                        "--output", str(output))
    assert result.returncode == 0, result.stderr[-3000:]
    report = output.read_text()
    assert report.startswith("## Covering index against the heap: a 1% filter, 3,000 x 16 rows")
    for method in ("covering index (index-only scan)", "index scans off (bitmap heap scan)", "jsonb key (GIN",
                   "`store.search`, indexed column (covered)", "`store.search`, jsonb key"):
        assert method in report, method
    plans = report.split("```")
    assert "Index Only Scan using covering_bench_meta_c_cov" in plans[1]
    assert "Bitmap Heap Scan" in plans[3] and "Index Only Scan" not in plans[3]


def test_exact_path_benchmark_runs_every_method_on_the_exact_path(pg_dsn: str, tmp_path: Path) -> None:
    """benchmarks/exact_path.py at a tiny size: each filter by each method, every store search exact."""
    output = tmp_path / "exact_path.md"
    result = run_script("exact_path.py", "--rows", "3000", "--dims", "16", "--queries", "4", "--dsn", pg_dsn,
                        "--output", str(output))
    assert result.returncode == 0, result.stderr[-3000:]
    report = output.read_text()
    assert report.startswith("## A selective filter's exact scan: one statement against a transaction, 3,000 x 16")
    rows = [line for line in report.splitlines() if line.startswith("| ") and "ms |" not in line]
    assert len(rows) == 9 and all(float(row.split(" | ")[2]) > 0 for row in rows)
    assert "took the exact path 48 times in 48" in report


def test_filter_estimates_benchmark_counts_each_filters_paths(pg_dsn: str, tmp_path: Path) -> None:
    """benchmarks/filter_estimates.py at a tiny size: a line per statistics target, every filter value's path
    counted; with a target whose sample is the whole table, the 1% and 0.1% filters all scan exactly and the
    10% filter takes the index."""
    output = tmp_path / "filter_estimates.md"
    result = run_script("filter_estimates.py", "--rows", "3000", "--dims", "16", "--targets", "100,1000",
                        "--runs", "2", "--dsn", pg_dsn, "--output", str(output))
    assert result.returncode == 0, result.stderr[-3000:]
    report = output.read_text()
    assert report.startswith("## The planner's estimates of metadata filters by statistics target, 3,000 x 16")
    lines = {line.split(" | ")[0]: line.split(" | ") for line in report.splitlines() if line.startswith("| 1")}
    assert set(lines) == {"| 100", "| 1,000"}
    for cells in lines.values():
        assert float(cells[1]) > 0 and float(cells[3]) > 0  # ANALYZE and estimate times
        counted = [cells[column].split(" of ")[1] for column in (4, 6, 8)]
        assert counted == ["20", "200", "2,000"]  # every value of each filter, in each of the two runs
    whole_table = lines["| 1,000"]
    assert (whole_table[4], whole_table[6], whole_table[8]) == ("20 of 20", "0 of 200", "0 of 2,000")


def test_filter_estimates_refuses_a_target_postgresql_does_not_take() -> None:
    result = run_script("filter_estimates.py", "--targets", "100,20000")
    assert result.returncode == 2
    assert "--targets must be from 1 to 10,000" in result.stderr


def test_compact_scale_names_a_variant_the_store_does_not_take(pg_dsn: str) -> None:
    """Variants are sets of store options; one the store rejects stops the run before any work, naming the
    variant and the option (halfvec comes with issue 17's vector_type option: once it is there, the run works)."""
    result = run_script("compact_scale.py", "--rows", "6000", "--queries", "5", "--filter-queries", "3",
                        "--variants", "halfvec", "--no-raw-copy", "--dsn", pg_dsn)
    if result.returncode == 0:
        assert "| 6,000 | halfvec | core `search` | 40 |" in result.stdout
    else:
        assert result.returncode == 2, result.stderr[-3000:]
        assert "variant 'halfvec': the store rejects its options {'vector_type': 'halfvec'}" in result.stderr
        assert "ground truth" not in result.stderr  # refused before any work


def test_compact_scale_rejects_an_unknown_variant() -> None:
    result = run_script("compact_scale.py", "--variants", "vector,float8")
    assert result.returncode == 2
    assert "--variants: unknown variant 'float8'" in result.stderr


def test_adapter_ingest_benchmark_runs_every_line_and_storage(pg_dsn: str, tmp_path: Path) -> None:
    """benchmarks/adapter_ingest.py: adapter ingest against raw COPY of the same rows, per vector storage."""
    output = tmp_path / "adapter_ingest.md"
    result = run_script("adapter_ingest.py", "--rows", "300", "--dims", "8", "--repeats", "1", "--batch", "100",
                        "--storage", "store", "external", "--search", "3", "--dsn", pg_dsn, "--output", str(output))
    assert result.returncode == 0, result.stderr[-3000:]
    assert output.read_text().strip() in result.stdout
    lines = [line for line in result.stdout.splitlines() if " | 300 | " in line]
    assert [line.split(" | ")[:2] for line in lines] == [
        [f"| {label}", storage]
        for storage in ("store", "external")
        for label in ("raw asyncpg binary COPY, document rows", "core `add_vectors`, document rows",
                      "LlamaIndex adapter `async_add`",
                      "reference: raw asyncpg binary COPY of the LlamaIndex adapter's rows (the serialised node in "
                      "the metadata)")
    ]
    assert all(line.split(" | ")[5] == "1.00" for line in lines if line.startswith("| raw asyncpg"))
    assert all(float(line.split(" | ")[5]) > 0 for line in lines)
    assert "| storage | exact | filtered exact (g10 = 0) | heap MiB | TOAST MiB |" in result.stdout


def test_churn_benchmark_runs_every_stage(pg_dsn: str, tmp_path: Path) -> None:
    output = tmp_path / "churn.md"
    result = run_script("churn.py", "--rows", "400", "--queries", "5", "--dsn", pg_dsn, "--output", str(output))
    assert result.returncode == 0, result.stderr
    stages = [line.split(" | ")[0].lstrip("| ") for line in output.read_text().splitlines()
              if line.startswith("| ") and not line.startswith("| stage")]
    assert stages == ["fresh", "after churn", "after VACUUM", "after VACUUM, then reindex()", "after reindex()",
                      "after reindex(), then VACUUM", "fresh build of the final rows (1)",
                      "fresh build of the final rows (2)", "mean of the 2 fresh builds (the reference)",
                      "highest minus lowest fresh build", "after churn", "after VACUUM",
                      "after VACUUM, then reindex()", "after reindex()", "after reindex(), then VACUUM"]

    spread = tmp_path / "spread.md"
    result = run_script("churn.py", "--rows", "400", "--queries", "5", "--only-fresh", "--fresh-builds", "3",
                        "--dsn", pg_dsn, "--output", str(spread))
    assert result.returncode == 0, result.stderr
    stages = [line.split(" | ")[0].lstrip("| ") for line in spread.read_text().splitlines()
              if line.startswith("| ") and not line.startswith("| stage")]
    assert stages == [f"fresh build of the final rows ({n})" for n in (1, 2, 3)] + [
        "mean of the 3 fresh builds (the reference)", "highest minus lowest fresh build"]


def test_replicas_benchmark_runs_with_two_standbys_and_prints_its_ratios(tmp_path: Path) -> None:
    """benchmarks/replicas.py starts its own primary and two standbys; at a tiny size it still writes every line."""
    output = tmp_path / "replicas.md"
    result = run_script("replicas.py", "--rows", "200", "--dims", "8", "--queries", "20", "--rounds", "1",
                        "--clients", "2", "--output", str(output))
    assert result.returncode == 0, result.stderr
    lines = output.read_text().splitlines()
    assert "| method | queries/s | ratio to raw | p50 ms | p99 ms | client CPU ms/query |" in lines
    methods = [line.split(" | ")[0].lstrip("| ") for line in lines if line.startswith("| ") and "|---" not in line]
    assert methods[1:] == [
        "raw asyncpg pool on the primary (reference)",
        "store, no read replica (primary)",
        "store, 1 read replica",
        "store, 2 read replicas",
    ]
    raw = next(line for line in lines if line.startswith("| raw asyncpg"))
    assert raw.split(" | ")[2] == "1.00"
