"""Ingest holds one batch at a time: `add_vectors` fed by generators never holds the whole input in memory.

Measured with tracemalloc (numpy's buffers are traced too): the peak of memory allocated during the call, against
the size the input's vectors alone would take as one float32 array.
"""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from pgvecstore import PgVectorStore

StoreMaker = Callable[..., PgVectorStore]
ROWS, DIMS, BATCH = 50_000, 384, 1_000


def vector_rows(rows: int, seed: int = 0) -> Iterator[np.ndarray]:
    """`rows` random vectors, made 500 at a time and yielded one by one (as a loader reading files would)."""
    rng = np.random.default_rng(seed)
    for start in range(0, rows, 500):
        yield from rng.standard_normal((min(500, rows - start), DIMS), dtype=np.float32)


def metadata_rows(rows: int) -> Iterator[dict[str, Any]]:
    for i in range(rows):
        yield {"source": f"doc_{i // 10:06d}.txt", "n": i}


async def test_streamed_ingest_holds_far_less_than_its_input(make_store: StoreMaker) -> None:
    store = make_store(dimensions=DIMS, text_search=False, batch_size=BATCH)
    await store.add_vectors(vector_rows(10, seed=1))  # set-up and codecs outside the measurement
    gc.collect()
    tracemalloc.start()
    try:
        ids = await store.add_vectors(vector_rows(ROWS), metadata=metadata_rows(ROWS))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(ids) == ROWS and await store.count() == ROWS + 10
    input_bytes = ROWS * DIMS * 4  # 73 MiB as one float32 array (far more as Python lists)
    # One batch of 1,000 rows is 1.5 MiB of vectors; the ids returned take about 4 MiB. A store that gathered the
    # input before writing would peak above input_bytes.
    assert peak < input_bytes / 5, f"peak {peak / 2**20:.1f} MiB for {input_bytes / 2**20:.1f} MiB of vectors"
