"""The sync API: run the async core from plain scripts, Jupyter (inside a running loop) and many threads.

All sync calls go to one background event loop in a daemon thread, so they never nest inside the caller's loop
(no ``nest_asyncio``) and the store's pool for that loop is reused by every thread. Both adapters use this.
"""

from __future__ import annotations

import asyncio
import atexit
import threading
from collections.abc import Coroutine, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import numpy as np

from pgvecstore.config import StoreConfig
from pgvecstore.store import PgVectorStore, SearchResult

T = TypeVar("T")


class BackgroundLoop:
    """An event loop running forever in a daemon thread; `run` executes a coroutine there and waits."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._loop.is_closed():
                loop = asyncio.new_event_loop()
                ready = threading.Event()

                def serve() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(ready.set)
                    loop.run_forever()

                self._thread = threading.Thread(target=serve, name="pgvecstore-sync-loop", daemon=True)
                self._thread.start()
                ready.wait()
                self._loop = loop
            return self._loop

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run `coro` on the background loop and return its result (exceptions propagate)."""
        loop = self.loop
        if self._thread is threading.current_thread():
            coro.close()
            raise RuntimeError("a sync pgvecstore call was made from inside the sync API's own event loop; "
                               "use the async methods there")
        return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout)

    def stop(self) -> None:
        with self._lock:
            loop, self._loop = self._loop, None
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(loop.stop)


_background = BackgroundLoop()
atexit.register(_background.stop)


def run_sync(coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
    """Run a coroutine of the async core from sync code, whether or not the caller's thread runs a loop."""
    return _background.run(coro, timeout)


class SyncPgVectorStore:
    """Blocking twin of `PgVectorStore` with the same methods; safe from scripts, Jupyter and threads."""

    def __init__(self, config: StoreConfig | Mapping[str, Any] | PgVectorStore | None = None, /,
                 **options: Any) -> None:
        self.store = config if isinstance(config, PgVectorStore) else PgVectorStore(config, **options)

    def __enter__(self) -> SyncPgVectorStore:
        self.initialize()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def initialize(self) -> None:
        run_sync(self.store.initialize())

    def close(self) -> None:
        run_sync(self.store.close())

    def add_vectors(self, vectors: np.ndarray | Iterable[Sequence[float]], ids: Iterable[Any] | None = None,
                    metadata: Iterable[Mapping[str, Any] | None] | None = None, **columns: Any) -> list[str]:
        return run_sync(self.store.add_vectors(vectors, ids, metadata, **columns))

    def search(self, query: np.ndarray | Sequence[float] | None = None, k: int = 10,
               filter: Mapping[str, Any] | None = None, include_metadata: bool = True,
               **options: Any) -> list[SearchResult]:
        return run_sync(self.store.search(query, k, filter, include_metadata, **options))

    def enable_text_search(self) -> bool:
        return run_sync(self.store.enable_text_search())

    def stats(self) -> dict[str, Any]:
        return run_sync(self.store.stats())

    def get_vectors(self, ids: Sequence[Any], include_metadata: bool = True
                    ) -> list[tuple[np.ndarray | None, dict[str, Any] | None]]:
        return run_sync(self.store.get_vectors(ids, include_metadata))

    def update_metadata(self, ids: Sequence[Any], metadatas: Sequence[Mapping[str, Any] | None]) -> int:
        return run_sync(self.store.update_metadata(ids, metadatas))

    def delete_vectors(self, ids: Sequence[Any]) -> int:
        return run_sync(self.store.delete_vectors(ids))

    def delete(self, filter: Mapping[str, Any] | None = None) -> int:
        return run_sync(self.store.delete(filter))

    def get(self, ids: Sequence[Any] | None = None, filter: Mapping[str, Any] | None = None, *,
            limit: int | None = None, include_vectors: bool = False
            ) -> list[tuple[str, np.ndarray | None, dict[str, Any]]]:
        return run_sync(self.store.get(ids, filter, limit=limit, include_vectors=include_vectors))

    def count(self, filter: Mapping[str, Any] | None = None) -> int:
        return run_sync(self.store.count(filter))

    def clear(self) -> int:
        return run_sync(self.store.clear())

    def create_index(self, index_type: str | None = None, params: Mapping[str, int] | None = None) -> bool:
        return run_sync(self.store.create_index(index_type, params))

    def drop_index(self) -> bool:
        return run_sync(self.store.drop_index())

    def index_info(self) -> str | None:
        return run_sync(self.store.index_info())
