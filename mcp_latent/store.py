"""The latent store: handoff records in SQLite (the durable truth) plus per-namespace HNSW indexes derived from it.

A handoff is acknowledged only after its SQLite transaction commits, so a crash never loses one. The HNSW
indexes are caches: saved on close, and on open checked against the record and caught up or rebuilt.
Several processes may share one data dir: each catches up on rows the others wrote before it searches.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InvalidInput, NotFound, StoreError
from .vector_index import VectorIndex

log = logging.getLogger(__name__)

HANDLE_PREFIX = "h_"
_HANDLE_ALPHABET = "abcdefghijkmnpqrstuvwxyz23456789"  # no 0/o/1/l: handles get read aloud and retyped
_HANDLE_BODY = 10  # 32**10 = 2**50 possibilities: short, and unguessable enough to not leak across namespaces
HANDLE_RE = re.compile(rf"^{HANDLE_PREFIX}[{_HANDLE_ALPHABET}]{{{_HANDLE_BODY}}}$")
NAMESPACE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS handoffs (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,  -- also the HNSW label
    handle     TEXT NOT NULL UNIQUE,
    namespace  TEXT NOT NULL,
    from_agent TEXT,
    created_at REAL NOT NULL,
    parent     TEXT,
    meta       TEXT,                               -- JSON object or NULL
    text       TEXT,
    vector     BLOB NOT NULL                       -- float32, unit length
);
CREATE INDEX IF NOT EXISTS handoffs_by_namespace ON handoffs(namespace, seq);
CREATE TABLE IF NOT EXISTS store_info (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
_COLUMNS = "seq, handle, namespace, from_agent, created_at, parent, meta, text, vector"


def new_handle() -> str:
    return HANDLE_PREFIX + "".join(secrets.choice(_HANDLE_ALPHABET) for _ in range(_HANDLE_BODY))


def check_handle(handle: str) -> str:
    if not isinstance(handle, str) or not HANDLE_RE.match(handle):
        raise InvalidInput(
            f"malformed handle {str(handle)[:40]!r}: handles look like 'h_' + 10 letters/digits "
            "(e.g. 'h_k3v9x2m4qp'); pass a handle returned by `handoff` or `embed`."
        )
    return handle


def check_namespace(namespace: str) -> str:
    if not isinstance(namespace, str) or not NAMESPACE_RE.match(namespace):
        raise InvalidInput(
            f"invalid namespace {str(namespace)[:80]!r}: use 1-64 characters of letters, digits, '.', '_', ':' or '-', "
            "starting with a letter or digit."
        )
    return namespace


@dataclass
class Handoff:
    """One stored handoff."""

    seq: int
    handle: str
    namespace: str
    from_agent: str | None
    created_at: float
    parent: str | None
    meta: dict[str, Any] | None
    text: str | None
    vector: np.ndarray = field(repr=False)

    @classmethod
    def from_row(cls, row: tuple) -> Handoff:
        seq, handle, namespace, from_agent, created_at, parent, meta, text, blob = row
        return cls(
            seq=seq,
            handle=handle,
            namespace=namespace,
            from_agent=from_agent,
            created_at=created_at,
            parent=parent,
            meta=json.loads(meta) if meta else None,
            text=text,
            vector=np.frombuffer(blob, dtype=np.float32),
        )

    def public(self) -> dict[str, Any]:
        """The record as JSON-able data (no vector)."""
        return {
            "handle": self.handle,
            "namespace": self.namespace,
            "from_agent": self.from_agent,
            "created_at": self.created_at,
            "parent": self.parent,
            "meta": self.meta,
            "text": self.text,
        }


@dataclass
class _NamespaceIndex:
    index: VectorIndex
    last_seq: int  # highest seq already in the index: rows above it are caught up from SQLite


class LatentStore:
    """Durable handoff records and their nearest-neighbour indexes."""

    def __init__(
        self,
        data_dir: Path,
        dim: int,
        model_id: str,
        hnsw_m: int = 16,
        hnsw_ef_construction: int = 200,
        hnsw_ef_search: int = 64,
    ):
        self.data_dir = Path(data_dir)
        self.dim = dim
        self.model_id = model_id
        self._hnsw = {"m": hnsw_m, "ef_construction": hnsw_ef_construction, "ef_search": hnsw_ef_search}
        self.index_dir = self.data_dir / "index"
        self.index_dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._indexes: dict[str, _NamespaceIndex] = {}
        try:
            self._db = sqlite3.connect(self.data_dir / "latent.db", check_same_thread=False, timeout=30.0)
            self._db.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode: a commit survives a process crash (kill -9); only a power cut may drop the last one.
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
            self._check_model()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the latent store in {self.data_dir}: {exc}") from exc

    # --- lifecycle -------------------------------------------------------------------------------------------

    def _check_model(self) -> None:
        with self._db:
            self._db.execute(
                "INSERT OR IGNORE INTO store_info(key, value) VALUES ('model_id', ?), ('dim', ?)",
                (self.model_id, str(self.dim)),
            )
        stored = dict(self._db.execute("SELECT key, value FROM store_info").fetchall())
        if stored["model_id"] != self.model_id or int(stored["dim"]) != self.dim:
            raise StoreError(
                f"the data dir {self.data_dir} holds vectors from model {stored['model_id']!r} "
                f"(dim {stored['dim']}), but this server embeds with {self.model_id!r} (dim {self.dim}); "
                "use another --data-dir or the same model."
            )

    def close(self) -> None:
        """Save every loaded index (so the next start only catches up) and close the database."""
        with self._lock:
            for namespace, entry in self._indexes.items():
                try:
                    self._save_index(namespace, entry)
                except Exception:  # a failed save only costs a rebuild on next start
                    log.exception("could not save the index of namespace %r", namespace)
            self._db.close()

    # --- writes ----------------------------------------------------------------------------------------------

    def add(
        self,
        namespace: str,
        vectors: np.ndarray,
        texts: Sequence[str | None],
        from_agent: str | None = None,
        parent: str | None = None,
        meta: dict[str, Any] | None = None,
    ) -> list[Handoff]:
        """Store one record per vector in a single transaction; returns them once committed (= acknowledged)."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise StoreError(f"vectors of shape {vectors.shape} do not fit this store (dim {self.dim})")
        if parent is not None:
            self.get(parent, namespace)  # the parent must exist, in the same namespace
        now = time.time()
        meta_json = json.dumps(meta, separators=(",", ":")) if meta else None
        records = []
        with self._lock:
            try:
                with self._db:
                    for vector, text in zip(vectors, texts, strict=True):
                        handle = new_handle()
                        cursor = self._db.execute(
                            "INSERT INTO handoffs"
                            "(handle, namespace, from_agent, created_at, parent, meta, text, vector)"
                            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                            (handle, namespace, from_agent, now, parent, meta_json, text, vector.tobytes()),
                        )
                        records.append(
                            Handoff(cursor.lastrowid, handle, namespace, from_agent, now, parent, meta, text, vector)
                        )
            except sqlite3.Error as exc:
                raise StoreError(f"could not store the handoff: {exc}; nothing was written, retry the call.") from exc
            entry = self._indexes.get(namespace)
            if entry is not None:
                self._catch_up(namespace, entry)  # in seq order, with any rows another process wrote meanwhile
        return records

    def drop(self, namespace: str) -> int:
        """Delete a namespace's records and index; returns how many records went."""
        with self._lock:
            with self._db:
                count = self._db.execute("DELETE FROM handoffs WHERE namespace = ?", (namespace,)).rowcount
            self._indexes.pop(namespace, None)
            for path in self._index_paths(namespace):
                path.unlink(missing_ok=True)
        return count

    def compact(self, namespace: str, max_records: int | None = None, ttl_seconds: float | None = None) -> int:
        """Apply retention to one namespace (oldest first); the index drops the same records. Returns how many."""
        conditions, params = [], [namespace]
        if ttl_seconds is not None:
            conditions.append("created_at < ?")
            params.append(time.time() - ttl_seconds)
        if max_records is not None:
            conditions.append(
                "seq <= (SELECT seq FROM handoffs WHERE namespace = ? ORDER BY seq DESC LIMIT 1 OFFSET ?)"
            )
            params += [namespace, max_records]
        if not conditions:
            return 0
        where = "namespace = ? AND (" + " OR ".join(conditions) + ")"
        with self._lock:
            with self._db:
                doomed = [r[0] for r in self._db.execute(f"SELECT seq FROM handoffs WHERE {where}", params)]
                self._db.execute(f"DELETE FROM handoffs WHERE {where}", params)
            entry = self._indexes.get(namespace)
            if entry is not None and doomed:
                entry.index.delete(doomed)
        return len(doomed)

    # --- reads -----------------------------------------------------------------------------------------------

    def get(self, handle: str, namespace: str) -> Handoff:
        """The record behind a handle, or NotFound: a handle of another namespace is as absent as a made-up one."""
        check_handle(handle)
        with self._lock:
            row = self._db.execute(
                f"SELECT {_COLUMNS} FROM handoffs WHERE handle = ? AND namespace = ?", (handle, namespace)
            ).fetchone()
        if row is None:
            raise NotFound(
                f"handle {handle!r} not found in namespace {namespace!r}; use a handle returned by `handoff`/`embed` "
                "in this namespace, or pass `text` instead."
            )
        return Handoff.from_row(row)

    def similar(
        self, namespace: str, vector: np.ndarray, k: int, exclude: str | None = None
    ) -> list[tuple[Handoff, float]]:
        """The `k` nearest handoffs of a namespace to `vector`, best first, with cosine similarity."""
        with self._lock:
            entry = self._sync_index(namespace)
            labels, similarities = entry.index.search(vector, k + (1 if exclude else 0))
            if len(labels) == 0:
                return []
            placeholders = ",".join("?" * len(labels))
            rows = self._db.execute(
                f"SELECT {_COLUMNS} FROM handoffs WHERE seq IN ({placeholders})", [int(x) for x in labels]
            ).fetchall()
        by_seq = {row[0]: Handoff.from_row(row) for row in rows}
        hits = [
            (by_seq[int(label)], float(sim))
            for label, sim in zip(labels, similarities, strict=True)
            if int(label) in by_seq and by_seq[int(label)].handle != exclude
        ]
        return hits[:k]

    def count(self, namespace: str | None = None) -> int:
        with self._lock:
            if namespace is None:
                return self._db.execute("SELECT COUNT(*) FROM handoffs").fetchone()[0]
            return self._db.execute("SELECT COUNT(*) FROM handoffs WHERE namespace = ?", (namespace,)).fetchone()[0]

    def namespaces(self) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT namespace, COUNT(*), MIN(created_at), MAX(created_at) FROM handoffs GROUP BY namespace"
                " ORDER BY namespace"
            ).fetchall()
        return [{"namespace": n, "count": c, "oldest": lo, "newest": hi} for n, c, lo, hi in rows]

    def export(self, namespace: str) -> Iterator[Handoff]:
        """Every record of a namespace, oldest first (read in pages so a large namespace streams)."""
        last = 0
        while True:
            with self._lock:
                rows = self._db.execute(
                    f"SELECT {_COLUMNS} FROM handoffs WHERE namespace = ? AND seq > ? ORDER BY seq LIMIT 500",
                    (namespace, last),
                ).fetchall()
            if not rows:
                return
            for row in rows:
                yield Handoff.from_row(row)
            last = rows[-1][0]

    # --- the derived index -------------------------------------------------------------------------------------

    def _index_paths(self, namespace: str) -> tuple[Path, Path, Path]:
        stem = hashlib.sha256(namespace.encode()).hexdigest()[:20]
        base = self.index_dir / f"{stem}.hnsw"
        return base, base.with_suffix(".hnsw.json"), base.with_suffix(".hnsw.deleted.json")

    def _save_index(self, namespace: str, entry: _NamespaceIndex) -> None:
        graph, info, _ = self._index_paths(namespace)
        entry.index.save(graph)
        info.write_text(json.dumps({"namespace": namespace, "last_seq": entry.last_seq, "count": len(entry.index)}))

    def _sync_index(self, namespace: str) -> _NamespaceIndex:
        """Load (or build) the namespace's index, then add any rows written since (by us or another process)."""
        entry = self._indexes.get(namespace)
        if entry is None:
            entry = self._open_index(namespace)
            self._indexes[namespace] = entry
        self._catch_up(namespace, entry)
        return entry

    def _open_index(self, namespace: str) -> _NamespaceIndex:
        graph, info, _ = self._index_paths(namespace)
        if graph.exists() and info.exists():
            try:
                saved = json.loads(info.read_text())
                entry = _NamespaceIndex(VectorIndex.load(graph, self.dim, **self._hnsw), saved["last_seq"])
                caught_up = self._catch_up(namespace, entry)
                if len(entry.index) == self.count(namespace):
                    log.info("index of namespace %r loaded from disk; %d rows caught up", namespace, caught_up)
                    return entry
                log.warning(
                    "index of namespace %r disagrees with the record (compaction or crash); rebuilding", namespace
                )
            except (StoreError, ValueError, KeyError, OSError) as exc:
                log.warning("index of namespace %r is unreadable (%s); rebuilding", namespace, exc)
        entry = _NamespaceIndex(VectorIndex(self.dim, capacity=max(1024, self.count(namespace)), **self._hnsw), 0)
        rebuilt = self._catch_up(namespace, entry)
        if rebuilt:
            log.info("index of namespace %r rebuilt from the record: %d vectors", namespace, rebuilt)
        return entry

    def _catch_up(self, namespace: str, entry: _NamespaceIndex) -> int:
        added = 0
        while True:
            rows = self._db.execute(
                "SELECT seq, vector FROM handoffs WHERE namespace = ? AND seq > ? ORDER BY seq LIMIT 10000",
                (namespace, entry.last_seq),
            ).fetchall()
            if not rows:
                return added
            vectors = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), self.dim)
            entry.index.add([r[0] for r in rows], vectors)
            entry.last_seq = rows[-1][0]
            added += len(rows)
