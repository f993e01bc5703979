"""The embedded store's derived HNSW indexes, one per namespace: caches of the SQLite record, never the truth.

Saved on close; on open reconciled with the record (rows another process removed are dropped, rows it inserted are
caught up by `seq`), or rebuilt when the files are unreadable or disagree with the record (a crash mid-save).

Who owns what: `NamespaceIndexes.lock` (re-entrant) guards `entries` and every `NamespaceIndex` in it; a
`VectorIndex` also locks itself. The record is read through the store's per-thread reader (`reader`), so this
module never writes SQLite.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import threading
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
    ):
        self.index_dir = index_dir
        self.dim = dim
        self._hnsw = hnsw
        self._reader = reader  # the calling thread's read connection
        self._generation = generation  # a namespace's current generation, read from the record
        self.lock = threading.RLock()
        self.entries: dict[str, NamespaceIndex] = {}

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

    def after_insert(self, namespace: str) -> None:
        """Add newly committed rows to a loaded index. Never raises: the write is acknowledged already, so a
        failure here only forgets the index, which is rebuilt from the record on next read."""
        try:
            with self.lock:
                entry = self.entries.get(namespace)
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
