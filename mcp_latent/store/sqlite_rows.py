"""The SQLite backend's rows and SQL: its columns, a row into a `Handoff`, a `HandoffFilter` into SQL conditions,
and the exact scoring of a filter's few matches. Plain functions over a connection the store hands in.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

import numpy as np

from mcp_latent.store.base import Handoff, HandoffFilter

COLUMNS = "seq, handle, namespace, from_agent, created_at, parent, meta, text, vector"
# One row per namespace that holds handoffs; first/last by seq (insertion order) through handoffs_by_namespace.
NAMESPACES_SQL = (
    "SELECT c.namespace, c.n,"
    " (SELECT created_at FROM handoffs h WHERE h.namespace = c.namespace ORDER BY h.seq LIMIT 1),"
    " (SELECT created_at FROM handoffs h WHERE h.namespace = c.namespace ORDER BY h.seq DESC LIMIT 1)"
    " FROM handoff_counts c WHERE c.n > 0 ORDER BY c.namespace"
)
_IN_CHUNK = 900  # seqs per `IN (...)` list (SQLite allows 999 variables by default on older builds)


def handoff_from_row(row: tuple) -> Handoff:
    seq, handle, namespace, from_agent, created_at, parent, meta, text, blob = row
    return Handoff(
        seq, handle, namespace, from_agent, created_at, parent, json.loads(meta) if meta else None, text,
        np.frombuffer(blob, dtype=np.float32),
    )  # fmt: skip


def filter_sql(where: HandoffFilter | None) -> tuple[str, list[Any]]:
    """` AND ...` conditions (and their parameters) that keep the records matching `where`."""
    if where is None or where.empty:
        return "", []
    sql, params = [], []
    if where.from_agent is not None:
        sql.append("from_agent = ?")
        params.append(where.from_agent)
    if where.since is not None:
        sql.append("created_at >= ?")
        params.append(float(where.since))
    if where.until is not None:
        sql.append("created_at < ?")
        params.append(float(where.until))
    for key, value in (where.meta or {}).items():
        path = "$." + json.dumps(key)  # a quoted key: any characters, no JSON-path injection
        if isinstance(value, bool):  # json_extract gives 1/0 for true/false: compare the JSON type instead
            sql.append("json_type(meta, ?) = ?")
            params += [path, "true" if value else "false"]
        elif isinstance(value, str):
            sql.append("json_type(meta, ?) = 'text' AND json_extract(meta, ?) = ?")
            params += [path, path, value]
        else:
            sql.append("json_type(meta, ?) IN ('integer', 'real') AND json_extract(meta, ?) = ?")
            params += [path, path, value]
    return "".join(" AND " + condition for condition in sql), params


def exact_nearest(
    db: sqlite3.Connection, dim: int, seqs: list[int], vector: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """The `k` of these records nearest to `vector`, scored exactly (a selective filter's candidates)."""
    best_labels, best_sims = np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
    query = np.ascontiguousarray(vector, dtype=np.float32).reshape(-1)
    for start in range(0, len(seqs), _IN_CHUNK):
        chunk = seqs[start : start + _IN_CHUNK]
        rows = db.execute(
            f"SELECT seq, vector FROM handoffs WHERE seq IN ({','.join('?' * len(chunk))})", chunk
        ).fetchall()
        if not rows:
            continue
        vectors = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), dim)
        best_labels = np.concatenate([best_labels, np.array([r[0] for r in rows], dtype=np.int64)])
        best_sims = np.concatenate([best_sims, vectors @ query])
        order = np.argsort(-best_sims, kind="stable")[:k]
        best_labels, best_sims = best_labels[order], best_sims[order]
    return best_labels, np.clip(best_sims, -1.0, 1.0)
