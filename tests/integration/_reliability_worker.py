"""One store instance in its own process, for the many-instance tests of test_reliability.py.

Run as ``python _reliability_worker.py '<json>'``; prints one JSON line with what it did and exits 0, or prints
the traceback and exits 1. Every worker waits until the wall-clock time ``start_at`` before it touches the
database, so instances started one after another still race each other.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import traceback
from typing import Any

import numpy as np

from pgvecstore import PgVectorStore


async def index_race(job: dict[str, Any]) -> dict[str, Any]:
    """initialize (creating the table and index if nobody has yet) and add `rows` rows in one call."""
    store = PgVectorStore(job["store"])
    rng = np.random.default_rng(job["seed"])
    vectors = rng.standard_normal((job["rows"], job["store"]["dimensions"])).astype(np.float32)
    ids = [f"w{job['seed']}-{i}" for i in range(job["rows"])]
    wait_until(job["start_at"])
    try:
        await store.initialize()
        await store.add_vectors(vectors, ids, [{"worker": job["seed"], "i": i} for i in range(job["rows"])])
    finally:
        await store.close()
    return {"added": len(ids)}


async def domain_race(job: dict[str, Any]) -> dict[str, Any]:
    """An adder adds `calls` x `rows` rows; a clearer clears its domain `calls` times, both in one domain."""
    store = PgVectorStore(job["store"])
    rng = np.random.default_rng(job["seed"])
    dims = job["store"]["dimensions"]
    await store.initialize()
    wait_until(job["start_at"])
    done = {"adds": 0, "clears": 0, "cleared_rows": 0}
    try:
        for _ in range(job["calls"]):
            if job["role"] == "adder":
                await store.add_vectors(rng.standard_normal((job["rows"], dims)).astype(np.float32))
                done["adds"] += 1
            else:
                done["cleared_rows"] += await store.clear()
                done["clears"] += 1
                await asyncio.sleep(0.01)
    finally:
        await store.close()
    return done


def wait_until(start_at: float) -> None:
    delay = start_at - time.time()
    if delay > 0:
        time.sleep(delay)


def main() -> int:
    job = json.loads(sys.argv[1])
    try:
        result = asyncio.run({"index_race": index_race, "domain_race": domain_race}[job["mode"]](job))
    except BaseException:
        traceback.print_exc()
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
