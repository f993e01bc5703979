"""A `handoff`'s store write on a helper thread while the calling thread computes the verdicts it asked for.

Why: once the text is embedded, the write (SQLite insert and commit, or a PostgreSQL round trip) and the verdicts
(one similarity product over the profiles' exemplars, then each profile's judge) need nothing from each other, and
a call with verdicts otherwise pays both one after the other. SQLite, PostgreSQL's driver and BLAS release the GIL
while they work, so on a machine with a free core the write costs the call almost nothing
(docs/benchmarks.md, "`handoff` + 3 verdicts: the write beside the verdicts").

What does not change for callers: the call returns only after the write has committed (a handle is never handed out
before it is stored); a write that fails fails the call as before (nothing stored, the verdicts computed meanwhile
are dropped uncounted); a verdict that fails leaves the handle stored and returned (`LatentService.handoff`).

Ownership: the pool's threads run only the store's `add` (the store is thread-safe: SQLite's writer lock, or the
PostgreSQL pool); `_free` counts idle threads. When every helper is busy (many handoffs at once) the calling thread
writes itself, first, as without this module: a call never queues behind other calls' writes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


class WriteBeside:
    """Start a store write on a helper thread (`workers` at most at once; 0: always on the calling thread)."""

    def __init__(self, workers: int):
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="handoff-write") if workers > 0 else None
        self._free = threading.Semaphore(max(workers, 0))

    def start(self, write: Callable[[], T]) -> Future[T]:
        """`write()` begun on a helper thread, or done now on this one when none is free; its result (or error) is
        the future's."""
        if self._pool is not None and self._free.acquire(blocking=False):
            try:
                future = self._pool.submit(write)
            except RuntimeError:  # shut down (the service is closing): write here, as below
                self._free.release()
            else:
                future.add_done_callback(lambda _: self._free.release())
                return future
        done: Future[T] = Future()
        try:
            done.set_result(write())
        except BaseException as exc:  # handed to the caller through the future, as a helper's error would be
            done.set_exception(exc)
        return done

    def close(self) -> None:
        """Let writes under way finish (each is one short transaction); later ones run on the calling thread."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
