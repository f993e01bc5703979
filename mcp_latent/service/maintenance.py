"""Background upkeep of the shared latent state: retention on a schedule, and following other servers' teaches
(and operators' reverts).

Retention used to run on a global write counter, so it compacted only the namespace written at that moment (and
never a namespace nobody writes to). Here one thread applies the cap and TTL to every namespace on a clock.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from mcp_latent.service.heap_trim import release_free_memory
from mcp_latent.store.base import LatentStore, TaughtExemplar

log = logging.getLogger(__name__)


class StoreMaintenance:
    """One daemon thread per service: every `poll_seconds` it asks the store what changed (one indexed read) and
    hands exemplars other servers taught to `on_taught`; every `retention_interval_seconds` it applies the cap and
    TTL to every namespace, then (`trim_memory`, `heap_trim.py`) hands the allocator's free pages back to the OS.

    Owns its thread and both cursors; after `start` only that thread touches them (`run_once` is for tests and
    for callers that stopped the thread)."""

    def __init__(
        self,
        store: LatentStore,
        on_taught: Callable[[list[TaughtExemplar]], None],
        *,
        taught_after: int,
        on_reverted: Callable[[set[str]], None] | None = None,
        max_records: int = 0,
        ttl_seconds: float = 0,
        retention_interval_seconds: float = 60.0,
        poll_seconds: float = 2.0,
        trim_memory: bool = False,
    ):
        self._store = store
        self._on_taught = on_taught
        self._on_reverted = on_reverted  # profiles an operator reverted exemplars of (rare: reads their taught set)
        self._max_records = max_records or None
        self._ttl_seconds = ttl_seconds or None
        self._retention_interval = retention_interval_seconds
        self._poll_seconds = poll_seconds
        self._trim_memory = trim_memory  # after each retention pass, free heap pages go back to the OS (heap_trim.py)
        self._taught_after = taught_after  # the newest taught exemplar already handed over (or loaded)
        self._changes_after = 0  # any taught exemplar newer than `_taught_after` moves a generation past this
        self._next_retention = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="mcp-latent-store-maintenance", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the thread (after the pass it may be running) so the store can close under it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            self.run_once()
            self._stop.wait(min(self._poll_seconds, max(0.0, self._next_retention - time.monotonic())))

    def run_once(self) -> None:
        """Follow new teaches, then apply retention if it is due. Logs what fails and carries on."""
        try:
            self._follow_taught()
        except Exception:
            log.exception("could not read exemplars taught by other servers; retrying in %.1f s", self._poll_seconds)
        if time.monotonic() >= self._next_retention:
            self._next_retention = time.monotonic() + self._retention_interval
            try:
                self.apply_retention()
            except Exception:
                log.exception("retention failed; retrying in %.0f s", self._retention_interval)
            if self._trim_memory:
                release_free_memory()

    def apply_retention(self) -> dict[str, int]:
        removed = self._store.retention(self._max_records, self._ttl_seconds)
        if removed:
            log.info("retention removed %d handoffs: %s", sum(removed.values()), removed)
        return removed

    def _follow_taught(self) -> None:
        changes = self._store.changes(self._changes_after)
        if changes.profiles:
            new = self._store.taught(after=self._taught_after)
            if new:
                self._on_taught(new)  # raises: the cursors stay, the same exemplars come again next poll
                self._taught_after = new[-1].id
        if changes.reverted and self._on_reverted is not None:
            self._on_reverted(changes.reverted)  # idempotent: raising leaves the cursor, it runs again next poll
        self._changes_after = changes.cursor
