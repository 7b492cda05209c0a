"""benchmarks/text_scale.py still runs: started as a user would start it, at a tiny size, on the test server.

No timing is asserted; only that it exits 0, prints its table with every method, and merges runs of two sizes
into one report and chart. Also that the synthetic corpus is what benchmarks/text_corpus.py says it is.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
METHODS = (
    "vector, raw asyncpg (held connection): baseline",
    "vector, core `search`",
    'text, core `search(mode="text")`',
    'hybrid, core `search(mode="hybrid")` (default fusion)',
)


def run_text_scale(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    return subprocess.run(
        [sys.executable, str(BENCHMARKS / "text_scale.py"), *args],
        capture_output=True, text=True, timeout=240, env=env, cwd=BENCHMARKS.parent,
    )


def test_text_scale_runs_and_merges_two_sizes(pg_dsn: str, scifact_dir: Path, tmp_path: Path) -> None:
    output = tmp_path / "results" / "6_text_scale.md"
    common = ("--dsn", pg_dsn, "--data", str(scifact_dir), "--output", str(output))
    first = run_text_scale("--rows", "6000", "--queries", "5", "--explain", *common)
    assert first.returncode == 0, first.stderr[-3000:]
    lines = first.stdout.splitlines()
    assert "| rows | method | p50 ms | p90 ms | p99 ms | ratio to raw (p50) | nDCG@10 |" in lines
    cells = [line.split(" | ") for line in lines if line.startswith("| 6,000 | ")]
    assert [c[1] for c in cells if len(c) == 7] == list(METHODS)  # the latency table, one line per method
    assert "| 6,000 | 817 |" in first.stdout  # rows, synthetic chunks
    assert "EXPLAIN (ANALYZE, BUFFERS)" in first.stdout and "Execution Time" in first.stdout
    assert "loaded 6,000 / 6,000 rows (100%)" in first.stderr

    second = run_text_scale("--rows", "5183", "--queries", "3", *common)  # SciFact alone: no synthetic chunk
    assert second.returncode == 0, second.stderr[-3000:]
    report = output.read_text()
    assert report.startswith("## 6. Text and hybrid search by corpus size")
    for rows in ("5,183", "6,000"):
        for method in METHODS:
            assert f"| {rows} | {method} |" in report
    assert report.index("| 5,183 | vector, raw") < report.index("| 6,000 | vector, raw")  # by size
    assert output.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_text_scale_rejects_fewer_rows_than_scifact() -> None:
    result = run_text_scale("--rows", "100")
    assert result.returncode == 2
    assert "--rows must be at least 5183" in result.stderr


def test_synthetic_chunks_are_as_documented(scifact_dir: Path) -> None:
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import text_corpus
    finally:
        sys.path.remove(str(BENCHMARKS))
    data = text_corpus.scifact(scifact_dir, 5)
    small = list(text_corpus.synthetic(700, seed=3, batch=250, corpus=data))
    whole = list(text_corpus.synthetic(700, seed=3, batch=700, corpus=data))
    assert [len(b[0]) for b in small] == [250, 250, 200]
    ids, contents, vectors = whole[0]
    assert [i for b in small for i in b[0]] == ids and ids[0] == "syn-0000000" and ids[-1] == "syn-0000699"
    assert [c for b in small for c in b[1]] == contents  # the same chunks whatever the batch size
    assert np.array_equal(np.vstack([b[2] for b in small]), vectors)
    assert all(len(text.split()) == 180 and text.endswith(".") for text in contents)
    sentences = [len(s.split()) for text in contents for s in text.split(". ")[:-1]]
    assert min(sentences) >= 12 and max(sentences) <= 20
    assert vectors.dtype == np.float32 and vectors.shape == (700, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    nearest = (vectors @ data.doc_vectors.T).max(axis=1)  # the source document is the nearest by far
    assert 0.45 < float(nearest.mean()) < 0.55
    other = next(text_corpus.synthetic(10, seed=4, corpus=data))
    assert other[1] != contents[:10]
