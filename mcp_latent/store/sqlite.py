"""The embedded `LatentStore`: handoff records in SQLite (the durable truth) plus per-namespace HNSW indexes.

A handoff is acknowledged only after its SQLite transaction commits, so a crash never loses one. The HNSW
indexes are caches derived from the record: saved on close, and on open reconciled with the record and caught
up, or rebuilt. Several processes may share one data dir: each catches up on rows the others inserted (by
`seq`) and repairs its index when a namespace's generation moved (another process compacted or dropped it).

Who owns what:
- the writer connection belongs to `_write_lock`: one transaction at a time per process (SQLite serialises
  writers across processes with BEGIN IMMEDIATE);
- each thread reads through its own connection (WAL: readers never wait for the writer);
- `_indexes`, the derived HNSW indexes (`store/sqlite_index.py`), belong to their own lock.
"""

from __future__ import annotations

import functools
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from mcp_latent.errors import LatentError, NotFound, StoreError
from mcp_latent.store.base import (
    HANDOFFS_SCOPE,
    REVERTED_SCOPE,
    TAUGHT_COLUMNS,
    TAUGHT_COUNTS_SQL,
    TAUGHT_SCOPE,
    Changes,
    Handoff,
    HandoffFilter,
    LatentStore,
    NewHandoffs,
    TaughtExemplar,
    check_handle,
    counts_by_teacher,
    new_handle,
)
from mcp_latent.store.data_dir import unusable
from mcp_latent.store.sqlite_index import NamespaceIndexes, stored_count
from mcp_latent.store.sqlite_migrations import migrate
from mcp_latent.store.sqlite_rows import (
    COLUMNS,
    NAMESPACES_SQL,
    exact_nearest,
    filter_sql,
    handoff_from_row,
)

log = logging.getLogger(__name__)

# A filtered search with at most this many matching records scores them all exactly (their vectors read from
# SQLite: ~1.5 KB each); above it, the HNSW graph is walked with the matches as an allow-list. Exact is complete
# for a selective filter, where a filtered graph walk can stop before it finds k matches.
FILTER_EXACT_ROWS = 20_000

T = TypeVar("T")


def _boundary(action: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """Translate lower-layer errors of one store method into StoreError (logged): callers see one vocabulary."""

    def wrap(method: Callable[..., T]) -> Callable[..., T]:
        @functools.wraps(method)
        def translated(self: SqliteStore, *args: Any, **kwargs: Any) -> T:
            with self._translated(action):
                return method(self, *args, **kwargs)

        return translated

    return wrap


class SqliteStore(LatentStore):
    """Durable handoff records, taught exemplars and generation counters in one SQLite file; HNSW beside it."""

    def __init__(
        self,
        data_dir: Path,
        dim: int | None,
        model_id: str | None,
        busy_timeout_s: float = 30.0,
        hnsw_m: int = 16,
        hnsw_ef_construction: int = 200,
        hnsw_ef_search: int = 64,
        index_in_background: bool = True,  # `hnsw_add_in_background`: see store/sqlite_index.py
    ):
        self.data_dir = Path(data_dir)
        self.dim = dim or 0
        self.model_id = model_id
        self._hnsw = {"m": hnsw_m, "ef_construction": hnsw_ef_construction, "ef_search": hnsw_ef_search}
        self.index_dir = self.data_dir / "index"
        self._path = self.data_dir / "latent.db"
        self._busy_timeout_s = busy_timeout_s  # how long a statement waits for another process's write lock
        self._write_lock = threading.Lock()
        self._local = threading.local()
        # Every live thread's reader, closed by `close`. Worker threads come and go (anyio ends one idle for 10 s):
        # a dead thread's reader is closed when the next one is made, else each burst of calls left connections
        # (a page cache and three file descriptors each) open for the life of the server.
        self._readers: list[tuple[threading.Thread, sqlite3.Connection]] = []
        self._readers_lock = threading.Lock()
        self._closed = False
        try:  # the data dir itself: an unwritable one, or a file in its place, is no retry matter (say path and fix)
            self.index_dir.mkdir(parents=True, exist_ok=True)
            self._writer = self._connect()
            # WAL: readers and the writer do not block each other, and several processes can share the file.
            self._writer.execute("PRAGMA journal_mode=WAL")  # the first write: fails here in a read-only dir
        except (OSError, sqlite3.Error) as exc:
            raise unusable(self.data_dir, exc) from exc
        with self._translated("open the latent store"):
            migrate(self._writer)
            self._check_model()
        self._indexes = NamespaceIndexes(
            self.index_dir, self.dim, self._hnsw, self._reader, self._generation, index_in_background
        )

    # --- connections and errors ----------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: autocommit; write transactions are explicit (BEGIN IMMEDIATE ... COMMIT).
        db = sqlite3.connect(self._path, timeout=self._busy_timeout_s, isolation_level=None, check_same_thread=False)
        # NORMAL in WAL mode: a commit survives a process crash (kill -9); only a power cut may drop the last one.
        db.execute("PRAGMA synchronous=NORMAL")
        return db

    def _reader(self) -> sqlite3.Connection:
        """This thread's read connection (created on first use; each sees every commit made before its query)."""
        db = getattr(self._local, "db", None)
        if db is None:
            if self._closed:
                raise StoreError("the latent store is closed; the server is shutting down, retry on the new one.")
            db = self._connect()
            db.execute("PRAGMA query_only=ON")
            self._local.db = db
            with self._readers_lock:
                dead = [old for thread, old in self._readers if not thread.is_alive()]
                self._readers = [(thread, old) for thread, old in self._readers if thread.is_alive()]
                self._readers.append((threading.current_thread(), db))
            for old in dead:  # its thread is gone: nobody can be using it
                old.close()
        return db

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction on the writer connection; it holds SQLite's write lock from its first statement."""
        with self._write_lock:
            if self._closed:
                raise StoreError("the latent store is closed; the server is shutting down, retry on the new one.")
            self._writer.execute("BEGIN IMMEDIATE")
            try:
                yield self._writer
                self._writer.execute("COMMIT")
            except BaseException:
                if self._writer.in_transaction:  # also after a failed COMMIT: never leave the writer mid-transaction
                    self._writer.execute("ROLLBACK")
                raise

    @contextmanager
    def _translated(self, action: str) -> Iterator[None]:
        try:
            yield
        except LatentError:
            raise
        except sqlite3.Error as exc:
            log.warning("latent store: could not %s: %s", action, exc)
            raise StoreError(
                f"the latent store could not {action}: {exc}; nothing acknowledged was lost, retry the call."
            ) from exc
        except (RuntimeError, OSError, ValueError, MemoryError) as exc:  # hnswlib raises bare RuntimeError
            log.exception("latent store: could not %s", action)
            raise StoreError(
                f"the latent store could not {action}: {exc!r}; nothing acknowledged was lost, retry the call."
            ) from exc

    def _check_model(self) -> None:
        if self.model_id is None:  # opened without a model: adopt the data dir's (0 / None while it holds none)
            stored = dict(self._writer.execute("SELECT key, value FROM store_info").fetchall())
            self.model_id, self.dim = stored.get("model_id"), int(stored.get("dim", 0))
            return
        with self._write() as db:
            db.execute(
                "INSERT OR IGNORE INTO store_info(key, value) VALUES ('model_id', ?), ('dim', ?)",
                (self.model_id, str(self.dim)),
            )
            stored = dict(db.execute("SELECT key, value FROM store_info").fetchall())
        if stored["model_id"] != self.model_id or int(stored["dim"]) != self.dim:
            raise StoreError(
                f"the data dir {self.data_dir} holds vectors from model {stored['model_id']!r} "
                f"(dim {stored['dim']}), but this server embeds with {self.model_id!r} (dim {self.dim}); "
                "use another --data-dir or the same model."
            )

    def close(self) -> None:
        """Save every loaded index (so the next start only catches up) and close the connections."""
        with self._indexes.lock:
            if self._closed:
                return
            self._indexes.close()  # stops its catch-up thread, saves every loaded index
            with self._write_lock:
                self._closed = True
                self._writer.close()
            with self._readers_lock:
                for _, db in self._readers:
                    db.close()
                self._readers.clear()

    # --- handoff writes ------------------------------------------------------------------------------------

    def _insert(self, new: NewHandoffs) -> list[Handoff]:
        namespace, parent, meta = new.namespace, new.parent, new.meta
        now = time.time()
        meta_json = json.dumps(meta, separators=(",", ":")) if meta else None
        records = []
        with self._translated("store the handoff (nothing was written)"), self._write() as db:
            parent_row = "SELECT 1 FROM handoffs WHERE handle = ? AND namespace = ?"
            if parent is not None and not db.execute(parent_row, (parent, namespace)).fetchone():
                raise self._not_found(parent, namespace, what="parent handle")
            for vector, text in zip(new.vectors, new.texts, strict=True):
                handle = new_handle()
                cursor = db.execute(
                    "INSERT INTO handoffs(handle, namespace, from_agent, created_at, parent, meta, text, vector)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (handle, namespace, new.from_agent, now, parent, meta_json, text, vector.tobytes()),
                )
                records.append(
                    Handoff(cursor.lastrowid, handle, namespace, new.from_agent, now, parent, meta, text, vector)
                )
        # Committed: acknowledged. From here on nothing may fail the call; the index repairs itself on next read.
        self._indexes.after_insert(namespace)
        return records

    @_boundary("drop the namespace")
    def drop(self, namespace: str) -> int:
        """Delete a namespace's records and index; returns how many records went."""
        with self._write() as db:
            count = db.execute("DELETE FROM handoffs WHERE namespace = ?", (namespace,)).rowcount
            if count:
                self._bump(db, HANDOFFS_SCOPE + namespace)
        self._indexes.forget(namespace, files=True)
        return count

    @_boundary("forget handoffs")
    def _forget(self, namespace: str, handle: str | None, from_agent: str | None) -> int:
        """Delete one handle or one agent's records; the generation bump makes every process's index drop them
        (this one's too, on its next read)."""
        column, value = ("handle", handle) if handle is not None else ("from_agent", from_agent)
        with self._write() as db:
            removed = db.execute(
                f"DELETE FROM handoffs WHERE namespace = ? AND {column} = ?", (namespace, value)
            ).rowcount
            if removed:
                self._bump(db, HANDOFFS_SCOPE + namespace)
        return removed

    @_boundary("compact the namespace")
    def compact(self, namespace: str, max_records: int | None = None, ttl_seconds: float | None = None) -> int:
        """Apply retention to one namespace (oldest first); the indexes of every process follow. Returns how many."""
        conditions, params = [], [namespace]
        if ttl_seconds:
            conditions.append("created_at < ?")
            params.append(time.time() - ttl_seconds)
        if max_records:
            conditions.append(
                "seq <= (SELECT seq FROM handoffs WHERE namespace = ? ORDER BY seq DESC LIMIT 1 OFFSET ?)"
            )
            params += [namespace, max_records]
        if not conditions:
            return 0
        with self._write() as db:
            removed = db.execute(
                "DELETE FROM handoffs WHERE namespace = ? AND (" + " OR ".join(conditions) + ")", params
            ).rowcount
            if removed:
                self._bump(db, HANDOFFS_SCOPE + namespace)
        return removed  # this process's index is repaired on its next read, like every other's

    @_boundary("apply retention")
    def retention(self, max_records: int | None = None, ttl_seconds: float | None = None) -> dict[str, int]:
        """Apply the cap and TTL to every namespace, one short transaction each; returns what each lost."""
        if not (max_records or ttl_seconds):
            return {}
        names = [row[0] for row in self._reader().execute("SELECT DISTINCT namespace FROM handoffs")]
        removed = {name: self.compact(name, max_records, ttl_seconds) for name in names}
        return {name: n for name, n in removed.items() if n}

    @staticmethod
    def _bump(db: sqlite3.Connection, scope: str) -> None:
        """Move one scope's generation to a new store-wide maximum (inside the caller's transaction)."""
        db.execute(
            "INSERT INTO generations(scope, value) VALUES (?, (SELECT COALESCE(MAX(value), 0) + 1 FROM generations))"
            " ON CONFLICT(scope) DO UPDATE SET value = excluded.value",
            (scope,),
        )

    # --- handoff reads -------------------------------------------------------------------------------------

    @staticmethod
    def _not_found(handle: str, namespace: str, what: str = "handle") -> NotFound:
        return NotFound(
            f"{what} {handle!r} not found in namespace {namespace!r}; use a handle returned by `handoff`/`embed` "
            "in this namespace, or pass `text` instead."
        )

    @_boundary("read the handoff")
    def get(self, handle: str, namespace: str) -> Handoff:
        """The record behind a handle, or NotFound: a handle of another namespace is as absent as a made-up one."""
        check_handle(handle)
        row = (
            self._reader()
            .execute(f"SELECT {COLUMNS} FROM handoffs WHERE handle = ? AND namespace = ?", (handle, namespace))
            .fetchone()
        )
        if row is None:
            raise self._not_found(handle, namespace)
        return handoff_from_row(row)

    @_boundary("search the namespace")
    def similar(
        self,
        namespace: str,
        vector: np.ndarray,
        k: int,
        exclude: str | None = None,
        where: HandoffFilter | None = None,
    ) -> list[tuple[Handoff, float]]:
        """The `k` nearest handoffs of a namespace to `vector`, best first, with cosine similarity."""
        entry = self._indexes.sync(namespace, HANDOFFS_SCOPE + namespace)
        wanted = k + (1 if exclude else 0)
        if where is not None and not where.empty:
            conditions, params = filter_sql(where)
            allowed = [
                row[0]
                for row in self._reader().execute(
                    f"SELECT seq FROM handoffs WHERE namespace = ?{conditions}", [namespace, *params]
                )
            ]
            if len(allowed) <= FILTER_EXACT_ROWS:
                labels, similarities = exact_nearest(self._reader(), self.dim, allowed, vector, wanted)
            else:
                labels, similarities = entry.index.search(vector, wanted, allowed=set(allowed))
        else:
            labels, similarities = entry.index.search(vector, wanted)
        if len(labels) == 0:
            return []
        placeholders = ",".join("?" * len(labels))
        rows = (
            self._reader()
            .execute(f"SELECT {COLUMNS} FROM handoffs WHERE seq IN ({placeholders})", [int(x) for x in labels])
            .fetchall()
        )
        by_seq = {row[0]: handoff_from_row(row) for row in rows}  # a record removed since the index saw it is skipped
        hits = [
            (by_seq[int(label)], float(sim))
            for label, sim in zip(labels, similarities, strict=True)
            if int(label) in by_seq and by_seq[int(label)].handle != exclude
        ]
        return hits[:k]

    @_boundary("list recent handoffs")
    def recent(self, namespace: str, limit: int, where: HandoffFilter | None = None) -> list[Handoff]:
        """The newest `limit` records of a namespace (matching `where`), newest first."""
        conditions, params = filter_sql(where)
        rows = (
            self._reader()
            .execute(
                f"SELECT {COLUMNS} FROM handoffs WHERE namespace = ?{conditions} ORDER BY seq DESC LIMIT ?",
                [namespace, *params, int(limit)],
            )
            .fetchall()
        )
        return [handoff_from_row(row) for row in rows]

    @_boundary("count handoffs")
    def count(self, namespace: str | None = None) -> int:
        """Exact, from the counters the triggers keep in the same transactions (migration 4): one row per
        namespace, however many handoffs (COUNT(*) read a whole index: ~100 ms at 1M, on every /healthz)."""
        if namespace is None:
            return self._reader().execute("SELECT COALESCE(SUM(n), 0) FROM handoff_counts").fetchone()[0]
        return stored_count(self._reader(), namespace)

    @_boundary("list namespaces")
    def namespaces(self) -> list[dict[str, Any]]:
        """Counts from the trigger-kept counters; oldest/newest are the first and last written records, two index
        lookups per namespace (a GROUP BY over `handoffs` read every row: the whole table on each call)."""
        rows = self._reader().execute(NAMESPACES_SQL).fetchall()
        return [{"namespace": n, "count": c, "oldest": lo, "newest": hi} for n, c, lo, hi in rows]

    def export(self, namespace: str) -> Iterator[Handoff]:
        """Every record of a namespace, oldest first (read in pages so a large namespace streams)."""
        last = 0
        while True:
            with self._translated("export the namespace"):
                rows = (
                    self._reader()
                    .execute(
                        f"SELECT {COLUMNS} FROM handoffs WHERE namespace = ? AND seq > ? ORDER BY seq LIMIT 500",
                        (namespace, last),
                    )
                    .fetchall()
                )
            if not rows:
                return
            for row in rows:
                yield handoff_from_row(row)
            last = rows[-1][0]

    # --- taught exemplars and changes ----------------------------------------------------------------------

    @_boundary("store the taught exemplar")
    def add_taught(
        self,
        profile: str,
        label: str,
        text: str,
        source: str | None = None,
        import_key: str | None = None,
        teacher: str | None = None,
    ) -> TaughtExemplar | None:
        """Append one exemplar (acknowledged once committed); an `import_key` already stored adds nothing."""
        now = time.time()
        with self._write() as db:
            cursor = db.execute(
                "INSERT OR IGNORE INTO taught(profile, label, text, source, created_at, import_key, teacher)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (profile, label, text, source, now, import_key, teacher),
            )
            if cursor.rowcount == 0:
                return None
            self._bump(db, TAUGHT_SCOPE + profile)
        return TaughtExemplar(cursor.lastrowid, profile, label, text, source, now, teacher)

    @_boundary("read taught exemplars")
    def taught(self, after: int = 0, profile: str | None = None) -> list[TaughtExemplar]:
        """Exemplars with id > `after`, oldest first; of one profile or all."""
        query, params = f"SELECT {TAUGHT_COLUMNS} FROM taught WHERE id > ? AND reverted_at IS NULL", [after]
        if profile is not None:
            query, params = query + " AND profile = ?", [after, profile]
        return [TaughtExemplar(*row) for row in self._reader().execute(query + " ORDER BY id", params)]

    @_boundary("remove taught exemplars")
    def drop_taught(self, profile: str) -> int:
        """Delete every exemplar taught to a profile (bumps its generation: fits that had them are stale)."""
        with self._write() as db:
            removed = db.execute("DELETE FROM taught WHERE profile = ?", (profile,)).rowcount
            if removed:
                self._bump(db, TAUGHT_SCOPE + profile)
        return removed

    @_boundary("read taught exemplars")
    def _select_taught(self, where: list[str], params: list[Any]) -> list[TaughtExemplar]:
        query = f"SELECT {TAUGHT_COLUMNS} FROM taught WHERE " + " AND ".join(["reverted_at IS NULL", *where])
        return [TaughtExemplar(*row) for row in self._reader().execute(query + " ORDER BY id", params)]

    @_boundary("revert taught exemplars")
    def revert_taught(self, ids: Sequence[int], reverted_by: str | None = None) -> list[TaughtExemplar]:
        """Mark these exemplars reverted (those not yet), bump each touched profile's revert scope; returns them."""
        wanted = sorted({int(i) for i in ids})
        reverted: list[TaughtExemplar] = []
        now = time.time()
        with self._write() as db:
            for start in range(0, len(wanted), 500):  # SQLite caps the parameters of one statement
                chunk = wanted[start : start + 500]
                marks = ", ".join("?" * len(chunk))
                reverted += [
                    TaughtExemplar(*row)
                    for row in db.execute(
                        f"SELECT {TAUGHT_COLUMNS} FROM taught WHERE id IN ({marks}) AND reverted_at IS NULL", chunk
                    )
                ]
                db.execute(
                    f"UPDATE taught SET reverted_at = ?, reverted_by = ? WHERE id IN ({marks}) AND reverted_at IS NULL",
                    [now, reverted_by, *chunk],
                )
            for profile in sorted({e.profile for e in reverted}):
                self._bump(db, REVERTED_SCOPE + profile)
        return sorted(reverted, key=lambda e: e.id)

    @_boundary("count taught exemplars")
    def taught_counts(self) -> dict[str, dict[str, int]]:
        rows = self._reader().execute(TAUGHT_COUNTS_SQL)
        return counts_by_teacher(rows)

    @_boundary("poll for changes")
    def changes(self, after: int = 0) -> Changes:
        """Scopes whose generation moved after `after` (one indexed read)."""
        rows = self._reader().execute("SELECT scope, value FROM generations WHERE value > ?", (after,)).fetchall()
        return Changes(max([after] + [value for _, value in rows]), dict(rows))

    def _generation(self, scope: str) -> int:
        row = self._reader().execute("SELECT value FROM generations WHERE scope = ?", (scope,)).fetchone()
        return row[0] if row else 0
