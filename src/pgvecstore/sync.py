"""The sync API: run the async core from plain scripts, Jupyter (inside a running loop) and many threads.

All sync calls go to one background event loop in a daemon thread, so they never nest inside the caller's loop
(no ``nest_asyncio``) and the store's pool for that loop is reused by every thread. Both adapters use this.
"""

from __future__ import annotations

import asyncio
import atexit
import functools
import threading
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, Concatenate, ParamSpec, TypeVar

from pgvecstore.config import StoreConfig
from pgvecstore.pool import close_all_at_exit
from pgvecstore.store import PgVectorStore

T = TypeVar("T")
P = ParamSpec("P")


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


@atexit.register
def _stop_at_exit() -> None:
    """Close the pools of stores never closed while the background loop still runs, then stop it."""
    close_all_at_exit()
    _background.stop()


def run_sync(coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
    """Run a coroutine of the async core from sync code, whether or not the caller's thread runs a loop."""
    return _background.run(coro, timeout)


def close_blocking(store: PgVectorStore) -> None:
    """Close `store` from sync code, waiting for it: the one close of the sync store and both adapters.

    It runs on the background loop, so it works inside a running loop too (Jupyter): the pool of a loop that is
    running is handed its close without waiting for it, so the caller's blocked loop never deadlocks.
    """
    run_sync(store.close())


def _blocking(
    method: Callable[Concatenate[PgVectorStore, P], Coroutine[Any, Any, T]],
) -> Callable[Concatenate[SyncPgVectorStore, P], T]:
    """The blocking twin of a `PgVectorStore` coroutine method: same signature, same documentation."""
    name = method.__name__

    @functools.wraps(method)
    def call(self: SyncPgVectorStore, /, *args: P.args, **kwargs: P.kwargs) -> T:
        bound: Callable[P, Coroutine[Any, Any, T]] = getattr(self.store, name)
        return run_sync(bound(*args, **kwargs))

    call.__qualname__ = f"SyncPgVectorStore.{name}"
    return call


class SyncPgVectorStore:
    """Blocking twin of `PgVectorStore` with the same methods and signatures; safe from scripts, Jupyter and
    threads. ``store`` is the async store underneath."""

    def __init__(self, config: StoreConfig | Mapping[str, Any] | PgVectorStore | None = None, /,
                 **options: Any) -> None:
        self.store = config if isinstance(config, PgVectorStore) else PgVectorStore(config, **options)

    def __repr__(self) -> str:
        return f"SyncPgVectorStore({self.store.config!r})"

    def __enter__(self) -> SyncPgVectorStore:
        self.initialize()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def config(self) -> StoreConfig:
        return self.store.config

    def close(self) -> None:
        """Close every pool of the store (see `close_blocking`); later calls raise `StoreClosedError`."""
        close_blocking(self.store)

    initialize = _blocking(PgVectorStore.initialize)
    add_vectors = _blocking(PgVectorStore.add_vectors)
    update_metadata = _blocking(PgVectorStore.update_metadata)
    delete_vectors = _blocking(PgVectorStore.delete_vectors)
    delete = _blocking(PgVectorStore.delete)
    clear = _blocking(PgVectorStore.clear)
    search = _blocking(PgVectorStore.search)
    get_vectors = _blocking(PgVectorStore.get_vectors)
    get = _blocking(PgVectorStore.get)
    count = _blocking(PgVectorStore.count)
    stats = _blocking(PgVectorStore.stats)
    enable_text_search = _blocking(PgVectorStore.enable_text_search)
    upgrade = _blocking(PgVectorStore.upgrade)
    create_index = _blocking(PgVectorStore.create_index)
    drop_index = _blocking(PgVectorStore.drop_index)
    reindex = _blocking(PgVectorStore.reindex)
    index_info = _blocking(PgVectorStore.index_info)
