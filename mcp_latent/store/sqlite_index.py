"""The embedded store's derived HNSW indexes, one per namespace: caches of the SQLite record, never the truth.

Saved on close; on open reconciled with the record (rows another process removed are dropped, rows it inserted are
caught up by `seq`), or rebuilt when the files are unreadable or disagree with the record (a crash mid-save).

A committed handoff is added to its namespace's loaded index by a background thread (`background`, setting
`hnsw_add_in_background`), not by the call that wrote it: an HNSW insert (ef_construction 200) costs about as much
as the SQLite commit itself, and nothing needs it before the next search, which catches up on every committed row
first (`sync`) whether or not the thread got to it. So a search never misses an acknowledged handoff.

Who owns what: `NamespaceIndexes.lock` (re-entrant) guards `entries` and every `NamespaceIndex` in it; a
`VectorIndex` also locks itself. `_later` (a Condition) guards `_pending`, `_working`, `_thread` and `_closing`;
it is taken alone or inside `lock`, never the other way round. The record is read through the store's per-thread
reader (`reader`), so this module never writes SQLite.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mcp_latent.atomic_files import replacing
from mcp_latent.errors import StoreError
from mcp_latent.store.vector_index import VectorIndex

log = logging.getLogger(__name__)

PAGE = 10_000  # rows read per query when building or catching up an index


@dataclass
class NamespaceIndex:
    index: VectorIndex
    last_seq: int  # highest seq already in the index: rows above it are caught up from SQLite
    generation: int  # the namespace's generation whose removals the index reflects


def stored_count(db: sqlite3.Connection, namespace: str) -> int:
    """How many handoffs a namespace holds, from the counters the triggers keep (migration 4)."""
    row = db.execute("SELECT n FROM handoff_counts WHERE namespace = ?", (namespace,)).fetchone()
    return row[0] if row else 0


class NamespaceIndexes:
    """The loaded indexes of one store, keyed by namespace (all methods take `lock`)."""

    def __init__(
        self,
        index_dir: Path,
        dim: int,
        hnsw: dict[str, int],
        reader: Callable[[], sqlite3.Connection],
        generation: Callable[[str], int],
        background: bool = True,
    ):
        self.index_dir = index_dir
        self.dim = dim
        self._hnsw = hnsw
        self._reader = reader  # the calling thread's read connection
        self._generation = generation  # a namespace's current generation, read from the record
        self.lock = threading.RLock()
        self.entries: dict[str, NamespaceIndex] = {}
        self.background = background
        self._later = threading.Condition()
        self._pending: set[str] = set()  # namespaces with committed rows the catch-up thread has not added yet
        self._thread: threading.Thread | None = None  # started by the first write to catch up later
        self._closing = False
        self._working = False  # the catch-up thread is adding rows (`settled` waits for it)

    def paths(self, namespace: str) -> tuple[Path, Path, Path]:
        stem = hashlib.sha256(namespace.encode()).hexdigest()[:20]
        base = self.index_dir / f"{stem}.hnsw"
        return base, base.with_suffix(".hnsw.json"), base.with_suffix(".hnsw.deleted.json")

    def save_all(self) -> None:
        """Save every loaded index, so the next start only catches up; a failed save only costs a rebuild."""
        with self.lock:
            for namespace, entry in self.entries.items():
                try:
                    self._save(namespace, entry)
                except Exception:
                    log.exception("could not save the index of namespace %r", namespace)

    def sync(self, namespace: str, generation_scope: str) -> NamespaceIndex:
        """Load (or build) the namespace's index, repair it if records were removed since, and catch it up."""
        with self.lock:
            generation = self._generation(generation_scope)  # read first: a later removal moves it again
            entry = self.entries.get(namespace)
            if entry is None:
                entry = self._open(namespace, generation)
            elif entry.generation != generation:
                entry = self._repair(namespace, entry, generation)
            self._catch_up(namespace, entry)
            self.entries[namespace] = entry
            return entry

    def close(self) -> None:
        """Stop the catch-up thread and save every loaded index (rows it had not added are caught up from the
        record when the index is next opened, as another process's rows are)."""
        with self._later:
            self._closing = True
            self._later.notify_all()
        with self.lock:
            self.save_all()

    def after_insert(self, namespace: str) -> None:
        """Add newly committed rows to the namespace's loaded index: on the catch-up thread when `background` (the
        writing call does not wait for the HNSW insert; the next search catches up anyway), else now."""
        if not self.background:
            self._add_committed(namespace)
            return
        with self._later:
            if self._closing:
                return
            self._pending.add(namespace)
            if self._thread is None:
                self._thread = threading.Thread(target=self._catch_up_later, name="index-catch-up", daemon=True)
                self._thread.start()
            self._later.notify()

    def settled(self, timeout: float = 10.0) -> bool:
        """Wait until the catch-up thread has added every committed row it was handed (tests, tools): True if so."""
        end = time.monotonic() + timeout
        with self._later:
            while self._pending or self._working:
                if not self._later.wait(max(0.0, end - time.monotonic())) and time.monotonic() >= end:
                    return False
        return True

    def _catch_up_later(self) -> None:
        while True:
            with self._later:
                self._working = False
                self._later.notify_all()  # `settled` waiters
                while not self._pending and not self._closing:
                    self._later.wait()
                if self._closing:
                    return
                namespace = self._pending.pop()
                self._working = True
            self._add_committed(namespace)

    def _add_committed(self, namespace: str) -> None:
        """Never raises: the write is acknowledged already, so a failure here only forgets the index, which is
        rebuilt from the record on next read."""
        try:
            with self.lock:
                entry = None if self._closing else self.entries.get(namespace)
                if entry is not None:
                    self._catch_up(namespace, entry)  # in seq order, with any rows another process wrote meanwhile
        except Exception:
            log.exception("index update after a committed write to %r failed; rebuilding it on next read", namespace)
            self.forget(namespace)

    def forget(self, namespace: str, files: bool = False) -> None:
        """Unload a namespace's index (and with `files`, delete its saved files too)."""
        with self.lock:
            self.entries.pop(namespace, None)
            if files:
                for path in self.paths(namespace):
                    path.unlink(missing_ok=True)

    def _save(self, namespace: str, entry: NamespaceIndex) -> None:
        graph, info, _ = self.paths(namespace)
        entry.index.save(graph)
        saved = {"namespace": namespace, "last_seq": entry.last_seq, "generation": entry.generation}
        with replacing(info) as tmp:
            tmp.write_text(json.dumps(saved | {"count": len(entry.index)}))

    def _repair(self, namespace: str, entry: NamespaceIndex, generation: int) -> NamespaceIndex:
        """Drop from the index what another writer removed from the record (or rebuild when mostly dead)."""
        live = {
            row[0]
            for row in self._reader().execute(
                "SELECT seq FROM handoffs WHERE namespace = ? AND seq <= ?", (namespace, entry.last_seq)
            )
        }
        gone = entry.index.labels - live
        # hnswlib keeps removed records in the graph, only marked; once they outnumber the live ones searches miss
        # live records (seen: 40 live among 400 removed). A rebuild costs O(live), paid for by as many removals.
        if len(gone) + entry.index.deleted > len(live):
            log.info("index of namespace %r is mostly removed records; rebuilding", namespace)
            return self._build(namespace, generation)
        entry.index.delete(list(gone))
        entry.generation = generation
        log.info("index of namespace %r repaired: %d removed records dropped", namespace, len(gone))
        return entry

    def _open(self, namespace: str, generation: int) -> NamespaceIndex:
        graph, info, _ = self.paths(namespace)
        if graph.exists() and info.exists():
            try:
                saved = json.loads(info.read_text())
                index = VectorIndex.load(graph, self.dim, **self._hnsw)
                entry = NamespaceIndex(index, saved["last_seq"], saved.get("generation", -1))
                entry = self._repair(namespace, entry, generation)  # always: the files may predate a removal
                caught_up = self._catch_up(namespace, entry)
                if len(entry.index) == stored_count(self._reader(), namespace):
                    log.info("index of namespace %r loaded from disk; %d rows caught up", namespace, caught_up)
                    return entry
                log.warning("index of namespace %r disagrees with the record (crash mid-save); rebuilding", namespace)
            except (StoreError, ValueError, KeyError, OSError, RuntimeError) as exc:
                log.warning("index of namespace %r is unreadable (%s); rebuilding", namespace, exc)
        return self._build(namespace, generation)

    def _build(self, namespace: str, generation: int) -> NamespaceIndex:
        capacity = max(1024, stored_count(self._reader(), namespace))
        entry = NamespaceIndex(VectorIndex(self.dim, capacity=capacity, **self._hnsw), 0, generation)
        rebuilt = self._catch_up(namespace, entry)
        if rebuilt:
            log.info("index of namespace %r rebuilt from the record: %d vectors", namespace, rebuilt)
        return entry

    def _catch_up(self, namespace: str, entry: NamespaceIndex) -> int:
        added = 0
        while True:
            rows = (
                self._reader()
                .execute(
                    "SELECT seq, vector FROM handoffs WHERE namespace = ? AND seq > ? ORDER BY seq LIMIT ?",
                    (namespace, entry.last_seq, PAGE),
                )
                .fetchall()
            )
            if not rows:
                return added
            vectors = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), self.dim)
            entry.index.add([r[0] for r in rows], vectors)
            entry.last_seq = rows[-1][0]
            added += len(rows)
