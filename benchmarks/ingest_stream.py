"""Peak memory of a streamed ingest: ``add_vectors`` fed by generators, in a process of its own.

The vectors and metadata are produced one row at a time (as a loader reading files would) and never held as a
whole; the process's peak resident memory (``ru_maxrss``) shows whether the core holds them. Printed as one JSON
object: rows, seconds, peak RSS before and after, and the size the vectors would take in memory.

    python benchmarks/ingest_stream.py --dsn postgresql://... --rows 1000000
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import resource
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def peak_rss_mib() -> float:
    """Peak resident memory of this process image so far, in MiB.

    Linux: VmHWM of /proc/self/status. Not ``ru_maxrss``, which Linux carries over from the parent through fork
    and exec, so a child of a big process would report its parent's peak.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    scale = 1024 * 1024 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB elsewhere
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale


def vector_rows(rows: int, dims: int, seed: int) -> Iterator[np.ndarray]:
    """`rows` random vectors, generated 1,000 at a time and yielded one by one."""
    rng = np.random.default_rng(seed)
    for start in range(0, rows, 1000):
        yield from rng.standard_normal((min(1000, rows - start), dims), dtype=np.float32)


def metadata_rows(rows: int) -> Iterator[dict[str, Any]]:
    for i in range(rows):
        yield {"source": f"doc_{i // 10:06d}.txt", "n": i}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from pgvecstore import PgVectorStore

    schema = f"bench_stream_{uuid.uuid4().hex[:8]}"
    store = PgVectorStore(
        connection_string=args.dsn, schema=schema, table_name="stream", dimensions=args.dims,
        pool_min_size=1, pool_max_size=1,
    )
    try:
        await store.initialize()
        await store.add_vectors(vector_rows(10, args.dims, 1), metadata=metadata_rows(10))  # warm-up
        await store.clear()
        gc.collect()
        before = peak_rss_mib()
        start = time.perf_counter()
        ids = await store.add_vectors(vector_rows(args.rows, args.dims, 0), metadata=metadata_rows(args.rows))
        seconds = time.perf_counter() - start
        after = peak_rss_mib()
        landed = await store.count()
        return {
            "rows": args.rows,
            "dims": args.dims,
            "seconds": seconds,
            "landed": landed,
            "ids_returned": len(ids),
            "peak_rss_before_mib": before,
            "peak_rss_after_mib": after,
            "vectors_mib": args.rows * args.dims * 4 / 2**20,
            "batch_size": store.config.batch_size,
        }
    finally:
        import asyncpg

        conn = await asyncpg.connect(args.dsn)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()
        await store.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dims", type=int, default=384)
    args = parser.parse_args(argv)
    print(json.dumps(asyncio.run(run(args))), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
