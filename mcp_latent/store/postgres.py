"""The shared `LatentStore`: handoffs, taught exemplars and generations in PostgreSQL, searched with pgvector HNSW.

Every mcp-latent server pointed at one database (and schema) shares one latent state: there is no per-process
copy to catch up or repair, so a handle written through any server is readable through every other as soon as
`add` returns, and a removal is seen by the next search everywhere. Handoffs of all namespaces live in one
table; the namespace is an indexed column, and a search filters by it (pgvector's iterative index scan keeps
a small namespace's top-k complete inside a large table).

Durability: `add` returns only after PostgreSQL committed (with the server's `synchronous_commit`, on by
default: the commit is in the primary's WAL on disk; with synchronous standbys also on theirs).

Faults: a dropped connection is never fatal. Reads retry once on a fresh connection; a write whose COMMIT may
or may not have landed (the connection broke during it) is resolved by looking its handles up, because handles
are chosen before the INSERT: the write is then reported as stored, or written again, never twice. When the
database is unreachable, calls fail after `timeout_s` with a StoreError that says so, and the pool reconnects in
the background.

Who owns what: the connection pool (psycopg_pool) owns every connection and hands each to one thread at a
time; this object holds no other mutable state, so every method may run on any thread at once.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import numpy as np
import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from mcp_latent.errors import NotFound, StoreError
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
from mcp_latent.store.postgres_migrations import check_model, check_replica, migrate
from mcp_latent.store.postgres_wire import (
    COLUMNS,
    NAMESPACES_SQL,
    describe_url,
    ensure_pgvector,
    filter_sql,
    handoff_from_row,
    translated_errors,
    vector_adapters,
)

log = logging.getLogger(__name__)

SCHEMA_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_NOW = "extract(epoch from clock_timestamp())"  # one clock for every host: the database's
# Generations and taught ids are cursors: a reader that has seen value v must never later find a smaller one
# committed. Writers of either take this transaction lock, so values are handed out in commit order.
_CURSOR_LOCK = 0x6D63706D
_PAGE = 500  # rows per query when exporting

T = TypeVar("T")


def _boundary(action: str, retry: bool = True) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """Translate lower-layer errors of one store method into StoreError (logged); retry a read once when its
    connection broke (a restarted database leaves every pooled connection dead)."""

    def wrap(method: Callable[..., T]) -> Callable[..., T]:
        @functools.wraps(method)
        def translated(self: PostgresStore, *args: Any, **kwargs: Any) -> T:
            with self._translated(action):
                if not retry:
                    return method(self, *args, **kwargs)
                try:
                    return method(self, *args, **kwargs)
                except psycopg.errors.QueryCanceled:
                    raise  # the statement timeout: trying again would only wait as long once more
                except psycopg.OperationalError as exc:
                    log.info("latent store: connection lost while trying to %s (%s); retrying once", action, exc)
                    self._pool.check()
                    return method(self, *args, **kwargs)

        return translated

    return wrap


class PostgresStore(LatentStore):
    """One latent state in a PostgreSQL schema, shared by every server that opens the same URL and schema."""

    def __init__(
        self,
        url: str,
        dim: int | None,
        model_id: str | None,
        schema: str = "mcp_latent",
        pool_size: int = 8,
        timeout_s: float = 5.0,
        statement_timeout_s: float = 60.0,
        hnsw_m: int = 16,
        hnsw_ef_construction: int = 64,
        hnsw_ef_search: int = 64,
    ):
        if not SCHEMA_RE.match(schema):
            raise StoreError(
                f"invalid schema name {schema!r} (MCP_LATENT_STORE_SCHEMA): use lowercase letters, digits and '_'."
            )
        self.url, self.dim, self.model_id, self.schema = url, dim or 0, model_id, schema
        self.where = describe_url(url)
        self.timeout_s, self.statement_timeout_s = timeout_s, statement_timeout_s
        self.ef_search = hnsw_ef_search
        self.replica = False  # a read-only hot standby (set on connect)
        self._closed = False
        connect_args: dict[str, Any] = {
            "connect_timeout": max(1, round(timeout_s)),
            "application_name": "mcp-latent",
        }
        with self._translated("open the latent store", unreachable_hint="check MCP_LATENT_STORE_URL"):
            with psycopg.connect(url, autocommit=True, **connect_args) as conn:
                extension_schema = ensure_pgvector(conn)
                conn.execute(
                    sql.SQL("SET search_path = {}, {}").format(*map(sql.Identifier, (schema, extension_schema)))
                )
                # A streaming replica (hot standby) is read-only: it serves a read-only server (MCP_LATENT_READ_ONLY)
                # the primary's schema, which must already be current; nothing is created or bound there.
                self.replica = conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]
                if self.replica:
                    self.model_id, self.dim = check_replica(conn, self.where, schema, self.model_id, self.dim)
                else:
                    migrate(conn, schema)
                    self.model_id, self.dim = check_model(
                        conn, self.where, schema, self.model_id, self.dim, hnsw_m, hnsw_ef_construction
                    )
                vector_oid = conn.execute("SELECT 'vector'::regtype::oid").fetchone()[0]
            options = (
                f"-c search_path={schema},{extension_schema}"
                f" -c statement_timeout={round(statement_timeout_s * 1000)}"
                f" -c hnsw.ef_search={hnsw_ef_search}"
                # A namespace filter discards graph neighbours of other namespaces: keep scanning until k match.
                " -c hnsw.iterative_scan=relaxed_order"
                # Plan each search for its namespace: a small one is read exactly through the btree, and a partial
                # HNSW index made for one large namespace (README, "Scale-out") is only usable by a custom plan.
                " -c plan_cache_mode=force_custom_plan"
            )
            self._pool = ConnectionPool(
                url,
                min_size=1,
                max_size=max(1, pool_size),
                timeout=timeout_s,
                reconnect_timeout=0,  # keep trying forever: the database may come back any time
                kwargs={"autocommit": True, "options": options, "context": vector_adapters(vector_oid), **connect_args},
                open=False,
                name="mcp-latent",
            )
            self._pool.open(wait=True, timeout=timeout_s)

    # --- connections and errors ----------------------------------------------------------------------------

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection]:
        if self._closed:
            raise StoreError("the latent store is closed; the server is shutting down, retry on the new one.")
        with self._pool.connection() as conn:
            yield conn

    def _translated(self, action: str, unreachable_hint: str = "the server reconnects by itself"):
        return translated_errors(action, self.where, self.statement_timeout_s, unreachable_hint)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._pool.close()

    # --- handoff writes ------------------------------------------------------------------------------------

    def _insert(self, new: NewHandoffs) -> list[Handoff]:
        handles = [new_handle() for _ in new.texts]
        with self._translated("store the handoff (nothing was written)"):
            try:
                return self._insert_once(new, handles)
            except psycopg.errors.QueryCanceled:
                raise  # cancelled by the statement timeout: rolled back, nothing to resolve
            except psycopg.OperationalError as exc:
                # The connection broke; the COMMIT may or may not have landed. The handles tell.
                log.info("latent store: connection lost while storing a handoff (%s); resolving by handle", exc)
                self._pool.check()
                stored = self._stored(new.namespace, handles)
                if len(stored) == len(handles):
                    return stored
                return self._insert_once(new, handles)

    def _insert_once(self, new: NewHandoffs, handles: list[str]) -> list[Handoff]:
        meta = Jsonb(new.meta) if new.meta else None
        rows = []
        with self._connection() as conn, conn.transaction(), conn.cursor(binary=True) as cur:
            if new.parent is not None:
                # FOR KEY SHARE: a compaction cannot remove the parent before this transaction commits.
                cur.execute(
                    "SELECT 1 FROM handoffs WHERE handle = %s AND namespace = %s FOR KEY SHARE",
                    (new.parent, new.namespace),
                )
                if cur.fetchone() is None:
                    raise NotFound(
                        f"parent handle {new.parent!r} not found in namespace {new.namespace!r}; use a handle "
                        "returned by `handoff`/`embed` in this namespace, or pass `text` instead."
                    )
            cur.executemany(
                "INSERT INTO handoffs (handle, namespace, from_agent, created_at, parent, meta, text, vector)"
                f" VALUES (%s, %s, %s, {_NOW}, %s, %s, %s, %b) RETURNING seq, created_at",
                [
                    (handle, new.namespace, new.from_agent, new.parent, meta, text, vector)
                    for handle, text, vector in zip(handles, new.texts, new.vectors, strict=True)
                ],
                returning=True,
            )
            while True:
                rows.append(cur.fetchone())
                if not cur.nextset():
                    break
        # Committed: acknowledged. Nothing derived remains to update (the index lives in the database).
        return [
            Handoff(seq, handle, new.namespace, new.from_agent, created_at, new.parent, new.meta, text, vector)
            for (seq, created_at), handle, text, vector in zip(rows, handles, new.texts, new.vectors, strict=True)
        ]

    def _stored(self, namespace: str, handles: list[str]) -> list[Handoff]:
        with self._connection() as conn, conn.cursor(binary=True) as cur:
            cur.execute(
                f"SELECT {COLUMNS} FROM handoffs WHERE handle = ANY(%s) AND namespace = %s ORDER BY seq",
                (handles, namespace),
            )
            return [handoff_from_row(row) for row in cur.fetchall()]

    @_boundary("drop the namespace", retry=False)
    def drop(self, namespace: str) -> int:
        """Delete a namespace's records; returns how many went."""
        with self._connection() as conn, conn.transaction():
            count = conn.execute("DELETE FROM handoffs WHERE namespace = %s", (namespace,)).rowcount
            if count:
                self._bump(conn, HANDOFFS_SCOPE + namespace)
        return count

    @_boundary("forget handoffs", retry=False)
    def _forget(self, namespace: str, handle: str | None, from_agent: str | None) -> int:
        """Delete one handle or one agent's records: the next search of every server no longer finds them."""
        column = "handle" if handle is not None else "from_agent"
        with self._connection() as conn, conn.transaction():
            removed = conn.execute(
                f"DELETE FROM handoffs WHERE namespace = %s AND {column} = %s",
                (namespace, handle if handle is not None else from_agent),
            ).rowcount
            if removed:
                self._bump(conn, HANDOFFS_SCOPE + namespace)
        return removed

    @_boundary("compact the namespace", retry=False)
    def compact(self, namespace: str, max_records: int | None = None, ttl_seconds: float | None = None) -> int:
        """Apply retention to one namespace (oldest first). Returns how many records went."""
        conditions, params = [], [namespace]
        if ttl_seconds:
            conditions.append(f"created_at < {_NOW} - %s")
            params.append(float(ttl_seconds))
        if max_records:
            conditions.append(
                "seq <= (SELECT seq FROM handoffs WHERE namespace = %s ORDER BY seq DESC LIMIT 1 OFFSET %s)"
            )
            params += [namespace, int(max_records)]
        if not conditions:
            return 0
        with self._connection() as conn, conn.transaction():
            removed = conn.execute(
                "DELETE FROM handoffs WHERE namespace = %s AND (" + " OR ".join(conditions) + ")", params
            ).rowcount
            if removed:
                self._bump(conn, HANDOFFS_SCOPE + namespace)
        return removed

    @_boundary("apply retention", retry=False)
    def retention(self, max_records: int | None = None, ttl_seconds: float | None = None) -> dict[str, int]:
        """Apply the cap and TTL to every namespace, one short transaction each; returns what each lost."""
        if not (max_records or ttl_seconds):
            return {}
        removed = {name: self.compact(name, max_records, ttl_seconds) for name in self._namespace_names()}
        return {name: n for name, n in removed.items() if n}

    def _namespace_names(self) -> list[str]:
        # A skip scan over the (namespace, seq) index: one probe per namespace, not one row per handoff.
        with self._connection() as conn:
            rows = conn.execute(
                "WITH RECURSIVE names AS ("
                " (SELECT namespace FROM handoffs ORDER BY namespace LIMIT 1)"
                " UNION ALL SELECT (SELECT h.namespace FROM handoffs h WHERE h.namespace > names.namespace"
                "  ORDER BY h.namespace LIMIT 1) FROM names WHERE names.namespace IS NOT NULL)"
                " SELECT namespace FROM names WHERE namespace IS NOT NULL"
            ).fetchall()
        return [row[0] for row in rows]

    @staticmethod
    def _bump(conn: psycopg.Connection, scope: str) -> None:
        """Move one scope's generation to a new store-wide maximum (inside the caller's transaction)."""
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_CURSOR_LOCK,))
        conn.execute(
            "INSERT INTO generations (scope, value) VALUES (%s, (SELECT COALESCE(MAX(value), 0) + 1 FROM generations))"
            " ON CONFLICT (scope) DO UPDATE SET value = excluded.value",
            (scope,),
        )

    # --- handoff reads -------------------------------------------------------------------------------------

    @_boundary("read the handoff")
    def get(self, handle: str, namespace: str) -> Handoff:
        """The record behind a handle, or NotFound: a handle of another namespace is as absent as a made-up one."""
        check_handle(handle)
        with self._connection() as conn, conn.cursor(binary=True) as cur:
            cur.execute(f"SELECT {COLUMNS} FROM handoffs WHERE handle = %s AND namespace = %s", (handle, namespace))
            row = cur.fetchone()
        if row is None:
            raise NotFound(
                f"handle {handle!r} not found in namespace {namespace!r}; use a handle returned by `handoff`/`embed` "
                "in this namespace, or pass `text` instead."
            )
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
        """The `k` nearest handoffs of a namespace to `vector`, best first, with cosine similarity. A filter is
        part of the WHERE clause: the iterative index scan keeps walking until k records match it."""
        query = np.ascontiguousarray(vector, dtype=np.float32).reshape(-1)
        if query.shape[0] != self.dim:
            raise StoreError(f"vector of dimension {query.shape[0]} does not match the store's dimension {self.dim}")
        conditions, filter_params = filter_sql(where)
        clause = "namespace = %s" + (" AND handle <> %s" if exclude else "") + conditions
        params: list[Any] = [query, namespace] + ([exclude] if exclude else []) + filter_params + [query, k]
        statement = f"SELECT {COLUMNS}, vector <=> %b FROM handoffs WHERE {clause} ORDER BY vector <=> %b LIMIT %s"
        with self._connection() as conn, conn.cursor(binary=True) as cur:
            if k > self.ef_search:  # the graph walk must keep at least k candidates
                with conn.transaction():
                    cur.execute("SELECT set_config('hnsw.ef_search', %s, true)", (str(k),))
                    cur.execute(statement, params)
                    rows = cur.fetchall()
            else:
                cur.execute(statement, params)
                rows = cur.fetchall()
        # relaxed_order may return neighbours slightly out of order: sort by the exact distance it computed.
        hits = sorted(((handoff_from_row(row[:-1]), float(row[-1])) for row in rows), key=lambda hit: hit[1])
        return [(record, float(np.clip(1.0 - distance, -1.0, 1.0))) for record, distance in hits]

    @_boundary("list recent handoffs")
    def recent(self, namespace: str, limit: int, where: HandoffFilter | None = None) -> list[Handoff]:
        """The newest `limit` records of a namespace (matching `where`), newest first (the (namespace, seq) index)."""
        conditions, params = filter_sql(where)
        with self._connection() as conn, conn.cursor(binary=True) as cur:
            cur.execute(
                f"SELECT {COLUMNS} FROM handoffs WHERE namespace = %s{conditions} ORDER BY seq DESC LIMIT %s",
                [namespace, *params, int(limit)],
            )
            return [handoff_from_row(row) for row in cur.fetchall()]

    @_boundary("count handoffs")
    def count(self, namespace: str | None = None) -> int:
        """Exact and transactional, without reading `handoffs`: the sum of the counters its triggers maintain
        (migration 4), a few rows per namespace however large the table (COUNT(*) would read all of it)."""
        with self._connection() as conn:
            if namespace is None:
                return conn.execute("SELECT COALESCE(SUM(n), 0)::bigint FROM handoff_counts").fetchone()[0]
            return conn.execute(
                "SELECT COALESCE(SUM(n), 0)::bigint FROM handoff_counts WHERE namespace = %s", (namespace,)
            ).fetchone()[0]

    @_boundary("list namespaces")
    def namespaces(self) -> list[dict[str, Any]]:
        """Counts from the trigger-kept counters; oldest/newest are the first and last written records, two index
        lookups per namespace (a GROUP BY over `handoffs` read all of it: ~1M rows on every call at scale)."""
        with self._connection() as conn:
            rows = conn.execute(NAMESPACES_SQL).fetchall()
        return [{"namespace": n, "count": c, "oldest": lo, "newest": hi} for n, c, lo, hi in rows]

    def export(self, namespace: str) -> Iterator[Handoff]:
        """Every record of a namespace, oldest first (read in pages so a large namespace streams)."""
        last = 0
        while True:
            rows = self._export_page(namespace, last)
            if not rows:
                return
            for row in rows:
                yield handoff_from_row(row)
            last = rows[-1][0]

    @_boundary("export the namespace")
    def _export_page(self, namespace: str, after: int) -> list[tuple]:
        with self._connection() as conn, conn.cursor(binary=True) as cur:
            cur.execute(
                f"SELECT {COLUMNS} FROM handoffs WHERE namespace = %s AND seq > %s ORDER BY seq LIMIT {_PAGE}",
                (namespace, after),
            )
            return cur.fetchall()

    # --- taught exemplars and changes ----------------------------------------------------------------------

    @_boundary("store the taught exemplar", retry=False)
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
        with self._connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_CURSOR_LOCK,))  # ids in commit order
            row = conn.execute(
                "INSERT INTO taught (profile, label, text, source, created_at, import_key, teacher)"
                f" VALUES (%s, %s, %s, %s, {_NOW}, %s, %s) ON CONFLICT (import_key) DO NOTHING"
                " RETURNING id, created_at",
                (profile, label, text, source, import_key, teacher),
            ).fetchone()
            if row is None:
                return None
            self._bump(conn, TAUGHT_SCOPE + profile)
        return TaughtExemplar(row[0], profile, label, text, source, row[1], teacher)

    @_boundary("read taught exemplars")
    def taught(self, after: int = 0, profile: str | None = None) -> list[TaughtExemplar]:
        """Exemplars with id > `after`, oldest first; of one profile or all."""
        query, params = f"SELECT {TAUGHT_COLUMNS} FROM taught WHERE id > %s AND reverted_at IS NULL", [after]
        if profile is not None:
            query, params = query + " AND profile = %s", [after, profile]
        with self._connection() as conn:
            return [TaughtExemplar(*row) for row in conn.execute(query + " ORDER BY id", params)]

    @_boundary("remove taught exemplars", retry=False)
    def drop_taught(self, profile: str) -> int:
        """Delete every exemplar taught to a profile (bumps its generation: fits that had them are stale)."""
        with self._connection() as conn, conn.transaction():
            removed = conn.execute("DELETE FROM taught WHERE profile = %s", (profile,)).rowcount
            if removed:
                self._bump(conn, TAUGHT_SCOPE + profile)
        return removed

    @_boundary("read taught exemplars")
    def _select_taught(self, where: list[str], params: list[Any]) -> list[TaughtExemplar]:
        conditions = " AND ".join(["reverted_at IS NULL", *(w.replace("?", "%s") for w in where)])
        with self._connection() as conn:
            rows = conn.execute(f"SELECT {TAUGHT_COLUMNS} FROM taught WHERE {conditions} ORDER BY id", params)
            return [TaughtExemplar(*row) for row in rows]

    @_boundary("revert taught exemplars", retry=False)
    def revert_taught(self, ids: Sequence[int], reverted_by: str | None = None) -> list[TaughtExemplar]:
        """Mark these exemplars reverted (those not yet), bump each touched profile's revert scope; returns them."""
        wanted = sorted({int(i) for i in ids})
        with self._connection() as conn, conn.transaction():
            rows = conn.execute(
                f"UPDATE taught SET reverted_at = {_NOW}, reverted_by = %s"
                f" WHERE id = ANY(%s) AND reverted_at IS NULL RETURNING {TAUGHT_COLUMNS}",
                (reverted_by, wanted),
            ).fetchall()
            reverted = sorted((TaughtExemplar(*row) for row in rows), key=lambda e: e.id)
            for profile in sorted({e.profile for e in reverted}):
                self._bump(conn, REVERTED_SCOPE + profile)
        return reverted

    @_boundary("count taught exemplars")
    def taught_counts(self) -> dict[str, dict[str, int]]:
        with self._connection() as conn:
            rows = conn.execute(TAUGHT_COUNTS_SQL).fetchall()
        return counts_by_teacher(rows)

    @_boundary("poll for changes")
    def changes(self, after: int = 0) -> Changes:
        """Scopes whose generation moved after `after` (one indexed read)."""
        with self._connection() as conn:
            rows = conn.execute("SELECT scope, value FROM generations WHERE value > %s", (after,)).fetchall()
        return Changes(max([after] + [value for _, value in rows]), dict(rows))
